"""Hard exclusions on tiny synthetic grids with answers computed by hand."""

from __future__ import annotations

import math
import warnings

import dask.array as da
import geopandas as gpd
import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Transformer
from scipy import ndimage

from sitekit.errors import CRSError, InputError, LayerError, SitekitWarning
from sitekit.grid import Grid
from sitekit.science.constraints import (
    AspectOnSlope,
    FeatureSetback,
    PolygonConstraint,
    RasterThreshold,
    evaluate,
    excluded_area_km2,
)
from sitekit.testing import small_grid

RES = 100.0
PX_KM2 = RES * RES / 1e6


@pytest.fixture
def grid() -> Grid:
    # 64 × 64 px of 100 m, lower-left corner (0, 0) in the default Albers CRS, 16 px chunks
    return small_grid((64, 64), RES, chunks=16)


def gdf(geoms, crs) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(geometry=list(geoms), crs=crs)


def centres(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(grid.x, grid.y)


def square(x0=2000.0, y0=2000.0, side=2000.0):
    return shapely.box(x0, y0, x0 + side, y0 + side)


def redline(grid, geoms=None, **kw) -> PolygonConstraint:
    geoms = gdf([square()], grid.crs) if geoms is None else geoms
    return PolygonConstraint("redline", "ecological redline", "生态保护红线", geoms, **kw)


def quarter_disc_count() -> int:
    """Pixel centres (50 + 100 i, 50 + 100 j) m from a corner within 1000 m, i, j = 0..9.

    (2i+1)² + (2j+1)² < 400 holds for j ≤ 9, 9, 9, 8, 8, 7, 7, 6, 4, 2 at i = 0..9: 79 pixels
    (no centre lies within 7 m of the circle, so the 64-gon buffer cannot change the count).
    """
    return 10 + 10 + 10 + 9 + 9 + 8 + 8 + 7 + 5 + 3


# -- polygon with buffer -------------------------------------------------------------------
def test_square_plus_1km_buffer_centre_rule_exact_pixels(grid):
    res = evaluate([redline(grid, buffer_m=1000.0)], grid)
    mask = res.masks["redline"].values
    # by hand: a 40-px wide band 20 px high, two 20 × 10 px bands, four quarter discs of 79 px
    assert mask.sum() == 40 * 20 + 2 * 20 * 10 + 4 * quarter_disc_count() == 1516
    # pixel by pixel: centre within 1000 m of the square (rounded corners)
    xx, yy = centres(grid)
    dx = np.maximum(np.abs(xx - 3000.0) - 1000.0, 0.0)
    dy = np.maximum(np.abs(yy - 3000.0) - 1000.0, 0.0)
    np.testing.assert_array_equal(mask, np.hypot(dx, dy) <= 1000.0)
    # and the shapely buffer tested at every pixel centre
    buffered = square().buffer(1000.0, quad_segs=16)
    np.testing.assert_array_equal(mask, shapely.contains_xy(buffered, xx, yy))
    assert res.reasons.values.max() == 1
    np.testing.assert_array_equal(res.inclusion_fraction.values, np.where(mask, 0.0, 1.0))


def test_square_plus_1km_buffer_fraction_rule_area(grid):
    res = evaluate([redline(grid, buffer_m=1000.0, rule="fraction")], grid)
    area_m2 = 2000.0**2 + 4 * 2000.0 * 1000.0 + math.pi * 1000.0**2
    covered_m2 = float(res.fractions["redline"].sum()) * RES * RES
    assert covered_m2 == pytest.approx(area_m2, rel=0.005)
    eligible_m2 = float(res.inclusion_fraction.sum()) * RES * RES
    assert eligible_m2 == pytest.approx(64 * 64 * RES * RES - area_m2, rel=0.005)
    # the boolean mask of a fraction-rule constraint is the majority rule
    frac = res.fractions["redline"].values
    np.testing.assert_array_equal(res.masks["redline"].values, frac >= 0.5)


def test_all_touched_contains_centre_rule_and_stays_within_one_pixel(grid):
    centre = evaluate([redline(grid, buffer_m=300.0)], grid).masks["redline"].values
    touched = evaluate([redline(grid, buffer_m=300.0, rule="all_touched")], grid)
    touched = touched.masks["redline"].values
    assert (touched >= centre).all()
    assert touched.sum() > centre.sum()
    assert not (touched & ~ndimage.binary_dilation(centre, np.ones((3, 3)))).any()


# -- setbacks -------------------------------------------------------------------------------
def test_point_setback_is_a_disc(grid):
    town = gdf([shapely.Point(3200.0, 3200.0)], grid.crs)  # a pixel corner
    frac = evaluate([FeatureSetback("town", "town", "城镇", town, 1000.0, "fraction")], grid)
    area_px = float(frac.fractions["town"].sum())
    assert abs(area_px - math.pi * 1000.0**2 / RES**2) <= 1.0
    centre = evaluate([FeatureSetback("town", "town", "城镇", town, 1000.0)], grid)
    mask = centre.masks["town"].values
    assert mask.sum() == 4 * quarter_disc_count()
    xx, yy = centres(grid)
    np.testing.assert_array_equal(mask, np.hypot(xx - 3200.0, yy - 3200.0) <= 1000.0)


def test_line_setback_is_a_stadium(grid):
    road = gdf([shapely.LineString([(1000.0, 3200.0), (5000.0, 3200.0)])], grid.crs)
    c = FeatureSetback("road", "road", "道路", road, 500.0, "fraction")
    res = evaluate([c], grid)
    stadium_m2 = 4000.0 * 1000.0 + math.pi * 500.0**2
    assert float(res.fractions["road"].sum()) * RES**2 == pytest.approx(stadium_m2, rel=0.005)
    mask = evaluate([FeatureSetback("road", "road", "道路", road, 500.0)], grid)
    xx, yy = centres(grid)
    dist = shapely.distance(road.geometry.iloc[0], shapely.points(xx, yy))
    np.testing.assert_array_equal(mask.masks["road"].values, dist <= 500.0)


# -- raster thresholds ----------------------------------------------------------------------
@pytest.mark.parametrize(("op", "n_cols"), [(">", 63 - 40), (">=", 64 - 40), ("<", 40), ("<=", 41)])
def test_raster_threshold(grid, op, n_cols):
    elev = np.tile(np.arange(64, dtype=np.float32) * 100.0, (64, 1))  # 0..6300 m across columns
    elev[0, :] = np.nan  # nodata never excludes
    layer = grid.wrap(da.from_array(elev, chunks=16), "elevation", "m")
    c = RasterThreshold("high", "high elevation", "高海拔", layer, op, 4000.0)
    mask = evaluate([c], grid).masks["high"].values
    assert not mask[0].any()
    assert (mask[1:].sum(axis=1) == n_cols).all()


def test_raster_threshold_where(grid):
    elev = grid.wrap(da.from_array(np.full((64, 64), 5000, np.float32), chunks=16), "elevation")
    where = np.zeros((64, 64), bool)
    where[10:20, 30:40] = True
    c = RasterThreshold(
        "glacier", "glacier zone", "冰川区", elev, ">", 4500.0, where=grid.wrap(where, "w")
    )
    np.testing.assert_array_equal(evaluate([c], grid).masks["glacier"].values, where)


def test_aspect_on_slope_with_wraparound(grid):
    slope = np.repeat(np.arange(64, dtype=np.float32)[:, None] / 2.0, 64, axis=1)  # 0–31.5°
    aspect = np.tile(np.arange(64, dtype=np.float32) * 5.625, (64, 1))  # 0–354.4°
    aspect[:, 63] = 360.0  # = north
    aspect[:, 62] = -10.0  # = 350°
    s = grid.wrap(da.from_array(slope, chunks=16), "slope", "degree")
    a = grid.wrap(da.from_array(aspect, chunks=16), "aspect", "degree")
    north = AspectOnSlope("north", "north-facing slope", "北坡", s, a, 10.0, 315.0, 45.0)
    east = AspectOnSlope("east", "east-facing slope", "东坡", s, a, 10.0, 45.0, 135.0)
    res = evaluate([north, east], grid)
    steep = slope > 10.0
    a360 = aspect % 360.0
    np.testing.assert_array_equal(
        res.masks["north"].values, steep & ((a360 >= 315.0) | (a360 <= 45.0))
    )
    np.testing.assert_array_equal(res.masks["east"].values, steep & (a360 >= 45) & (a360 <= 135))
    row = res.masks["north"].values[40]  # slope 20°
    assert row[0] and row[8] and not row[9] and row[56] and row[62] and row[63]
    assert not res.masks["north"].values[20].any()  # slope exactly 10°: not steeper than 10°
    # aspect 45° belongs to both ranges: two bits
    assert res.reasons.values[40, 8] == 0b11


# -- combination ----------------------------------------------------------------------------
def test_reason_bits_combine(grid):
    lake = PolygonConstraint("lake", "lake", "湖泊", gdf([shapely.box(0, 0, 3000, 3000)], grid.crs))
    slope = grid.wrap(da.from_array(np.full((64, 64), 30, np.float32), chunks=16), "slope")
    right = np.zeros((64, 64), bool)
    right[:, 20:] = True
    steep = RasterThreshold("steep", "steep", "陡坡", slope, ">", 25.0, where=grid.wrap(right, "r"))
    res = evaluate([redline(grid), lake, steep], grid)
    reasons = res.reasons.values
    assert res.reasons.dtype == np.uint32
    assert [rb[:2] for rb in res.legend] == [(0, "redline"), (1, "lake"), (2, "steep")]
    assert res.legend[0].name_zh == "生态保护红线"
    assert res.reasons.attrs["flag_masks"] == [1, 2, 4]
    for rb in res.legend:
        np.testing.assert_array_equal((reasons >> rb.bit) & 1 == 1, res.masks[rb.code].values)
    # pixel (x 2550, y 2550): inside the redline square, the lake and the steep right part
    r, c = 64 - 1 - 25, 25
    assert reasons[r, c] == 0b111
    np.testing.assert_array_equal(res.excluded.values, reasons != 0)
    np.testing.assert_array_equal(res.inclusion_fraction.values, np.where(reasons != 0, 0, 1))


def test_overlapping_fraction_layers_are_not_subtracted_twice(grid):
    a = redline(grid, rule="fraction")  # 2000–4000 m square
    b = PolygonConstraint(
        "park", "park", "公园", gdf([square(3000.0, 3000.0)], grid.crs), rule="fraction"
    )
    res = evaluate([a, b], grid)
    union_m2 = 2 * 2000.0**2 - 1000.0**2
    excluded_m2 = (64 * 64 - float(res.inclusion_fraction.sum())) * RES**2
    assert excluded_m2 == pytest.approx(union_m2, rel=1e-6)


def test_inclusion_fraction_includes_study_fraction():
    area = shapely.box(0, 0, 3250, 6400)  # left half plus half of column 32
    grid = Grid.from_bounds((0, 0, 6400, 6400), RES, chunks=16, study_area=area)
    res = evaluate([redline(grid)], grid)
    incl = res.inclusion_fraction.values
    assert (incl[:, 33:] == 0).all()
    assert incl[0, 32] == pytest.approx(0.5)
    assert float(incl.sum()) == pytest.approx(32.5 * 64 - 20 * 12.5, abs=1e-3)


def test_chunked_equals_unchunked(grid):
    town = gdf([shapely.Point(1234.0, 4321.0)], grid.crs)
    slope = grid.wrap(
        da.from_array(np.tile(np.arange(64, dtype=np.float32), (64, 1)), chunks=16), "slope"
    )

    def run(chunks: int):
        g = grid.with_chunks(chunks)
        cs = [
            redline(g, buffer_m=700.0, rule="fraction"),
            FeatureSetback("town", "town", "城镇", town, 900.0, "all_touched"),
            RasterThreshold("steep", "steep", "陡坡", slope.chunk(chunks), ">", 50.0),
        ]
        res = evaluate(cs, g)
        assert res.reasons.data.chunksize == (min(chunks, 64), min(chunks, 64))
        return res.reasons.values, res.inclusion_fraction.values

    r64, f64 = run(64)
    r7, f7 = run(7)
    np.testing.assert_array_equal(r64, r7)
    np.testing.assert_allclose(f64, f7, atol=1e-6)


def test_results_are_lazy(grid):
    res = evaluate([redline(grid, buffer_m=100.0, rule="fraction")], grid)
    for arr in (res.reasons, res.excluded, res.inclusion_fraction, res.masks["redline"]):
        assert isinstance(arr.data, da.Array)
    assert res.reasons.rio.crs == grid.crs


@settings(max_examples=8, deadline=None)
@given(b1=st.floats(0.0, 1500.0), b2=st.floats(0.0, 1500.0))
def test_larger_buffer_excludes_more(b1, b2):
    grid = small_grid((48, 48), RES, chunks=24)
    lo, hi = sorted((b1, b2))
    small = evaluate([redline(grid, buffer_m=lo)], grid)
    large = evaluate([redline(grid, buffer_m=hi)], grid)
    assert (large.masks["redline"].values >= small.masks["redline"].values).all()
    assert (large.inclusion_fraction.values <= small.inclusion_fraction.values).all()


# -- bad layers -----------------------------------------------------------------------------
def test_invalid_bowtie_is_repaired_with_one_warning(grid):
    # offset by 30 m so no pixel centre lies on an edge
    bowtie = shapely.Polygon([(1000, 1030), (3000, 3030), (3000, 1030), (1000, 3030)])
    bowtie2 = shapely.affinity.translate(bowtie, 3000.0, 3000.0)
    assert not shapely.is_valid(bowtie)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = evaluate([redline(grid, gdf([bowtie, bowtie2, square()], grid.crs))], grid)
    ours = [w for w in caught if issubclass(w.category, SitekitWarning)]
    assert len(ours) == 1
    assert "'redline'" in str(ours[0].message)
    assert "repaired 2 invalid polygons" in str(ours[0].message)
    repaired = shapely.make_valid(bowtie)  # two triangles meeting at (2000, 2030)
    assert repaired.area == pytest.approx(2 * 1000 * 2000 / 2)
    xx, yy = centres(grid)
    expected = (
        shapely.contains_xy(repaired, xx, yy)
        | shapely.contains_xy(shapely.make_valid(bowtie2), xx, yy)
        | shapely.contains_xy(square(), xx, yy)
    )
    np.testing.assert_array_equal(res.masks["redline"].values, expected)


def test_empty_layer_is_an_error(grid):
    empty = gpd.GeoDataFrame(geometry=[], crs=grid.crs)
    with pytest.raises(LayerError, match="'redline'.*empty"):
        evaluate([redline(grid, empty)], grid)
    with pytest.raises(LayerError, match="empty"):
        evaluate([redline(grid, gdf([None, shapely.Polygon()], grid.crs))], grid)


def test_out_of_area_layer_is_an_error(grid):
    far = gdf([square(50_000.0, 50_000.0)], grid.crs)
    with pytest.raises(LayerError, match="'redline'.*does not intersect the grid bounds"):
        evaluate([redline(grid, far)], grid)
    # a 1 km buffer brings a square 500 m outside the grid back in: no error
    near = gdf([square(6900.0, 2000.0, 500.0)], grid.crs)
    evaluate([redline(grid, near, buffer_m=1000.0)], grid)
    with_area = Grid.from_bounds((0, 0, 6400, 6400), RES, chunks=16, study_area=square(0, 0, 1000))
    with pytest.raises(LayerError, match="does not intersect the study area"):
        evaluate([redline(with_area)], with_area)


def test_bad_inputs(grid):
    with pytest.raises(CRSError, match="no CRS"):
        evaluate([redline(grid, gpd.GeoDataFrame(geometry=[square()]))], grid)
    with pytest.raises(LayerError, match="non-polygon"):
        evaluate([redline(grid, gdf([shapely.Point(3000, 3000)], grid.crs))], grid)
    with pytest.raises(InputError, match="rule"):
        redline(grid, rule="centroid")
    with pytest.raises(InputError, match="buffer_m"):
        redline(grid, buffer_m=-5.0)
    with pytest.raises(InputError, match="duplicate"):
        evaluate([redline(grid), redline(grid)], grid)
    wrong = small_grid((10, 10), RES).wrap(da.zeros((10, 10), chunks=5), "slope")
    with pytest.raises(LayerError, match="reproject_match"):
        evaluate([RasterThreshold("s", "s", "坡", wrong, ">", 1.0)], grid)
    sq = gdf([square()], grid.crs)
    many = [PolygonConstraint(f"c{i}", "x", "x", sq) for i in range(33)]
    with pytest.raises(InputError, match="32"):
        evaluate(many, grid)


# -- redlines as bureaus hold them: CGCS2000 Gauss–Krüger and geographic ---------------------
def _same_pixels_up_to_edge(got: np.ndarray, ref: np.ndarray) -> None:
    band = ndimage.binary_dilation(ref, np.ones((3, 3))) & ~ndimage.binary_erosion(
        ref, np.ones((3, 3))
    )
    diff = got != ref
    assert not (diff & ~band).any()
    assert diff.sum() <= 0.05 * band.sum()


@pytest.mark.parametrize("buffer_m", [0.0, 1000.0])
def test_cgcs2000_gauss_kruger_redline_from_geopackage(grid, tmp_path, buffer_m):
    sq = shapely.segmentize(square(), 10.0)
    xy = shapely.get_coordinates(sq)
    to_gk = Transformer.from_crs(grid.crs, "EPSG:4543", always_xy=True)
    e, n = to_gk.transform(xy[:, 0], xy[:, 1])
    # CM 102°E, false easting 500 km: 101°E at 30°N lies ~96 km west of it
    assert 395_000 < e.min() < e.max() < 410_000
    assert 3_300_000 < n.min() < n.max() < 3_340_000
    path = tmp_path / "redline_4543.gpkg"
    gdf([shapely.Polygon(np.column_stack([e, n]))], "EPSG:4543").to_file(path, layer="redline")
    back = gpd.read_file(path, layer="redline")
    assert back.crs.to_epsg() == 4543
    got = evaluate([redline(grid, back, buffer_m=buffer_m)], grid).masks["redline"].values
    ref = evaluate([redline(grid, buffer_m=buffer_m)], grid).masks["redline"].values
    _same_pixels_up_to_edge(got, ref)


def test_gauss_kruger_axis_order_trap_is_caught(grid):
    """pyproj's EPSG:4543 is northing-first: without always_xy the polygon lands far away."""
    xy = shapely.get_coordinates(square())
    naive = Transformer.from_crs(grid.crs, "EPSG:4543")  # authority axis order: (N, E)
    a, b = naive.transform(xy[:, 0], xy[:, 1])
    assert a.min() > 3_000_000  # northings came first
    swapped = gdf([shapely.Polygon(np.column_stack([a, b]))], "EPSG:4543")
    with pytest.raises(LayerError, match="swapped"):
        evaluate([redline(grid, swapped)], grid)


def test_cgcs2000_geographic_redline_buffered_in_metres(grid, tmp_path):
    xy = shapely.get_coordinates(shapely.segmentize(square(), 10.0))
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4490", always_xy=True).transform(
        xy[:, 0], xy[:, 1]
    )
    assert 100.9 < lon.min() < 101.1 and 30.0 < lat.min() < 30.1
    path = tmp_path / "redline_4490.gpkg"
    gdf([shapely.Polygon(np.column_stack([lon, lat]))], "EPSG:4490").to_file(path)
    back = gpd.read_file(path)
    got = evaluate([redline(grid, back, buffer_m=500.0)], grid).masks["redline"].values
    ref = evaluate([redline(grid, buffer_m=500.0)], grid).masks["redline"].values
    _same_pixels_up_to_edge(got, ref)
    # 500 m buffer: 30 × 30 px square area minus the rounded corners, not a degree buffer
    assert abs(int(got.sum()) - (900 - 4 * 25 + 4 * 20)) <= 4


