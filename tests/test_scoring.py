"""Membership functions, weighted overlay and LCOE against hand calculations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sitekit.science import scoring


def test_linear_increasing_and_decreasing() -> None:
    x = np.array([0.0, 5.0, 10.0, 20.0])
    assert scoring.linear(x, 0, 10).tolist() == [0.0, 0.5, 1.0, 1.0]
    assert scoring.linear(x, 10, 0).tolist() == [1.0, 0.5, 0.0, 0.0]


def test_sigmoid_gaussian_step() -> None:
    assert scoring.sigmoid(np.array([30.0]), 30, 8)[0] == pytest.approx(0.5)
    assert scoring.sigmoid(np.array([30.0 + 8]), 30, 8)[0] == pytest.approx(1 / (1 + np.exp(-1)))
    assert scoring.sigmoid(np.array([30.0 + 8]), 30, 8, decreasing=True)[0] == pytest.approx(
        1 / (1 + np.exp(1))
    )
    assert scoring.gaussian(np.array([2.0]), 2, 1)[0] == 1.0
    assert scoring.gaussian(np.array([3.0]), 2, 1)[0] == pytest.approx(np.exp(-0.5))
    assert scoring.step(np.array([1.0, 2.0, 3.0]), 2).tolist() == [0.0, 1.0, 1.0]
    assert scoring.step(np.array([1.0, 2.0, 3.0]), 2, above=False).tolist() == [1.0, 0.0, 0.0]


def test_unknown_membership() -> None:
    with pytest.raises(ValueError, match="unknown membership"):
        scoring.membership(np.zeros(2), "cubic")


def test_weighted_overlay_normalises_and_rejects_bad_weights() -> None:
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert scoring.weighted_overlay([a, b], [3, 1]).tolist() == [0.75, 0.25]
    with pytest.raises(ValueError):
        scoring.weighted_overlay([a, b], [0, 0])
    with pytest.raises(ValueError):
        scoring.weighted_overlay([a, b], [-1, 2])


@given(
    st.lists(st.floats(0, 1), min_size=3, max_size=3),
    st.lists(st.floats(0.01, 10), min_size=3, max_size=3),
)
def test_score_stays_in_unit_interval(ms: list[float], ws: list[float]) -> None:
    s = scoring.weighted_overlay([np.array([m]) for m in ms], ws)
    assert 0.0 <= s[0] <= 1.0


def test_crf_and_lcoe_hand_calculation() -> None:
    # r = 6 %, n = 25: CRF = 0.06·1.06^25/(1.06^25 − 1) = 0.0782267
    assert scoring.crf(0.06, 25) == pytest.approx(0.0782267, rel=1e-6)
    assert scoring.crf(0.0, 20) == pytest.approx(0.05)
    # 3600 CNY/kW, 50 CNY/kW/yr O&M, 1500 kWh/kW/yr, no degradation:
    # (3600·0.0782267 + 50) / 1500 = 0.221064 CNY/kWh
    lcoe = scoring.lcoe_cny_per_kwh(1500.0, 3600, 50, 0.06, 25)
    assert lcoe == pytest.approx((3600 * 0.0782267 + 50) / 1500, rel=1e-6)
    # connection cost adds to the capital
    with_conn = scoring.lcoe_cny_per_kwh(1500.0, 3600, 50, 0.06, 25, connection_cny_per_kw=400)
    assert with_conn - lcoe == pytest.approx(400 * 0.0782267 / 1500, rel=1e-6)


def test_degradation_raises_lcoe() -> None:
    g = scoring.degradation_factor(0.06, 25, 0.005)
    assert 0.93 < g < 0.96  # discounted mean of (1−0.5 %)^(t−1)
    # two years, 10 %/yr real discount, 10 %/yr degradation, by hand: year 1 produces the full
    # first-year energy (exponent t − 1 = 0), year 2 90 % of it
    w1, w2 = 1 / 1.1, 1 / 1.1**2
    g2 = (w1 * 1.0 + w2 * 0.9) / (w1 + w2)
    assert scoring.degradation_factor(0.1, 2, 0.1) == pytest.approx(g2, rel=1e-12)
    assert scoring.degradation_factor(0.0, 2, 0.1) == pytest.approx(0.95, rel=1e-12)
    crf2 = 0.1 * 1.1**2 / (1.1**2 - 1)  # = 0.57619…
    want = (1000 * crf2 + 20) / (1500 * g2)
    assert scoring.lcoe_cny_per_kwh(1500.0, 1000, 20, 0.1, 2, 0.1) == pytest.approx(want, rel=1e-9)


def _composed(xs, kinds, params, weights, eligible, valid):
    """membership + weighted_overlay + masking, as a user composes them (the reference)."""
    ms = [scoring.membership(x, k, **p) for x, k, p in zip(xs, kinds, params, strict=True)]
    s = scoring.weighted_overlay(ms, weights)
    return np.where(~valid, np.nan, np.where(eligible, s, 0.0)).astype(np.float32)


_PARAMS = {
    "linear": {"low": 25.0, "high": 0.0},
    "sigmoid": {"midpoint": 10.0, "width": 3.0, "decreasing": True},
    "gaussian": {"centre": 12.0, "sigma": 5.0},
    "step": {"threshold": 8.0, "above": False},
}


@pytest.mark.parametrize("kind", list(_PARAMS))
def test_weighted_score_equals_the_composed_operations(kind: str) -> None:
    rng = np.random.default_rng(7)
    a = (rng.random((40, 50)) * 40).astype(np.float32)
    b = (rng.random((40, 50)) * 80).astype(np.float32)
    a[3, 4] = np.nan  # a NaN criterion value gives NaN (where valid and eligible)
    eligible, valid = rng.random((40, 50)) > 0.3, rng.random((40, 50)) > 0.1
    eligible[3, 4] = valid[3, 4] = True
    kinds = [kind, "linear"]
    params = [_PARAMS[kind], {"low": 50.0, "high": 0.0}]
    crit = list(zip([a, b], kinds, params, strict=True))
    got = scoring.weighted_score(crit, [0.6, 0.4], eligible=eligible, valid=valid)
    ref = _composed([a, b], kinds, params, [0.6, 0.4], eligible, valid)
    # NaN in, NaN out for every kind (NumPy's step gives 0 for NaN; its DataArray path gives NaN)
    ref[np.isnan(a) & eligible & valid] = np.nan
    assert got.dtype == np.float32
    assert np.isnan(got[3, 4]) and np.array_equal(np.isnan(got), np.isnan(ref) | ~valid)
    assert (got[~eligible & valid] == 0).all()
    if kind == "linear":  # the same float32 operations in the same order: bit-identical
        assert np.array_equal(got, ref, equal_nan=True)
    else:  # NumPy's step is float64 and its exp (SIMD) is not numba's (libm): last place
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


def test_weighted_score_lazy_and_dataarray() -> None:
    import dask.array as da
    import xarray as xr

    rng = np.random.default_rng(3)
    a = (rng.random((64, 48)) * 40).astype(np.float32)
    b = (rng.random((64, 48)) * 80).astype(np.float32)
    elig = rng.random((64, 48)) > 0.5
    crit = [(a, "linear", {"low": 25.0, "high": 0.0}), (b, "linear", {"low": 50.0, "high": 0.0})]
    eager = scoring.weighted_score(crit, [1, 3], eligible=elig)
    lazy_crit = [(da.from_array(x, chunks=(16, 24)), k, p) for x, k, p in crit]
    lazy = scoring.weighted_score(lazy_crit, [1, 3], eligible=elig)  # numpy gate, dask criteria
    assert isinstance(lazy, da.Array) and lazy.chunks == ((16,) * 4, (24,) * 2)
    assert np.array_equal(lazy.compute(), eager)
    xa = xr.DataArray(a, dims=("y", "x"), name="slope")
    out = scoring.weighted_score([(xa, *crit[0][1:]), crit[1]], [1, 3], eligible=elig)
    assert isinstance(out, xr.DataArray) and out.name == "score"
    assert np.array_equal(out.values, eager)
    ungated = scoring.weighted_score(crit, [1, 3])
    assert np.nanmin(ungated) >= 0 and np.nanmax(ungated) <= 1
    assert np.array_equal(ungated[elig], eager[elig])


def test_weighted_score_rejects_bad_input() -> None:
    a = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match="one weight per criterion"):
        scoring.weighted_score([(a, "linear", {"low": 0.0, "high": 1.0})], [1, 2])
    with pytest.raises(ValueError, match="weights must be"):
        scoring.weighted_score([(a, "linear", {"low": 0.0, "high": 1.0})], [0])
    with pytest.raises(ValueError, match="unknown membership 'cubic'"):
        scoring.weighted_score([(a, "cubic", {})], [1])
    with pytest.raises(ValueError, match="low != high"):
        scoring.weighted_score([(a, "linear", {"low": 1.0, "high": 1.0})], [1])


def test_a_user_set_pumped_storage_efficiency_is_used(tmp_path) -> None:
    """Mutation-testing hole of issue 22: the recipe's efficiency must reach the volume a class
    needs, not be replaced by the ANU default 0.9."""
    from sitekit.science.pumped_storage import params_from_recipe
    from sitekit.specs.recipe import load_ps_recipe

    f = tmp_path / "ps.yaml"
    f.write_text(
        "technology: pumped_storage\nname_zh: 抽蓄\nname_en: PSH\nsearch: {}\n", encoding="utf-8"
    )
    recipe, _ = load_ps_recipe(f, ["search.generation_efficiency=0.75"])
    p = params_from_recipe(recipe)
    assert p.generation_efficiency == 0.75
    # 1 GWh at 500 m head: V = 3.6e12 J / (1000 kg/m³ × 9.81 m/s² × 500 m × 0.75 × 0.85)
    want = 3.6e12 / (1000.0 * 9.81 * 500.0 * 0.75 * p.usable_fraction)
    assert p.required_volume_m3(1.0, 500.0) == pytest.approx(want, rel=1e-12)
    assert p.usable_fraction == 0.85
