"""Size pumped-storage pairs to the ANU energy/storage classes (arrays in, table out).

For each class (E [GWh], h [h]) the gross volume that stores E at the pair's head is
V = E / (ρ g head η u) (ANU ``find_required_volume``); both reservoirs must hold V at an allowed
dam height. Each reservoir's dam height and wall volume are interpolated at V on its curves
(volume, wall, height at the recipe's dam heights), as ANU ``pairing.cpp`` does. The classes are
tried from the largest down: a pair takes the first that its reservoirs hold with a pair
water-to-rock ratio ≥ ``min_pair_water_rock`` and a cost no dearer than class E. Power = E / h,
and a class whose power exceeds ``max_power_mw`` is never served, so no pair is rated above it.

References
----------
Stocks, M. et al. (2021). A global atlas of pumped hydro systems. Joule 5(1), 270–284.
ANU RE100 ``PHES_Searching``: ``src/pairing.cpp`` (``check_good_pair``), ``src/phes_base.cpp``
(``find_required_volume``, ``set_FOM``), ``variables`` (reservoir sizings, class cut-offs).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import pandas as pd

from sitekit.science import pumped_storage_cost as psc


@numba.njit(cache=True, nogil=True)
def _interp(x, xs, a, b):  # pragma: no cover - numba
    """(a, b) at x on the increasing curve xs (first entry 0; inf = height not allowed)."""
    m = xs.size
    k = 1
    while k < m - 1 and xs[k] < x:
        k += 1
    x0, x1 = xs[k - 1], xs[k]
    t = 0.0
    if np.isfinite(x1) and x1 > x0:
        t = min(max((x - x0) / (x1 - x0), 0.0), 1.0)
    a1 = a[k] if np.isfinite(a[k]) else a[k - 1]
    b1 = b[k] if np.isfinite(b[k]) else b[k - 1]
    return a[k - 1] + t * (a1 - a[k - 1]), b[k - 1] + t * (b1 - b[k - 1])


@numba.njit(cache=True, nogil=True)
def _size_kernel(
    v_req, pcost, vmax_pair, upper, lower, vol, wall, hgt, hours, energy, worst_cut, dam_cost,
    min_wr,
):  # pragma: no cover - numba  # fmt: skip
    """Largest class per pair (−1: none) with both walls [m³] and dam heights [m] at it."""
    n_cls, n = v_req.shape
    kbest = np.full(n, -1, np.int64)
    out = np.full((4, n), np.nan)
    for q in range(n):
        for k in range(n_cls - 1, -1, -1):
            v = v_req[k, q]
            if not v <= vmax_pair[q]:
                continue
            du, hu = _interp(v, vol[upper[q]], wall[upper[q]], hgt[upper[q]])
            dl, hl = _interp(v, vol[lower[q]], wall[lower[q]], hgt[lower[q]])
            rock = du + dl
            wr = v / rock if rock > 0 else np.inf
            if wr < min_wr:
                continue
            total = pcost[k, q] + dam_cost * rock / (energy[k] * 1e6) * hours[k]
            if not total < worst_cut[k]:
                continue
            kbest[q] = k
            out[0, q], out[1, q], out[2, q], out[3, q] = du, dl, hu, hl
            break
    return kbest, out


def size_pairs(
    head_m, separation_km, upper, lower, curves, p: Any
) -> pd.DataFrame:  # fmt: skip
    """Size pairs to the largest ANU class they can fill; power, costs and cost class.

    Parameters
    ----------
    head_m, separation_km : array-like
        Head [m] and reservoir separation [km] per pair.
    upper, lower : array-like of int
        Row of each pair's upper and lower reservoir in ``curves``.
    curves : tuple
        Per reservoir: (volume [m³], wall [m³], dam height [m]) at each dam height (increasing
        volume, first column 0; inf where a height is not allowed) and the largest allowed
        volume [m³].
    p : :class:`sitekit.science.pumped_storage.PumpedStorageParams`

    Returns
    -------
    DataFrame per pair (``class_index`` −1 where no class fits): ``storage_gwh`` (per cycle),
    ``storage_hours``, ``power_mw`` = E/h ≤ ``max_power_mw``, ``volume_m3`` (gross, per
    reservoir), ``upper_dam_height_m``, ``lower_dam_height_m`` (interpolated), ``upper_dam_m3``,
    ``lower_dam_m3``, ``water_rock_ratio`` (pair: V / total wall), ``power_cost_usd_per_kw``,
    ``storage_cost_usd_per_kwh``, ``cost_usd_per_kw``, ``cost_class``, ``rel_cost``.
    """
    head = np.asarray(head_m, np.float64)
    sep = np.asarray(separation_km, np.float64)
    upper, lower = np.asarray(upper, np.int64), np.asarray(lower, np.int64)
    vol, wall, hgt, vmax = (np.ascontiguousarray(a, np.float64) for a in curves)
    classes = p.served_classes()
    energy = np.array([e for e, _ in classes])
    hours = np.array([h for _, h in classes])
    power = energy * 1000.0 / hours
    n = head.size
    v_req = np.empty((len(classes), n))
    pcost = np.empty((len(classes), n))
    for k in range(len(classes)):
        v_req[k] = p.required_volume_m3(energy[k], head)
        pcost[k] = psc.power_cost_usd_per_kw(power[k], head, sep, p.cost)
    # dearer than every class cut-off: unclassed (the atlas drops it)
    worst_cut = np.max([pc + hours * sc for pc, sc in p.cost.class_cutoffs.values()], axis=0)
    kbest, dams = _size_kernel(
        v_req, pcost, np.minimum(vmax[upper], vmax[lower]), upper, lower, vol, wall, hgt,
        hours, energy, worst_cut, p.cost.dam_cost_usd_per_m3, p.min_pair_water_rock,
    )  # fmt: skip
    ok = kbest >= 0
    q = np.flatnonzero(ok)
    k = kbest[ok]
    e, h = energy[k], hours[k]
    vq = v_req[k, q]
    rock = dams[0, ok] + dams[1, ok]
    scost = psc.storage_cost_usd_per_kwh(rock, e, p.cost)
    total = pcost[k, q] + scost * h
    with np.errstate(divide="ignore"):
        wr = np.where(rock > 0, vq / rock, np.inf)

    def full(vals, fill=np.nan, dtype=np.float64):
        a = np.full(n, fill, dtype=dtype)
        a[ok] = vals
        return a

    return pd.DataFrame(
        {
            "class_index": kbest, "storage_gwh": full(e), "storage_hours": full(h),
            "power_mw": full(power[k]), "volume_m3": full(vq),
            "upper_dam_height_m": full(dams[2, ok]), "lower_dam_height_m": full(dams[3, ok]),
            "upper_dam_m3": full(dams[0, ok]), "lower_dam_m3": full(dams[1, ok]),
            "water_rock_ratio": full(wr), "power_cost_usd_per_kw": full(pcost[k, q]),
            "storage_cost_usd_per_kwh": full(scost), "cost_usd_per_kw": full(total),
            "cost_class": full(psc.cost_class(total, h, p.cost), "", object),
            "rel_cost": full(total / psc.class_a_cutoff_usd_per_kw(h, p.cost)),
        }
    )  # fmt: skip
