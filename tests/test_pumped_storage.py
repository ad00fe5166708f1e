"""Pumped-storage search: hand-computed reservoirs and pairs, exclusions, chunking, cost model."""

from __future__ import annotations

import dask
import geopandas as gpd
import numpy as np
import pytest
import shapely
from dask.delayed import Delayed
from hypothesis import given, settings
from hypothesis import strategies as st

from sitekit import pumped_storage_cost as psc
from sitekit.errors import InputError
from sitekit.pumped_storage import (
    PumpedStorageParams,
    find_pairs,
    find_pairs_numpy,
    flow_receivers,
    reservoir_candidates,
)
from sitekit.testing import mountain_terrain, notched_plateau, small_grid

RES = 100.0
#: notch 12 px long, floor 1480 m; dam 10 m: level 1490 m; valley 1000 m.
NOTCH = PumpedStorageParams(
    dam_height_m=10.0,
    max_separation_km=3.0,
    min_energy_gwh=1.0,
    min_catchment_km2=0.01,
    max_reservoir_length_km=2.0,
    existing_radius_km=0.15,
)


@pytest.fixture
def notch():
    grid = small_grid((40, 40), RES, chunks=20)
    dem = notched_plateau(grid)  # plateau 1500 m, notch 20 m deep, 12 px, valley 1000 m
    lower = gpd.GeoDataFrame(
        {"name": ["Existing lower"]},
        geometry=[shapely.Point(grid.x[30], grid.y[20])],  # centre of pixel (20, 30)
        crs=grid.crs,
    )
    return grid, dem, lower


def test_energy_formula_hand_check():
    # 1000 kg/m³ · 9.81 m/s² · 500 m · 1e6 m³ · 0.8 = 3.924e12 J = 1.09 GWh
    assert psc.energy_gwh(500.0, 1e6, 0.8) == pytest.approx(3.924e12 / 3.6e12, rel=1e-12)


def test_dam_wall_volume_trapezoid():
    # 10 m of water + 1.5 m freeboard; crest 10 m, 3:1 faces: (11.5)·(10 + 34.5)·100 m
    assert psc.dam_wall_volume_m3(10.0, 100.0) == pytest.approx(11.5 * 44.5 * 100.0)


def test_notch_reservoir_volume_and_dam_by_hand(notch):
    grid, dem, _ = notch
    table, mq, mc = reservoir_candidates(
        dem.values.astype(float), np.zeros(grid.shape, bool), RES, NOTCH
    )
    assert len(table) == 1
    row = table.iloc[0]
    assert row["level_m"] == 1490.0  # notch floor 1480 m + 10 m dam
    assert row["n_px"] == 12
    assert row["volume_m3"] == pytest.approx(12 * RES**2 * 10.0)  # 1.2 GL
    # one wall across the 1-px notch mouth: 10 m high, one pixel long
    assert row["dam_volume_m3"] == pytest.approx(11.5 * 44.5 * RES)
    assert row["water_rock"] == pytest.approx(1.2e6 / (11.5 * 44.5 * RES))
    rows, cols = np.divmod(mq, 40)
    assert set(rows) == {20} and set(cols) == set(range(8, 20))  # the notch, nothing else


def test_notch_above_valley_gives_expected_head_volume_energy(notch):
    grid, dem, lower = notch
    reservoirs, pairs = find_pairs_numpy(
        dem.values, np.zeros(grid.shape, bool), grid, NOTCH, existing=lower
    )
    assert len(pairs) == 1
    pair = pairs.iloc[0]
    head = 1490.0 - 1000.0  # water level of the notch reservoir − existing lower level
    volume = 12 * RES**2 * 10.0
    assert pair["head_m"] == head
    assert pair["volume_gl"] == pytest.approx(volume / 1e6)
    assert pair["energy_gwh"] == pytest.approx(1000 * 9.81 * head * volume * 0.8 / 3.6e12)
    # centroids: notch row 20, cols 8..19 (mean 13.5); lower disk centred on pixel (20, 30)
    assert pair["separation_km"] == pytest.approx((30 - 13.5) * RES / 1000.0)
    assert pair["storage_hours"] == 6.0
    assert pair["power_mw"] == pytest.approx(pair["energy_gwh"] * 1000.0 / 6.0)
    assert pair["uses_existing_reservoir"] and pair["lower_name"] == "Existing lower"
    assert pair["cost_class"] in {"A", "B", "C", "D", "E"}
    assert pair["cost_usd_per_kwh"] == pytest.approx(pair["cost_usd_per_kw"] / 6.0)
    # the dam rock is scaled to the usable volume: all of the upper's, none for the lower
    assert pair["storage_cost_usd_per_kwh"] == pytest.approx(
        168.0 * 11.5 * 44.5 * RES / (pair["energy_gwh"] * 1e6)
    )
    upper = reservoirs.set_index("reservoir_id").loc[pair["upper_id"]]
    assert upper["role"] == "upper" and not upper["existing"]
    assert upper.geometry.area == pytest.approx(12 * RES**2)
    assert upper["area_km2"] == pytest.approx(0.12)
    assert pairs.crs == grid.crs and reservoirs.crs == grid.crs
    assert pairs.geometry.iloc[0].length == pytest.approx(pair["separation_km"] * 1000.0)


