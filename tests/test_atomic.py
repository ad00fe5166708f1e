"""Atomic outputs under SIGKILL: previous results stay byte-identical, nothing half-written appears.

Two levels are checked, each by killing a real process with SIGKILL in the middle of writing:

* a single writer (:func:`sitekit.outputs.export.write_geopackage`, :func:`~sitekit.outputs.export.write_cog`)
  writes a hidden temporary sibling and renames it over the target (``sitekit.io.atomic``); after a
  kill the target is the previous file, byte for byte, and the only extra entries are hidden
  ``.<name>.*.part*`` temporaries (no code runs after SIGKILL, so the writer cannot remove them;
  they never carry the final name, so no reader mistakes them for a result);
* a whole ``sitekit run`` writes into a staging folder ``.<out>.*.part`` next to ``--out`` and
  swaps it in at the end; after a kill ``--out`` is untouched (same files, same bytes, nothing
  added) and the staging folder is left next to it.

Stale staging folders are not yet removed by the next run: :func:`test_next_run_removes_stale_
staging_folders` is a strict xfail until ``staged_output`` sweeps them (patch in the issue-10
report); :func:`test_live_staging_folder_is_never_removed` guards the sweep against deleting the
folder of a run that is still going.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
from conftest import write_tiny_catalog

from sitekit.io.ownership import mark_output
from sitekit.outputs import export
from sitekit.testing import small_grid

REPO = Path(__file__).resolve().parents[1]
TINY_WIND = REPO / "tests" / "badinput" / "recipes" / "tiny_wind.yaml"


def _tree(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file below ``folder`` (hidden files included)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
    return out


def _previous_outputs(folder: Path) -> None:
    """A small, valid set of earlier results: GeoPackage, COG, CSV."""
    grid = small_grid((32, 32), 100.0, (500000.0, 3300000.0), chunks=16)
    elev = grid.wrap(grid.lonlat()[1].data.astype(np.float32) * 100.0, "elevation", "m")
    export.write_cog(folder / "rasters" / "elevation.tif", elev)
    sites = gpd.GeoDataFrame(
        {"site_id": ["S1", "S2"], "capacity_mw": [10.0, 20.0]},
        geometry=[shapely.box(500000, 3300000, 501000, 3301000),
                  shapely.box(502000, 3300000, 503000, 3301000)],
        crs=grid.crs,
    )  # fmt: skip
    export.write_geopackage(folder / "sitekit.gpkg", {"pv_sites": sites})
    export.write_table(folder / "summary.csv", pd.DataFrame({"prefecture": ["A"], "n_sites": [2]}))
    mark_output(folder)  # an earlier sitekit run's folder: --force may replace it


def _kill_when(proc: subprocess.Popen, appeared, timeout_s: float = 240.0) -> None:
    """SIGKILL ``proc``'s process group as soon as ``appeared()`` is true."""
    deadline = time.monotonic() + timeout_s
    while not appeared():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process ended (exit {proc.returncode}) before the write began:\n{err}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("timed out waiting for the write to begin")
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)  # the group we created: the CLI and its Dask workers
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the process finished before it was killed"


WRITER = textwrap.dedent(
    """
    import sys
    import dask.array as da
    import geopandas as gpd
    import numpy as np
    import shapely
    from sitekit import export
    from sitekit.testing import small_grid

    kind, target = sys.argv[1], sys.argv[2]
    if kind == "gpkg":
        n = 400_000
        x = (np.arange(n) % 1000) * 10.0 + 500000.0
        y = (np.arange(n) // 1000) * 10.0 + 3300000.0
        sites = gpd.GeoDataFrame(
            {"site_id": [f"S{i:06d}" for i in range(n)], "capacity_mw": np.arange(n) * 0.5},
            geometry=shapely.box(x, y, x + 5.0, y + 5.0), crs="EPSG:32648",
        )
        export.write_geopackage(target, {"pv_sites": sites})
    else:
        grid = small_grid((6000, 6000), 10.0, (500000.0, 3300000.0), chunks=1000)
        rng = da.random.default_rng(0)
        noise = rng.random(grid.shape, chunks=grid.dask_chunks, dtype=np.float32)
        export.write_cog(target, grid.wrap(noise * 1000.0, "elevation", "m"))
    print("finished", flush=True)
    """
)


