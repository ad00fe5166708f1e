"""sitekit.engine.cache: content digests, the exported-GeoTIFF cache, table entries, burns, commits."""

from __future__ import annotations

from pathlib import Path

import dask
import dask.array as da
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from geopandas.testing import assert_geodataframe_equal

from sitekit.engine.cache import LayerCache, array_digest
from sitekit.outputs import export
from sitekit.testing import small_grid


def _layer(grid, values: np.ndarray, name: str = "score"):
    return grid.wrap(da.from_array(values, chunks=grid.dask_chunks), name, "1", name)


def test_array_digest_follows_the_content() -> None:
    rng = np.random.default_rng(1)
    a = rng.random((40, 30)).astype(np.float32)
    d = array_digest(da.from_array(a, chunks=16))
    assert d == array_digest(da.from_array(a.copy(), chunks=16))
    b = a.copy()
    b[39, 29] = np.nextafter(b[39, 29], 2)  # one bit of one value
    assert array_digest(da.from_array(b, chunks=16)) != d
    assert array_digest(da.from_array(a.astype(np.float64), chunks=16)) != d  # dtype counts
    assert array_digest(a) == array_digest(a.copy())
    mask = da.from_array(a > 0.5, chunks=16)  # bool blocks hash too
    assert array_digest(mask) != array_digest(da.from_array(a <= 0.5, chunks=16))


def test_write_cog_copies_an_unchanged_raster(tmp_path: Path) -> None:
    grid = small_grid((48, 40), 100.0, chunks=16)
    values = np.random.default_rng(2).random(grid.shape).astype(np.float32)
    cache = LayerCache(tmp_path / "cache", grid, "inputs")
    assert cache.write_cog(tmp_path / "a.tif", _layer(grid, values)) is False
    reference = export.write_cog(tmp_path / "ref.tif", _layer(grid, values))
    assert (tmp_path / "a.tif").read_bytes() == reference.read_bytes()
    # a later run (another cache object) with the same content copies the stored file
    again = LayerCache(tmp_path / "cache", grid, "inputs")
    assert again.write_cog(tmp_path / "b.tif", _layer(grid, values)) is True
    assert again.rasters_copied == ["b.tif"] and again.rasters_written == []
    assert (tmp_path / "b.tif").read_bytes() == reference.read_bytes()
    # new values, or the same values with other attributes, are written anew
    changed = values.copy()
    changed[0, 0] += 0.25
    assert again.write_cog(tmp_path / "c.tif", _layer(grid, changed)) is False
    with rasterio.open(tmp_path / "c.tif") as src:
        np.testing.assert_array_equal(src.read(1), changed)
    assert again.write_cog(tmp_path / "d.tif", _layer(grid, values, name="other")) is False
    assert len(list((tmp_path / "cache" / "rasters").glob("*.tif"))) == 3
    assert not list((tmp_path / "cache" / "rasters").glob(".*"))  # no temporary left


def test_cached_rasters_share_the_outputs_disk_space(tmp_path: Path, monkeypatch) -> None:
    """The cache's GeoTIFF and the output it came from (or went to) are one file on disk
    (a hard link); a file system that cannot link gets a copy. A cached file changed through
    the output's name fails its checksum and is written anew, never handed out."""
    import os
    import warnings

    from sitekit.errors import SitekitWarning

    grid = small_grid((48, 40), 100.0, chunks=16)
    values = np.random.default_rng(3).random(grid.shape).astype(np.float32)
    cache = LayerCache(tmp_path / "cache", grid, "inputs")
    cache.write_cog(tmp_path / "a.tif", _layer(grid, values))
    (entry,) = (tmp_path / "cache" / "rasters").glob("*.tif")
    assert os.stat(entry).st_ino == os.stat(tmp_path / "a.tif").st_ino
    assert cache.write_cog(tmp_path / "b.tif", _layer(grid, values)) is True
    assert os.stat(tmp_path / "b.tif").st_ino == os.stat(entry).st_ino
    # changed in place through an output's name: the entry's checksum no longer holds
    with open(tmp_path / "b.tif", "r+b") as f:
        f.seek(-4, os.SEEK_END)
        f.write(b"\0\1\2\3")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", SitekitWarning)
        assert cache.write_cog(tmp_path / "c.tif", _layer(grid, values)) is False
    assert any("checksum mismatch" in str(w.message) for w in seen)
    with rasterio.open(tmp_path / "c.tif") as src:
        np.testing.assert_array_equal(src.read(1), values)

    # no hard links (another device, FAT …): copied
    def no_link(*_a, **_k):
        raise OSError("links not supported")

    monkeypatch.setattr(os, "link", no_link)
    other = LayerCache(tmp_path / "cache2", grid, "inputs")
    other.write_cog(tmp_path / "d.tif", _layer(grid, values))
    (entry2,) = (tmp_path / "cache2" / "rasters").glob("*.tif")
    assert os.stat(entry2).st_ino != os.stat(tmp_path / "d.tif").st_ino
    assert entry2.read_bytes() == (tmp_path / "d.tif").read_bytes()