def test_existing_polygon_with_level_and_volume_limits_the_pair(notch):
    grid, dem, _ = notch
    # a 3×3-pixel polygon in the valley, its water level and a volume smaller than the upper's
    lake = shapely.box(2910.0, 1810.0, 3190.0, 2090.0)
    lower = gpd.GeoDataFrame(
        {"name": ["Lake"], "water_level_m": [1010.0], "volume_gl": [1.0]}, geometry=[lake],
        crs=grid.crs,
    )  # fmt: skip
    res, pairs = find_pairs_numpy(
        dem.values, np.zeros(grid.shape, bool), grid, NOTCH, existing=lower
    )
    pair = pairs.iloc[0]
    assert pair["head_m"] == 1490.0 - 1010.0
    assert pair["volume_gl"] == pytest.approx(1.0)  # min(1.2 GL upper, 1.0 GL lower)
    assert pair["energy_gwh"] == pytest.approx(1000 * 9.81 * 480.0 * 1.0e6 * 0.8 / 3.6e12)
    lake_row = res[res["role"] == "lower"].iloc[0]
    assert lake_row["existing"] and lake_row["name"] == "Lake"
    assert lake_row["volume_gl"] == pytest.approx(1.0) and lake_row["dam_volume_m3"] == 0.0
    assert lake_row.geometry.area == pytest.approx(9 * RES**2)


@pytest.mark.parametrize("where", [(20, 12), (20, 20)])
def test_pair_dropped_when_reservoir_or_dam_touches_exclusion(notch, where):
    grid, dem, lower = notch
    excl = np.zeros(grid.shape, bool)
    excl[where] = True  # (20, 12): inside the notch; (20, 20): valley pixel under the dam
    _, pairs = find_pairs_numpy(dem.values, excl, grid, NOTCH, existing=lower)
    assert len(pairs) == 0


def test_exclusion_elsewhere_keeps_pair(notch):
    grid, dem, lower = notch
    excl = np.zeros(grid.shape, bool)
    excl[2:6, 2:6] = True
    _, pairs = find_pairs_numpy(dem.values, excl, grid, NOTCH, existing=lower)
    assert len(pairs) == 1


def test_head_outside_range_gives_no_pair(notch):
    grid, dem, lower = notch
    p = PumpedStorageParams(**{**NOTCH.__dict__, "min_head_m": 495.0})
    _, pairs = find_pairs_numpy(dem.values, np.zeros(grid.shape, bool), grid, p, existing=lower)
    assert len(pairs) == 0


MOUNTAIN = PumpedStorageParams(
    dam_height_m=20.0,
    min_head_m=150.0,
    max_head_m=600.0,
    max_separation_km=1.5,
    min_slope=0.05,
    min_volume_gl=0.1,
    min_energy_gwh=0.1,
    min_water_rock=0.6,
    contour_interval_m=20.0,
    min_catchment_km2=0.03,
    max_reservoir_length_km=0.4,
    # tiny test reservoirs are dear: widen the classes so that pairs survive
    cost=psc.CostModel(class_cutoffs={c: (1e5 * (i + 1), 1e4) for i, c in enumerate("ABCDE")}),
)


