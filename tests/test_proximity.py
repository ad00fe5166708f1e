"""Grid proximity: exact distances against scipy/shapely references, least-cost paths by hand."""

from __future__ import annotations

import math

import dask
import dask.array as da
import geopandas as gpd
import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from sitekit.errors import InputError, LayerError
from sitekit.grid import Grid
from sitekit.science.proximity import (
    cost_surface,
    distance_to_features,
    least_cost_distance,
    least_cost_path,
    least_cost_paths,
    nearest_feature_index,
)
from sitekit.testing import small_grid

RES = 100.0


@pytest.fixture
def grid() -> Grid:
    return small_grid((64, 64), RES, chunks=16)


def gdf(geoms, crs) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(geometry=list(geoms), crs=crs)


def pixel_points(grid: Grid) -> np.ndarray:
    xx, yy = np.meshgrid(grid.x, grid.y)
    return shapely.points(xx, yy)


def exact_distance_m(grid: Grid, features: gpd.GeoDataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: shapely distance from every pixel centre to every feature."""
    pts = pixel_points(grid)
    d = np.stack([shapely.distance(pts, g) for g in features.geometry])
    return d.min(axis=0), d.argmin(axis=0)


def edt_reference_m(grid: Grid, features: gpd.GeoDataFrame) -> np.ndarray:
    """scipy distance transform on the rasterised features (all touched), in metres."""
    burnt = grid.rasterize(features, all_touched=True).values
    return ndimage.distance_transform_edt(~burnt) * RES


def substations(grid: Grid, n: int = 6, seed: int = 1) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    return gdf(shapely.points(rng.uniform(100, 6300, (n, 2))), grid.crs)


def power_lines(grid: Grid) -> gpd.GeoDataFrame:
    return gdf(
        [
            shapely.LineString([(300, 6100), (2500, 3800), (2600, 1500), (6100, 900)]),
            shapely.MultiLineString([[(4000, 6300), (5900, 4200)], [(800, 200), (1500, 1900)]]),
        ],
        grid.crs,
    )


# -- distance --------------------------------------------------------------------------------
def test_point_distance_matches_scipy_edt_and_is_exact(grid):
    feats = substations(grid)
    got_m = distance_to_features(grid, feats).values * 1000.0
    assert np.abs(got_m - edt_reference_m(grid, feats)).max() <= RES
    exact, _ = exact_distance_m(grid, feats)
    np.testing.assert_allclose(got_m, exact, atol=1e-3)


def test_line_distance_matches_scipy_edt_and_is_exact(grid):
    feats = power_lines(grid)
    dist = distance_to_features(grid, feats)
    assert dist.attrs["units"] == "km" and dist.dtype == np.float32
    got_m = dist.values * 1000.0
    assert np.abs(got_m - edt_reference_m(grid, feats)).max() <= RES
    exact, _ = exact_distance_m(grid, feats)
    np.testing.assert_allclose(got_m, exact, atol=1e-3)


def test_points_and_lines_together_with_nearest_index(grid):
    feats = pd_concat(substations(grid, 3), power_lines(grid))
    dist = distance_to_features(grid, feats)
    idx = nearest_feature_index(grid, feats)
    d_m, i_m = dask.compute(dist, idx)
    exact, which = exact_distance_m(grid, feats)
    np.testing.assert_allclose(d_m.values * 1000.0, exact, atol=1e-3)
    assert idx.dtype == np.int32
    second = np.sort(
        np.stack([shapely.distance(pixel_points(grid), g) for g in feats.geometry]), axis=0
    )[1]
    clear = second - exact > 1e-3  # ignore exact ties
    np.testing.assert_array_equal(i_m.values[clear], which[clear])
    assert set(np.unique(i_m.values)) == set(range(len(feats)))


def pd_concat(a: gpd.GeoDataFrame, b: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    return gdf(list(a.geometry) + list(b.geometry), a.crs)


def test_nearest_index_by_hand(grid):
    # two substations on a horizontal line: the perpendicular bisector is x = 3200 m
    feats = gdf([shapely.Point(1200, 3000), shapely.Point(5200, 3000)], grid.crs)
    idx = nearest_feature_index(grid, feats).values
    assert (idx[:, :32] == 0).all() and (idx[:, 32:] == 1).all()
    dist = distance_to_features(grid, feats).values
    # pixel centre (1250, 3050): 50√2 m from the first substation
    assert dist[33, 12] == pytest.approx(50 * math.sqrt(2) / 1000, rel=1e-6)


def test_chunked_equals_unchunked(grid):
    feats = pd_concat(substations(grid, 4, seed=7), power_lines(grid))
    ref_d = distance_to_features(grid.with_chunks(64), feats, tile=64).values
    ref_i = nearest_feature_index(grid.with_chunks(64), feats, tile=64).values
    for chunks, tile in ((7, 3), (16, 32), (64, 5)):
        g = grid.with_chunks(chunks)
        d = distance_to_features(g, feats, tile=tile)
        assert d.data.chunksize == (chunks, chunks)
        np.testing.assert_array_equal(d.values, ref_d)
        np.testing.assert_array_equal(nearest_feature_index(g, feats, tile=tile).values, ref_i)


def test_distance_and_index_share_one_search(grid):
    feats = substations(grid)
    d, i = distance_to_features(grid, feats), nearest_feature_index(grid, feats)
    keys_d = {k for k in dict(d.data.__dask_graph__()) if str(k).startswith("('nearest-")}
    keys_i = {k for k in dict(i.data.__dask_graph__()) if str(k).startswith("('nearest-")}
    assert keys_d and keys_d == keys_i


def test_features_in_geographic_crs_are_reprojected(grid):
    feats = power_lines(grid)
    got = distance_to_features(grid, feats.to_crs("EPSG:4490")).values
    np.testing.assert_allclose(got, distance_to_features(grid, feats).values, atol=1e-6)


def test_distance_is_lazy(grid):
    assert isinstance(distance_to_features(grid, substations(grid)).data, da.Array)


def test_bad_feature_layers(grid):
    with pytest.raises(LayerError, match="empty"):
        distance_to_features(grid, gpd.GeoDataFrame(geometry=[], crs=grid.crs))
    with pytest.raises(LayerError, match="polygons"):
        distance_to_features(grid, gdf([shapely.box(0, 0, 10, 10)], grid.crs))


coord = st.floats(-2000.0, 3600.0, allow_nan=False)


@settings(max_examples=20, deadline=None)
@given(
    pts=st.lists(st.tuples(coord, coord), min_size=0, max_size=4),
    line=st.lists(st.tuples(coord, coord), min_size=2, max_size=5),
)
def test_distance_is_exact_for_random_features(pts, line):
    grid = small_grid((16, 16), RES, chunks=5)
    geoms = [shapely.Point(p) for p in pts]
    ls = shapely.LineString(line)
    if ls.length > 0:
        geoms.append(ls)
    if not geoms:
        geoms = [shapely.Point(line[0])]
    feats = gdf(geoms, grid.crs)
    exact, _ = exact_distance_m(grid, feats)
    got = distance_to_features(grid, feats, tile=4).values.astype(np.float64) * 1000.0
    np.testing.assert_allclose(got, exact, rtol=1e-6, atol=1e-3)


mm = st.integers(-2_000_000, 3_600_000)


@settings(max_examples=200, deadline=None)
@given(
    box=st.tuples(mm, mm, st.integers(1, 800_000), st.integers(1, 800_000)),
    seg=st.tuples(mm, mm, mm, mm),
)
def test_box_segment_bounds_match_shapely(box, seg):
    # the branch and bound's two numbers: min and max squared distance between a box and a segment
    from sitekit.science.proximity import _box_seg_d2

    x0, y0, w, h = (v / 1000.0 for v in box)  # millimetres: no subnormals for shapely
    ax, ay, bx, by = (v / 1000.0 for v in seg)
    lo, hi = _box_seg_d2(x0, y0, x0 + w, y0 + h, ax, ay, bx, by)
    geom_box = shapely.box(x0, y0, x0 + w, y0 + h)
    s = shapely.LineString([(ax, ay), (bx, by)]) if (ax, ay) != (bx, by) else shapely.Point(ax, ay)
    assert math.sqrt(lo) == pytest.approx(shapely.distance(geom_box, s), abs=1e-6)
    corners = shapely.points([(x0, y0), (x0 + w, y0), (x0, y0 + h), (x0 + w, y0 + h)])
    assert math.sqrt(hi) == pytest.approx(shapely.distance(corners, s).max(), abs=1e-6)
    inside = shapely.points(np.random.default_rng(0).uniform((x0, y0), (x0 + w, y0 + h), (64, 2)))
    d = shapely.distance(inside, s)
    assert (d >= math.sqrt(lo) - 1e-6).all() and (d <= math.sqrt(hi) + 1e-6).all()


# -- cost surface ----------------------------------------------------------------------------
def test_cost_surface(grid):
    slope = np.zeros((64, 64), np.float32)
    slope[:, 1] = 10.0
    slope[:, 2] = 20.0
    slope[:, 3] = np.nan
    forbidden = np.zeros((64, 64), bool)
    forbidden[0, :] = True
    penalty = np.ones((64, 64), np.float32)
    penalty[:, 4] = 3.0
    cost = cost_surface(
        grid.wrap(slope, "slope"), grid.wrap(forbidden, "f"), grid.wrap(penalty, "p")
    )
    c = cost.values
    assert cost.dtype == np.float32 and cost.rio.crs == grid.crs
    assert c[5, 0] == 1.0 and c[5, 1] == 2.0 and c[5, 2] == 5.0 and c[5, 4] == 3.0
    assert np.isinf(c[5, 3]) and np.isinf(c[0]).all()
    soft = cost_surface(grid.wrap(slope, "slope"), grid.wrap(forbidden, "f"), forbidden_cost=50.0)
    assert (soft.values[0] == 50.0).all()


# -- least-cost distance and paths ---------------------------------------------------------
def flat_cost(grid: Grid, forbidden: np.ndarray | None = None):
    slope = grid.wrap(da.zeros(grid.shape, chunks=grid.dask_chunks, dtype=np.float32), "slope")
    f = None if forbidden is None else grid.wrap(forbidden, "forbidden")
    return cost_surface(slope, f)


def test_least_cost_distance_on_flat_ground(grid):
    target = (50.0, 50.0)  # centre of the lower-left pixel (row 63, col 0)
    acc = least_cost_distance(flat_cost(grid), [target], grid)
    assert isinstance(acc.data, da.Array) and acc.data.chunksize == (16, 16)
    a = acc.values
    assert a[63, 0] == 0.0
    assert a[63, 10] == pytest.approx(1.0)  # 10 px east: 1 km
    assert a[53, 10] == pytest.approx(math.sqrt(2))  # 10 px diagonal
    xx, yy = np.meshgrid(grid.x, grid.y)
    euclid_km = np.hypot(xx - 50.0, yy - 50.0) / 1000.0
    assert (a >= euclid_km - 1e-6).all()
    assert (a <= euclid_km / math.cos(math.radians(22.5)) + 1e-6).all()


def test_path_goes_around_a_forbidden_block(grid):
    forbidden = np.zeros((64, 64), bool)
    forbidden[10:54, 28:36] = True  # a wall in the middle, open at top and bottom
    cost = flat_cost(grid, forbidden)
    start, target = (1050.0, 3250.0), (5350.0, 3250.0)  # same row, wall in between
    path = least_cost_path(cost, start, [target], grid)
    straight = math.dist(start, target)
    assert path.length_m > straight * 1.2
    assert math.isfinite(path.cost_m) and path.cost_m == pytest.approx(path.length_m)
    assert path.line.coords[0] == start and path.line.coords[-1] == target
    assert path.target_index == 0
    xs, ys = np.asarray(path.line.coords).T
    cols, rows = ~grid.transform * (xs, ys)
    assert not forbidden[np.floor(rows).astype(int), np.floor(cols).astype(int)].any()
    # the least-cost distance raster agrees at the start pixel
    acc = least_cost_distance(cost, [target], grid).values
    assert acc[31, 10] == pytest.approx(path.cost_m / 1000.0, rel=1e-6)
    assert np.isinf(acc[forbidden]).all()


def test_enclosed_targets_give_inf_and_a_clear_error(grid):
    forbidden = np.zeros((64, 64), bool)
    forbidden[20:30, 20:30] = True
    forbidden[22:28, 22:28] = False  # a ring around an open pocket
    cost = flat_cost(grid, forbidden)
    target = (2550.0, 3850.0)  # inside the pocket (row 25, col 25)
    acc = least_cost_distance(cost, [target], grid).values
    assert np.isfinite(acc[22:28, 22:28]).all()
    assert np.isinf(acc[:20]).all() and np.isinf(acc[30:]).all()
    with pytest.raises(InputError, match="no least-cost path"):
        least_cost_path(cost, (500.0, 500.0), [target], grid)
    (res,) = least_cost_paths(cost, [(500.0, 500.0)], [target], grid)
    assert res.line is None and math.isinf(res.cost_m)
    with pytest.raises(InputError, match="impassable"):
        least_cost_distance(cost, [(2150.0, 3950.0)], grid).compute()  # on the ring itself


def test_many_sites_to_line_targets(grid):
    cost = flat_cost(grid)
    targets = gdf(
        [shapely.LineString([(0, 6350), (6400, 6350)]), shapely.Point(3250, 150)], grid.crs
    )
    sites = [(3250.0, 5050.0), (3250.0, 1050.0)]
    up, down = least_cost_paths(cost, sites, targets, grid)
    assert up.target_index == 0 and up.length_m == pytest.approx(1300.0)
    assert up.line.coords[-1] == (3250.0, 6350.0)
    assert down.target_index == 1 and down.length_m == pytest.approx(900.0)
    # without a grid the cost raster's own georeferencing is used
    alone = least_cost_path(cost, sites[1], targets)
    assert alone.line.equals(down.line) and alone.cost_m == pytest.approx(down.cost_m)
    with pytest.raises(InputError, match="outside the grid"):
        least_cost_paths(cost, [(-500.0, 10.0)], targets, grid)
    with pytest.raises(InputError, match="inside the grid"):
        least_cost_distance(cost, [(1e6, 1e6)], grid)


def test_coarsened_least_cost_distance_stays_close(grid):
    forbidden = np.zeros((64, 64), bool)
    forbidden[10:54, 30:34] = True
    cost = flat_cost(grid, forbidden)
    target = [(6000.0, 3000.0)]
    full = least_cost_distance(cost, target, grid).values
    coarse = least_cost_distance(cost, target, grid, max_pixels=600)  # factor 3
    assert coarse.shape == full.shape and coarse.attrs["method"].endswith("factor 3")
    c = coarse.values
    ok = np.isfinite(full) & np.isfinite(c)
    assert ok.mean() > 0.85
    # a coarse pixel shifts each end by < 1.5 coarse pixels: |error| < 2 × 3 × 100 m × √2
    assert np.abs(c[ok] - full[ok]).max() < 2 * 3 * RES * math.sqrt(2) / 1000.0
    assert np.isinf(c[forbidden]).all()
    # each 3×3 block from the origin holds one coarse value, whatever the chunks
    assert coarse.data.chunks == da.core.normalize_chunks(grid.dask_chunks, c.shape)
    r, k = np.indices(c.shape)
    np.testing.assert_array_equal(c, c[(r // 3) * 3, (k // 3) * 3])


def test_coarse_blocks_repeat_like_numpy():
    """The upsampling of a coarsened distance equals np.repeat on both axes, cut to the grid, for
    blocks that do not line up with the factor."""
    from sitekit.science.leastcost import _repeat_block

    coarse = np.random.default_rng(1).random((5, 7)).astype(np.float32)
    f, ny, nx = 3, 14, 19
    ref = np.repeat(np.repeat(coarse, f, axis=0), f, axis=1)[:ny, :nx]
    rows, cols = da.arange(ny, chunks=4), da.arange(nx, chunks=5)
    out = da.blockwise(_repeat_block, "ij", rows, "i", cols, "j", da.from_array(coarse), "kl",
                       concatenate=True, dtype=np.float32, f=f)  # fmt: skip
    assert out.chunks == ((4, 4, 4, 2), (5, 5, 5, 4))
    np.testing.assert_array_equal(out.compute(), ref)


def test_least_cost_distance_shares_its_upstream_graph(grid):
    """Computed with the cost it came from, each upstream block (here a stand-in for the DEM
    read) is computed once: the global task must stay in the array graph (dask copied the
    upstream graph of arrays handed to dask.delayed, and the demo read its DEM twice)."""
    import threading

    calls = []
    lock = threading.Lock()

    def read_block(b: np.ndarray) -> np.ndarray:
        with lock:
            calls.append(1)
        return b + 1.0

    base = da.zeros(grid.shape, chunks=grid.dask_chunks, dtype=np.float32)
    slope = base.map_blocks(read_block, dtype=np.float32, meta=np.empty((0, 0), np.float32))
    cost = cost_surface(grid.wrap(slope, "slope"))
    acc = least_cost_distance(cost, [(50.0, 50.0)], grid)
    dask.compute(cost.data, acc.data, scheduler="threads")
    assert len(calls) == slope.npartitions


def test_cached_search_gives_the_same_paths_and_is_reused(grid, tmp_path, monkeypatch):
    """With a cache folder the MCP search covers the whole grid once and is kept; paths and
    costs equal the search that stops at the last site (Dijkstra's finished pixels do not
    change), and a later call with other sites only traces."""
    from sitekit.engine.mcp_store import McpStore
    from sitekit.science import leastcost

    rng = np.random.default_rng(3)
    forbidden = rng.random((64, 64)) < 0.15
    c = np.where(forbidden, np.inf, 1.0 + rng.random((64, 64)))
    c[3, 3] = c[60, 59] = 1.0  # the targets' pixels stay passable
    targets = gdf([shapely.Point(350, 350), shapely.Point(5950, 6050)], grid.crs)
    cost = grid.wrap(da.from_array(c, chunks=32), "cost", "1")
    sites = [(x + 50.0, y + 50.0) for x in range(0, 6400, 700) for y in range(0, 6400, 900)]
    plain = least_cost_paths(cost, sites, targets, grid)
    cached = least_cost_paths(cost, sites, targets, grid, store=McpStore(tmp_path))
    assert len(list((tmp_path / "mcp").glob("*.npz"))) == 1
    reached = 0
    for a, b in zip(plain, cached, strict=True):
        assert a.target_index == b.target_index
        assert a.cost_m == b.cost_m or (math.isinf(a.cost_m) and math.isinf(b.cost_m))
        if a.line is not None:
            reached += 1
            assert a.line.equals_exact(b.line, 0.0) and a.length_m == b.length_m
        else:
            assert b.line is None
    assert reached > 40
    # the second call reads the saved search: no MCP run at all
    monkeypatch.setattr(leastcost, "_mcp", lambda *a, **k: pytest.fail("searched again"))
    again = least_cost_paths(cost, sites[::-1], targets, grid, store=McpStore(tmp_path))
    assert [p.cost_m for p in again] == [p.cost_m for p in cached[::-1]]
    # another cost surface is another entry
    monkeypatch.undo()
    least_cost_paths(cost * 2.0, sites[:3], targets, grid, store=McpStore(tmp_path))
    assert len(list((tmp_path / "mcp").glob("*.npz"))) == 2


def test_search_store_is_injected_and_keeps_the_whole_search(grid, tmp_path):
    """Science touches no disk: any object with get/put keeps the search; the engine's
    McpStore writes ``mcp/<digest>.npz`` holding cum, traceback and offsets."""
    from sitekit.engine.mcp_store import McpStore

    class _Memory:
        def __init__(self):
            self.kept, self.gets = {}, 0

        def get(self, key_parts):
            self.gets += 1
            return self.kept.get(tuple(id(p) for p in key_parts[:2]) + key_parts[2:])

        def put(self, key_parts, arrays):
            self.kept[tuple(id(p) for p in key_parts[:2]) + key_parts[2:]] = arrays

    c = np.ones((64, 64))
    cost = grid.wrap(da.from_array(c, chunks=32), "cost", "1")
    targets = gdf([shapely.Point(350, 350)], grid.crs)
    mem = _Memory()
    (a,) = least_cost_paths(cost, [(5950.0, 6050.0)], targets, grid, store=mem)
    assert mem.gets == 1 and len(mem.kept) == 1
    cum, tb, offsets = next(iter(mem.kept.values()))
    assert cum.shape == (64, 64) and np.isfinite(cum).all()  # the whole grid, not up to the site
    (b,) = least_cost_paths(cost, [(5950.0, 6050.0)], targets, grid, store=McpStore(tmp_path))
    assert a.cost_m == b.cost_m and a.line.equals_exact(b.line, 0.0)
    (entry,) = (tmp_path / "mcp").glob("*.npz")
    with np.load(entry) as z:
        assert sorted(z.files) == ["cum", "offsets", "traceback"]
        assert np.array_equal(z["cum"], cum)