# -- reporting ------------------------------------------------------------------------------
def test_excluded_area_per_zone_and_reason(grid):
    zones = gpd.GeoDataFrame(
        {"prefecture": ["Aba", "Ganzi", "Aba"]},
        geometry=[
            shapely.box(0, 0, 3200, 3200),
            shapely.box(3200, 0, 6400, 6400),
            shapely.box(0, 3200, 3200, 6400),
        ],
        crs=grid.crs,
    ).to_crs("EPSG:4490")
    elev = np.zeros((64, 64), np.float32)
    elev[:, 60:] = 5000.0  # last 4 columns: all in Ganzi
    high = RasterThreshold(
        "high", "high", "高海拔", grid.wrap(da.from_array(elev, chunks=16), "e"), ">", 4000.0
    )
    town = gdf([shapely.Point(3200.0, 3200.0)], grid.crs)
    setback = FeatureSetback("town", "town", "城镇", town, 1000.0, "fraction")
    res = evaluate([redline(grid), high, setback], grid)
    df = excluded_area_km2(res, zones, "prefecture")
    assert list(df.index) == ["Aba", "Ganzi"]
    assert list(df.columns) == ["area_km2", "excluded_km2", "redline_km2", "high_km2", "town_km2"]
    # each zone holds half the grid; the 2 km redline square is split 12 × 20 / 8 × 20 px
    assert df.loc["Aba", "area_km2"] == pytest.approx(32 * 64 * PX_KM2, rel=1e-6)
    assert df.loc["Aba", "redline_km2"] == pytest.approx(12 * 20 * PX_KM2, rel=1e-6)
    assert df.loc["Ganzi", "redline_km2"] == pytest.approx(8 * 20 * PX_KM2, rel=1e-6)
    assert df.loc["Aba", "high_km2"] == 0
    assert df.loc["Ganzi", "high_km2"] == pytest.approx(4 * 64 * PX_KM2, rel=1e-6)
    # the setback disc is split in two halves across the zone boundary
    half_disc = math.pi / 2  # km²
    assert df.loc["Aba", "town_km2"] == pytest.approx(half_disc, rel=0.01)
    assert df.loc["Ganzi", "town_km2"] == pytest.approx(half_disc, rel=0.01)
    incl = res.inclusion_fraction.values
    total = (64 * 64 - incl.sum()) * PX_KM2
    assert df["excluded_km2"].sum() == pytest.approx(total, rel=1e-5)
    assert (
        df["excluded_km2"] <= df[["redline_km2", "high_km2", "town_km2"]].sum(axis=1) + 1e-9
    ).all()


