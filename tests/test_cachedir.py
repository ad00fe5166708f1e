"""sitekit.engine.cachedir and ``sitekit cache``: listing a cache folder, pruning by age and size."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dask
import dask.array as da
import geopandas as gpd
import numpy as np
import pytest
import shapely
from click.testing import CliRunner

from sitekit.engine.cache import LayerCache
from sitekit.engine.cachedir import entries, prune, summary
from sitekit.testing import small_grid

DAY = 86400.0


def _age(entry_paths, days: float, now: float) -> None:
    """Set every file's (and folder's) mtime to ``days`` before ``now``."""
    t = now - days * DAY
    for p in entry_paths:
        for f in [p, *p.rglob("*")] if p.is_dir() else [p]:
            os.utime(f, (t, t))


@pytest.fixture()
def cache(tmp_path: Path) -> tuple[Path, LayerCache]:
    """A cache folder with one entry of every kind."""
    grid = small_grid((32, 32), 100.0, chunks=16)
    c = LayerCache(tmp_path / "cache", grid, "inputs")
    values = np.random.default_rng(3).random(grid.shape).astype(np.float32)
    layer = c.wrap("slope", {}, grid.wrap(da.from_array(values, chunks=16), "slope", "°", "s"))
    dask.compute(layer.data, scheduler="sync")
    c.commit()
    c.write_cog(tmp_path / "out.tif", grid.wrap(da.from_array(values, chunks=16), "s", "1", "s"))
    c.memo_json("overlays", ["x"], lambda: {"png": "abc" * 100})
    gdf = gpd.GeoDataFrame({"a": [1]}, geometry=[shapely.box(0, 0, 1, 1)], crs=grid.crs)
    c.save_frames("ps_pairs", 1, {"pairs": gdf})
    (c.root / ".slope-tmp.npy").write_bytes(b"x" * 100)  # a killed run's temporary
    return c.root, c


def _by_kind(root: Path) -> dict:
    return {e.kind: e for e in entries(root)}


def test_entries_list_every_kind_with_sizes(cache) -> None:
    root, _ = cache
    kinds = _by_kind(root)
    assert set(kinds) == {"layer", "rasters", "overlays", "table", "temporary"}
    assert kinds["layer"].size == sum(f.stat().st_size for f in kinds["layer"].paths[0].iterdir())
    assert {p.suffix for p in kinds["table"].paths} == {".gpkg", ".json"}
    assert kinds["temporary"].size == 100
    assert summary(entries(root))["layer"] == (1, kinds["layer"].size)


def test_prune_by_age_removes_whole_entries(cache) -> None:
    root, _ = cache
    now = time.time()
    ages = {"layer": 40, "rasters": 20, "overlays": 5, "table": 1, "temporary": 40}
    for kind, e in _by_kind(root).items():
        _age(e.paths, ages[kind], now)
    would = prune(root, older_than_days=10, dry_run=True, now=now)
    assert sorted(e.kind for e in would) == ["layer", "rasters", "temporary"]
    assert set(_by_kind(root)) == set(ages)  # a dry run removes nothing
    gone = prune(root, older_than_days=10, now=now)
    assert [e.paths for e in gone] == [e.paths for e in would]
    assert set(_by_kind(root)) == {"overlays", "table"}
    assert not any(p.exists() for e in gone for p in e.paths)
    assert not list(root.glob(".pruned-*"))


def test_prune_to_a_size_goes_least_recently_used_first(cache) -> None:
    root, _ = cache
    now = time.time()
    for i, e in enumerate(sorted(entries(root), key=lambda e: e.kind)):  # distinct ages
        _age(e.paths, 30 - i, now)
    listed = entries(root)
    total = sum(e.size for e in listed)
    gone = prune(root, max_bytes=total - listed[0].size, now=now)
    assert gone == [listed[0]]  # the oldest alone brings the folder under the limit
    gone = prune(root, max_bytes=0, now=now)
    assert entries(root) == [] and len(gone) == len(listed) - 1


def test_recently_used_entries_are_kept(cache) -> None:
    root, c = cache
    now = time.time()
    for e in entries(root):
        _age(e.paths, 40, now)
    # a run reads the layer now: the hit marks it used
    again = LayerCache(root, c.grid, "inputs")
    again.wrap("slope", {}, c.grid.wrap(da.zeros(c.grid.shape, chunks=16), "slope", "°", "s"))
    assert again.hits == ["slope"]
    assert _by_kind(root)["layer"].last_used > now - 60
    gone = prune(root, older_than_days=10, max_bytes=0)
    assert "layer" not in {e.kind for e in gone} and set(_by_kind(root)) == {"layer"}


def test_cache_cli_info_and_prune(cache) -> None:
    from sitekit.cli import cli, register

    register()
    root, _ = cache
    runner = CliRunner()
    res = runner.invoke(cli, ["cache", "info", str(root)])
    assert res.exit_code == 0, res.output
    assert "layer" in res.output and "rasters" in res.output and "total" in res.output
    res = runner.invoke(cli, ["cache", "info", str(root), "--format", "json"])
    import json

    rows = {r["kind"]: r for r in json.loads(res.output)}
    assert rows["total"]["entries"] == sum(r["entries"] for k, r in rows.items() if k != "total")
    res = runner.invoke(cli, ["cache", "info", str(root), "--format", "csv"])
    assert res.output.splitlines()[0] == "kind,entries,size_gb,oldest_last_used_days"
    res = runner.invoke(cli, ["cache", "prune", str(root)])
    assert res.exit_code == 2 and "--older-than" in res.output
    for e in entries(root):
        _age(e.paths, 40, time.time())
    res = runner.invoke(cli, ["cache", "prune", str(root), "--older-than", "30", "--dry-run"])
    assert res.exit_code == 0 and "would remove 5 entries" in res.output, res.output
    assert len(entries(root)) == 5
    res = runner.invoke(cli, ["cache", "prune", str(root), "--older-than", "30"])
    assert res.exit_code == 0 and "removed 5 entries" in res.output and entries(root) == []
