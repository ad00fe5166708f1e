"""Properties that must hold for any input (hypothesis), not just the hand-made cases.

* scores stay in [0, 1] for any criterion values, membership parameters and weights
  (:func:`sitekit.science.scoring.membership` → :func:`~sitekit.science.scoring.weighted_overlay`);
* adding a hard constraint never increases the eligible area, and never un-excludes a pixel
  (:func:`sitekit.science.constraints.evaluate` on a chunked synthetic grid, every rule);
* raising one site's yield never worsens its rank (:func:`sitekit.science.sites.extract_sites`);
* reprojecting a polygon layer from the grid CRS to EPSG:4490 and back keeps every area within
  0.1 %, and the grid CRS's areas match geodesic areas on the CGCS2000 ellipsoid (it is
  equal-area) within 0.1 %.

Examples are few (≤ 25) and small so the whole file runs in seconds.
"""

from __future__ import annotations

import dask
import dask.array as da
import geopandas as gpd
import numpy as np
import pyproj
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sitekit.grid import DEFAULT_CRS
from sitekit.science import constraints as cons
from sitekit.science import scoring
from sitekit.science.sites import SiteRules, extract_sites
from sitekit.specs.recipe import Economics
from sitekit.testing import small_grid

FAST = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
finite = st.floats(-1e6, 1e6, allow_nan=False)
positive = st.floats(1e-3, 1e4, allow_nan=False)


# ------------------------------------------------------------------------------ scores
@st.composite
def memberships(draw):
    kind = draw(st.sampled_from(list(scoring.MEMBERSHIPS)))
    if kind == "linear":
        low = draw(finite)
        high = draw(finite.filter(lambda h: abs(h - low) > 1e-6))
        return kind, {"low": low, "high": high}
    if kind == "sigmoid":
        return kind, {"midpoint": draw(finite), "width": draw(positive),
                      "decreasing": draw(st.booleans())}  # fmt: skip
    if kind == "gaussian":
        return kind, {"centre": draw(finite), "sigma": draw(positive)}
    return kind, {"threshold": draw(finite), "above": draw(st.booleans())}


@FAST
@given(
    criteria=st.lists(st.tuples(memberships(), st.floats(0, 100)), min_size=1, max_size=5).filter(
        lambda cs: sum(w for _, w in cs) > 0
    ),
    values=st.lists(
        st.floats(-1e7, 1e7, allow_nan=False, allow_infinity=False), min_size=1, max_size=30
    ),  # fmt: skip
)
def test_scores_stay_between_0_and_1(criteria, values) -> None:
    x = np.asarray(values)
    layers = [scoring.membership(x, kind, **params) for (kind, params), _ in criteria]
    for m in layers:
        assert np.all((m >= 0) & (m <= 1))
    score = scoring.weighted_overlay(layers, [w for _, w in criteria])
    assert np.all((score >= 0) & (score <= 1))


# ------------------------------------------------------------------------------ constraints
GRID = small_grid((24, 24), 100.0, chunks=8)  # 2.4 km square, 3×3 chunks
EXTENT = 24 * 100.0
FIELD = GRID.wrap(
    da.from_array(np.random.default_rng(7).random(GRID.shape, np.float32) * 30.0,
                          chunks=GRID.dask_chunks), "slope", "degree")  # fmt: skip


@st.composite
def constraint(draw, code: str):
    kind = draw(st.sampled_from(["polygon", "setback", "threshold"]))
    rule = draw(st.sampled_from(cons.RULES))
    names = {"code": code, "name_en": code, "name_zh": code}
    if kind == "threshold":
        return cons.RasterThreshold(**names, layer=FIELD, op=draw(st.sampled_from(list(cons.OPS))),
                                    value=draw(st.floats(0, 30)))  # fmt: skip
    if kind == "polygon":
        x0, y0 = draw(st.floats(0, EXTENT - 60)), draw(st.floats(0, EXTENT - 60))
        w, h = draw(st.floats(50, 1500)), draw(st.floats(50, 1500))
        gdf = gpd.GeoDataFrame(geometry=[shapely.box(x0, y0, x0 + w, y0 + h)], crs=GRID.crs)
        return cons.PolygonConstraint(**names, geoms=gdf, buffer_m=draw(st.floats(0, 300)),
                                      rule=rule)  # fmt: skip
    pts = draw(st.lists(st.tuples(st.floats(0, EXTENT), st.floats(0, EXTENT)), min_size=1,
                        max_size=3))  # fmt: skip
    gdf = gpd.GeoDataFrame(geometry=[shapely.Point(p) for p in pts], crs=GRID.crs)
    return cons.FeatureSetback(**names, geoms=gdf, setback_m=draw(st.floats(50, 600)), rule=rule)


@st.composite
def constraint_lists(draw):
    n = draw(st.integers(0, 3))
    return [draw(constraint(f"c{i}")) for i in range(n)], draw(constraint("extra"))


def _eligible(constraints: list) -> tuple[float, np.ndarray]:
    res = cons.evaluate(constraints, GRID)
    incl, excl = dask.compute(res.inclusion_fraction.data, res.excluded.data,
                              scheduler="synchronous")  # fmt: skip
    return float(incl.sum()) * GRID.pixel_area_km2, excl