# -- forced inclusion, hard bans, built plants ----------------------------------------------
def _everywhere(grid, code="steep", overridable=True) -> RasterThreshold:
    """A soft exclusion of every pixel (a plane at 10° against a 5° limit)."""
    from sitekit.testing import plane

    return RasterThreshold(
        code, "slope > 5°", "坡度>5°", plane(grid, 10.0, 180.0), ">", -1.0, overridable=overridable
    )


def test_forced_inclusion_overrides_soft_not_hard(grid):
    from sitekit.science.constraints import ForcedInclusion, excluded_from_reasons

    forced = ForcedInclusion("base", "planned base", "规划基地", gdf([square()], grid.crs))
    # hard ban: the left half of the forced square (x 2000–3000 m): 10 × 20 = 200 px
    ban = PolygonConstraint(
        "redline", "redline", "红线", gdf([shapely.box(2000, 2000, 3000, 4000)], grid.crs),
        overridable=False,
    )  # fmt: skip
    res = evaluate([_everywhere(grid), ban, forced], grid)
    excluded = res.excluded.values
    # the 20 × 20 px forced square is lifted, except its 200 px under the hard ban
    assert (~excluded).sum() == 20 * 20 - 200
    assert excluded[25, 35] == False and excluded[25, 25]  # noqa: E712  (row 25 ~ y 3850 m)
    # own reason bits: the forced bit is set on the square, the soft bit stays recorded
    reasons = res.reasons.values
    assert ((reasons & (1 << 2)) != 0).sum() == 400
    assert ((reasons & 1) != 0).all()
    assert res.forced_bits == 1 << 2 and res.hard_bits == 1 << 1
    # the same answer from the reasons raster alone (how a cached run rebuilds it)
    again = excluded_from_reasons(reasons, res.forced_bits, res.hard_bits)
    assert (again == excluded).all()
    # inclusion fraction: 1 on the 200 lifted pixels, 0 elsewhere
    assert res.inclusion_fraction.values.sum() == pytest.approx(200)


