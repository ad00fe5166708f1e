"""One technology per hectare: PV and wind competing for the same eligible pixel.

Where both technologies may build on a pixel (both inclusion fractions > 0), a rule named in
the recipes (``competition.rule``) gives the land to one of them:

* ``lower_lcoe`` (default) — the technology whose per-pixel LCOE (reference-size site,
  :mod:`sitekit.engine.pipeline`) is lower; PV on a tie; a technology with a NaN LCOE loses to one
  with a finite LCOE;
* ``pv_first`` / ``wind_first`` — the named technology always;
* ``shared`` — both keep the pixel (turbines between PV rows), each at the power density the
  recipe states for shared land (``competition.shared_power_density_mw_per_km2``).

The same pixel-level land-use competition is what NREL's reV handles by excluding the
overlapping supply-curve points of the technology that is not built (reV
``supply_curve/competitive_wind_farms.py``; Maclaurin et al. 2021, *The Renewable Energy
Potential (reV) Model*, NREL/TP-6A20-73067, §6). Arrays in, arrays out (NumPy or dask, lazy).

References: Maclaurin et al. 2021, NREL/TP-6A20-73067.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

Rule = Literal["lower_lcoe", "pv_first", "wind_first", "shared"]
RULES: tuple[str, ...] = ("lower_lcoe", "pv_first", "wind_first", "shared")


def _xp(*arrays: Any) -> Any:
    """dask.array if any input is a dask array, else NumPy."""
    if any(hasattr(a, "dask") for a in arrays):
        import dask.array as da

        return da
    return np


def _data(a: Any) -> Any:
    return getattr(a, "data", a) if hasattr(a, "dims") else a


def resolve(
    incl_pv: Any, incl_wind: Any, lcoe_pv: Any, lcoe_wind: Any, rule: str
) -> tuple[Any, Any, Any]:
    """Inclusion fractions after competition.

    Parameters
    ----------
    incl_pv, incl_wind : eligible fraction of each pixel for PV / wind [0–1] (0 = excluded).
    lcoe_pv, lcoe_wind : per-pixel LCOE [CNY/kWh] (used by ``lower_lcoe`` only).
    rule : one of :data:`RULES`.

    Returns
    -------
    (pv_after, wind_after, shared) : the inclusion fractions each technology keeps [0–1] and a
    bool array of the pixels both keep (all False unless ``rule == "shared"``). Outside the
    overlap both keep what they had; in it, the loser's fraction is 0.
    """
    if rule not in RULES:
        raise ValueError(f"unknown competition rule {rule!r} (one of {', '.join(RULES)})")
    ip, iw, lp, lw = (_data(a) for a in (incl_pv, incl_wind, lcoe_pv, lcoe_wind))
    xp = _xp(ip, iw, lp, lw)
    both = (xp.nan_to_num(ip) > 0) & (xp.nan_to_num(iw) > 0)
    if rule == "shared":
        return ip, iw, both
    if rule == "pv_first":
        pv_wins = both
    elif rule == "wind_first":
        pv_wins = both & False
    else:  # lower LCOE; PV on a tie; a finite LCOE beats a NaN one
        lp_ = xp.where(xp.isnan(lp), np.inf, lp)
        lw_ = xp.where(xp.isnan(lw), np.inf, lw)
        pv_wins = both & (lp_ <= lw_)
    wind_wins = both & ~pv_wins
    zero = np.float32(0)
    pv_after = xp.where(wind_wins, zero, ip).astype(np.float32)
    wind_after = xp.where(pv_wins, zero, iw).astype(np.float32)
    return pv_after, wind_after, both & False


def density(inclusion: Any, shared: Any, alone_mw_per_km2: float, shared_mw_per_km2: float) -> Any:
    """Installed capacity per km² of pixel [MW/km²]: inclusion × the recipe's power density, or
    × the shared-land density where ``shared`` is True."""
    xp = _xp(inclusion, shared)
    d = xp.where(shared, np.float32(shared_mw_per_km2), np.float32(alone_mw_per_km2))
    return (inclusion * d).astype(np.float32)