@pytest.mark.parametrize("kind,name", [("gpkg", "sitekit.gpkg"), ("cog", "rasters/elevation.tif")])
def test_sigkill_in_a_writer_keeps_the_previous_file(tmp_path: Path, kind: str, name: str) -> None:
    results = tmp_path / "results"
    _previous_outputs(results)
    before = _tree(results)
    target = results / name
    temp = re.compile(rf"^\.{re.escape(target.name)}\..+\.part")

    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, kind, str(target)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip

    def writing() -> bool:  # a temporary sibling that GDAL has begun to fill
        for p in target.parent.iterdir():
            try:
                if temp.match(p.name) and p.stat().st_size > 0:
                    return True
            except FileNotFoundError:  # renamed or removed between listing and stat
                continue
        return False

    _kill_when(proc, writing)

    after = _tree(results)
    extra = sorted(set(after) - set(before))
    assert {k: after[k] for k in before} == before  # every previous file, byte for byte
    assert extra and all(temp.match(Path(k).name) for k in extra), extra  # only hidden temps
    if kind == "gpkg":
        assert [n for n, _ in pyogrio.list_layers(target)][:1] == ["pv_sites"]
        assert len(pyogrio.read_dataframe(target, layer="pv_sites")) == 2
    # a later write is not blocked by the leftover temporaries and replaces the target
    export.write_table(results / "summary.csv", pd.DataFrame({"prefecture": ["B"]}))
    assert (results / "summary.csv").read_text(encoding="utf-8-sig").splitlines()[1] == "B"


def _staging(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.*.part"))


def test_sigkill_during_a_run_keeps_the_previous_outputs(tmp_path: Path) -> None:
    catalog = write_tiny_catalog(tmp_path / "tiny")
    out = tmp_path / "out"
    _previous_outputs(out)
    before = _tree(out)

    cmd = [sys.executable, "-c", "from sitekit.cli import main; main()", "--quiet", "run",
           str(TINY_WIND), "--catalog", str(catalog), "--resolution", "1000", "--workers", "1",
           "--threads-per-worker", "1", "--no-map", "--out", str(out), "--force"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip

    def writing() -> bool:  # a temporary file inside the staging folder: mid-write
        try:
            return any(".part" in p.name for s in _staging(out) for p in s.rglob("*"))
        except OSError:  # a file renamed while listing
            return False

    _kill_when(proc, writing)
    assert _tree(out) == before  # same files, same bytes, nothing added
    stages = _staging(out)
    assert len(stages) == 1 and any(stages[0].rglob("*"))  # the killed run's half-made stage


def _killed_inside_staged_output(out: Path, cwd: Path) -> None:
    """A process that dies by SIGKILL while its staging folder holds a half-written file."""
    code = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from sitekit.engine.run import staged_output
        with staged_output(Path({str(out)!r}), force=True) as stage:
            (stage / "sitekit.gpkg").write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, timeout=120)
    assert res.returncode == -signal.SIGKILL, res.stderr


def test_next_run_removes_stale_staging_folders(tmp_path: Path) -> None:
    from sitekit.engine.run import staged_output

    out = tmp_path / "out"
    _previous_outputs(out)
    _killed_inside_staged_output(out, tmp_path)
    assert len(_staging(out)) == 1
    with staged_output(out, force=True) as stage:
        (stage / "summary.csv").write_text("new\n")
    assert (out / "summary.csv").read_text() == "new\n"
    assert _staging(out) == []


def test_live_staging_folder_is_never_removed(tmp_path: Path) -> None:
    """A second run into the same --out must not delete the stage of a run still going."""
    from sitekit.engine.run import staged_output

    out = tmp_path / "out"
    _previous_outputs(out)
    code = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from sitekit.engine.run import staged_output
        with staged_output(Path({str(out)!r}), force=True) as stage:
            (stage / "sitekit.gpkg").write_bytes(b"in progress")
            print(stage, flush=True)
            sys.stdin.readline()  # hold the stage open until told to finish
        """
    )
    live = subprocess.Popen(
        [sys.executable, "-c", code], cwd=tmp_path, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        live_stage = Path(live.stdout.readline().strip())
        assert live_stage.is_dir(), live.stderr.read() if live.poll() is not None else ""
        with staged_output(out, force=True) as stage:
            (stage / "summary.csv").write_text("second run\n")
        assert (live_stage / "sitekit.gpkg").read_bytes() == b"in progress"
    finally:
        live.communicate("\n", timeout=60)
    assert live.returncode == 0
    assert (out / "sitekit.gpkg").read_bytes() == b"in progress"  # the live run finished last
