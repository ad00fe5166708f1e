"""The study-area grid: CRS handling (incl. CGCS2000 Gauss–Krüger axis order), areas, laziness."""

from __future__ import annotations

import dask
import geopandas as gpd
import numpy as np
import pyproj
import pytest
import shapely

from sitekit.errors import CRSError
from sitekit.grid import DEFAULT_CRS, Grid, parse_crs, transformer
from sitekit.testing import small_grid


def test_default_crs_is_equal_area_on_cgcs2000() -> None:
    assert DEFAULT_CRS.is_projected
    assert DEFAULT_CRS.coordinate_operation.method_name.startswith("Albers Equal Area")
    assert DEFAULT_CRS.geodetic_crs.datum.name.startswith("China 2000")
    assert DEFAULT_CRS.ellipsoid.name == "CGCS2000"


@pytest.mark.parametrize("epsg", [4326, 4490, 4542, 4543, 4544])
def test_accepted_crs(epsg: int) -> None:
    assert parse_crs(f"EPSG:{epsg}").to_epsg() == epsg


def test_unknown_crs_is_clear() -> None:
    with pytest.raises(CRSError, match="unknown CRS"):
        parse_crs("EPSG:999999")


@pytest.mark.parametrize("epsg,lon0", [(4542, 99), (4543, 102), (4544, 105)])
def test_gauss_kruger_axis_order(epsg: int, lon0: int) -> None:
    """pyproj declares CGCS2000 GK zones northing-first; always_xy gives (easting, northing)."""
    crs = pyproj.CRS.from_epsg(epsg)
    assert crs.axis_info[0].direction == "north"  # the trap: northing first
    e, n = transformer(4490, epsg).transform(lon0, 30.0)
    assert e == pytest.approx(500000, abs=1e-3)  # on the central meridian (no zone prefix)
    assert 3.3e6 < n < 3.4e6  # 30°N ≈ 3,320 km north
    # the authority (northing-first) order gives the same point swapped
    n2, e2 = pyproj.Transformer.from_crs(4490, epsg).transform(30.0, lon0)
    assert (e2, n2) == pytest.approx((e, n))


def test_grid_snaps_and_counts() -> None:
    g = Grid.from_bounds((10, 20, 1010, 520), 100)
    assert g.shape == (6, 11)  # snapped outwards to multiples of 100 m
    assert g.bounds == (0, 0, 1100, 600)
    assert g.pixel_area_km2 == pytest.approx(0.01)
    assert g.x[0] == 50 and g.y[0] == 550


def test_geographic_grid_crs_refused() -> None:
    with pytest.raises(CRSError, match="geographic"):
        Grid.from_bounds((100, 30, 101, 31), 0.01, crs="EPSG:4326")


def test_study_fraction_gives_exact_area() -> None:
    """A 1.23 km × 0.77 km rectangle: Σ fraction × pixel area = its area within 0.5 %."""
    rect = shapely.box(130, 260, 1360, 1030)
    g = Grid.from_bounds((0, 0, 1600, 1600), 100, chunks=5, study_area=rect)
    frac = g.study_fraction().data.compute()
    assert frac.sum() * g.pixel_area_km2 == pytest.approx(rect.area / 1e6, rel=5e-3)
    assert frac.max() == 1.0 and frac.min() == 0.0


def test_from_study_area_any_crs() -> None:
    box = gpd.GeoDataFrame(geometry=[shapely.box(101.0, 30.0, 101.5, 30.5)], crs="EPSG:4490")
    g = Grid.from_study_area(box, 500)
    lon, lat = g.lonlat()
    lo = lon.data.compute()
    la = lat.data.compute()
    assert lo.min() > 100.9 and lo.max() < 101.6
    assert la.min() > 29.9 and la.max() < 30.6
    # equal-area: the area of a 0.5° box at 30°N (≈ 48.2 × 55.4 km)
    assert g.study_area.area / 1e6 == pytest.approx(2668, rel=0.01)


