"""Pumped-storage search: hand-computed reservoirs and pairs, exclusions, chunking, cost model."""

from __future__ import annotations

import dataclasses

import dask
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from dask.delayed import Delayed
from hypothesis import given, settings
from hypothesis import strategies as st

from sitekit.errors import InputError
from sitekit.science import pumped_storage_cost as psc
from sitekit.science.hydrology import fill_depressions
from sitekit.science.pumped_storage import (
    PumpedStorageParams,
    find_pairs,
    find_pairs_numpy,
    flood_to_volume,
    flow_receivers,
    reservoir_candidates,
)
from sitekit.testing import mountain_terrain, notched_plateau, small_grid

RES = 100.0
#: notch 12 px long, floor 1480 m (the notch is 20 m deep); valley 1000 m.
NOTCH = PumpedStorageParams(
    dam_heights_m=(5.0, 10.0),
    max_separation_km=3.0,
    classes=((0.5, 6.0), (1.0, 6.0)),
    min_volume_gl=0.1,
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
    # 1000 kg/m³ · 9.81 m/s² · 500 m · 1e6 m³ usable · 0.9 = 4.4145e12 J = 1.22625 GWh
    assert psc.energy_gwh(500.0, 1e6, 0.9) == pytest.approx(4.4145e12 / 3.6e12, rel=1e-12)


def test_anu_sizing_check_5gwh_at_213m_needs_11_27_gl():
    """ANU atlas: 5 GWh at 213 m head, η 0.9, 85 % usable → 11.27 GL (gross)."""
    v = psc.required_volume_m3(5.0, 213.0, 0.9, 0.85)
    assert v / 1e6 == pytest.approx(11.27, rel=0.01)
    # and back: the usable part of it stores 5 GWh
    assert psc.energy_gwh(213.0, 0.85 * v, 0.9) == pytest.approx(5.0, rel=1e-12)
    assert PumpedStorageParams().required_volume_m3(5.0, 213.0) == pytest.approx(v)


def test_dam_wall_volume_trapezoid():
    # 10 m of water + 1.5 m freeboard; crest 10 m, 3:1 faces: (11.5)·(10 + 34.5)·100 m
    assert psc.dam_wall_volume_m3(10.0, 100.0) == pytest.approx(11.5 * 44.5 * 100.0)


def test_notch_reservoir_curves_by_hand(notch):
    grid, dem, _ = notch
    table, mq, mc, dz = reservoir_candidates(
        dem.values.astype(float), np.zeros(grid.shape, bool), RES, NOTCH
    )
    assert len(table) == 1
    row = table.iloc[0]
    assert row["level_m"] == 1480.0  # the dam site: notch floor
    # flat notch floor of 12 px: V(H) = 12 px · H, one wall H high across the 1-px mouth
    for j, h in enumerate((5.0, 10.0)):
        assert row[f"v{j}"] == pytest.approx(12 * RES**2 * h)
        assert row[f"a{j}"] == pytest.approx(12 * RES**2)
        assert row[f"w{j}"] == pytest.approx((h + 1.5) * (10 + 3 * (h + 1.5)) * RES)
    rows, cols = np.divmod(mq, 40)
    assert set(rows) == {20} and set(cols) == set(range(8, 20))  # the notch, nothing else
    assert (dz == 0).all()


def _pit_valley(pit_depth_m: float):
    """A valley sloping 10 m/px to an outlet, with a closed pit 3 px wide behind a 40 m dam.

    Row 10 is the stream; pixels rise 200 m per px away from it. Along the stream the floor is
    1000 + 10·(c − 2) m; columns 5–7 are a pit ``pit_depth_m`` below the floor of column 4
    (1020 m), i.e. a closed depression whose spill level is 1020 m."""
    ny, nx = 21, 14
    r, c = np.mgrid[0:ny, 0:nx]
    z = 1000.0 + 10.0 * (c - 2) + 200.0 * np.abs(r - 10)
    z[:, :2] = 2000.0
    z[10, 1], z[10, 0] = 985.0, 980.0  # the outlet, on the grid edge
    pit = (r == 10) & (c >= 5) & (c <= 7)
    z[pit] = 1020.0 - pit_depth_m
    return z


def test_closed_pit_is_dead_storage_and_mean_depth_le_dam_height():
    """A 150 m deep pit behind a 40 m dam counts only from its spill level up."""
    p = PumpedStorageParams(
        dam_heights_m=(40.0,), min_volume_gl=0.01, min_water_rock=0.01,
        contour_interval_m=100.0, min_catchment_km2=0.0, max_reservoir_length_km=3.0,
        classes=((0.01, 6.0),),
    )  # fmt: skip
    deep, shallow = _pit_valley(150.0), _pit_valley(0.0)
    vols = []
    for z in (deep, shallow):
        t, mq, mc, dz = reservoir_candidates(z, np.zeros(z.shape, bool), RES, p)
        row = t.loc[t["level_m"] == 1000.0].iloc[0]  # the dam site at the stream pixel c = 2
        vols.append((row["v0"], row["a0"]))
    (v_deep, a_deep), (v_flat, a_flat) = vols
    # identical: the pit below its spill level (1020 m) is dead storage, not volume
    assert v_deep == pytest.approx(v_flat)
    # by hand: stream pixels c = 2..5 lie at 1000, 1010, 1020, 1020 (pit filled) … below 1040
    # → depths 40, 30, 20, 20, 20, 20 (c = 2..7 with the filled pit at 1020), c = 8 at 1060 dry
    assert v_flat == pytest.approx((40 + 30 + 20 + 20 + 20 + 20) * RES**2)
    assert v_deep / a_deep <= 40.0
    # the old rule (unfilled DEM) would have added 3 · 150 m of pit
    assert v_deep < (40 + 30 + 20 + 3 * 170 + 20) * RES**2


def test_flood_to_volume_exact_height():
    depth = np.array([0.0, 0.0, 5.0, 10.0])
    # 2 px at depth 0: 100 m² px → V(5) = 2·5·100 = 1000 m³; V(10) = (10+10+5)·100 = 2500
    h, m = flood_to_volume(depth, 1000.0, 100.0)
    assert h == pytest.approx(5.0) and m.sum() == 2
    h, m = flood_to_volume(depth, 2500.0, 100.0)
    assert h == pytest.approx(10.0) and m.sum() == 3
    h, m = flood_to_volume(depth, 1750.0, 100.0)  # (3h − 5)·100 = 1750 → h = 7.5
    assert h == pytest.approx(7.5) and m.sum() == 3


def test_pixel_set_keeps_what_floods_every_smaller_volume_bit_for_bit():
    """A window ships each reservoir's members up to the level of its largest pair volume, as
    int32 pixel and float32 filled elevation: every volume up to that one floods to the same
    height and the same pixels as from all the members (depth recovered as float64(z) − z₀)."""
    from sitekit.science.ps_select import _pixel_set

    rng = np.random.default_rng(7)
    z0 = 2731.25  # dam site's filled elevation [m], float32-exact as on the staged DEM
    zval = (z0 + rng.uniform(0.0, 150.0, 5000)).astype(np.float32)
    zval[:40] = np.float32(z0 + 12.5)  # ties at one depth
    depth = zval.astype(np.float64) - z0
    pix = rng.permutation(10**6)[:5000].astype(np.int64)
    a = 30.0 * 30.0
    vmax = 0.1 * float(np.sum(150.0 - depth)) * a
    kp, kz = _pixel_set(pix, depth, zval, vmax, a, np.int32)
    assert kp.dtype == np.int32 and kz.dtype == np.float32
    assert 0 < kp.size < pix.size / 2  # fewer members than at the highest dam
    d2 = kz.astype(np.float64) - z0
    for v in (1e3, 0.01 * vmax, 0.5 * vmax, vmax):
        h, m = flood_to_volume(depth, v, a)
        h2, m2 = flood_to_volume(d2, v, a)
        assert h2 == h  # bit for bit
        assert np.array_equal(np.sort(kp[m2]), np.sort(pix[m]))


def test_notch_above_valley_sized_to_a_class(notch):
    grid, dem, lower = notch
    lower = lower.assign(water_level_m=1000.0)
    reservoirs, pairs = find_pairs_numpy(
        dem.values, np.zeros(grid.shape, bool), grid, NOTCH, existing=lower
    )
    assert len(pairs) == 1
    pair = pairs.iloc[0]
    head = 1480.0 - 1000.0  # dam site of the notch − pool level of the existing lower
    assert pair["head_m"] == head
    # the largest class the notch (≤ 1.2 GL at 10 m) can fill: 1 GWh needs 0.999 GL
    v = psc.required_volume_m3(1.0, head, 0.9, 0.85)
    assert v < 1.2e6
    assert pair["storage_gwh"] == 1.0 and pair["storage_hours"] == 6.0
    assert pair["power_mw"] == pytest.approx(1000.0 / 6.0)
    assert pair["volume_gl"] == pytest.approx(v / 1e6)
    assert pair["usable_volume_gl"] == pytest.approx(0.85 * v / 1e6)
    # flat floor of 12 px: the dam height that holds v is v / (12 px)
    assert pair["dam_height_m"] == pytest.approx(v / (12 * RES**2))
    assert pair["mean_depth_m"] == pytest.approx(pair["dam_height_m"])
    assert pair["uses_existing_reservoir"] and pair["lower_name"] == "Existing lower"
    assert pair["cost_class"] in {"A", "B", "C", "D", "E"}
    assert pair["cost_usd_per_kwh"] == pytest.approx(pair["cost_usd_per_kw"] / 6.0)
    # the wall is interpolated between the 5 m and 10 m walls (ANU)
    w5, w10 = (psc.dam_wall_volume_m3(h, RES) for h in (5.0, 10.0))
    t = (v - 12 * RES**2 * 5) / (12 * RES**2 * 5)
    assert pair["storage_cost_usd_per_kwh"] == pytest.approx(168.0 * (w5 + t * (w10 - w5)) / 1e6)
    upper = reservoirs.set_index("reservoir_id").loc[pair["upper_id"]]
    assert upper["role"] == "upper" and not upper["existing"]
    assert upper["water_level_m"] == pytest.approx(1480.0 + pair["dam_height_m"])
    assert upper.geometry.area == pytest.approx(12 * RES**2)
    lower_row = reservoirs.set_index("reservoir_id").loc[pair["lower_id"]]
    assert lower_row["water_level_m"] == 1000.0  # the pool level, never the DEM
    assert pairs.crs == grid.crs and reservoirs.crs == grid.crs
    for col in (
        "storage_gwh",
        "power_mw",
        "storage_hours",
        "head_m",
        "mean_depth_m",
        "dam_height_m",
        "grid_distance_km",
        "lower_name",
        "uses_existing_reservoir",
    ):
        assert col in pairs.columns
    assert "energy_gwh" not in pairs.columns  # storage is never an annual-energy column


def test_power_never_above_cap_and_hours_only_class_values(notch):
    grid, dem, lower = notch
    lower = lower.assign(water_level_m=1000.0)
    # a 1 GWh / 0.25 h class would be 4000 MW: above the cap, so never served
    p = PumpedStorageParams(**{**NOTCH.__dict__, "classes": ((0.5, 6.0), (1.0, 0.25)),
                               "max_power_mw": 3600.0})  # fmt: skip
    _, pairs = find_pairs_numpy(dem.values, np.zeros(grid.shape, bool), grid, p, existing=lower)
    assert len(pairs) == 1
    assert (pairs["power_mw"] <= 3600.0).all()
    assert set(pairs["storage_hours"]) <= {6.0}
    assert pairs.iloc[0]["storage_gwh"] == 0.5
    with pytest.raises(InputError, match="max_power_mw"):
        PumpedStorageParams(classes=((10.0, 1.0),), max_power_mw=3600.0).check()


def test_existing_polygon_with_level_and_volume_limits_the_pair(notch):
    grid, dem, _ = notch
    # a 3×3-pixel lake in the valley at 1010 m, 0.5 GL: too small for the 1 GWh class
    lake = shapely.box(2910.0, 1810.0, 3190.0, 2090.0)
    lower = gpd.GeoDataFrame(
        {"name": ["Lake"], "water_level_m": [1010.0], "volume_gl": [0.8]}, geometry=[lake],
        crs=grid.crs,
    )  # fmt: skip
    res, pairs = find_pairs_numpy(
        dem.values, np.zeros(grid.shape, bool), grid, NOTCH, existing=lower
    )
    pair = pairs.iloc[0]
    assert pair["head_m"] == 1480.0 - 1010.0
    assert pair["storage_gwh"] == 0.5  # 1 GWh would need 1.02 GL > 0.8 GL
    lake_row = res[res["role"] == "lower"].iloc[0]
    assert lake_row["existing"] and lake_row["name"] == "Lake"
    assert lake_row["volume_gl"] == pytest.approx(0.8) and lake_row["dam_volume_m3"] == 0.0
    assert lake_row.geometry.area == pytest.approx(9 * RES**2)


def test_existing_without_pool_level_is_not_used(notch):
    grid, dem, lower = notch
    lower = lower.assign(water_level_m=np.nan)
    _, pairs = find_pairs_numpy(dem.values, np.zeros(grid.shape, bool), grid, NOTCH,
                                existing=lower)  # fmt: skip
    assert len(pairs) == 0


@pytest.mark.parametrize("where", [(20, 12), (20, 20)])
def test_pair_dropped_when_reservoir_or_dam_touches_exclusion(notch, where):
    grid, dem, lower = notch
    lower = lower.assign(water_level_m=1000.0)
    excl = np.zeros(grid.shape, bool)
    excl[where] = True  # (20, 12): inside the notch; (20, 20): valley pixel under the dam
    _, pairs = find_pairs_numpy(dem.values, excl, grid, NOTCH, existing=lower)
    assert len(pairs) == 0


def test_exclusion_elsewhere_keeps_pair(notch):
    grid, dem, lower = notch
    lower = lower.assign(water_level_m=1000.0)
    excl = np.zeros(grid.shape, bool)
    excl[2:6, 2:6] = True
    _, pairs = find_pairs_numpy(dem.values, excl, grid, NOTCH, existing=lower)
    assert len(pairs) == 1


def test_head_outside_range_gives_no_pair(notch):
    grid, dem, lower = notch
    lower = lower.assign(water_level_m=1000.0)
    p = PumpedStorageParams(**{**NOTCH.__dict__, "min_head_m": 485.0})
    _, pairs = find_pairs_numpy(dem.values, np.zeros(grid.shape, bool), grid, p, existing=lower)
    assert len(pairs) == 0


def test_grid_distance_and_connection_cost():
    from sitekit.science.pumped_storage import add_grid_connection

    pairs = gpd.GeoDataFrame(
        {"power_mw": [300.0, 1000.0]},
        geometry=[shapely.LineString([(0, 0), (1, 1)]), shapely.LineString([(0, 3000), (5, 5)])],
        crs="EPSG:3857",
    )
    pts = gpd.GeoDataFrame(geometry=[shapely.Point(4000, 0)], crs="EPSG:3857")
    out = add_grid_connection(pairs, pts, {220: 1e6, 500: 3e6}, {220: 1e7, 500: 5e7},
                              {220: 500, 500: 1e5})  # fmt: skip
    assert list(out["grid_distance_km"]) == pytest.approx([4.0, 5.0])
    assert list(out["connection_kv"]) == [220, 500]
    assert list(out["connection_cost_cny"]) == pytest.approx([4e6 + 1e7, 15e6 + 5e7])


MOUNTAIN = PumpedStorageParams(
    dam_heights_m=(10.0, 20.0),
    min_head_m=150.0,
    max_head_m=600.0,
    max_separation_km=1.5,
    min_slope=0.05,
    min_volume_gl=0.1,
    classes=((0.05, 6.0), (0.1, 6.0), (0.3, 18.0)),
    min_water_rock=0.6,
    min_pair_water_rock=0.3,
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


def test_staged_search_equals_unchunked(tmp_path):
    """With a ``stage`` (the run's Zarr store on large grids) the filled DEM, then the D8 codes
    and dam sites are written to disk before the windows run, each pass reading its inputs
    again from disk: the windows' graph holds no hydrology task, and the result is unchanged."""
    from dask.utils import key_split

    from sitekit.engine import layerstore

    grid = small_grid((150, 150), RES, chunks=45)
    dem = mountain_terrain(grid, relief_m=1200.0, wavelength_m=2500.0, seed=3)
    excl = np.zeros(grid.shape, bool)
    excl[100:110, 20:40] = True
    calls: list[list[str]] = []

    def stage(parts, label):
        calls.append(sorted(parts))
        dask.compute(*layerstore.write(parts, tmp_path / "s.zarr").values())
        return layerstore.read(tmp_path / "s.zarr", parts)

    res_u, pairs_u = find_pairs_numpy(dem.values, excl, grid, MOUNTAIN)
    lazy = find_pairs(dem, grid.wrap(dask.array.from_array(excl, 45), "excl"), grid, MOUNTAIN,
                      stage=stage)  # fmt: skip
    assert calls == [[f"_ps_search_{n}" for n in names]
                     for names in (["dem", "excluded"], ["filled"], ["d8", "dam_sites"])]  # fmt: skip
    names = {key_split(k) for k in lazy.__dask_graph__()}
    assert not any(n.startswith(("fill_tile", "edges_of_tile", "tiledflow")) for n in names)
    res_c, pairs_c = lazy.compute()
    assert len(pairs_u) >= 50
    assert pairs_c.drop(columns="geometry").equals(pairs_u.drop(columns="geometry"))
    assert res_c.drop(columns="geometry").equals(res_u.drop(columns="geometry"))


def test_search_staged_through_the_layer_store_equals_unchunked(tmp_path):
    """The run's path on large grids: the search is a builder of
    :func:`sitekit.engine.cluster.persist` with the Zarr store, its inputs the stored layers
    (gated on their writes) and its hydrology staged in the store; same pairs as unchunked."""
    import zarr
    from distributed import Client, LocalCluster

    from sitekit.engine.cluster import persist

    grid = small_grid((150, 150), RES, chunks=45)
    dem = mountain_terrain(grid, relief_m=1200.0, wavelength_m=2500.0, seed=3)
    excl = np.zeros(grid.shape, bool)
    excl[100:110, 20:40] = True
    arrays = {
        "elevation": dask.array.from_array(dem.values, 45),
        "excluded": dask.array.from_array(excl, 45),
        "ps": lambda layers, stage: find_pairs(layers["elevation"], layers["excluded"], grid,
                                               MOUNTAIN, stage=stage),
    }  # fmt: skip
    graphs = []
    search = arrays["ps"]
    arrays["ps"] = lambda layers, stage: graphs.append(search(layers, stage)) or graphs[-1]
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None)
        as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        _, others, _ = persist(client, arrays, quiet=True, label="t", store=tmp_path / "s.zarr")
    # each window reads its own inputs from the store (the stage's window_reader): the graph
    # holds no chunk read of the staged DEM, exclusion or dam sites for windows to share
    hlg = graphs[0].__dask_graph__()
    windows = [t for n, layer in hlg.layers.items() if n.startswith("ps-search-")
               for k, t in layer.items() if k[0].startswith("ps-window-")]  # fmt: skip
    assert len(windows) == 16  # 150² px in 45 px tiles
    assert not any(isinstance(a, tuple) for t in windows for a in t[1:])  # no chunk assembled
    res_c, pairs_c = others["ps"]
    res_u, pairs_u = find_pairs_numpy(dem.values, excl, grid, MOUNTAIN)
    assert len(pairs_u) >= 50
    assert pairs_c.drop(columns="geometry").equals(pairs_u.drop(columns="geometry"))
    assert res_c.drop(columns="geometry").equals(res_u.drop(columns="geometry"))
    assert {"_ps_search_filled", "_ps_search_d8", "_ps_search_dam_sites"} <= set(
        zarr.open_group(str(tmp_path / "s.zarr"), mode="r").array_keys()
    )


def test_reread_hydrology_reads_its_input_again():
    """``reread``: the tiled fill's second pass and the dam sites read their input chunks
    through a clone of its graph (for inputs on disk: nothing waits in memory across the
    global steps); the results are the same."""
    from sitekit.science.tiledfill import fill_depressions_tiled
    from sitekit.science.tiledflow import dam_sites_tiled

    grid = small_grid((90, 90), RES, chunks=30)
    z = dask.array.from_array(
        mountain_terrain(grid, relief_m=800.0, wavelength_m=2000.0, seed=5).values, chunks=30
    )
    plain, again = fill_depressions_tiled(z), fill_depressions_tiled(z, reread=True)
    n_src = sum(1 for k in plain.__dask_graph__() if str(k[0]).startswith(z.name))
    assert n_src == z.npartitions
    assert sum(1 for k in again.__dask_graph__() if isinstance(k, tuple)
               and str(k[0]).startswith("array-")) >= 2 * z.npartitions  # fmt: skip
    np.testing.assert_array_equal(plain.compute(), again.compute())
    zf = plain.persist()
    for a, b in zip(dam_sites_tiled(zf, 20.0, 3), dam_sites_tiled(zf, 20.0, 3, reread=True),
                    strict=True):  # fmt: skip
        np.testing.assert_array_equal(a.compute(), b.compute())


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


def test_zones_give_prefecture(notch):
    grid, dem, lower = notch
    lower = lower.assign(water_level_m=1000.0)
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
            dam_heights_m=(50.0,), min_head_m=40.0))  # fmt: skip
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

    from sitekit.science.pumped_storage import fill_depressions

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
    from sitekit.science.pumped_storage import fill_depressions

    z = np.full((5, 6), 3.0, np.float32)
    z[0, :] = 1.0  # the outlet side
    z[2, 2] = -2.0  # a pit surrounded by 3 m: fills to 3 m
    z[2, 4] = -2.0
    z[3, 5] = np.nan  # … this one drains into the hole next to it
    filled = fill_depressions(z)
    assert filled[2, 2] == 3.0 and filled[2, 4] == -2.0
    assert np.isnan(filled[3, 5]) and (filled[0] == 1.0).all()


