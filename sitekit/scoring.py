"""Fuzzy membership, weighted overlay and levelised cost of electricity (LCOE).

Membership functions map a criterion (yield, slope, distance …) onto suitability 0–1; a weighted
linear combination of memberships gives the site score (Malczewski 2004, "GIS-based land-use
suitability analysis: a critical overview", Progress in Planning 62(1); the same structure as
multi-criteria PV/wind siting studies such as Doljak & Stanojević 2017, Energy 127).
LCOE follows the annuity method (IEA/NEA 2020, *Projected Costs of Generating Electricity*, Annex):
LCOE = (capex · CRF + fixed O&M) / (annual energy · degradation factor), with the capital recovery
factor CRF = r(1+r)^n / ((1+r)^n − 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr


# ----------------------------------------------------------------------------- membership
def _clip(x, lo, hi):
    """Clip that stays lazy for DataArrays/dask arrays (``np.clip`` would compute them)."""
    return x.clip(lo, hi) if hasattr(x, "clip") else np.clip(x, lo, hi)


def linear(x, low: float, high: float):
    """0 at ``low``, 1 at ``high``, linear between (``high < low`` gives a decreasing ramp)."""
    if high == low:
        raise ValueError("linear membership needs low != high")
    return _clip((x - low) / (high - low), 0.0, 1.0)


def sigmoid(x, midpoint: float, width: float, decreasing: bool = False):
    """Logistic curve 1/(1+exp(−(x−midpoint)/width)); 0.5 at ``midpoint``."""
    if width <= 0:
        raise ValueError("sigmoid membership needs width > 0")
    z = (x - midpoint) / width
    z = -z if not decreasing else z
    return 1.0 / (1.0 + np.exp(_clip(z, -60, 60)))


def gaussian(x, centre: float, sigma: float):
    """exp(−(x−centre)²/(2σ²)): 1 at ``centre``."""
    if sigma <= 0:
        raise ValueError("gaussian membership needs sigma > 0")
    return np.exp(-0.5 * ((x - centre) / sigma) ** 2)


def step(x, threshold: float, above: bool = True):
    """1 where x ≥ threshold (``above``) or x < threshold (not ``above``), else 0."""
    out = x >= threshold if above else x < threshold
    return out * 1.0


MEMBERSHIPS = {"linear": linear, "sigmoid": sigmoid, "gaussian": gaussian, "step": step}


def membership(x, kind: str, **params):
    """Apply membership function ``kind`` (linear|sigmoid|gaussian|step) with its parameters."""
    try:
        fn = MEMBERSHIPS[kind]
    except KeyError:
        raise ValueError(f"unknown membership '{kind}' (one of {', '.join(MEMBERSHIPS)})") from None
    out = fn(x, **params)
    if isinstance(x, xr.DataArray):
        out = out.where(x.notnull())
    return out


def weighted_overlay(layers: Sequence, weights: Sequence[float]):
    """Σ wᵢ·mᵢ / Σ wᵢ for memberships mᵢ ∈ [0, 1]; NaN where any input is NaN. Result ∈ [0, 1]."""
    w = np.asarray(weights, dtype=float)
    if len(layers) != len(w) or len(w) == 0:
        raise ValueError("need one weight per layer")
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be ≥ 0 and sum to > 0")
    total = None
    for lay, wi in zip(layers, w / w.sum(), strict=True):
        term = lay * float(wi)  # a Python float keeps float32 layers float32 (NumPy 2 promotion)
        total = term if total is None else total + term
    return _clip(total, 0.0, 1.0)


# ----------------------------------------------------------------------------- economics
def crf(wacc: float, lifetime_yr: int) -> float:
    """Capital recovery factor r(1+r)^n/((1+r)^n−1) [1/yr]; 1/n when r = 0."""
    if lifetime_yr <= 0:
        raise ValueError("lifetime must be > 0 years")
    if wacc == 0:
        return 1.0 / lifetime_yr
    f = (1 + wacc) ** lifetime_yr
    return wacc * f / (f - 1)


def degradation_factor(wacc: float, lifetime_yr: int, degradation_per_yr: float) -> float:
    """Discounted mean output relative to year 1: Σ(1−d)^(t−1)/(1+r)^t ÷ Σ 1/(1+r)^t."""
    t = np.arange(1, lifetime_yr + 1)
    disc = (1 + wacc) ** -t
    return float(((1 - degradation_per_yr) ** (t - 1) * disc).sum() / disc.sum())


def lcoe_cny_per_kwh(
    energy_kwh_per_kw_yr,
    capex_cny_per_kw: float,
    fixed_om_cny_per_kw_yr: float,
    wacc: float,
    lifetime_yr: int,
    degradation_per_yr: float = 0.0,
    connection_cny_per_kw=0.0,
):
    """Levelised cost of electricity [CNY/kWh] by the annuity method.

    Parameters
    ----------
    energy_kwh_per_kw_yr : first-year net energy per installed kW [kWh/kW/yr]
        (PV specific yield, or wind CF × 8760).
    capex_cny_per_kw : overnight plant capital cost [CNY/kW].
    fixed_om_cny_per_kw_yr : fixed O&M [CNY/kW/yr].
    wacc : real discount rate [1/yr].
    lifetime_yr : economic life [yr].
    degradation_per_yr : output loss per year [1/yr] (0.005 = 0.5 %/yr).
    connection_cny_per_kw : grid-connection capital cost [CNY/kW] (line + bay), annuitised too.
    """
    a = crf(wacc, lifetime_yr)
    g = degradation_factor(wacc, lifetime_yr, degradation_per_yr)
    annual_cost = (capex_cny_per_kw + connection_cny_per_kw) * a + fixed_om_cny_per_kw_yr
    energy = energy_kwh_per_kw_yr * g
    return annual_cost / energy
