"""Build hook: put the bundled recipes, catalogues, map styles and embedded data into the wheel.

``pipelines/``, ``layers/`` and ``maps/`` stay top-level folders of the repository (users edit and
copy them); a wheel carries them as ``sitekit/_bundled/<folder>`` so that ``pip install`` followed by
``sitekit demo`` works from any folder (:mod:`sitekit.engine.resources` finds them either way).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

BUNDLED = ("pipelines", "layers", "maps")


class BuildWithData(build_py):
    """``build_py`` that also copies the bundled folders into the package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads the checkout
            return
        here = Path(__file__).resolve().parent
        target = Path(self.build_lib) / "sitekit" / "_bundled"
        for name in BUNDLED:
            shutil.copytree(
                here / name,
                target / name,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "build_data.py"),
            )


setup(cmdclass={"build_py": BuildWithData})