def test_commit_keeps_a_partly_computed_layer_incomplete(tmp_path: Path) -> None:
    grid = small_grid((64, 64), 100.0, chunks=32)  # 2 × 2 blocks
    values = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    cache = LayerCache(tmp_path, grid, "inputs")
    part = cache.wrap("slope", {}, _layer(grid, values, "slope"))
    dask.compute(part.data[:32, :32], scheduler="sync")  # one block of four
    cache.commit()
    again = LayerCache(tmp_path, grid, "inputs")
    whole = again.wrap("slope", {}, _layer(grid, values, "slope"))
    assert again.misses == ["slope"]
    np.testing.assert_array_equal(whole.data.compute(scheduler="sync"), values)
    again.commit()
    third = LayerCache(tmp_path, grid, "inputs")
    np.testing.assert_array_equal(
        third.wrap("slope", {}, _layer(grid, values * 0, "slope")).data.compute(), values
    )
    assert third.hits == ["slope"]


def test_two_runs_writing_one_entry_at_once_both_finish(tmp_path: Path) -> None:
    """Two runs sharing a cache folder miss the same layer: the second keeps the first's
    blocks (it used to delete the incomplete folder, failing the first run's next write)."""
    grid = small_grid((64, 64), 100.0, chunks=32)  # 2 × 2 blocks
    values = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    a = LayerCache(tmp_path, grid, "inputs")
    la = a.wrap("slope", {}, _layer(grid, values, "slope"))
    dask.compute(la.data[:32, :32], scheduler="sync")  # run A has written one block
    (folder,) = [p for p in tmp_path.iterdir() if p.name.startswith("slope-")]
    written = sorted(p.name for p in folder.glob("r*_c*.npy.blosc"))
    b = LayerCache(tmp_path, grid, "inputs")
    lb = b.wrap("slope", {}, _layer(grid, values, "slope"))
    assert (
        b.misses == ["slope"] and sorted(p.name for p in folder.glob("r*_c*.npy.blosc")) == written
    )
    np.testing.assert_array_equal(la.data.compute(scheduler="sync"), values)  # A goes on
    np.testing.assert_array_equal(lb.data.compute(scheduler="sync"), values)
    b.commit()
    a.commit()
    c = LayerCache(tmp_path, grid, "inputs")
    np.testing.assert_array_equal(c.wrap("slope", {}, _layer(grid, values * 0)).data, values)
    assert c.hits == ["slope"] and not list(folder.glob(".*"))  # no temporary left


def test_the_same_entry_wrapped_twice_is_one_graph_layer(tmp_path: Path) -> None:
    grid = small_grid((32, 32), 100.0, chunks=16)
    cache = LayerCache(tmp_path, grid, "inputs")
    values = np.ones(grid.shape, np.float32)
    a = cache.wrap("x", {}, _layer(grid, values, "pv"))
    b = cache.wrap("x", {}, _layer(grid, values, "wind"))
    assert a.data.name == b.data.name and b.name == "wind"


def test_frames_round_trip_exactly(tmp_path: Path) -> None:
    grid = small_grid()
    pairs = gpd.GeoDataFrame(
        {
            "pair_id": np.array([1, 2, 3], np.int64),
            "head_m": [412.5, 300.0000001, np.nan],
            "uses_existing_reservoir": [True, False, True],
            "lower_name": ["龙头沟", None, "Ertan"],
        },
        geometry=[shapely.LineString([(0, 0), (1, 1)])] * 3,
        crs=grid.crs,
    )
    frames = {"pairs": pairs, "reservoirs": pairs.iloc[:0]}
    cache = LayerCache(tmp_path, grid, "inputs")
    assert cache.load_frames("ps_pairs", {"recipe": "a"}) is None
    cache.save_frames("ps_pairs", {"recipe": "a"}, frames)
    back = LayerCache(tmp_path, grid, "inputs").load_frames("ps_pairs", {"recipe": "a"})
    for k, gdf in frames.items():
        assert_geodataframe_equal(back[k], gdf, check_dtype=True, check_index_type=True)
    assert back["pairs"]["lower_name"].isna().tolist() == [False, True, False]
    assert LayerCache(tmp_path, grid, "inputs").load_frames("ps_pairs", {"recipe": "b"}) is None
    assert LayerCache(tmp_path, grid, "other").load_frames("ps_pairs", {"recipe": "a"}) is None


def test_burns_are_read_back_on_a_rerun(tmp_path: Path) -> None:
    poly = shapely.box(1000, 1000, 4050, 2525)
    burnt = []
    for _ in range(2):
        grid = small_grid((64, 64), 100.0, chunks=32)
        cache = LayerCache(tmp_path, grid, "inputs")
        frac = cache.wrap_burn(grid.rasterize([poly], fraction=True, name="zone"))
        burnt.append(frac.data.compute(scheduler="sync"))
        cache.commit()
    assert cache.hits == ["burn_zone"]
    np.testing.assert_array_equal(burnt[0], burnt[1])
    assert burnt[0].sum() == pytest.approx(poly.area / 100.0**2, rel=1e-3)


