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

from collections.abc import Mapping, Sequence
from typing import Any

import numba
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


def _normalised(weights: Sequence[float], n: int, noun: str) -> np.ndarray:
    """Weights divided by their sum (float64); one ≥ 0 weight per ``noun``, summing to > 0."""
    w = np.asarray(weights, dtype=float)
    if len(w) != n or n == 0:
        raise ValueError(f"need one weight per {noun}")
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be ≥ 0 and sum to > 0")
    return w / w.sum()


def weighted_overlay(layers: Sequence, weights: Sequence[float]):
    """Σ wᵢ·mᵢ / Σ wᵢ for memberships mᵢ ∈ [0, 1]; NaN where any input is NaN. Result ∈ [0, 1]."""
    total = None
    for lay, wi in zip(layers, _normalised(weights, len(layers), "layer"), strict=True):
        term = lay * float(wi)  # a Python float keeps float32 layers float32 (NumPy 2 promotion)
        total = term if total is None else total + term
    return _clip(total, 0.0, 1.0)


# ----------------------------------------------------------------------------- fused score
_KIND_ID = {"linear": 0, "sigmoid": 1, "gaussian": 2, "step": 3}


def _kernel_params(kind: str, params: Mapping[str, Any]) -> tuple[float, float, float]:
    """(a, b, c) of one membership for :func:`_score_block`. The membership function itself
    checks kind and parameters first (one scalar call), so both paths raise the same errors."""
    membership(np.float32(0.0), kind, **params)
    if kind == "linear":
        return float(params["low"]), float(params["high"]) - float(params["low"]), 0.0
    if kind == "sigmoid":
        c = 1.0 if params.get("decreasing") else -1.0
        return float(params["midpoint"]), float(params["width"]), c
    if kind == "gaussian":
        return float(params["centre"]), float(params["sigma"]), 0.0
    return float(params["threshold"]), 0.0, 1.0 if params.get("above", True) else 0.0


@numba.njit(cache=True, nogil=True, inline="always")
def _clip01(v):  # pragma: no cover - numba
    """v clipped to [0, 1]; NaN stays NaN (as ``np.clip``)."""
    return np.float32(0.0) if v < 0 else (np.float32(1.0) if v > 1 else v)


@numba.njit(cache=True, nogil=True)
def _score_block(xs, kinds, p, w, el, ok, out):  # pragma: no cover - numba
    """One pass over a block, row by row: out = clip(Σ wₖ·mₖ(xₖ), 0, 1) in float32; NaN where
    an input is NaN or ``ok`` is 0, else 0 where ``el`` is 0 (``el``, ``ok`` of shape (0, 0): no
    gates).
    The membership kind is chosen once per row and criterion, so the inner loops vectorise."""
    ny, nx = out.shape
    gated = el.shape[0] > 0
    row = np.empty(nx, np.float32)
    m = np.empty(nx, np.float32)
    for i in range(ny):
        for k in range(kinds.shape[0]):
            x, kind = xs[k][i], kinds[k]
            a, b, c, wk = p[k, 0], p[k, 1], p[k, 2], w[k]
            if kind == 0:  # linear: clip((x − low)/(high − low), 0, 1)
                for j in range(nx):
                    m[j] = _clip01((x[j] - a) / b)
            elif kind == 1:  # sigmoid: 1/(1 + exp(clip(∓(x − mid)/width, −60, 60)))
                for j in range(nx):
                    z = (x[j] - a) / b * c
                    z = np.float32(-60.0) if z < -60 else (np.float32(60.0) if z > 60 else z)
                    m[j] = np.float32(1.0) / (np.float32(1.0) + np.exp(z))
            elif kind == 2:  # gaussian: exp(−½((x − centre)/σ)²)
                for j in range(nx):
                    z = (x[j] - a) / b
                    m[j] = np.exp(np.float32(-0.5) * z * z)
            else:  # step: 1 where x ≥ threshold (above) or x < threshold; NaN stays NaN
                for j in range(nx):
                    hit = (x[j] >= a) == (c > 0)
                    m[j] = x[j] if x[j] != x[j] else (np.float32(1.0) if hit else np.float32(0.0))
            if k == 0:
                for j in range(nx):
                    row[j] = m[j] * wk
            else:
                for j in range(nx):
                    row[j] = row[j] + m[j] * wk
        if gated:  # selects, not branches: the gates are often random at pixel scale
            for j in range(nx):
                v = _clip01(row[j]) if el[i, j] else np.float32(0.0)
                out[i, j] = v if ok[i, j] else np.float32(np.nan)
        else:
            for j in range(nx):
                out[i, j] = _clip01(row[j])