@pytest.mark.parametrize("chunks", [32, 45])
def test_chunked_search_equals_unchunked(chunks):
    grid = small_grid((150, 150), RES, chunks=chunks)
    dem = mountain_terrain(grid, relief_m=1200.0, wavelength_m=2500.0, seed=3)
    excl = np.zeros(grid.shape, bool)
    excl[100:110, 20:40] = True
    assert MOUNTAIN.halo(RES) < 150 - chunks  # windows really are partial
    res_u, pairs_u = find_pairs_numpy(dem.values, excl, grid, MOUNTAIN)
    lazy = find_pairs(dem, grid.wrap(dask.array.from_array(excl, chunks), "excl"), grid, MOUNTAIN)
    assert isinstance(lazy, Delayed)
    res_c, pairs_c = lazy.compute()
    assert len(pairs_u) >= 50
    assert pairs_c.drop(columns="geometry").equals(pairs_u.drop(columns="geometry"))
    assert res_c.drop(columns="geometry").equals(res_u.drop(columns="geometry"))
    assert all(a.equals(b) for a, b in zip(res_c.geometry, res_u.geometry, strict=True))
    # kept pairs never share a reservoir or a pixel
    assert res_u.geometry.union_all().area == pytest.approx(res_u.geometry.area.sum())
    assert (pairs_u["head_m"] >= 150).all() and (pairs_u["head_m"] <= 600).all()
    assert (pairs_u["head_m"] / (pairs_u["separation_km"] * 1000) >= 0.05).all()


def test_flow_receivers_flat_drains_to_outlet_and_closed_flat_to_one_sink():
    z = np.array(
        [
            [9.0, 9.0, 9.0, 9.0],
            [9.0, 5.0, 5.0, 4.0],
            [9.0, 9.0, 9.0, 9.0],
        ]
    )
    recv = flow_receivers(z).reshape(z.shape)
    assert recv[1, 2] == 1 * 4 + 3  # flat pixel next to the outlet drains to the lower pixel
    assert recv[1, 1] == 1 * 4 + 2  # the far flat pixel drains toward the outlet
    bowl = np.full((4, 4), 9.0)
    bowl[1:3, 1:3] = 2.0
    rb = flow_receivers(bowl)
    sinks = [i for i in range(16) if rb[i] < 0]
    assert sinks == [5]  # first pixel of the closed flat; the other three drain into it
    assert rb[6] == 5 and rb[9] == 5 and rb[10] == 5


def test_storage_hours_shortest_class_that_fits():
    hours = psc.storage_hours_for([5.0, 100.0, 1000.0], (6, 18, 50), max_power_mw=3600.0)
    # 5 GWh / 6 h = 833 MW; 100 GWh needs 50 h (18 h would be 5.6 GW); 1000 GWh: longest
    assert list(hours) == [6.0, 50.0, 50.0]


def test_power_cost_hand_check():
    p, h, s = 800.0, 600.0, 5.0
    powerhouse = 63.5e6 * 800**0.75 / 600**0.5
    tunnel = (1280 * 800 + 208500) * 600**-0.54 * 5000 + 66429 * 800 + 17e6
    assert psc.power_cost_usd_per_kw(p, h, s) == pytest.approx((powerhouse + tunnel) / 800e3)


@settings(max_examples=60, deadline=None)
@given(
    head=st.floats(200, 750),
    dhead=st.floats(1, 50),
    sep=st.floats(0.5, 15),
    power=st.floats(50, 3000),
)
def test_power_cost_falls_with_head_and_rises_with_separation(head, dhead, sep, power):
    base = psc.power_cost_usd_per_kw(power, head, sep)
    assert psc.power_cost_usd_per_kw(power, head + dhead, sep) < base
    assert psc.power_cost_usd_per_kw(power, head, sep + 1.0) > base


@settings(max_examples=60, deadline=None)
@given(cost=st.floats(100, 6000), cheaper=st.floats(0, 3000), hours=st.sampled_from([6, 18, 50]))
def test_cost_class_ordering(cost, cheaper, hours):
    order = {"A": 0, "B": 1, "C": 2, "D": 3, "E": 4, "": 5}
    worse = psc.cost_class(cost, hours).item()
    better = psc.cost_class(max(cost - cheaper, 0.0), hours).item()
    assert order[better] <= order[worse]


