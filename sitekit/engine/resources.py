"""Where the bundled recipes (``pipelines/``), catalogues and embedded data (``layers/``) and map
styles (``maps/``) are: the repository checkout, or ``sitekit/_bundled`` inside an installed
wheel (``setup.py`` copies them there), found with :mod:`importlib.resources`."""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from pathlib import Path

_NAMES = ("pipelines", "layers", "maps")


@lru_cache(maxsize=1)
def data_root() -> Path:
    """The folder that holds ``pipelines/``, ``layers/`` and ``maps/``."""
    checkout = Path(__file__).resolve().parents[2]
    if all((checkout / n).is_dir() for n in _NAMES):
        return checkout
    bundled = Path(str(files("sitekit") / "_bundled"))
    if all((bundled / n).is_dir() for n in _NAMES):
        return bundled
    from sitekit.errors import SitekitError

    raise SitekitError(
        "sitekit's bundled recipes and data are missing (neither a checkout nor a wheel with "
        "sitekit/_bundled); reinstall sitekit"
    )


def bundled(*parts: str) -> Path:
    """A path below :func:`data_root`, e.g. ``bundled("pipelines", "pv.yaml")``."""
    return data_root().joinpath(*parts)
