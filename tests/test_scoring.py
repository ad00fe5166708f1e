"""Membership functions, weighted overlay and LCOE against hand calculations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sitekit import scoring


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
    assert scoring.lcoe_cny_per_kwh(1500.0, 3600, 50, 0.06, 25, 0.005) == pytest.approx(
        scoring.lcoe_cny_per_kwh(1500.0, 3600, 50, 0.06, 25) / g
    )