@FAST
@given(case=constraint_lists())
def test_adding_a_constraint_never_increases_eligible_area(case) -> None:
    base, extra = case
    area0, excl0 = _eligible(base)
    area1, excl1 = _eligible([*base, extra])
    assert area1 <= area0 + 1e-9
    assert np.all(excl1 >= excl0)  # every excluded pixel stays excluded


# ------------------------------------------------------------------------------ site ranks
ECON = Economics(
    capex_cny_per_kw=3600, fixed_om_cny_per_kw_yr=50, wacc=0.06, lifetime_yr=25,
    connection_cny_per_km={110: 800000, 220: 1500000}, connection_bay_cny={110: 0, 220: 0},
    voltage_by_capacity_mw={110: 100, 220: 100000},
)  # fmt: skip
BLOCKS = [(2, 2), (2, 16), (16, 2), (16, 16)]  # 8×8-pixel blocks of eligible land, 4 sites


def _ranks(yields: list[float], distances: list[float]) -> dict[str, int]:
    sites = _four_sites(yields, distances)
    return dict(zip(sites["site_id"], sites["rank"], strict=True))


def _four_sites(yields: list[float], distances: list[float]):
    n = 28
    grid = small_grid((n, n), 100.0, chunks=14)
    score = np.zeros((n, n), np.float32)
    energy = np.full((n, n), 1000.0, np.float32)
    dist = np.full((n, n), 50.0, np.float32)
    for (r, c), y, d in zip(BLOCKS, yields, distances, strict=True):
        score[r : r + 8, c : c + 8] = 0.8
        energy[r : r + 8, c : c + 8] = y
        dist[r : r + 8, c : c + 8] = d
    ones = np.ones((n, n), np.int32)
    sites, _ = extract_sites(
        grid, score=score, inclusion=np.ones((n, n), np.float32), energy_kwh_per_kw=energy,
        grid_distance_km=dist, connection_distance_km=dist,
        nearest_point=np.zeros((n, n), np.int64), point_names=["P"], prefecture_id=ones,
        prefecture_names=["Z"], county_id=ones, county_names=["C"],
        rules=SiteRules(0.5, 0.1, 10.0, 40.0, max_sites=100), economics=ECON,
    )  # fmt: skip
    assert len(sites) == len(BLOCKS)
    return sites


@FAST
@given(
    yields=st.lists(st.floats(600, 2200), min_size=4, max_size=4),
    distances=st.lists(st.floats(0, 80), min_size=4, max_size=4),
    which=st.integers(0, 3),
    factor=st.floats(1.0, 3.0),
)
def test_raising_a_sites_yield_never_lowers_its_rank(yields, distances, which, factor) -> None:
    before = _ranks(yields, distances)
    raised = list(yields)
    raised[which] *= factor
    after = _ranks(raised, distances)
    site = sorted(before)[which]  # site ids follow the blocks' row-major order
    assert after[site] <= before[site]


@FAST
@given(
    yields=st.lists(st.floats(600, 2200), min_size=4, max_size=4),
    distances=st.lists(st.floats(0, 80), min_size=4, max_size=4),
)
def test_site_tables_keep_cf_energy_and_lcoe_invariants(yields, distances) -> None:
    from sitekit.science.supply import check_sites

    sites = _four_sites(yields, distances)
    assert check_sites(sites) == []  # CF ≤ 1, energy = MW × CF × 8.76, 0 < LCOE < 20 CNY/kWh
    # the LCOE rises with the connection distance and falls with the yield, never below the
    # plant alone: (capex × CRF + O&M) / yield
    floor = (ECON.capex_cny_per_kw * 0.0782267 + ECON.fixed_om_cny_per_kw_yr) / np.array(yields)
    by_block = sites.sort_values("site_id")["lcoe_cny_per_kwh"].to_numpy()
    assert (by_block >= floor * (1 - 1e-3) - 1e-4).all()


# ------------------------------------------------------------------------------ CRS round trip
GEOD = pyproj.CRS("EPSG:4490").get_geod()


@st.composite
def polygons_4490(draw):
    lon, lat = draw(st.floats(97.0, 104.0)), draw(st.floats(26.0, 34.0))
    size = draw(st.floats(0.005, 0.8))
    kind = draw(st.sampled_from(["box", "triangle", "disc"]))
    if kind == "box":
        g = shapely.box(lon, lat, lon + size, lat + size * draw(st.floats(0.2, 1.0)))
    elif kind == "triangle":
        g = shapely.Polygon(
            [(lon, lat), (lon + size, lat + size / 3), (lon + size / 4, lat + size)]
        )
    else:
        g = shapely.Point(lon, lat).buffer(size / 2, quad_segs=8)
    return shapely.segmentize(g, 0.01)  # dense edges: straight in any CRS at this spacing


@FAST
@given(geoms=st.lists(polygons_4490(), min_size=1, max_size=4))
def test_reprojecting_to_4490_and_back_keeps_areas(geoms) -> None:
    layer = gpd.GeoDataFrame(geometry=geoms, crs="EPSG:4490").to_crs(DEFAULT_CRS)
    back = layer.to_crs("EPSG:4490").to_crs(DEFAULT_CRS)
    np.testing.assert_allclose(back.area, layer.area, rtol=1e-3)
    # the grid CRS is equal-area: its areas are the ellipsoidal ones
    geodesic = [abs(GEOD.geometry_area_perimeter(g)[0]) for g in geoms]
    np.testing.assert_allclose(layer.area, geodesic, rtol=1e-3)