def test_size_pairs_equals_a_per_pair_reference():
    """The numba sizing equals a plain loop: largest class whose volume both reservoirs hold,
    walls by np.interp on each reservoir's curve, pair W/R and class-E cost limits."""
    from sitekit.science.ps_sizing import size_pairs

    rng = np.random.default_rng(7)
    p = PumpedStorageParams(max_power_mw=1000.0)  # 150/50, 500/168, 1500/504 (≈3 GW) not served
    hs = np.array((0.0, *p.dam_heights_m))
    n_res = 40
    area = rng.uniform(0.05, 3.0, n_res)[:, None] * 1e6  # [m²] per m of height, growing
    vol = np.cumsum(np.diff(hs, prepend=0.0)[None, :] * area * (1 + hs / 100.0), axis=1)
    wall = np.vstack([psc.dam_wall_volume_m3(hs, rng.uniform(100, 3000)) for _ in range(n_res)])
    wall[:, 0] = 0.0
    cut = rng.integers(3, hs.size, n_res)  # highest allowed height index
    for r, k in enumerate(cut):
        vol[r, k + 1 :] = np.inf
    vmax = vol[np.arange(n_res), cut]
    hgt = np.broadcast_to(hs, vol.shape)
    n = 300
    up, lo = rng.integers(0, n_res, n), rng.integers(0, n_res, n)
    head, sep = rng.uniform(300, 800, n), rng.uniform(1, 15, n)
    got = size_pairs(head, sep, up, lo, (vol, wall, hgt, vmax), p)
    classes = p.served_classes()
    assert all(e * 1000 / h <= 1000.0 for e, h in classes) and len(classes) == 4
    for q in range(n):
        want = None
        for k in range(len(classes) - 1, -1, -1):
            e, h = classes[k]
            v = p.required_volume_m3(e, head[q])
            if v > min(vmax[up[q]], vmax[lo[q]]):
                continue
            d = [np.interp(v, vol[r, : cut[r] + 1], wall[r, : cut[r] + 1]) for r in (up[q], lo[q])]
            rock = d[0] + d[1]
            cost = psc.power_cost_usd_per_kw(e * 1000 / h, head[q], sep[q]) + (
                168.0 * rock / (e * 1e6) * h
            )
            if v / rock < p.min_pair_water_rock or psc.cost_class(cost, h).item() == "":
                continue
            want = (k, v, d[0], d[1], cost)
            break
        row = got.iloc[q]
        if want is None:
            assert row["class_index"] == -1
            continue
        k, v, du, dl, cost = want
        assert row["class_index"] == k
        assert row["storage_gwh"] == classes[k][0] and row["storage_hours"] == classes[k][1]
        assert row["power_mw"] <= 1000.0
        assert row["volume_m3"] == pytest.approx(v)
        assert row["upper_dam_m3"] == pytest.approx(du) and row["lower_dam_m3"] == pytest.approx(dl)
        assert row["cost_usd_per_kw"] == pytest.approx(cost)
        assert row["cost_class"] == psc.cost_class(cost, classes[k][1]).item()
        assert 0 <= row["upper_dam_height_m"] <= hs[cut[up[q]]]
    assert (got["class_index"] >= 0).sum() > 50  # the check is not vacuous
    assert (got["class_index"] < len(classes) - 1).sum() > 5  # and some fall to smaller classes