def test_rasterize_centre_vs_all_touched() -> None:
    g = small_grid((10, 10), 100.0, chunks=3)
    tri = shapely.Polygon([(0, 0), (1010, 0), (0, 1010)])
    centre = g.rasterize([tri]).data.compute()
    touched = g.rasterize([tri], all_touched=True).data.compute()
    assert centre.sum() == 55  # centres (50+100i, 50+100j) with i + j ≤ 9
    assert touched.sum() > centre.sum()


def test_wrap_is_lazy() -> None:
    g = small_grid((8, 8), 10.0, chunks=4)
    calls = []

    def _never(window):
        calls.append(window)
        return np.zeros((window[1] - window[0], window[3] - window[2]), np.float32)

    arr = g.wrap(g.map_blocks(_never), "x", "1")
    assert calls == []
    with dask.config.set(scheduler="sync"):
        arr.data.compute()
    assert len(calls) == 4


def test_threaded_rasterize_leaves_the_warning_filters_alone() -> None:
    """rasterio's rasterize enters ``catch_warnings`` (not thread-safe): unguarded, dask threads
    interleaving it left an "ignore all" filter behind and later SitekitWarnings vanished."""
    import warnings

    grid = small_grid((256, 256), 100.0, (0.0, 0.0), chunks=16)  # 256 chunks
    polys = gpd.GeoDataFrame(
        geometry=[shapely.box(x, 100, x + 900, 25_000) for x in range(0, 25_000, 1000)],
        crs=grid.crs,
    )
    before = list(warnings.filters)
    for _ in range(3):
        burned = grid.rasterize(polys, all_touched=True)
        dask.compute(burned, scheduler="threads", num_workers=8)
    assert list(warnings.filters) == before


@pytest.mark.parametrize("s", [1, 3, 8, 16])
def test_cover_fraction_equals_the_reshaped_sum(s: int) -> None:
    """The numba cell count is bit-identical to NumPy's reshape-sum (the former code)."""
    from sitekit.grid import _cover_fraction

    rng = np.random.default_rng(s)
    burned = (rng.random((13 * s, 7 * s)) > 0.4).astype(np.uint8)
    burned[:s, :s] = 1  # one fully covered and one empty cell
    burned[s : 2 * s, :s] = 0
    ref = burned.reshape(13, s, 7, s).sum(axis=(1, 3), dtype=np.uint16) / np.float32(s * s)
    got = _cover_fraction(burned, s)
    assert got.dtype == np.float32 and got[0, 0] == 1 and got[1, 0] == 0
    assert np.array_equal(got, ref.astype(np.float32))


# -- Grid as a value ---------------------------------------------------------------------------
def test_equal_definitions_are_equal_hash_and_tokenise_equal() -> None:
    """Two grids built apart from the same definition are one value (the name is a label);
    another chunk size, origin or study area is another grid."""
    from dask.base import tokenize

    area = shapely.box(100, 100, 900, 700)
    a = Grid.from_bounds((0, 0, 1000, 800), 100, chunks=4, study_area=area, name="a")
    b = Grid.from_bounds((0, 0, 1000, 800), 100, chunks=4, study_area=shapely.box(100, 100, 900, 700),
                         name="b")  # fmt: skip
    assert a == b and hash(a) == hash(b) and tokenize(a) == tokenize(b)
    assert len({a, b}) == 1 and {a: 1}[b] == 1
    for other in (
        a.with_chunks(8),
        Grid.from_bounds((100, 0, 1100, 800), 100, chunks=4, study_area=area),
        Grid.from_bounds((0, 0, 1000, 800), 100, chunks=4),
        Grid.from_bounds((0, 0, 1000, 800), 100, crs="EPSG:4543", chunks=4, study_area=area),
    ):
        assert other != a and tokenize(other) != tokenize(a)
    assert a != "grid"
    assert not hasattr(a, "_cache") and not hasattr(a, "align") and not hasattr(a, "cache_burns")


