"""sitekit installs as a wheel that works outside the checkout, and its Python API is the one the
README shows (issue 24, the packaging part).

* the wheel (built offline from the checkout) carries the recipes, catalogue, embedded data and map
  styles; installed into a folder of its own and run from another folder, ``python -m sitekit
  --help`` and ``python -m sitekit demo`` work and import that copy, not the checkout;
* the README's Python snippet runs as written.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built by ``python -m build`` without network (``--no-isolation``: the dev
    extra has setuptools and wheel), installed into a folder."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
         str(root / "dist"), str(REPO)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    (wheel,) = (root / "dist").glob("sitekit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("pipelines/pv.yaml", "pipelines/rules/china_national.yaml",
                   "layers/sichuan-west/catalog.yaml", "maps/default.yaml"):  # fmt: skip
        assert f"sitekit/_bundled/{needed}" in names, needed
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
         str(root / "site"), str(wheel)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return root / "site"


def _outside(site: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=900
    )


def test_the_wheel_runs_the_demo_from_any_folder(installed: Path, tmp_path: Path) -> None:
    where = _outside(installed, tmp_path, "-c", "import sitekit; print(sitekit.__file__)")
    assert where.stdout.strip() == str(installed / "sitekit" / "__init__.py"), where.stderr
    res = _outside(installed, tmp_path, "-m", "sitekit", "--help")
    assert res.returncode == 0 and "demo" in res.stdout, res.stderr
    res = _outside(installed, tmp_path, "-m", "sitekit", "-q", "demo", "--out", "out",
                   "--resolution", "5000", "--no-cache", "--workers", "1")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    for name in ("summary.csv", "sitekit.gpkg", "map.html", "report.html", "ps_pairs.csv",
                 "hosting/hosting.csv"):  # fmt: skip
        assert (tmp_path / "out" / name).is_file(), name
    assert not list(tmp_path.glob("out/**/*.part"))


def test_the_readme_python_snippet_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"<!-- api-snippet -->\s*```python\n(.*?)```", text, re.S)
    assert len(code.strip().splitlines()) <= 5
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - our own README
    assert (tmp_path / "out" / "summary.csv").is_file()
    assert len(scope["result"].summary) == 4  # one row per prefecture


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_installs_runtime_for_the_demo_and_the_dev_extra_for_the_tests(
    tmp_path: Path,
) -> None:
    """`make demo` installs what `pip install sitekit` gets, `make test` the dev extra, `make
    bench` the bench extra (dry runs on a copy: nothing is installed)."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)

    def dry(target: str) -> str:
        return subprocess.run(
            ["make", "-n", "VENV=v", target], cwd=tmp_path, capture_output=True, text=True,
            check=True,
        ).stdout  # fmt: skip

    demo, test, bench = dry("demo"), dry("test"), dry("bench")
    assert "pip install --quiet -e .\n" in demo and "[dev]" not in demo
    assert "-e '.[dev]'" in test and "-e '.[bench]'" in bench
    stamps = re.findall(r"touch (\S+)", test)
    assert stamps and "installed-dev-" in stamps[0]