def test_new_reservoir_never_floods_an_existing_lake(notch):
    grid, dem, _ = notch
    # a lake outline over notch pixels (20, 11..13): the notch reservoir would flood it
    x0, y1 = grid.transform * (11, 20)
    x1, y0 = grid.transform * (14, 21)
    lake = gpd.GeoDataFrame(
        {"name": ["Lake"], "water_level_m": [1000.0]},
        geometry=[shapely.box(x0 + 1, y0 + 1, x1 - 1, y1 - 1)], crs=grid.crs,
    )  # fmt: skip
    _, pairs = find_pairs_numpy(dem.values, np.zeros(grid.shape, bool), grid, NOTCH, existing=lake)
    assert len(pairs) == 0


def test_existing_reservoir_as_upper_above_a_new_lower(notch):
    grid, dem, _ = notch
    # a lake (3×3 px on the plateau, 0.4 km east of the notch's end) held at 1900 m: the notch
    # (dam site 1480 m) is its new lower reservoir, head 420 m, no wall at the lake
    x0, y1 = grid.transform * (21, 19)
    x1, y0 = grid.transform * (24, 22)
    lake = gpd.GeoDataFrame(
        {"name": ["High lake"], "water_level_m": [1900.0], "volume_gl": [50.0]},
        geometry=[shapely.box(x0 + 1, y0 + 1, x1 - 1, y1 - 1)], crs=grid.crs,
    )  # fmt: skip
    p = PumpedStorageParams(**{**NOTCH.__dict__, "max_head_m": 450.0})
    res, pairs = find_pairs_numpy(dem.values, np.zeros(grid.shape, bool), grid, p, existing=lake)
    assert len(pairs) == 1
    pair = pairs.iloc[0]
    assert pair["head_m"] == 1900.0 - 1480.0
    assert pair["uses_existing_reservoir"] and pair["upper_name"] == "High lake"
    assert np.isnan(pair["dam_height_m"]) and pair["lower_dam_height_m"] > 0
    # separation: notch centroid (col 13.5) to the lake's nearest pixel centre (col 21)
    assert pair["separation_km"] == pytest.approx((21 - 13.5) * RES / 1000.0)
    v = psc.required_volume_m3(pair["storage_gwh"], 420.0, 0.9, 0.85)
    assert pair["volume_gl"] == pytest.approx(v / 1e6)
    up = res.set_index("reservoir_id").loc[pair["upper_id"]]
    assert up["existing"] and up["water_level_m"] == 1900.0 and up["dam_volume_m3"] == 0.0


