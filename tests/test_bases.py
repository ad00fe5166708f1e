"""Base sizing (sitekit.science.bases) on synthetic typical days with hand-computed answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sitekit.science import bases
from sitekit.science.profiles import DAYS_IN_MONTH, hydro_profile

H = np.arange(24) + 0.5
#: a PV day: a half-cosine between 7:00 and 19:00, peak 1.0 MW/MW at 13:00, every month
PV = np.tile(np.clip(np.cos((H - 13.0) / 12.0 * np.pi), 0.0, None), (12, 1))
NO_WIND = np.zeros((12, 24))


def test_flat_hydro_at_half_line_takes_exactly_the_pv_that_fills_it() -> None:
    # 100 MW plant, 100 MW line, CF 0.5 spread ∝ days: flat 50 MW, utilisation 50 %
    hp = hydro_profile(100.0, 0.5, DAYS_IN_MONTH, "run_of_river", 0.0)
    r = bases.size_base(hp, 100.0, PV, NO_WIND, curtailment_limit=0.0)
    peak = PV.max()
    assert r.pv_mw == pytest.approx(50.0 / peak, rel=1e-6)
    s = r.summary()
    assert s["curtailed_gwh"] == pytest.approx(0.0, abs=1e-6)
    assert s["utilisation_before"] == pytest.approx(0.5)
    # after: hydro 438 GWh + PV (50/peak) MW × Σ days × Σ_t PV [MWh] over 876 GWh
    pv_gwh = 50.0 / peak * (PV.sum(axis=1) * DAYS_IN_MONTH).sum() / 1000.0
    assert s["utilisation_after"] == pytest.approx((438.0 + pv_gwh) / 876.0, rel=1e-6)
    assert s["added_gwh"] == pytest.approx(pv_gwh, rel=1e-6)


def test_a_curtailment_limit_admits_more_pv_and_is_met() -> None:
    hp = hydro_profile(100.0, 0.5, DAYS_IN_MONTH, "run_of_river", 0.0)
    r0 = bases.size_base(hp, 100.0, PV, NO_WIND, curtailment_limit=0.0)
    r5 = bases.size_base(hp, 100.0, PV, NO_WIND, curtailment_limit=0.05)
    assert r5.pv_mw > r0.pv_mw
    assert r5.summary()["curtailment"] == pytest.approx(0.05, abs=1e-6)


def test_seasonal_plant_takes_more_pv_in_the_dry_season_than_run_of_river() -> None:
    # same monthly energy; the seasonal plant moves its day's water out of the PV hours, the
    # run-of-river plant cannot (flat within the day)
    shares = [6.5, 5.8, 6.3, 6.5, 7.5, 9.0, 11.0, 11.0, 10.5, 9.5, 8.4, 8.0]
    ror = hydro_profile(100.0, 0.5, shares, "run_of_river", 0.0)
    seas = hydro_profile(100.0, 0.5, shares, "seasonal", 0.1)
    a = bases.dispatch(ror, 100.0, PV, NO_WIND, pv_mw=100.0, wind_mw=0.0)
    b = bases.dispatch(seas, 100.0, PV, NO_WIND, pv_mw=100.0, wind_mw=0.0)
    dry = [m - 1 for m in bases.DRY_MONTHS]
    pv_in = lambda d: d.monthly_gwh(d.pv - d.curtailed)[dry].sum()  # noqa: E731
    assert pv_in(b) > pv_in(a)
    # January by hand: run-of-river flat at 100 × 0.5 × 8760 × 6.5/100 / 31 / 24 = 38.3 MW,
    # so PV above 61.7 MW is curtailed (peak 100 MW × PV.max()); the seasonal plant drops to its
    # 10 MW minimum at noon
    jan_ror = 100.0 * 0.5 * 8760 * 6.5 / 100.0 / 31 / 24
    peak = 100.0 * PV.max()
    assert a.curtailed[0].max() == pytest.approx(peak - (100.0 - jan_ror), abs=1e-6)
    assert b.curtailed[0].max() == pytest.approx(peak + 10.0 - 100.0, abs=1e-6)
    # and sized with the same limit, the seasonal plant's line carries more PV
    sa = bases.size_base(ror, 100.0, PV, NO_WIND, curtailment_limit=0.05)
    sb = bases.size_base(seas, 100.0, PV, NO_WIND, curtailment_limit=0.05)
    assert sb.pv_mw > sa.pv_mw


def test_curtailment_rises_monotonically_with_pv_mw() -> None:
    shares = [4.0, 3.3, 3.5, 4.3, 6.5, 11.0, 16.0, 15.5, 14.0, 10.0, 6.5, 5.4]
    hp = hydro_profile(100.0, 0.5, shares, "daily", 0.5)
    cur = [bases.dispatch(hp, 100.0, PV, NO_WIND, pv_mw=mw, wind_mw=0.0).summary()["curtailed_gwh"]
           for mw in (0.0, 20.0, 40.0, 60.0, 80.0, 100.0, 150.0)]  # fmt: skip
    assert cur[0] == pytest.approx(0.0, abs=1e-9)
    assert np.all(np.diff(cur) >= -1e-9)
    assert cur[-1] > cur[-2] > 0.0


def test_hydro_keeps_its_daily_energy_and_bounds_when_redispatched() -> None:
    shares = [6.5, 5.8, 6.3, 6.5, 7.5, 9.0, 11.0, 11.0, 10.5, 9.5, 8.4, 8.0]
    hp = hydro_profile(100.0, 0.5, shares, "seasonal", 0.1)
    d = bases.dispatch(hp, 100.0, PV, NO_WIND, pv_mw=80.0, wind_mw=0.0)
    assert np.allclose(d.hydro.sum(axis=1), hp.energy_mwh_per_day, rtol=1e-7)
    assert d.hydro.min() >= 10.0 - 1e-7 and d.hydro.max() <= 100.0 + 1e-7
    assert d.flow.max() <= 100.0 + 1e-6


def test_wind_fills_the_night_that_pv_cannot() -> None:
    # flat wind 1 MW/MW at night only: with the hydro at noon-free dispatch both fit
    night = np.tile(np.where((H < 7) | (H > 19), 1.0, 0.0), (12, 1))
    hp = hydro_profile(100.0, 0.5, DAYS_IN_MONTH, "run_of_river", 0.0)
    r = bases.size_base(hp, 100.0, PV, night, curtailment_limit=0.0)
    assert r.wind_mw == pytest.approx(50.0, rel=1e-6)
    assert r.pv_mw == pytest.approx(50.0 / PV.max(), rel=1e-6)  # PV peak 0.991 at 12:30
    c = bases.correlations(hp.flat(), PV, night)
    assert c["corr_pv_wind_hourly"] < 0  # complementary within the day


def test_catchment_limits_bound_the_sizing() -> None:
    hp = hydro_profile(100.0, 0.5, DAYS_IN_MONTH, "run_of_river", 0.0)
    r = bases.size_base(hp, 100.0, PV, NO_WIND, curtailment_limit=0.05, pv_max_mw=30.0)
    assert r.pv_mw == pytest.approx(30.0)


def test_seasonal_correlation_sign() -> None:
    wet = np.tile(np.array([1, 1, 1, 1, 2, 3, 4, 4, 3, 2, 1, 1], float)[:, None], (1, 24))
    dry = 5.0 - wet
    c = bases.correlations(wet, dry, wet)
    assert c["corr_hydro_pv_monthly"] < -0.9 and c["corr_hydro_wind_monthly"] > 0.9


def test_pick_sites_cheapest_first_whole() -> None:
    s = pd.DataFrame({"site_id": ["a", "b", "c", "d"], "capacity_mw": [40.0, 30.0, 50.0, 10.0],
                      "lcoe_cny_per_kwh": [0.30, 0.20, 0.25, 0.40]})  # fmt: skip
    # order b (30), c (50) → 80; a (40) does not fit in 95; d (10) does → 90
    assert list(bases.pick_sites(s, 95.0)) == [False, True, True, True]
    assert not bases.pick_sites(s, 0.0).any()


def _gem(rows):
    import geopandas as gpd
    from shapely.geometry import Point

    cols = {"Project Name": [], "Project Name (local lang/script)": [], "Capacity (MW)": [],
            "Status": [], "Technology Type": [], "River / Watercourse": []}  # fmt: skip
    pts = []
    for name, zh, mw, status, tech, x, y in rows:
        for c, v in zip(cols, (name, zh, mw, status, tech, "R"), strict=True):
            cols[c].append(v)
        pts.append(Point(x, y))
    return gpd.GeoDataFrame(cols, geometry=pts, crs=3857)


def test_build_bases_anchors_catchments_and_bundling(tmp_path) -> None:
    import geopandas as gpd
    from shapely.geometry import box

    from sitekit.outputs.bases import write_bases
    from sitekit.specs.bases import load_bases_spec

    spec = load_bases_spec(
        __import__("pathlib").Path(__file__).parents[1] / "pipelines" / "bases.yaml"
    )
    plants = _gem([
        ("Big", "大站", 2000, "operating", "conventional storage", 0, 0),
        ("Big twin", "大站", 1900, "operating", "conventional storage", 5000, 0),  # same name
        ("Near", "近站", 1500, "operating", "conventional storage", 1000, 0),  # within 2 km
        ("Pumped", "抽蓄", 3000, "operating", "pumped storage", 200000, 0),
        ("Planned", "规划", 3000, "pre-construction", "conventional storage", 300000, 0),
        ("Small", "小站", 500, "operating", "run-of-river", 400000, 0),
    ])  # fmt: skip
    assert list(bases.anchor_plants(plants, spec, crs=3857)["hydro_plant"]) == ["Big"]
    wind = gpd.GeoDataFrame(
        {"site_id": ["w1", "w2", "w3"], "capacity_mw": [600.0, 900.0, 100.0],
         "energy_gwh": [600 * 8.76 * 0.3, 900 * 8.76 * 0.3, 100 * 8.76 * 0.3],
         "lcoe_cny_per_kwh": [0.2, 0.3, 0.25]},
        geometry=[box(10000, 0, 11000, 1000), box(20000, 0, 21000, 1000),
                  box(90000, 0, 91000, 1000)], crs=3857)  # w3 is 90 km away: no base  # fmt: skip
    out, sites, runs = bases.build_bases(plants, {"wind": wind}, spec, crs=3857)
    assert len(out) == 1 and out["line_mw"].iloc[0] == 2000.0
    assert set(sites["site_id"]) == {"w1", "w2"}  # catchment 50 km
    r = out.iloc[0]
    assert r["wind_mw"] <= r["wind_mw_lp"] + 1e-6  # whole sites, up to the LP's MW
    assert r["curtailment"] <= spec.curtailment_limit + 1e-6
    assert r["utilisation_after"] >= r["utilisation_before"]
    assert r["regulation"] == "daily" and r["hydro_shares_status"] == "unverified"
    files = write_bases(out, sites, runs, tmp_path, limit=0.05, make_map=False)
    got = pd.read_csv(files["csv"])
    assert got["base_id"].tolist() == ["HWS01"]
    month = pd.read_csv(files["monthly_csv"])
    assert month["hydro_gwh"].sum() == pytest.approx(r["hydro_gwh"], rel=1e-4)
    assert (tmp_path / "bases" / "HWS01.png").stat().st_size > 0
    assert "水风光" in files["md"].read_text(encoding="utf-8")


def test_firm_share_is_the_flattest_dispatch() -> None:
    # no PV/wind: a seasonal plant could put its day anywhere; the secondary objective keeps the
    # line flow flat, so the whole day is firm (share 1)
    shares = [6.5, 5.8, 6.3, 6.5, 7.5, 9.0, 11.0, 11.0, 10.5, 9.5, 8.4, 8.0]
    hp = hydro_profile(100.0, 0.5, shares, "seasonal", 0.1)
    d = bases.dispatch(hp, 100.0, PV, NO_WIND, pv_mw=0.0, wind_mw=0.0)
    assert d.summary()["firm_share"] == pytest.approx(1.0)
    # with 40 MW of PV the hydro makes room at noon and fills the night: daily minimum =
    # (day's hydro + PV energy) / 24 as long as the hydro can flatten it (January: 38.3 MW mean
    # hydro, PV ≤ 39.7 MW ≤ 100 − 10 MW minimum at noon)
    d = bases.dispatch(hp, 100.0, PV, NO_WIND, pv_mw=40.0, wind_mw=0.0)
    jan = (hp.energy_mwh_per_day[0] + 40.0 * PV[0].sum()) / 24.0
    assert d.flow[0].min() == pytest.approx(jan, rel=1e-6)
    assert d.summary()["curtailed_gwh"] == pytest.approx(0.0, abs=1e-6)


def test_bundle_drops_the_dearest_site_until_the_limit_holds() -> None:
    hp = hydro_profile(100.0, 0.5, DAYS_IN_MONTH, "run_of_river", 0.0)  # flat 50 MW
    sites = pd.DataFrame({"site_id": ["a", "b"], "capacity_mw": [40.0, 40.0],
                          "lcoe_cny_per_kwh": [0.2, 0.3]})  # fmt: skip
    prof = np.stack([PV, PV])
    take = np.array([True, True])
    none = pd.DataFrame({"site_id": [], "capacity_mw": [], "lcoe_cny_per_kwh": []})
    d = bases._bundle(hp, 100.0, sites, prof, take, none, np.zeros((0, 12, 24)),
                      np.zeros(0, bool), 0.0)  # fmt: skip
    assert list(take) == [True, False] and d.pv_mw == 40.0
    assert d.summary()["curtailment"] == pytest.approx(0.0, abs=1e-9)


def test_reservoir_table_regulation_comes_before_the_spec(tmp_path) -> None:
    from pathlib import Path

    from sitekit.engine.bases import with_reservoir_regulation
    from sitekit.io.catalog import Catalog
    from sitekit.science.profiles import regulation_class
    from sitekit.specs.bases import load_bases_spec

    (tmp_path / "res.csv").write_text(
        "name,name_zh,lon,lat,regulation,regulation_source\n"
        "Guandi,官地,101.9,27.8,seasonal,test source\n"
        "X,某站,101.0,27.0,weekly,ignored: not a class\n",
        encoding="utf-8",
    )
    import geopandas as gpd
    import shapely

    gpd.GeoDataFrame(geometry=[shapely.box(101, 27, 102, 28)], crs=4326).to_file(
        tmp_path / "area.gpkg", engine="pyogrio")  # fmt: skip
    (tmp_path / "cat.yaml").write_text(
        "name: t\nstudy_area: area\nlayers:\n"
        "  - {id: area, kind: vector, path: area.gpkg, role: boundary}\n"
        "  - id: reservoirs\n    kind: points-csv\n    path: res.csv\n"
        "    x: lon\n    y: lat\n    crs: EPSG:4326\n    role: other\n",
        encoding="utf-8",
    )
    spec = load_bases_spec(Path(__file__).parents[1] / "pipelines" / "bases.yaml")
    assert regulation_class("conventional storage", "官地水电站", spec)[0] == "daily"
    got = with_reservoir_regulation(spec, Catalog(tmp_path / "cat.yaml"))
    cls, src = regulation_class("conventional storage", "雅砻江官地水电站", got)
    assert cls == "seasonal" and src == "reservoirs table: test source"
    assert len(got.plant_regulation) == len(spec.plant_regulation) + 1


def test_cli_hosting_bundles_sites_into_bases_and_out_of_the_points(tmp_path) -> None:
    # one GEM-format plant on top of site P1 (1000, 1000): 1,000 MW, conventional storage
    res, run = _hosting_cli(tmp_path, supply=None, pages=False)
    out = run / "hosting"
    b = pd.read_csv(out / "bases.csv", encoding="utf-8-sig")
    # within 2 km only P1 (120 MW, at the dam): the 1,000 MW line takes it whole, uncurtailed
    assert b["site_ids"].tolist() == ["P1"] and b["pv_mw"].tolist() == [120.0]
    assert b["curtailment"].iloc[0] == pytest.approx(0.0, abs=1e-9)
    # P1 is on the base's line, not at a grid point: the points gather the other 140 MW
    per = pd.read_csv(out / "hosting.csv", encoding="utf-8-sig")
    assert per["total_mw"].sum() == pytest.approx(60 + 30 + 50)
    assert "1 hydro–wind–solar bases sized" in res.output
    for name in ("bases.gpkg", "bases.md", "bases_map.html", "bases/HWS01.png"):
        assert (out / name).stat().st_size > 0
    prof = pd.read_csv(out / "bases_site_profiles.csv", encoding="utf-8-sig")
    assert set(prof["site_id"]) == {"P1"} and len(prof) == 12  # the catchment site, 12 days
    hyd = pd.read_csv(out / "hydro_profiles.csv", encoding="utf-8-sig")
    assert hyd["hydro_plant"].tolist() == ["Test dam"]


def test_a_plant_of_its_own_in_hydro_shares_wins_over_its_class() -> None:
    from pathlib import Path

    from sitekit.specs.bases import HydroShares, load_bases_spec

    spec = load_bases_spec(Path(__file__).parents[1] / "pipelines" / "bases.yaml")
    own = HydroShares(monthly_shares=list(DAYS_IN_MONTH), status="cited", source="test")
    spec = spec.model_copy(update={"hydro_shares": {**spec.hydro_shares, "大站": own}})
    plants = _gem([("Big", "大站", 2000, "operating", "conventional storage", 0, 0)])
    out, _, runs = bases.build_bases(plants, {}, spec, crs=3857)
    assert out["hydro_shares_status"].tolist() == ["cited"]
    # shares ∝ days: the same energy every day = 2000 MW × 0.5 × 24 h
    assert np.allclose(runs["HWS01"].hydro.sum(axis=1), 2000 * 0.5 * 24)


def test_hydro_table_every_conventional_plant_with_its_monthly_energy() -> None:
    from pathlib import Path

    from sitekit.specs.bases import load_bases_spec

    spec = load_bases_spec(Path(__file__).parents[1] / "pipelines" / "bases.yaml")
    plants = _gem([
        ("Dam", "坝", 100, "pre-construction", "conventional storage", 0, 0),
        ("River", "径流", 50, "operating", "run-of-river", 1, 0),
        ("Pumped", "抽蓄", 3000, "operating", "pumped storage", 2, 0),
    ])  # fmt: skip
    t = bases.hydro_table(plants, spec).set_index("hydro_plant")
    assert list(t.index) == ["Dam", "River"]  # any status; pumped storage is not generation
    months = [f"gwh_m{m:02d}" for m in range(1, 13)]
    assert t.loc["Dam", months].sum() == pytest.approx(100 * 0.5 * 8.76)
    assert t.loc["River", "regulation"] == "run_of_river"
    # run-of-river default shares: July 16 % of 50 MW × 0.5 × 8,760 h
    assert t.loc["River", "gwh_m07"] == pytest.approx(50 * 0.5 * 8.76 * 0.16)


def _hosting_cli(tmp_path, *, supply: pd.DataFrame | None, pages: bool, extra=()):
    """The fake run of test_routes.write_run with one GEM plant on site P1 (1000, 1000),
    bases within 2 km, optionally a supply_curve.csv and stub report/map pages; runs
    ``sitekit hosting`` and returns (click result, run folder)."""
    from pathlib import Path

    import geopandas as gpd
    import shapely
    from click.testing import CliRunner
    from test_routes import write_run

    import sitekit.cli.route  # noqa: F401  (registers the verbs)
    from sitekit.cli import cli

    run = tmp_path / "run"
    g = write_run(run)
    cat = tmp_path / "cat"
    cat.mkdir()
    gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 8000, 6000)], crs=g.crs).to_file(
        cat / "area.gpkg", engine="pyogrio")  # fmt: skip
    lonlat = gpd.GeoSeries([shapely.Point(1000, 1000)], crs=g.crs).to_crs(4326).iloc[0]
    (cat / "gem.csv").write_text(
        "Project Name,Project Name (local lang/script),Capacity (MW),Status,Technology Type,"
        "River / Watercourse,Latitude,Longitude\n"
        f"Test dam,测试水电站,1000,operating,conventional storage,R,{lonlat.y},{lonlat.x}\n",
        encoding="utf-8",
    )
    (cat / "catalog.yaml").write_text(
        "name: t\nstudy_area: area\nlayers:\n"
        "  - {id: area, kind: vector, path: area.gpkg, role: boundary}\n"
        "  - {id: hydro_plants_gem, kind: points-csv, path: gem.csv, x: Longitude, y: Latitude, "
        "crs: 'EPSG:4326', role: other}\n", encoding="utf-8")  # fmt: skip
    spec = Path(__file__).parents[1] / "pipelines" / "bases.yaml"
    (cat / "bases.yaml").write_text(
        spec.read_text(encoding="utf-8").replace("radius_km: 50 ", "radius_km: 2 "),
        encoding="utf-8",
    )
    if supply is not None:
        supply.to_csv(run / "supply_curve.csv", index=False, encoding="utf-8-sig")
    if pages:
        (run / "report.html").write_text(
            '<html><body><h1>Run</h1><h2 id="summary">S</h2><h2 id="recipes">R</h2></body>'
            "</html>\n", encoding="utf-8")  # fmt: skip
        (run / "map.html").write_text(
            "<html><body></body><script>let layer_control_ab12 = L.control.layers({}, {});"
            "window.sitekit = {map: null, layers: {}, ready: true};</script>\n</html>\n",
            encoding="utf-8",
        )
    res = CliRunner().invoke(cli, ["hosting", "--run", str(run), "--catalog",
                                   str(cat / "catalog.yaml"), "--bases", str(cat / "bases.yaml"),
                                   *extra])  # fmt: skip
    assert res.exit_code == 0, res.output
    return res, run


def _supply_rows() -> pd.DataFrame:
    # P1 (top-N, at the dam) and C7, a candidate outside the top-N lists 1.2 km from the dam;
    # C8 is 5 km away (outside the 2 km catchment)
    return pd.DataFrame({
        "technology": ["pv", "pv", "pv"], "order": [1, 2, 3], "site_id": ["P1", "C7", "C8"],
        "capacity_mw": [120.0, 80.0, 70.0], "energy_gwh": [180.0, 120.0, 105.0],
        "capacity_factor": [0.17, 0.17, 0.17], "total_lcoe_cny_per_kwh": [0.25, 0.26, 0.2],
        "connection_point": ["West", "West", "East"], "in_top_n": [True, False, False],
        "x_m": [1000.0, 2200.0, 6000.0], "y_m": [1000.0, 1000.0, 1000.0],
    })  # fmt: skip


def test_bases_bundle_candidates_outside_the_top_n_lists(tmp_path) -> None:
    _, run = _hosting_cli(tmp_path, supply=_supply_rows(), pages=False)
    out = run / "hosting"
    b = pd.read_csv(out / "bases.csv", encoding="utf-8-sig")
    # both candidates of the catchment fit the 1,000 MW line whole: P1 and C7, never C8
    assert sorted(b["site_ids"].iloc[0].split()) == ["C7", "P1"]
    assert b["pv_mw"].tolist() == [200.0] and b["pv_candidates_mw"].tolist() == [200.0]
    s = pd.read_csv(out / "bases_sites.csv", encoding="utf-8-sig").set_index("site_id")
    assert set(s.index) == {"P1", "C7"}
    assert not s.loc["C7", "in_top_n"] and s.loc["C7", "connection_point_without_base"] == "West"
    # counted once: P1 leaves the points (a top-N site); C7 was never in the hosting lists
    per = pd.read_csv(out / "hosting.csv", encoding="utf-8-sig")
    assert per["total_mw"].sum() == pytest.approx(60 + 30 + 50)
    import pyogrio

    pts = pyogrio.read_dataframe(out / "bases.gpkg", layer="bases_sites")
    assert sorted(pts["site_id"]) == ["C7", "P1"] and set(pts.geom_type) == {"Point"}


def test_without_site_centres_the_bases_fall_back_to_the_top_n_sites(tmp_path) -> None:
    old = _supply_rows().drop(columns=["x_m", "y_m"])  # a run written before the centres
    _, run = _hosting_cli(tmp_path, supply=old, pages=False)
    b = pd.read_csv(run / "hosting" / "bases.csv", encoding="utf-8-sig")
    assert b["site_ids"].tolist() == ["P1"]


def test_hosting_adds_the_bases_to_the_run_report_and_map_once(tmp_path) -> None:
    import json
    import re

    from sitekit.outputs.bases import BEGIN

    _hosting_cli(tmp_path, supply=_supply_rows(), pages=True)
    res, run = _hosting_cli(tmp_path / "again", supply=_supply_rows(), pages=True)
    # a second hosting step on the same run replaces the first one's additions
    from click.testing import CliRunner

    from sitekit.cli import cli

    args = ["hosting", "--run", str(run), "--catalog", str(tmp_path / "again" / "cat" /
            "catalog.yaml"), "--bases", str(tmp_path / "again" / "cat" / "bases.yaml"),
            "--force"]  # fmt: skip
    assert CliRunner().invoke(cli, args).exit_code == 0
    rep = (run / "report.html").read_text(encoding="utf-8")
    assert rep.count(BEGIN) == 1 and rep.count('id="bases"') == 1
    assert rep.index('id="summary"') < rep.index('id="bases"') < rep.index('id="recipes"')
    assert "水风光一体化基地" in rep and "测试水电站 Test dam" in rep
    assert "data:image/png;base64," in rep and "http" not in rep.split(BEGIN)[1]
    page = (run / "map.html").read_text(encoding="utf-8")
    assert page.count(BEGIN) == 1 and page.rstrip().endswith("</html>")
    assert page.index("window.sitekit = ") < page.index(BEGIN)  # after the map's own script
    assert "layer_control_ab12.addOverlay(" in page
    assert 'sk.layers["hydro_wind_solar_bases"]' in page and 'sk.layers["bases_sites"]' in page
    for m in re.finditer(r"var p = feature.properties, K = (\[.*?\]), T", page):
        labels = json.loads(m.group(1))
        assert all(re.search(r"[\u4e00-\u9fff]", k) for k in labels), labels
    assert '"P1"' in page and '"C7"' in page


def test_hosting_elsewhere_leaves_the_run_pages_alone(tmp_path) -> None:
    _, run = _hosting_cli(tmp_path, supply=_supply_rows(), pages=True,
                          extra=("--out", str(tmp_path / "elsewhere")))  # fmt: skip
    assert "sitekit:bases" not in (run / "report.html").read_text(encoding="utf-8")
    assert "sitekit:bases" not in (run / "map.html").read_text(encoding="utf-8")
    assert (tmp_path / "elsewhere" / "bases.csv").is_file()


def test_supply_curve_keeps_the_site_centres_the_bases_read() -> None:
    from sitekit.science import supply

    sites = pd.DataFrame({"technology": ["pv", "pv"], "site_id": ["S1", "S2"],
                          "capacity_mw": [10.0, 20.0], "energy_gwh": [15.0, 30.0],
                          "total_lcoe_cny_per_kwh": [0.3, 0.2], "allocated_point_index": [0, -1],
                          "allocated_connection_km": [1.0, np.nan],
                          "x_m": [1000.0, 2000.4], "y_m": [5.0, 6.0]})  # fmt: skip
    sc = supply.supply_curve(sites, ["P0"]).set_index("site_id")
    assert sc.loc["S1", "x_m"] == 1000.0 and sc.loc["S2", "y_m"] == 6.0


def test_an_announced_base_is_set_beside_its_modelled_one_only() -> None:
    from pathlib import Path

    from sitekit.outputs.bases import bases_markdown
    from sitekit.specs.bases import PublishedBase, load_bases_spec

    spec = load_bases_spec(Path(__file__).parents[1] / "pipelines" / "bases.yaml")
    assert any(p.name_zh == "两河口" for p in spec.published)  # Kela PV, cited
    spec = spec.model_copy(update={"published": [PublishedBase(
        name_zh="大站", pv_mw=400.0, energy_gwh=800.0, what="test phase 1", source="test")]})  # fmt: skip
    plants = _gem([("Big", "某江大站", 2000, "operating", "conventional storage", 0, 0),
                   ("Other", "他站", 2000, "operating", "conventional storage", 300000, 0)])  # fmt: skip
    out, _, _ = bases.build_bases(plants, {}, spec, crs=3857)
    r = out.set_index("hydro_plant")
    assert r.loc["Big", "published_pv_mw"] == 400.0 and np.isnan(r.loc["Other", "published_pv_mw"])
    md = bases_markdown(out, 0.05)
    assert "Beside announced bases" in md and "test phase 1" in md
    assert md.count("announced 400 MW PV") == 1 and "model / announced MW = 0.00" in md


def test_the_run_tables_count_a_bundled_site_at_its_base_only(tmp_path) -> None:
    """Two sites allocated to point A (30 + 30 MW of its 100 MW), one needing new transmission;
    a base takes the first: A keeps 30 MW allocated and 70 MW free, the supply curve names the
    base, and running it again gives the same tables."""
    import pandas as pd

    from sitekit.outputs.bases import mark_bundled_in_run
    from sitekit.outputs.export import write_table

    run = tmp_path / "run"
    run.mkdir()
    write_table(run / "supply_curve.csv", pd.DataFrame({
        "technology": ["pv", "pv", "pv"], "site_id": ["S1", "S2", "S3"],
        "capacity_mw": [30.0, 30.0, 50.0], "connection_point": ["A", "A", ""],
        "connection_status": ["allocated", "allocated", "needs new transmission"],
    }))  # fmt: skip
    write_table(run / "grid_allocation.csv", pd.DataFrame({
        "name": ["A", "B"], "capacity_mw": [100.0, 50.0], "allocated_mw": [60.0, 0.0],
    }))  # fmt: skip
    bundled = pd.DataFrame({"base_id": ["HWS01", "HWS01"], "technology": ["pv", "pv"],
                            "site_id": ["S1", "S3"]})  # fmt: skip
    for _ in range(2):
        mark_bundled_in_run(run, run / "hosting", bundled)
        sc = pd.read_csv(run / "supply_curve.csv", encoding="utf-8-sig", keep_default_na=False)
        ga = pd.read_csv(run / "grid_allocation.csv", encoding="utf-8-sig").set_index("name")
        assert list(sc["bundled_base"]) == ["HWS01", "", "HWS01"]
        assert ga.loc["A", "bundled_into_bases_mw"] == 30.0
        assert ga.loc["A", "allocated_after_bases_mw"] == 30.0
        assert ga.loc["A", "remaining_after_bases_mw"] == 70.0
        assert ga.loc["B", "remaining_after_bases_mw"] == 50.0
    assert mark_bundled_in_run(run, tmp_path / "elsewhere", bundled) == []  # --out outside
