"""Technical potential over all eligible land, and PV/wind land competition, by hand."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from sitekit.science import competition, potential

PA = 0.01  # km² per pixel (100 m)


def _county_grid():
    """10×10 px: prefecture A = columns 0–5 (county a1: rows 0–4, a2: rows 5–9), prefecture B =
    columns 6–9 (county b1). Reason bit 0 on rows 0–1 (20 px), bit 1 on columns 0–1 (20 px):
    they overlap on 4 px, so together they remove 36 px. One more pixel (row 9, col 9) is half
    excluded by a fraction-rule layer whose bit is not set (inclusion 0.5)."""
    n = 10
    pref = np.zeros((n, n), np.int32)
    pref[:, :6] = 1
    pref[:, 6:] = 2
    county = np.zeros((n, n), np.int32)
    county[:5, :6] = 1
    county[5:, :6] = 2
    county[:, 6:] = 3
    reasons = np.zeros((n, n), np.uint32)
    reasons[:2, :] |= 1
    reasons[:, :2] |= 2
    incl = np.where(reasons == 0, 1.0, 0.0).astype(np.float32)
    incl[9, 9] = 0.5
    study = np.ones((n, n), np.float32)
    energy = np.full((n, n), 1752.0, np.float32)  # CF 0.2
    return pref, county, study, reasons, incl, energy


def _sums(pref, county, study, reasons, incl, energy, *, after=None, cap=None, shared=None):
    after = incl if after is None else after
    return potential.zone_totals(
        prefecture_id=pref,
        county_id=county,
        study_fraction=study,
        reasons=reasons,
        inclusion=incl,
        inclusion_after=after,
        capacity_after_mw_per_km2=after * 40.0 if cap is None else cap,
        shared=np.zeros(pref.shape, bool) if shared is None else shared,
        energy_kwh_per_kw=energy,
        density_mw_per_km2=40.0,
        n_prefectures=2,
        n_counties=3,
        n_bits=2,
    )


def _table(sums):
    return potential.potential_table(
        {"pv": sums},
        pixel_area_km2=PA,
        prefecture_names=["A", "B"],
        county_names=["a1", "a2", "b1"],
        reason_codes={"pv": ["nobuild", "steep"]},
    )


def test_county_grid_known_excluded_areas_and_overlap_counted_once() -> None:
    df = _table(_sums(*_county_grid()))
    tot = df[df["level"] == "study_area"].iloc[0]
    assert tot["study_km2"] == pytest.approx(100 * PA)
    assert tot["excluded_nobuild_km2"] == pytest.approx(20 * PA)
    assert tot["excluded_steep_km2"] == pytest.approx(20 * PA)
    assert tot["excluded_km2"] == pytest.approx((36 + 0.5) * PA)  # overlap of 4 px once
    assert tot["eligible_km2"] == pytest.approx((64 - 0.5) * PA)
    assert tot["technical_potential_mw"] == pytest.approx(63.5 * PA * 40)
    assert tot["technical_potential_gwh"] == pytest.approx(63.5 * PA * 40 * 1752 / 1000)
    assert tot["mean_cf"] == pytest.approx(0.2)
    a1 = df[(df["level"] == "county") & (df["county"] == "a1")].iloc[0]
    # a1 = rows 0–4 × cols 0–5: bit 0 on 12 px, bit 1 on 10 px, both on 4 → 18 px removed
    assert a1["excluded_nobuild_km2"] == pytest.approx(12 * PA)
    assert a1["excluded_steep_km2"] == pytest.approx(10 * PA)
    assert a1["excluded_km2"] == pytest.approx(18 * PA)
    assert a1["eligible_km2"] == pytest.approx(12 * PA)
    b1 = df[(df["level"] == "county") & (df["county"] == "b1")].iloc[0]
    assert b1["eligible_km2"] == pytest.approx((32 - 0.5) * PA)


def test_counties_add_up_to_prefectures_and_the_study_area() -> None:
    df = _table(_sums(*_county_grid()))
    num = ["study_km2", "excluded_km2", "eligible_km2", "technical_potential_mw",
           "technical_potential_gwh", "excluded_nobuild_km2"]  # fmt: skip
    pref = df[df["level"] == "prefecture"].set_index("prefecture")[num]
    cnty = df[df["level"] == "county"].groupby("prefecture")[num].sum()
    np.testing.assert_allclose(cnty.loc[pref.index].to_numpy(), pref.to_numpy(), rtol=1e-3)
    tot = df[df["level"] == "study_area"][num].iloc[0]
    np.testing.assert_allclose(pref.sum().to_numpy(), tot.to_numpy(), rtol=1e-3)
    assert potential.NO_PREFECTURE not in set(df["prefecture"])  # every pixel is zoned here
    zp, zc, study, reasons, incl, energy = _county_grid()
    zp[0, 0] = zc[0, 0] = 0  # one pixel whose centre lies in no prefecture (and no county)
    df = _table(_sums(zp, zc, study, reasons, incl, energy))
    row = df[(df["level"] == "prefecture") & (df["prefecture"] == potential.NO_PREFECTURE)]
    assert row["study_km2"].tolist() == pytest.approx([PA])
    assert df.query("level == 'prefecture'")["study_km2"].sum() == pytest.approx(100 * PA)


def test_dask_blocks_give_the_numpy_answer() -> None:
    layers = _county_grid()
    ref = _sums(*layers)
    lazy = [da.from_array(a, chunks=3) for a in layers]  # 3×3 blocks cut every zone
    np.testing.assert_allclose(_sums(*lazy), ref)


def _overlap():
    """PV eligible on columns 0–5, wind on columns 4–9: both on columns 4–5 (20 px).
    PV LCOE 0.30, wind 0.25 on column 4 and 0.35 on column 5."""
    n = 10
    ip = np.zeros((n, n), np.float32)
    ip[:, :6] = 1
    iw = np.zeros((n, n), np.float32)
    iw[:, 4:] = 1
    lp = np.full((n, n), 0.30, np.float32)
    lw = np.full((n, n), 0.30, np.float32)
    lw[:, 4] = 0.25
    lw[:, 5] = 0.35
    return ip, iw, lp, lw


@pytest.mark.parametrize(
    ("rule", "pv_px", "wind_px", "shared_px"),
    [("lower_lcoe", 50, 50, 0), ("pv_first", 60, 40, 0), ("wind_first", 40, 60, 0),
     ("shared", 60, 60, 20)],
)  # fmt: skip
def test_each_rule_resolves_the_overlap(rule, pv_px, wind_px, shared_px) -> None:
    ip, iw, lp, lw = _overlap()
    pa, wa, sh = competition.resolve(ip, iw, lp, lw, rule)
    assert float(np.sum(pa)) == pv_px and float(np.sum(wa)) == wind_px
    assert int(np.sum(sh)) == shared_px
    overlap = int(np.sum((pa > 0) & (wa > 0)))
    assert overlap == shared_px  # one technology per pixel unless shared
    if rule == "lower_lcoe":  # wind is cheaper on column 4, PV on column 5
        assert (wa[:, 4] == 1).all() and (pa[:, 4] == 0).all()
        assert (pa[:, 5] == 1).all() and (wa[:, 5] == 0).all()
    lazy = competition.resolve(*(da.from_array(a, chunks=4) for a in (ip, iw, lp, lw)), rule)
    for x, y in zip(lazy, (pa, wa, sh), strict=True):
        np.testing.assert_array_equal(x.compute(), y)


def test_lower_lcoe_ties_go_to_pv_and_nan_loses() -> None:
    ip, iw, lp, lw = _overlap()
    lw[:, 4] = 0.30  # tie
    lp[:, 5] = np.nan  # no PV cost: wind wins
    pa, wa, _ = competition.resolve(ip, iw, lp, lw, "lower_lcoe")
    assert (pa[:, 4] == 1).all() and (wa[:, 4] == 0).all()
    assert (wa[:, 5] == 1).all() and (pa[:, 5] == 0).all()
    with pytest.raises(ValueError, match="unknown competition rule"):
        competition.resolve(ip, iw, lp, lw, "cheapest")


def test_shared_density_and_potential_after_competition() -> None:
    ip, iw, lp, lw = _overlap()
    _, _, sh = competition.resolve(ip, iw, lp, lw, "shared")
    cap = competition.density(ip, sh, 40.0, 30.0)
    assert float(cap.sum()) == pytest.approx(40 * 40 + 20 * 30)
    pref, county, study, reasons, _, energy = _county_grid()
    reasons[:] = 0
    s = _sums(pref, county, study, reasons, ip, energy, after=ip, cap=cap, shared=sh)
    row = _table(s).query("level == 'study_area'").iloc[0]
    assert row["technical_potential_mw"] == pytest.approx(60 * PA * 40)
    assert row["technical_potential_mw_after_competition"] == pytest.approx(
        (40 * 40 + 20 * 30) * PA
    )
    assert row["shared_km2"] == pytest.approx(20 * PA)
    pa, _, _ = competition.resolve(ip, iw, lp, lw, "lower_lcoe")
    s = _sums(pref, county, study, reasons, ip, energy, after=pa)
    row = _table(s).query("level == 'study_area'").iloc[0]
    assert row["technical_potential_mw_after_competition"] == pytest.approx(50 * PA * 40)
    assert row["eligible_km2"] == pytest.approx(60 * PA)
    assert row["eligible_km2_after_competition"] == pytest.approx(50 * PA)


# -- supply curve over all candidate sites ---------------------------------------------------
def _allocated():
    import pandas as pd

    return pd.DataFrame(
        {"technology": ["pv", "wind", "pv", "pv"], "site_id": ["S3", "S1", "S2", "S4"],
         "capacity_mw": [40.0, 30.0, 100.0, 20.0], "energy_gwh": [70.08, 78.84, 175.2, 35.04],
         "capacity_factor": [0.2, 0.3, 0.2, 0.2],
         "total_lcoe_cny_per_kwh": [0.30, 0.40, 0.25, 0.30],
         "allocated_point_index": [0, 1, -1, 1], "allocated_connection_km": [1.0, 2.0, 3.0, 4.0],
         "connection_kv": [110, 110, 220, 110],
         "connection_status": ["allocated", "allocated", "needs new transmission", "allocated"],
         "new_transmission_cny": [0.0, 0.0, 5e7, 0.0], "in_top_n": [True, True, False, False]}
    )  # fmt: skip


def test_supply_curve_orders_all_sites_by_total_lcoe_and_accumulates() -> None:
    from sitekit.science import supply

    sc = supply.supply_curve(_allocated(), ["P0", "P1"])
    pv = sc[sc["technology"] == "pv"]
    assert list(pv["site_id"]) == ["S2", "S3", "S4"]  # 0.25, then the 0.30 tie by site id
    assert list(pv["order"]) == [1, 2, 3]
    assert list(pv["cumulative_mw"]) == [100.0, 140.0, 160.0]
    assert pv["cumulative_mw"].iloc[-1] == pytest.approx(_allocated().query("technology == 'pv'")
                                                         ["capacity_mw"].sum())  # fmt: skip
    assert pv["cumulative_gwh"].iloc[-1] == pytest.approx(175.2 + 70.08 + 35.04)
    assert list(pv["connection_point"]) == ["", "P0", "P1"]
    assert list(sc.columns) == supply.SUPPLY_COLUMNS
    assert supply.check_sites(sc) == []


def test_invariants_catch_unit_errors() -> None:
    from sitekit.science import supply

    good = _allocated()
    bad = good.assign(capacity_factor=good["energy_gwh"] / good["capacity_mw"] / 0.876)
    assert any("capacity factor" in m for m in supply.check_sites(bad))  # CF = energy ÷ 876
    off = good.assign(energy_gwh=good["energy_gwh"] * 1.05)
    assert any("8.76" in m for m in supply.check_sites(off))
    dear = good.assign(total_lcoe_cny_per_kwh=good["total_lcoe_cny_per_kwh"] * 1000)
    assert any("CNY/kWh" in m for m in supply.check_sites(dear))  # connection per MW, not kW


def test_land_use_needs_one_rule_for_both_recipes() -> None:
    from types import SimpleNamespace

    from sitekit.errors import RecipeError
    from sitekit.science import supply

    ip, iw, lp, lw = (da.from_array(a, chunks=5) for a in _overlap())
    layers = {"pv_eligible": ip > 0, "pv_inclusion": ip, "wind_eligible": iw > 0,
              "wind_inclusion": iw, "pv_lcoe": lp, "wind_lcoe": lw}  # fmt: skip

    def recipe(rule, d):
        return SimpleNamespace(sites=SimpleNamespace(power_density_mw_per_km2=d),
                               competition=SimpleNamespace(rule=rule,
                                                           shared_power_density_mw_per_km2=None))  # fmt: skip

    land = supply.land_use(
        layers, {"pv": recipe("lower_lcoe", 40), "wind": recipe("lower_lcoe", 3)}
    )
    assert float(land["pv"].inclusion_after.sum().compute()) == 50
    assert float(land["wind"].capacity_after.sum().compute()) == pytest.approx(50 * 3)
    with pytest.raises(RecipeError, match="competition.rule differs"):
        supply.land_use(layers, {"pv": recipe("pv_first", 40), "wind": recipe("shared", 3)})


def test_forced_inclusion_lifts_a_reason_and_is_reported_as_kept_land() -> None:
    pref, county, study, reasons, incl, energy = _county_grid()
    reasons[:2, 8:] |= 4  # bit 2: a forced-inclusion zone over 4 px of the bit-0 strip
    incl[:2, 8:] = 1.0  # ... which keeps them eligible
    sums = potential.zone_totals(
        prefecture_id=pref, county_id=county, study_fraction=study, reasons=reasons,
        inclusion=incl, inclusion_after=incl, capacity_after_mw_per_km2=incl * 40.0,
        shared=np.zeros(pref.shape, bool), energy_kwh_per_kw=energy, density_mw_per_km2=40.0,
        n_prefectures=2, n_counties=3, n_bits=3, forced_bits=4,
    )  # fmt: skip
    df = potential.potential_table(
        {"pv": sums}, pixel_area_km2=PA, prefecture_names=["A", "B"],
        county_names=["a1", "a2", "b1"], reason_codes={"pv": ["nobuild", "steep", "forced_plan"]},
    )  # fmt: skip
    tot = df[df["level"] == "study_area"].iloc[0]
    assert tot["excluded_nobuild_km2"] == pytest.approx(16 * PA)  # 20 px less the 4 kept
    assert tot["forced_plan_km2"] == pytest.approx(4 * PA)
    assert tot["excluded_km2"] == pytest.approx((32 + 0.5) * PA)


def test_numba_block_sums_equal_the_numpy_reference() -> None:
    rng = np.random.default_rng(7)
    n = 64
    pref = rng.integers(0, 3, (n, n)).astype(np.int32)
    county = rng.integers(0, 4, (n, n)).astype(np.int32)
    study = rng.random((n, n)).astype(np.float32)
    study[0, :5] = np.nan
    reasons = rng.integers(0, 16, (n, n)).astype(np.uint32)
    incl = np.where(reasons == 0, study, study * rng.random((n, n))).astype(np.float32)
    after = np.where(rng.random((n, n)) < 0.3, 0, incl).astype(np.float32)
    shared = rng.random((n, n)) < 0.2
    energy = (rng.random((n, n)) * 1800).astype(np.float32)
    energy[3, 3] = np.nan
    args = (
        pref,
        county,
        study,
        reasons,
        incl,
        after,
        after * 30,
        shared,
        energy,
        40.0,
        3,
        12,
        4,
        8,
    )
    np.testing.assert_allclose(
        potential.block_sums(*args), potential.block_sums_reference(*args), rtol=1e-9, atol=1e-9
    )


def test_report_tables_name_technical_potential_and_allocated() -> None:
    from sitekit.science import supply

    sums = _sums(*_county_grid())
    pot = _table(sums)
    sc = supply.supply_curve(_allocated(), ["P0", "P1"])
    tables = supply.report_tables(pot, sc)
    titles = [en for en, _, _ in tables]
    assert titles[0].startswith("Technical potential") and "allocated" in titles[-1]
    alloc = tables[-1][2].groupby("Connection 并网").sum(numeric_only=True)
    assert alloc.loc["allocated 已分配", "MW 装机"] == pytest.approx(40 + 30 + 20)  # pv + wind
    new = alloc.loc["needs new transmission 需新建输电"]
    assert new["New lines [bn CNY] 新建线路投资 [十亿元]"] == pytest.approx(0.05)
    share = tables[1][2].set_index("Prefecture 市州")
    assert share.loc["Study area 研究区", "all rules 合计 [%]"] == pytest.approx(36.5)


def test_supply_curve_png_is_written(tmp_path) -> None:
    from sitekit.outputs.supply import plot_supply_curve
    from sitekit.science import supply

    sc = supply.supply_curve(_allocated(), ["P0", "P1"])
    out = plot_supply_curve(sc, tmp_path / "supply_curve.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_site_overlap_is_measured_per_site() -> None:
    import geopandas as gpd
    import shapely

    from sitekit.science import supply

    pv = gpd.GeoDataFrame({"site_id": ["P1", "P2"]},
                          geometry=[shapely.box(0, 0, 2000, 1000), shapely.box(5000, 0, 6000, 1000)],
                          crs=3857)  # fmt: skip
    wind = gpd.GeoDataFrame({"site_id": ["W1"]}, geometry=[shapely.box(1000, 0, 3000, 1000)],
                            crs=3857)  # fmt: skip
    per, totals = supply.site_overlaps({"pv_sites": pv, "wind_sites": wind})
    assert per["pv_sites"].tolist() == [1.0, 0.0] and per["wind_sites"].tolist() == [1.0]
    assert totals == {"pv_sites∩wind_sites": 1.0}
    apart = wind.set_geometry([shapely.box(3000, 0, 4000, 1000)])
    assert supply.site_overlaps({"pv_sites": pv, "wind_sites": apart})[1] == {
        "pv_sites∩wind_sites": 0.0
    }


def test_land_removed_without_a_reason_is_reported_as_no_data() -> None:
    """Four pixels of one zone: one allowed, one removed by reason bit 0, one removed with no
    reason (a scored raster without data there, allow_gaps), one allowed: the removal adds up
    as reason + no data, in both kernels."""
    from sitekit.science.potential import QUANTITIES, block_sums, block_sums_reference

    ones = np.ones((1, 4))
    args = (
        np.ones((1, 4), np.int64),  # prefecture 1
        np.zeros((1, 4), np.int64),  # no county
        ones,  # study fraction
        np.array([[0, 1, 0, 0]], np.uint32),  # reason bits
        np.array([[1.0, 0.0, 0.0, 1.0]]),  # inclusion alone
        np.array([[1.0, 0.0, 0.0, 1.0]]),  # after competition
        np.array([[1.0, 0.0, 0.0, 1.0]]),
        np.zeros((1, 4), bool),
        np.full((1, 4), 1000.0),
        40.0,
        0,
        2,
        1,
    )
    fast, ref = block_sums(*args), block_sums_reference(*args)
    np.testing.assert_allclose(fast, ref)
    q = dict(zip(QUANTITIES, fast[: len(QUANTITIES), 1], strict=True))
    assert q["excluded"] == 2.0 and q["no_data"] == 1.0
    assert fast[len(QUANTITIES), 1] == 1.0  # reason bit 0