def _three_lakes(grid, z: np.ndarray) -> gpd.GeoDataFrame:
    """Three 4 × 4 px lakes at the 3rd, 97th and 50th percentile of ``z``."""
    lakes = []
    for (r, c), q in (((30, 40), 3), ((110, 100), 97), ((75, 75), 50)):
        x0, y1 = grid.transform * (c, r)
        x1, y0 = grid.transform * (c + 4, r + 4)
        lakes.append((shapely.box(x0 + 1, y0 + 1, x1 - 1, y1 - 1), float(np.percentile(z, q))))
    return gpd.GeoDataFrame(
        {"name": ["Low", "High", "Mid"], "water_level_m": [lv for _, lv in lakes]},
        geometry=[g for g, _ in lakes], crs=grid.crs,
    )  # fmt: skip


@pytest.mark.parametrize("chunks", [45])
def test_chunked_search_with_lakes_equals_unchunked(chunks):
    """Existing lakes as lower and as upper reservoirs: the chunked search still equals the
    unchunked one (a lake's pairs are owned by the window of their new reservoir)."""
    grid = small_grid((150, 150), RES, chunks=chunks)
    dem = mountain_terrain(grid, relief_m=1200.0, wavelength_m=2500.0, seed=3)
    z = dem.values
    lakes = _three_lakes(grid, z)
    excl = np.zeros(grid.shape, bool)
    res_u, pairs_u = find_pairs_numpy(z, excl, grid, MOUNTAIN, existing=lakes)
    lazy = find_pairs(dem, grid.wrap(dask.array.from_array(excl, chunks), "excl"), grid, MOUNTAIN,
                      existing=lakes)  # fmt: skip
    res_c, pairs_c = lazy.compute()
    assert pairs_c.drop(columns="geometry").equals(pairs_u.drop(columns="geometry"))
    assert res_c.drop(columns="geometry").equals(res_u.drop(columns="geometry"))
    ex = pairs_u[pairs_u["uses_existing_reservoir"]]
    assert ex["lower_name"].notna().any() and ex["upper_name"].notna().any()  # both roles