def weighted_score(
    criteria: Sequence[tuple[Any, str, Mapping[str, Any]]],
    weights: Sequence[float],
    *,
    eligible: Any = None,
    valid: Any = None,
) -> Any:
    """Memberships, weighted overlay and exclusion in one pass per block (float32).

    The same suitability as :func:`membership` + :func:`weighted_overlay` + masking —
    Σ wᵢ·mᵢ(xᵢ) / Σ wᵢ clipped to [0, 1] (Malczewski 2004) — without a temporary array per
    operation: 3.8 ms per Mpx on one core against 25.6 ms for the composed NumPy operations
    (two linear criteria and both gates on a 2048² block of random values; 1.6 ms without gates).

    Parameters
    ----------
    criteria : ``(x, kind, params)`` per criterion: a 2-D array (NumPy, dask or DataArray, all of
        the same shape and chunks), a membership kind of :data:`MEMBERSHIPS` and its parameters
        (the keyword arguments of that function).
    weights : one weight ≥ 0 per criterion (normalised to sum 1).
    eligible : optional bool array; the score is 0 where it is False.
    valid : optional bool array; the score is NaN where it is False (nodata), before ``eligible``.

    Returns the score [0–1] (NaN where ``valid`` is False or a criterion value is NaN), lazy when
    any input is a dask array or DataArray; a DataArray when the first criterion is one.
    """
    import dask.array as da

    w = _normalised(weights, len(criteria), "criterion")
    p = np.array([_kernel_params(k, prm) for _, k, prm in criteria], np.float32).reshape(-1, 3)
    kinds = np.array([_KIND_ID[k] for _, k, _ in criteria], np.int64)
    wn = np.array([float(v) for v in w], np.float32)
    first = criteria[0][0]
    arrays = [getattr(x, "data", x) for x, _, _ in criteria]
    gate = [getattr(a, "data", a) for a in (eligible, valid)]

    none = np.zeros((0, 0), np.uint8)

    def _block(*blocks: np.ndarray) -> np.ndarray:
        xs = tuple(np.ascontiguousarray(b, dtype=np.float32) for b in blocks[: len(arrays)])
        el = ok = none
        if len(blocks) > len(arrays):  # gates: both given (a missing one is all 1)
            rest = iter(blocks[len(arrays) :])
            el, ok = (
                np.ones(xs[0].shape, np.uint8)
                if g is None
                else np.ascontiguousarray(next(rest), dtype=bool).view(np.uint8)
                for g in gate
            )
        out = np.empty(xs[0].shape, np.float32)
        _score_block(xs, kinds, p, wn, el, ok, out)
        return out

    inputs = arrays + [g for g in gate if g is not None]
    lazy = next((a for a in inputs if isinstance(a, da.Array)), None)
    if lazy is not None:
        inputs = [a if isinstance(a, da.Array) else da.from_array(a, lazy.chunks) for a in inputs]
        meta = np.empty((0, 0), np.float32)  # no trial call: it would initialise numba here
        res = da.map_blocks(_block, *inputs, dtype=np.float32, meta=meta)
    else:
        res = _block(*(np.asarray(a) for a in inputs))
    if isinstance(first, xr.DataArray):
        return first.copy(data=res).rename("score")
    return res


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