def test_forced_inclusion_cannot_lift_unoverridable_threshold(grid):
    from sitekit.science.constraints import ForcedInclusion

    forced = ForcedInclusion("base", "planned base", "规划基地", gdf([square()], grid.crs))
    res = evaluate([_everywhere(grid, overridable=False), forced], grid)
    assert res.excluded.values.all()


def test_plant_footprint_disc_from_capacity_and_density(grid):
    from sitekit.science.constraints import plant_footprints

    # π·10 MW at 10 MW/km² occupies π km²: a disc of radius 1000 m around a pixel corner
    plants = gpd.GeoDataFrame(
        {"capacity_mw": [10 * math.pi, 0.0]},
        geometry=[shapely.Point(3200, 3200), shapely.Point(500, 500)],
        crs=grid.crs,
    )
    foot = plant_footprints(plants, 10.0)
    assert len(foot) == 1  # no capacity, no footprint
    assert foot.geometry.iloc[0].area == pytest.approx(math.pi * 1e6, rel=2e-3)
    res = evaluate([PolygonConstraint("built", "built", "已建", foot, overridable=False)], grid)
    assert res.masks["built"].values.sum() == 4 * quarter_disc_count()  # 316 px, counted above
    # a polygon plant keeps its own outline
    poly = gpd.GeoDataFrame({"capacity_mw": [1.0]}, geometry=[square()], crs=grid.crs)
    assert plant_footprints(poly, 10.0).geometry.iloc[0].equals(square())