@pytest.mark.parametrize("lowers", [1, 3])
def test_pairing_in_blocks_of_uppers_changes_nothing(monkeypatch, lowers):
    """Uppers are paired and sized a block at a time (memory), each block cut to its best
    lowers; with existing lakes as lowers (pairs that come after the blocks) the final cut
    over all gives the same table whatever the block size."""
    import sitekit.science.pumped_storage as ps_mod

    grid = small_grid((150, 150), RES, chunks=45)
    dem = mountain_terrain(grid, relief_m=1200.0, wavelength_m=2500.0, seed=3)
    z = dem.values
    lakes = _three_lakes(grid, z)
    p = dataclasses.replace(MOUNTAIN, max_lowers_per_upper=lowers)
    excl = np.zeros(grid.shape, bool)
    tables = []
    real_pair = ps_mod._pair

    def spy(*a, **k):
        tables.append(real_pair(*a, **k))
        return tables[-1]

    monkeypatch.setattr(ps_mod, "_pair", spy)
    res_a, pairs_a = find_pairs_numpy(z, excl, grid, p, existing=lakes)
    # the cut holds over all of a new upper's pairs, the lakes' ones included
    per_upper = pd.concat(tables).query("upper_key >= 0").groupby("upper_key").size()
    assert per_upper.max() == lowers
    monkeypatch.setattr(ps_mod, "PAIR_BLOCK", 3)
    res_b, pairs_b = find_pairs_numpy(z, excl, grid, p, existing=lakes)
    assert len(pairs_a) >= 20 and pairs_a["uses_existing_reservoir"].any()
    assert pairs_b.drop(columns="geometry").equals(pairs_a.drop(columns="geometry"))
    assert res_b.drop(columns="geometry").equals(res_a.drop(columns="geometry"))