def test_cost_class_boundaries():
    # 6 h: A below 533 + 6·47 = 815 US$/kW, E below 1066 + 6·94 = 1630, unclassed above
    assert list(psc.cost_class([814.9, 815.0, 1629.9, 1630.0], 6.0)) == ["A", "B", "E", ""]


def test_bigger_head_gives_better_or_equal_class():
    heads = np.array([300.0, 450.0, 600.0, 750.0])
    e = psc.energy_gwh(heads, 10e6)
    hours = psc.storage_hours_for(e)
    total = psc.power_cost_usd_per_kw(e * 1000 / hours, heads, 4.0) + hours * (
        psc.storage_cost_usd_per_kwh(10e6 / 5.0, e)  # water-to-rock ratio 5
    )
    ranks = ["ABCDE".index(c) if c else 5 for c in psc.cost_class(total, hours)]
    assert ranks == sorted(ranks, reverse=True)
    assert ranks[-1] < ranks[0]


def test_zones_give_prefecture(notch):
    grid, dem, lower = notch
    zones = gpd.GeoDataFrame(
        {"name_en": ["West", "East"]},
        geometry=[shapely.box(0, 0, 2000, 4000), shapely.box(2000, 0, 4000, 4000)],
        crs=grid.crs,
    )
    res, pairs = find_pairs_numpy(
        dem.values, np.zeros(grid.shape, bool), grid, NOTCH, existing=lower, zones=zones
    )
    assert list(pairs["prefecture"]) == ["West"]
    assert list(res.sort_values("reservoir_id")["prefecture"]) == ["West", "East"]


def test_bad_parameters_raise_input_error(notch):
    grid, dem, _ = notch
    with pytest.raises(InputError, match="min_head_m"):
        find_pairs_numpy(dem.values, np.zeros(grid.shape, bool), grid, PumpedStorageParams(
            dam_height_m=50.0, min_head_m=40.0))  # fmt: skip
    with pytest.raises(InputError, match="grid's shape"):
        find_pairs(dem.values[:10], np.zeros((10, 40), bool), grid)


def _fill_by_reconstruction(z: np.ndarray) -> np.ndarray:
    """Soille's fillhole: morphological reconstruction by erosion from the border and NaNs
    (sitekit's implementation until Priority-Flood replaced it)."""
    from skimage.morphology import reconstruction

    valid = np.isfinite(z)
    mask = np.where(valid, z, float(np.nanmin(z)) - 1.0)  # NaN holes drain like the border
    edge = ~valid
    edge[[0, -1], :] = edge[:, [0, -1]] = True
    out = reconstruction(np.where(edge, mask, float(np.nanmax(z))), mask, method="erosion")
    out[~valid] = np.nan
    return out


def test_priority_flood_equals_fill_by_reconstruction() -> None:
    """Barnes et al. (2014) Priority-Flood gives Soille's filled surface bit for bit."""
    from scipy import ndimage

    from sitekit.pumped_storage import fill_depressions

    rng = np.random.default_rng(3)
    for trial in range(24):
        ny, nx = (int(v) for v in rng.integers(3, 90, 2))
        z = ndimage.gaussian_filter(rng.standard_normal((ny, nx)), rng.uniform(0.5, 4)) * 100
        if trial % 3 == 0:
            z = np.round(z / 5) * 5  # flats and plateaus
        z = z.astype(np.float32)
        if trial % 2:
            z[rng.random((ny, nx)) < 0.05] = np.nan
        got = fill_depressions(z)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, _fill_by_reconstruction(z))


def test_fill_depressions_by_hand() -> None:
    """A 2 m pit in a plane fills to its 1 m spill level; a pit next to a NaN drains into it."""
    from sitekit.pumped_storage import fill_depressions

    z = np.full((5, 6), 3.0, np.float32)
    z[0, :] = 1.0  # the outlet side
    z[2, 2] = -2.0  # a pit surrounded by 3 m: fills to 3 m
    z[2, 4] = -2.0
    z[3, 5] = np.nan  # … this one drains into the hole next to it
    filled = fill_depressions(z)
    assert filled[2, 2] == 3.0 and filled[2, 4] == -2.0
    assert np.isnan(filled[3, 5]) and (filled[0] == 1.0).all()
