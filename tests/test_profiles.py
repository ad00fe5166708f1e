"""Typical-day profiles (sitekit.science.profiles): hand-computed shapes and the bases.yaml tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sitekit.errors import InputError, RecipeError
from sitekit.io.climate import read_merra2
from sitekit.science import profiles as pr
from sitekit.science.clearness import clearness_index_monthly
from sitekit.specs import bases as sb
from sitekit.specs.bases import load_bases_spec

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "pipelines" / "bases.yaml"
MERRA2_CSV = REPO / "layers/sichuan-west/resource/merra2_ghi_monthly_mean_3deg_subset.csv"


def test_typical_day_is_the_mean_per_month_and_beijing_hour() -> None:
    times = pd.date_range("2019-01-01 00:30", periods=8760, freq="h", tz="UTC")
    # value = UTC hour: in Beijing time (UTC+8) local hour h holds UTC hour (h − 8) mod 24
    day = pr.typical_day(times.hour.to_numpy().astype(float), times)
    assert day.shape == (12, 24)
    assert day[5, 8] == 0.0 and day[5, 0] == 16.0 and day[5, 23] == 15.0
    # value = month of the UTC stamp: 31 Jan 16:30 UTC is 1 Feb 00:30 BJT, so February's
    # local midnight hour mixes in no January value (month per local stamp = 2 exactly)
    local = times + pd.Timedelta(hours=8)
    day = pr.typical_day(local.month.to_numpy().astype(float), times)
    assert np.all(day == np.arange(1, 13)[:, None])


def test_scale_to_cf_sets_the_day_weighted_annual_mean() -> None:
    shape = np.tile(np.r_[np.zeros(12), np.ones(12)], (12, 1))  # mean 0.5 every month
    out = pr.scale_to_cf(shape, 0.2)
    assert pr.annual_mean(out) == pytest.approx(0.2)
    assert out.max() == pytest.approx(0.4)


def test_wind_shape_has_mean_one_and_the_spec_seasons() -> None:
    spec = load_bases_spec(SPEC)
    s = pr.wind_shape(spec.wind)
    assert pr.annual_mean(s) == pytest.approx(1.0)
    dry, wet = s[[11, 0, 1, 2, 3, 4]].mean(), s[5:10].mean()
    assert dry > 1.0 > wet  # the dry-season maximum of the default table
    assert spec.wind.status == "unverified"  # no citation found: said so


def test_wind_diurnal_cycle_peaks_at_the_given_hour() -> None:
    w = sb.WindShape(monthly_factors=[1.0] * 12, diurnal_amplitude=0.2, diurnal_peak_hour=14.5,
                     status="unverified", source="test")  # fmt: skip
    s = pr.wind_shape(w)
    assert int(np.argmax(s[0])) == 14 and s[0, 14] == pytest.approx(1.2)
    assert s[0, 2] == pytest.approx(0.8)


def test_hydro_profile_energy_bounds_and_spill() -> None:
    days = pr.DAYS_IN_MONTH
    # 100 MW at CF 0.5, shares ∝ days: 1,200 MWh every day, mean 50 MW
    ror = pr.hydro_profile(100.0, 0.5, days, "run_of_river", 0.0)
    assert np.allclose(ror.energy_mwh_per_day, 1200.0)
    assert np.allclose(ror.min_mw, 50.0) and ror.spilled_mwh_per_yr == 0.0
    daily = pr.hydro_profile(100.0, 0.5, days, "daily", 0.5)
    assert np.allclose(daily.min_mw, 25.0)
    seas = pr.hydro_profile(100.0, 0.5, days, "seasonal", 0.1)
    assert np.allclose(seas.min_mw, 10.0)
    # all energy in July: 438,000 MWh > 31 × 2,400 MWh → capped, the rest spilled
    july = np.zeros(12)
    july[6] = 1.0
    hp = pr.hydro_profile(100.0, 0.5, july, "seasonal", 0.1)
    assert hp.energy_mwh_per_day[6] == pytest.approx(2400.0)
    assert hp.spilled_mwh_per_yr == pytest.approx(438000.0 - 31 * 2400.0)
    with pytest.raises(InputError):
        pr.hydro_profile(100.0, 0.5, days, "weekly", 0.1)


def test_regulation_class_cited_table_first_then_gem_technology() -> None:
    spec = load_bases_spec(SPEC)
    cls, src = pr.regulation_class("conventional storage", "长河坝水电站", spec)
    assert cls == "seasonal" and "严锦江" in src
    assert pr.regulation_class("run-of-river", "福堂水电站", spec)[0] == "run_of_river"
    assert pr.regulation_class("conventional and run-of-river", "x", spec)[0] == "run_of_river"
    cls, src = pr.regulation_class("conventional storage", "官地", spec)
    assert cls == "daily" and src.startswith("default")


def test_bases_spec_refuses_unknown_keys_and_non_finite(tmp_path: Path) -> None:
    text = SPEC.read_text(encoding="utf-8")
    bad = tmp_path / "b.yaml"
    bad.write_text(text.replace("radius_km: 50", "radius_kms: 50"), encoding="utf-8")
    with pytest.raises(RecipeError, match="radius_kms"):
        load_bases_spec(bad)
    bad.write_text(text.replace("curtailment_limit: 0.05", "curtailment_limit: .nan"),
                   encoding="utf-8")  # fmt: skip
    with pytest.raises(RecipeError):
        load_bases_spec(bad)
    bad.write_text(text.replace("[1.20, 1.20, 1.20, 1.05,", "[1.20, 1.20, 1.05,"), encoding="utf-8")
    with pytest.raises(RecipeError, match="12"):
        load_bases_spec(bad)
    bad.write_text(text.replace("  seasonal:       #", "  seasonalx:       #"), encoding="utf-8")
    with pytest.raises(RecipeError, match="seasonal"):
        load_bases_spec(bad)


def test_pv_shape_from_the_pvlib_chain_is_zero_at_night_and_peaks_after_1pm_bjt() -> None:
    # at 102 °E solar noon is 12:00 + (120 − 102)/15 h = 13:12 Beijing time
    s = pr.pv_shape(27.5, 102.0, 0.7)
    assert s.shape == (12, 24)
    assert np.all(s[:, :6] == 0.0) and np.all(s[:, 21:] == 0.0)
    assert set(np.argmax(s, axis=1)) <= {12, 13}
    cf = pr.annual_mean(s)
    assert 0.12 < cf < 0.30  # AC per kWp DC, clear-sky index 0.7
    # winter days are shorter: no output at 7:00 BJT in December, some in June
    assert s[11, 7] == 0.0 and s[5, 7] > 0.0


def test_site_profiles_keep_each_sites_annual_cf() -> None:
    import geopandas as gpd
    from shapely.geometry import Point

    spec = load_bases_spec(SPEC)
    g = gpd.GeoDataFrame({"capacity_mw": [100.0, 50.0], "energy_gwh": [219.0, 87.6]},
                         geometry=[Point(102.0, 27.5), Point(102.1, 27.6)], crs=4326)  # fmt: skip
    w = pr.site_profiles(g, "wind", wind=spec.wind)
    assert [pr.annual_mean(p) for p in w] == pytest.approx([0.25, 0.2], abs=1e-9)
    p = pr.site_profiles(g, "pv", clearness=0.7)
    assert [pr.annual_mean(x) for x in p] == pytest.approx([0.25, 0.2], abs=1e-9)
    assert np.allclose(p[0] / p[0].max(), p[1] / p[1].max())  # same 0.5° node: same shape


def test_spec_and_science_agree_on_the_regulation_classes() -> None:
    # specs may not import science: the tuple is written in both places
    assert sb.REGULATION_CLASSES == pr.REGULATION_CLASSES


def test_pv_shape_takes_the_merra2_table_and_refuses_a_path() -> None:
    table = read_merra2(MERRA2_CSV)
    s = pr.pv_shape(27.5, 102.0, table)
    k = tuple(clearness_index_monthly(table, 27.5, 102.0).tolist())
    assert np.array_equal(s, pr.pv_shape(27.5, 102.0, k))  # the table is its 12 indices here
    with pytest.raises(InputError, match="read_merra2"):
        pr.pv_shape(27.5, 102.0, str(MERRA2_CSV))