def test_a_grid_pickles_to_an_equal_value() -> None:
    import pickle

    g = Grid.from_bounds((0, 0, 1000, 800), 100, chunks=4, study_area=shapely.box(0, 0, 500, 500))
    _ = g.definition, g.token  # memoised properties do not travel
    back = pickle.loads(pickle.dumps(g))
    assert back == g and back.name == g.name and back.token == g.token


def test_study_fraction_is_built_once_per_grid_value() -> None:
    area = shapely.box(130, 260, 1360, 1030)
    a = Grid.from_bounds((0, 0, 1600, 1600), 100, chunks=5, study_area=area)
    b = Grid.from_bounds((0, 0, 1600, 1600), 100, chunks=5, study_area=shapely.box(*area.bounds))
    assert a.study_fraction() is b.study_fraction()
    assert a.with_chunks(8).study_fraction() is not a.study_fraction()
    burnt = []

    def burn(geoms, **kw):  # an injected burn (the engine's cache) replaces the grid's own
        burnt.append(kw["name"])
        return a.rasterize(geoms, **kw)

    assert a.study_fraction(burn).data.name == a.study_fraction().data.name
    assert burnt == ["study_fraction"]


def test_window_is_the_sub_grid() -> None:
    area = shapely.box(0, 0, 500, 500)
    g = Grid.from_bounds((0, 0, 1000, 800), 100, chunks=4, study_area=area, name="g")
    w = g.window(2, 3, 4, 5)
    assert w.shape == (4, 5) and w.crs == g.crs and w.resolution_m == g.resolution_m
    assert w.bounds == (300.0, 200.0, 800.0, 600.0)
    assert (w.chunks, w.study_area, w.name) == (g.chunks, area, "g")
    np.testing.assert_array_equal(w.x, g.x[3:8])
    np.testing.assert_array_equal(w.y, g.y[2:6])
    assert g.window(0, 0, *g.shape) == g
    for bad in ((0, 0, 9, 1), (-1, 0, 1, 1), (0, 8, 1, 3), (0, 0, -1, 2)):
        with pytest.raises(ValueError, match="not inside the grid"):
            g.window(*bad)


def test_tiles_cover_the_grid_once() -> None:
    g = small_grid((10, 7), 100.0, chunks=4)
    seen = np.zeros(g.shape, int)
    tiles = list(g.tiles(4))
    assert len(tiles) == 3 * 2
    for (rows, cols), w in tiles:
        seen[rows, cols] += 1
        assert w == g.window(rows.start, cols.start, rows.stop - rows.start,
                             cols.stop - cols.start)  # fmt: skip
        np.testing.assert_array_equal(w.x, g.x[cols])
        np.testing.assert_array_equal(w.y, g.y[rows])
    assert (seen == 1).all()
    assert [w.shape for _, w in g.tiles((10, 3))] == [(10, 3), (10, 3), (10, 1)]
    with pytest.raises(ValueError):
        list(g.tiles(0))


def test_lonlat_helpers_round_trip_and_match_the_lazy_lonlat() -> None:
    g = Grid.from_bounds((-5000, -5000, 5000, 5000), 1000, chunks=4)
    lon, lat = g.to_lonlat(0.0, 0.0)
    assert (lon, lat) == pytest.approx((101.0, 30.0))  # the default CRS's false origin
    x, y = g.from_lonlat(np.array([101.3, 100.8]), np.array([30.2, 29.9]))
    back = g.to_lonlat(x, y)
    np.testing.assert_allclose(back, [[101.3, 100.8], [30.2, 29.9]], atol=1e-9)
    lon_px, lat_px = (a.data.compute() for a in g.lonlat())
    xx, yy = np.meshgrid(g.x, g.y)
    ref = g.to_lonlat(xx, yy)
    np.testing.assert_array_equal(lon_px, ref[0])
    np.testing.assert_array_equal(lat_px, ref[1])