def test_chunked_search_with_dam_points_equals_unchunked():
    """Existing dams given as points are flooded each in its own window of the tiled
    hydrology (D8 codes, not global receivers): the same reservoirs and pairs as unchunked."""
    grid = small_grid((150, 150), RES, chunks=40)
    dem = mountain_terrain(grid, relief_m=1200.0, wavelength_m=2500.0, seed=3)
    z = dem.values
    pts, levels = [], []
    for r, c in ((30, 40), (110, 100), (75, 75), (5, 148)):
        zz = fill_depressions(z.astype(np.float32))
        levels.append(float(zz[r, c]) + 40.0)
        pts.append(shapely.Point(*(grid.transform * (c + 0.5, r + 0.5))))
    dams = gpd.GeoDataFrame(
        {"name": ["A", "B", "C", "Edge"], "water_level_m": levels}, geometry=pts, crs=grid.crs
    )
    p = dataclasses.replace(MOUNTAIN, existing_reach_km=0.6)  # windows far smaller than the grid
    excl = np.zeros(grid.shape, bool)
    res_u, pairs_u = find_pairs_numpy(z, excl, grid, p, existing=dams)
    lazy = find_pairs(dem, grid.wrap(dask.array.from_array(excl, 40), "excl"), grid, p,
                      existing=dams)  # fmt: skip
    res_c, pairs_c = lazy.compute()
    assert pairs_c.drop(columns="geometry").equals(pairs_u.drop(columns="geometry"))
    assert res_c.drop(columns="geometry").equals(res_u.drop(columns="geometry"))
    flooded = res_u[res_u["existing"].astype(bool)]
    assert (flooded["outline_method"] == "DEM flooded to the normal pool level").any()