def test_frames_keep_column_order_and_empty_frames(tmp_path: Path) -> None:
    grid = small_grid()
    empty = gpd.GeoDataFrame(
        {"b": pd.Series([], dtype="float64"), "a": pd.Series([], dtype="int64")},
        geometry=gpd.GeoSeries([], crs=grid.crs),
    )
    cache = LayerCache(tmp_path, grid, "k")
    cache.save_frames("t", 1, {"only": empty})
    back = cache.load_frames("t", 1)["only"]
    assert list(back.columns) == ["b", "a", "geometry"] and len(back) == 0
    assert back.crs == grid.crs


def test_prefetched_digests_equal_single_ones(tmp_path: Path) -> None:
    grid = small_grid((40, 40), 100.0, chunks=16)
    rng = np.random.default_rng(4)
    arrays = [da.from_array(rng.random((40, 40)).astype(np.float32), chunks=16) for _ in range(3)]
    cache = LayerCache(tmp_path, grid, "inputs")
    cache.prefetch_digests([*arrays, arrays[0]])
    assert [cache.content_digest(a) for a in arrays] == [array_digest(a) for a in arrays]
    assert len(set(cache._digests.values())) == 3


def test_frames_keep_mixed_polygon_types(tmp_path: Path) -> None:
    grid = small_grid()
    a, b = shapely.box(0, 0, 1, 1), shapely.box(2, 2, 3, 3)
    gdf = gpd.GeoDataFrame(
        {"prefecture": ["攀枝花", "Aba"]},
        geometry=[a, shapely.MultiPolygon([a, b])],
        crs=grid.crs,
    )
    cache = LayerCache(tmp_path, grid, "k")
    cache.save_frames("ps", 1, {"reservoirs": gdf})
    back = cache.load_frames("ps", 1)["reservoirs"]
    assert list(back.geom_type) == ["Polygon", "MultiPolygon"]
    assert_geodataframe_equal(back, gdf, check_dtype=True)


def test_an_unwritable_cache_warns_and_the_run_goes_on(tmp_path: Path, monkeypatch) -> None:
    from sitekit.errors import SitekitWarning
    from sitekit.io import atomic

    grid = small_grid((32, 32), 100.0, chunks=16)
    values = np.random.default_rng(5).random(grid.shape).astype(np.float32)
    cache = LayerCache(tmp_path / "cache", grid, "inputs")
    real = atomic.atomic_path

    def refuse(target, *a, **k):  # writing into the cache folder fails, outputs do not
        if "cache" in Path(target).parts:
            raise PermissionError(13, "Permission denied")
        return real(target, *a, **k)

    monkeypatch.setattr(atomic, "atomic_path", refuse)
    with pytest.warns(SitekitWarning, match="could not write"):
        assert cache.write_cog(tmp_path / "out.tif", _layer(grid, values)) is False
    with rasterio.open(tmp_path / "out.tif") as src:
        np.testing.assert_array_equal(src.read(1), values)
    with pytest.warns(SitekitWarning, match="could not write"):
        assert cache.memo_json("overlays", [1], lambda: {"a": 1}) == {"a": 1}
    frames = {"t": gpd.GeoDataFrame({"v": [1]}, geometry=[shapely.Point(0, 0)], crs=grid.crs)}
    with pytest.warns(SitekitWarning, match="could not write"):
        cache.save_frames("ps", 1, frames)
    assert cache.load_frames("ps", 1) is None


def test_a_code_change_is_a_new_entry(tmp_path: Path, monkeypatch) -> None:
    import sitekit.engine.cache as sc

    grid = small_grid()
    cache = LayerCache(tmp_path, grid, "inputs")
    before = cache._dir("slope", {})
    monkeypatch.setattr(sc, "code_digest", lambda: "another-release")
    assert cache._dir("slope", {}) != before
    assert len(sc.digest(sc.code_digest())) == 20


def test_the_cache_root_is_absolute_for_the_workers(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cache = LayerCache(".sitekit-cache", small_grid(), "inputs")
    assert cache.root.is_absolute() and cache.root == tmp_path / ".sitekit-cache"


def test_every_vector_burn_is_named_by_its_constraint(tmp_path: Path) -> None:
    from sitekit.science import constraints as cons

    grid = small_grid((64, 64), 100.0, chunks=32)
    cache = LayerCache(tmp_path, grid, "inputs")
    poly = gpd.GeoDataFrame(geometry=[shapely.box(1000, 1000, 3000, 3000)], crs=grid.crs)
    pts = gpd.GeoDataFrame(geometry=[shapely.Point(5000, 5000)], crs=grid.crs)
    cons.evaluate(
        [
            cons.PolygonConstraint("red", "redline", "红线", poly, buffer_m=0, rule="centre"),
            cons.FeatureSetback("town", "town", "居民点", pts, setback_m=500),
        ],
        grid,
        burn=lambda geoms, **kw: cache.wrap_burn(grid.rasterize(geoms, **kw)),
    )
    assert cache.misses == ["burn_red", "burn_town"]
