"""Capacity per connection point, supply curves, hydro–wind–solar bases and `sitekit hosting`."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import sitekit.cli.route  # noqa: F401  (registers the verbs)
from sitekit.cli import cli
from sitekit.errors import CRSError, LayerError, SitekitWarning
from sitekit.outputs.hosting import write_hosting
from sitekit.science import hosting
from sitekit.specs.recipe import Economics
from sitekit.testing import small_grid

GRID = small_grid((60, 80), 100.0, (0.0, 0.0), chunks=16)
ECON_PV = Economics(
    capex_cny_per_kw=3600, fixed_om_cny_per_kw_yr=50, wacc=0.06, lifetime_yr=25,
    degradation_pct_per_yr=0.5, connection_cny_per_km={110: 800000, 220: 1500000},
    connection_bay_cny={110: 8000000, 220: 20000000}, voltage_by_capacity_mw={110: 100, 220: 500},
)  # fmt: skip


def box(cx: float, cy: float, r: float = 100.0) -> shapely.Polygon:
    return shapely.box(cx - r, cy - r, cx + r, cy + r)


def sites() -> dict[str, gpd.GeoDataFrame]:
    pv = gpd.GeoDataFrame(
        {"site_id": ["P1", "P2", "P3"], "rank": [1, 2, 3], "capacity_mw": [100.0, 40.0, 60.0],
         "energy_gwh": [150.0, 60.0, 90.0], "lcoe_cny_per_kwh": [0.30, 0.22, 0.26]},
        geometry=[box(1000, 3000), box(2000, 1000), box(7000, 3000)], crs=GRID.crs,
    )  # fmt: skip
    wind = gpd.GeoDataFrame(
        {"site_id": ["W1", "W2"], "rank": [1, 2], "capacity_mw": [50.0, 25.0],
         "energy_gwh": [130.0, 60.0], "lcoe_cny_per_kwh": [0.28, 0.35]},
        geometry=[box(3500, 3000), box(6000, 5000)], crs=GRID.crs,
    )  # fmt: skip
    return {"pv": pv, "wind": wind}


POINTS = gpd.GeoDataFrame({"name": ["West", "East"], "voltage_kv": [220, 500]},
                          geometry=[shapely.Point(1500, 3000), shapely.Point(6500, 3000)],
                          crs=GRID.crs)  # fmt: skip


def test_hosting_sums_and_nearest_points():
    per, curves = hosting.hosting_capacity(sites(), POINTS, grid=GRID)
    p = per.set_index("name")
    # West gets P1, P2, W1; East gets P3, W2 (straight-line nearest)
    assert p.loc["West", "pv_mw"] == 140.0 and p.loc["West", "wind_mw"] == 50.0
    assert p.loc["East", "pv_mw"] == 60.0 and p.loc["East", "wind_mw"] == 25.0
    assert p.loc["West", "total_gwh"] == 150 + 60 + 130
    assert per["total_mw"].sum() == pytest.approx(275.0)
    assert per["n_sites"].sum() == 5 and list(per["name"]) == ["West", "East"]
    assert p.loc["West", "min_lcoe_cny_per_kwh"] == 0.22
    w = curves[curves["name"] == "West"]
    assert list(w["site_id"]) == ["P2", "W1", "P1"]  # by LCOE 0.22, 0.28, 0.30
    assert list(w["cumulative_mw"]) == [40.0, 90.0, 190.0]
    # P1's polygon edge is 400 m from West
    assert curves.set_index("site_id").loc["P1", "connection_km"] == pytest.approx(0.4)


def _ring_cost(cx: float, cy: float, value: float):
    """Cost 1 everywhere except a 1-pixel ring of ``value`` 300 m around (cx, cy)."""
    cost = np.ones(GRID.shape, np.float32)
    r0, c0 = int((6000 - cy - 300) // 100), int((cx - 300) // 100)
    r1, c1 = r0 + 6, c0 + 6
    cost[r0, c0 : c1 + 1] = cost[r1, c0 : c1 + 1] = value
    cost[r0 : r1 + 1, c0] = cost[r0 : r1 + 1, c1] = value
    return GRID.wrap(da.from_array(cost, chunks=16), "cost", "1")


def test_least_cost_assignment_avoids_a_costly_ring():
    # West sits inside a ring whose crossing costs 100 m × 1000 = 100 km-equivalent: every site
    # rather connects to East (P1: 5.5 km, against 0.4 km in a straight line to West)
    per, curves = hosting.hosting_capacity(sites(), POINTS, cost=_ring_cost(1500, 3000, 1000.0),
                                           grid=GRID)  # fmt: skip
    c = curves.set_index("site_id")
    assert set(c["name"]) == {"East"}
    p = per.set_index("name")
    assert p.loc["East", "total_mw"] == pytest.approx(275.0) and p.loc["West", "total_mw"] == 0
    assert c.loc["P1", "connection_method"] == "least-cost path"
    assert 5.4 < c.loc["P1", "connection_km"] < 5.5 * 1.09  # 8-connected path ≤ +8.2 %
    assert c.loc["P1", "connection_cost_km"] == pytest.approx(c.loc["P1", "connection_km"])


def test_each_technology_routes_over_its_own_surface():
    """``{technology: cost}``: wind's surface rings West, PV's is flat. PV's sites keep the
    flat-surface answer (P1, P2 at West), wind's take the ring's (W1 to East), each equal to a
    single-surface assignment of that technology alone."""
    flat, ring = (
        GRID.wrap(da.ones(GRID.shape, np.float32, chunks=16), "flat", "1"),
        _ring_cost(1500, 3000, 1000.0),
    )
    a = hosting.assign_sites(sites(), POINTS, cost={"pv": flat, "wind": ring}, grid=GRID)
    got = a.set_index("site_id")
    for t, cost in (("pv", flat), ("wind", ring)):
        alone = hosting.assign_sites({t: sites()[t]}, POINTS, cost=cost, grid=GRID)
        for _, row in alone.iterrows():
            assert got.loc[row["site_id"], "point_index"] == row["point_index"]
            assert got.loc[row["site_id"], "connection_cost_km"] == row["connection_cost_km"]
    assert list(got.loc[["P1", "P2", "W1"], "point_index"]) == [0, 0, 1]
    # a technology the mapping leaves out uses its first surface
    b = hosting.assign_sites(sites(), POINTS, cost={"wind": ring}, grid=GRID)
    assert set(b["point_index"]) == {1}


def test_unreachable_site_falls_back_to_the_straight_line_with_a_warning():
    with pytest.warns(SitekitWarning, match="1 site"):
        per, curves = hosting.hosting_capacity(sites(), POINTS, cost=_ring_cost(1000, 3000, np.inf),
                                               grid=GRID)  # fmt: skip
    c = curves.set_index("site_id")
    assert c.loc["P1", "name"] == "West" and c.loc["P1", "connection_method"] == "straight line"
    assert c.loc["P2", "connection_method"] == "least-cost path"
    assert per["total_mw"].sum() == pytest.approx(275.0)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.floats(100, 7900), st.floats(100, 5900), st.floats(0.1, 500)),
                min_size=1, max_size=12))  # fmt: skip
def test_every_site_is_counted_once_at_some_point(rows):
    gdf = gpd.GeoDataFrame({"capacity_mw": [r[2] for r in rows], "energy_gwh": [1.0] * len(rows)},
                           geometry=[box(x, y, 50) for x, y, _ in rows], crs=GRID.crs)  # fmt: skip
    per, curves = hosting.hosting_capacity({"pv": gdf}, POINTS, grid=GRID)
    assert per["total_mw"].sum() == pytest.approx(sum(r[2] for r in rows))
    assert len(curves) == len(rows)
    last = curves.groupby("point_index")["cumulative_mw"].last()
    assert last.to_numpy() == pytest.approx(
        per.set_index("point_index").loc[last.index, "total_mw"]
    )


def test_write_hosting_files_and_layer(tmp_path):
    per, curves = hosting.hosting_capacity(sites(), POINTS, grid=GRID)
    layer = write_hosting(per, curves, POINTS, tmp_path)
    for name in ("hosting.csv", "supply_curves.csv", "supply_curves.png", "hosting.gpkg"):
        assert (tmp_path / name).stat().st_size > 0
    assert list(layer["total_mw"]) == [190.0, 85.0] and layer.crs == GRID.crs
    back = gpd.read_file(tmp_path / "hosting.gpkg", layer="hosting_points")
    assert back["total_mw"].sum() == pytest.approx(275.0)
    csv = pd.read_csv(tmp_path / "hosting.csv", encoding="utf-8-sig")
    assert csv["total_mw"].sum() == pytest.approx(275.0)


# -- hydro–wind–solar bases ------------------------------------------------------------------
def plants() -> gpd.GeoDataFrame:
    rows = [  # name, fuel, MW, river, x, y
        ("Big", "Hydro", 3000.0, "Jinsha", 1000.0, 1000.0),
        ("Big twin", "Hydro", 1200.0, "Jinsha", 1800.0, 1000.0),  # 0.8 km away: same base
        ("Small", "Hydro", 500.0, "Yalong", 4000.0, 4000.0),  # below min_hydro_mw
        ("Coal", "Coal", 3000.0, None, 4000.0, 1000.0),  # not hydro
        ("Far", "Hydro", 2000.0, "Dadu", 7000.0, 5000.0),
    ]
    return gpd.GeoDataFrame(
        {"name": [r[0] for r in rows], "fuel": [r[1] for r in rows],
         "capacity_mw": [r[2] for r in rows], "river": [r[3] for r in rows]},
        geometry=[shapely.Point(r[4], r[5]) for r in rows], crs=GRID.crs,
    ).to_crs(4326)  # fmt: skip


def test_hydro_bases_group_each_site_once():
    bases = hosting.hydro_bases(sites(), plants(), radius_km=3.0)
    assert list(bases["hydro_plant"]) == ["Big", "Far"]  # Small/Coal out, twin merged
    b = bases.set_index("hydro_plant")
    assert b.loc["Big", "merged_plants"] == "Big twin"
    assert b.loc["Big", "hydro_mw"] == 3000.0 and b.loc["Big", "river"] == "Jinsha"
    # Big (1000, 1000) collects P2 (1.0 km) and P1 (2.0 km); W1 at (3500, 3000) is 3.2 km away.
    # Far (7000, 5000) collects P3 (2.0 km) and W2 (1.0 km).
    assert b.loc["Big", "pv_mw"] == 140.0 and b.loc["Big", "wind_mw"] == 0.0
    assert b.loc["Far", "pv_mw"] == 60.0 and b.loc["Far", "wind_mw"] == 25.0
    assert b.loc["Big", "added_gwh"] == 210.0 and b.loc["Far", "n_sites"] == 2
    assert bases["added_mw"].sum() == 140 + 60 + 25  # each site at most once
    assert b.loc["Far", "spare_mw"] == pytest.approx(2000 * 0.5)
    assert b.loc["Far", "line_share"] == 1.0
    assert list(bases["base_id"]) == ["HB01", "HB02"]
    assert bases.crs == GRID.crs


def test_line_share_is_spare_line_over_added_capacity():
    big = sites()
    big["pv"] = big["pv"].assign(capacity_mw=[1500.0, 1000.0, 60.0])
    bases = hosting.hydro_bases(
        big, plants(), radius_km=3.0, line_share_assumption=hosting.LineShareAssumption(0.4)
    )
    b = bases.set_index("hydro_plant").loc["Big"]
    assert b["spare_mw"] == pytest.approx(3000 * 0.6)
    assert b["line_share"] == pytest.approx(1800 / 2500)


def test_a_site_between_two_bases_joins_the_nearer_only():
    two = gpd.GeoDataFrame({"name": ["A", "B"], "fuel": ["Hydro", "Hydro"],
                            "capacity_mw": [1500.0, 1500.0]},
                           geometry=[shapely.Point(2000, 3000), shapely.Point(6000, 3000)],
                           crs=GRID.crs)  # fmt: skip
    s = {"pv": gpd.GeoDataFrame({"capacity_mw": [10.0], "energy_gwh": [1.0]},
                                geometry=[box(3900, 3000)], crs=GRID.crs)}  # fmt: skip
    bases = hosting.hydro_bases(s, two, radius_km=50)
    assert bases["pv_mw"].tolist() == [10.0, 0.0] and bases["hydro_plant"].iloc[0] == "A"
    assert np.isnan(bases["line_share"].iloc[1])


def test_bad_plant_layers():
    with pytest.raises(LayerError, match="capacity_mw"):
        hosting.hydro_bases(sites(), plants().drop(columns="capacity_mw"))
    with pytest.raises(CRSError, match="metric"):
        hosting.hydro_bases({}, plants(), crs=4326)


# -- CLI -------------------------------------------------------------------------------------
def test_cli_hosting(tmp_path: Path):
    from test_routes import write_run

    g = write_run(tmp_path / "run")
    cat = tmp_path / "cat"
    cat.mkdir()
    gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 8000, 6000)], crs=g.crs).to_file(
        cat / "area.gpkg", engine="pyogrio")  # fmt: skip
    plants().to_file(cat / "plants.gpkg", layer="power_plants", engine="pyogrio")
    (cat / "catalog.yaml").write_text(
        "name: t\nstudy_area: area\nlayers:\n"
        "  - {id: area, kind: vector, path: area.gpkg, role: boundary}\n"
        "  - {id: power_plants, kind: vector, path: plants.gpkg, layer: power_plants, "
        "role: other}\n", encoding="utf-8")  # fmt: skip
    res = CliRunner().invoke(cli, ["hosting", "--run", str(tmp_path / "run"), "--catalog",
                                   str(cat / "catalog.yaml"), "--radius-km", "5"])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = tmp_path / "run" / "hosting"
    per = pd.read_csv(out / "hosting.csv", encoding="utf-8-sig")
    assert per["total_mw"].sum() == pytest.approx(120 + 60 + 30 + 50)
    bases = pd.read_csv(out / "hydro_bases.csv", encoding="utf-8-sig")
    assert list(bases["hydro_plant"]) == ["Big", "Far"]
    assert "hosting results written to" in res.output


# -- grid points with a capacity -------------------------------------------------------------
def _two_competing(far_km: float = 10.0):
    """Sites A (0.20 CNY/kWh) and B (0.25), 60 MW each, both 2 km from point P1 (catalogue
    capacity 100 MW); P2 (220 kV, no capacity given → 500 MW default) lies ``far_km`` east."""
    pts = gpd.GeoDataFrame({"name": ["P1", "P2"], "voltage_kv": [110, 220],
                            "available_mw": [100.0, np.nan]},
                           geometry=[shapely.Point(0, 0), shapely.Point(far_km * 1000, 0)],
                           crs=GRID.crs)  # fmt: skip
    s = pd.DataFrame({"technology": ["pv", "pv"], "site_id": ["B", "A"],
                      "capacity_mw": [60.0, 60.0], "energy_gwh": [90.0, 90.0],
                      "lcoe_cny_per_kwh": [0.25, 0.20], "x_m": [0.0, 0.0], "y_m": [2000.0, -2000.0],
                      "point_index": [0, 0], "connection_distance_km": [2.0, 2.0]})  # fmt: skip
    return s, pts


def test_point_capacity_from_catalogue_else_default_by_voltage_class():
    _, pts = _two_competing()
    cap, src = hosting.point_capacity_mw(pts)
    assert cap.tolist() == [100.0, 500.0]
    assert src.tolist() == ["catalogue", "default 220 kV"]
    odd = pts.assign(available_mw=[np.nan, np.nan], voltage_kv=[35, 330])
    cap, src = hosting.point_capacity_mw(odd)
    assert cap.tolist() == [50.0, 800.0] and src.tolist() == ["default 110 kV", "default 330 kV"]


def test_two_sites_compete_for_a_100_mw_point():
    s, pts = _two_competing()
    cap, src = hosting.point_capacity_mw(pts)
    a = hosting.allocate(s, pts, cap, radius_km=50).set_index("site_id")
    # A is cheaper: it takes P1 (60 of 100 MW); B (60 MW) no longer fits and goes to P2
    assert a.loc["A", "allocated_point_index"] == 0 and a.loc["A", "allocation_order"] == 1
    assert a.loc["B", "allocated_point_index"] == 1
    assert (a["connection_status"] == hosting.ALLOCATED).all()
    # B's detour factor is 2 km / 2 km = 1: straight distance to P2 = hypot(10, 2) km
    assert a.loc["B", "allocated_connection_km"] == pytest.approx(np.hypot(10.0, 2.0))
    per = hosting.allocation_per_point(a.reset_index(), pts, cap, src).set_index("name")
    assert per.loc["P1", "allocated_mw"] == 60.0 and per.loc["P1", "remaining_mw"] == 40.0
    assert per.loc["P2", "allocated_mw"] == 60.0 and per.loc["P2", "remaining_mw"] == 440.0
    assert (per["allocated_mw"] <= per["capacity_mw"]).all()


def test_full_point_and_nothing_in_reach_needs_new_transmission_with_its_cost():
    s, pts = _two_competing(far_km=80.0)
    cap, _ = hosting.point_capacity_mw(pts)
    econ = {"pv": ECON_PV}
    a = hosting.allocate(s, pts, cap, radius_km=50, economics=econ).set_index("site_id")
    assert a.loc["A", "connection_status"] == hosting.ALLOCATED
    assert a.loc["B", "connection_status"] == hosting.NEW_TRANSMISSION
    assert a.loc["B", "allocated_point_index"] == 0  # its cheapest point, which is full
    # 60 MW → 110 kV class: 2 km × 800,000 CNY/km + 8 M CNY bay = 9.6 M CNY = 160 CNY/kW
    assert a.loc["B", "connection_kv"] == 110
    assert a.loc["B", "connection_cny_per_kw"] == pytest.approx(9.6e6 / 60e3)
    assert a.loc["B", "new_transmission_cny"] == pytest.approx(9.6e6)
    assert a.loc["A", "new_transmission_cny"] == 0.0


def test_connection_voltage_and_cost_follow_the_site_mw_and_the_point_it_gets():
    s, pts = _two_competing()
    s["capacity_mw"] = [150.0, 60.0]  # B now needs the 220 kV class
    s["energy_gwh"] = [225.0, 90.0]
    cap, _ = hosting.point_capacity_mw(pts)
    a = hosting.allocate(s, pts, cap, radius_km=50, economics={"pv": ECON_PV}).set_index("site_id")
    km = np.hypot(10.0, 2.0)
    assert a.loc["B", "allocated_point_index"] == 1 and a.loc["B", "connection_kv"] == 220
    assert a.loc["B", "connection_cny_per_kw"] == pytest.approx((km * 1.5e6 + 20e6) / 150e3)
    from sitekit.science.scoring import lcoe_cny_per_kwh

    want = lcoe_cny_per_kwh(1500.0, 3600, 50, 0.06, 25, 0.005, (km * 1.5e6 + 20e6) / 150e3)
    assert a.loc["B", "total_lcoe_cny_per_kwh"] == pytest.approx(want)


def test_hosting_csv_allocated_never_exceeds_capacity():
    small = POINTS.assign(available_mw=[100.0, 70.0])
    per, curves = hosting.hosting_capacity(sites(), small, grid=GRID)
    p = per.set_index("name")
    assert (per["allocated_mw"] <= per["capacity_mw"] + 1e-9).all()
    # West (100 MW) takes P2 (40 MW, 0.22) and W1 (50, 0.28); P1 (100 MW, 0.30) fits nowhere.
    # East (70 MW) takes P3 (60 MW); W2 (25 MW) no longer fits East (10 MW left) nor West.
    assert p.loc["West", "allocated_mw"] == 90.0 and p.loc["East", "allocated_mw"] == 60.0
    c = curves.set_index("site_id")
    assert c.loc["P1", "connection_status"] == hosting.NEW_TRANSMISSION
    assert c.loc["W2", "connection_status"] == hosting.NEW_TRANSMISSION
    assert c.loc["P3", "allocated_point"] == "East"


def test_hydro_base_adds_only_up_to_its_spare_line_capacity():
    big = sites()
    big["pv"] = big["pv"].assign(capacity_mw=[1500.0, 1000.0, 60.0])
    bases = hosting.hydro_bases(
        big, plants(), radius_km=3.0, line_share_assumption=hosting.LineShareAssumption(0.4)
    )
    b = bases.set_index("hydro_plant").loc["Big"]
    # spare 1800 MW; P2 (1000 MW, 0.22) fits first, P1 (1500 MW, 0.30) no longer does
    assert b["allocated_mw"] == 1000.0 and b["not_allocated_mw"] == 1500.0
    assert (bases["allocated_mw"] <= bases["spare_mw"] + 1e-9).all()


def test_a_site_connects_only_to_a_point_of_its_voltage_class():
    # A 150 MW site needs 220 kV: the 110 kV point next to it (300 MW in the catalogue) is
    # refused, the 220 kV point 10 km east takes it
    s, pts = _two_competing()
    s = s.iloc[[0]].assign(capacity_mw=150.0, energy_gwh=225.0)
    pts = pts.assign(available_mw=[300.0, np.nan])
    cap, _ = hosting.point_capacity_mw(pts)
    a = hosting.allocate(s, pts, cap, radius_km=50, economics={"pv": ECON_PV}).iloc[0]
    assert a["allocated_point_index"] == 1 and a["connection_kv"] == 220
    assert a["connection_status"] == hosting.ALLOCATED
    # a 600 MW site (500 kV class: the recipe's largest) fits no point: a new 500 kV line goes
    # to the cheapest point able to take it, whatever its distance
    s6 = s.assign(capacity_mw=600.0, energy_gwh=900.0)
    econ = ECON_PV.model_copy(update={
        "voltage_by_capacity_mw": {110: 100, 220: 500, 500: 100000},
        "connection_cny_per_km": {110: 8e5, 220: 1.5e6, 500: 3.5e6},
        "connection_bay_cny": {110: 8e6, 220: 2e7, 500: 6e7}})  # fmt: skip
    far = pd.concat([pts, gpd.GeoDataFrame({"name": ["P3"], "voltage_kv": [500], "available_mw":
                     [100.0]}, geometry=[shapely.Point(0, 90_000)], crs=GRID.crs)],
                    ignore_index=True)  # fmt: skip
    cap, _ = hosting.point_capacity_mw(far)
    a = hosting.allocate(s6, far, cap, radius_km=50, economics={"pv": econ}).iloc[0]
    assert a["connection_status"] == hosting.NEW_TRANSMISSION and a["connection_kv"] == 500
    assert a["allocated_point_index"] == 2  # P3, 88 km away, the only 500 kV point
    assert a["allocated_connection_km"] == pytest.approx(88.0)  # detour factor 1
    assert a["new_transmission_cny"] == pytest.approx(88.0 * 3.5e6 + 6e7)
