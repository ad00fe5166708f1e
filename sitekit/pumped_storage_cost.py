"""Energy, dam-wall volume and the ANU cost model / cost classes for pumped-storage pairs.

The cost model and the A–E class cut-offs are those of the ANU global pumped-hydro atlas (RE100
group): the open-source search code ``ANU-RE100/PHES_Searching`` (``src/phes_base.cpp::set_FOM``
and the ``variables`` file, "FOM Calculations" and "Class Cutoffs") implements the model described
by Stocks et al. (2021) and Lu et al. (2018). Costs are in US$ at the atlas' price base (not
stated in the code; late-2010s US$), not escalated: they rank sites, they are not a budget.

=========  ===========================  ============================
class      power part  [US$/kW]         storage part [US$/kWh]
=========  ===========================  ============================
A          533                          47
B          666                          59
C          800                          70
D          933                          82
E          1066                         94
=========  ===========================  ============================

A pair of storage duration *h* [h] is in the best class whose ``power + h · storage`` exceeds its
total capital cost per kW; pairs dearer than class E are unclassed (the atlas drops them).

References
----------
.. [1] Stocks, M., Stocks, R., Lu, B., Cheng, C., Blakers, A. (2021). A global atlas of pumped
   hydro systems. Joule 5(1), 270–284. https://doi.org/10.1016/j.joule.2020.11.015
.. [2] Lu, B., Stocks, M., Blakers, A., Anderson, K. (2018). Geographic information system
   algorithms to locate prospective sites for pumped hydro energy storage. Applied Energy 222,
   300–312. https://doi.org/10.1016/j.apenergy.2018.03.177
.. [3] ANU RE100 group, PHES_Searching (GitHub ``ANU-RE100/PHES_Searching``), files
   ``variables`` (cost coefficients, class cut-offs, dam batter 3, crest 10 m, freeboard 1.5 m)
   and ``src/phes_base.cpp`` (``set_FOM``, ``convert_to_dam_volume``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: Density of water [kg/m³].
RHO_WATER = 1000.0
#: Standard gravity [m/s²].
GRAVITY = 9.81
#: Joules per GWh.
J_PER_GWH = 3.6e12
#: ANU atlas class cut-offs: class -> (power part [US$/kW], storage part [US$/kWh]) [3].
CLASS_CUTOFFS: dict[str, tuple[float, float]] = {
    "A": (533.0, 47.0),
    "B": (666.0, 59.0),
    "C": (800.0, 70.0),
    "D": (933.0, 82.0),
    "E": (1066.0, 94.0),
}


@dataclass(frozen=True)
class CostModel:
    """Coefficients of the ANU pumped-hydro cost model [3] (US$, MW, m).

    powerhouse [US$] = powerhouse_coeff · P^power_exp / H^head_exp;
    tunnel [US$] = (power_slope_factor · P + slope_int) · H^head_coeff · S + power_offset · P
    + tunnel_fixed, with P the power [MW] capped at ``max_unit_mw`` (bigger plants are costed
    per kW as several such units), H the head [m] and S the separation [m]; heads above
    ``two_stage_head_m`` are costed as two stages of half the head and half the power.
    Reservoirs cost ``dam_cost_usd_per_m3`` per m³ of dam wall.
    """

    powerhouse_coeff: float = 63_500_000.0
    power_exp: float = 0.75
    head_exp: float = 0.5
    power_slope_factor: float = 1280.0
    slope_int: float = 208_500.0
    head_coeff: float = -0.54
    power_offset: float = 66_429.0
    tunnel_fixed: float = 17_000_000.0
    dam_cost_usd_per_m3: float = 168.0
    max_unit_mw: float = 800.0
    two_stage_head_m: float = 800.0
    #: Exchange rate for the CNY columns [CNY/US$]: ≈ the 2023–2024 PBoC central-parity average
    #: (7.05–7.12); change it in the recipe for another price base.
    cny_per_usd: float = 7.1
    class_cutoffs: dict[str, tuple[float, float]] = field(
        default_factory=lambda: dict(CLASS_CUTOFFS)
    )


def energy_gwh(head_m, volume_m3, efficiency: float = 0.8):
    """Storable energy of a pair: ρ·g·H·V·η / 3.6e12.

    Parameters
    ----------
    head_m : array-like
        Head between the two water levels [m].
    volume_m3 : array-like
        Usable water volume [m³].
    efficiency : float
        Efficiency applied to the potential energy [-] (the round-trip efficiency by default;
        the ANU atlas uses generation efficiency 0.9 × usable volume 0.85 = 0.765 [3]).

    Returns
    -------
    Energy [GWh].

    References
    ----------
    Stocks et al. (2021), Joule 5(1) 270–284 (energy = ρ g H V η).
    """
    return RHO_WATER * GRAVITY * np.asarray(head_m) * np.asarray(volume_m3) * efficiency / J_PER_GWH


def dam_wall_volume_m3(height_m, length_m, crest_width_m=10.0, batter=3.0, freeboard_m=1.5):
    """Volume of a trapezoidal dam wall: (h + f)·(crest + batter·(h + f))·length.

    Parameters
    ----------
    height_m : array-like
        Water depth against the wall [m] (the wall rises ``freeboard_m`` above it).
    length_m : array-like
        Wall length [m].
    crest_width_m : float
        Crest width [m] (ANU: 10 m).
    batter : float
        Horizontal:vertical slope of both faces [-] (ANU: 3).
    freeboard_m : float
        Freeboard above the water level [m] (ANU: 1.5 m).

    Returns
    -------
    Volume [m³].

    References
    ----------
    ANU PHES_Searching ``convert_to_dam_volume`` [3]; Lu et al. (2018).
    """
    h = np.asarray(height_m, dtype=np.float64) + freeboard_m
    return h * (crest_width_m + batter * h) * np.asarray(length_m, dtype=np.float64)


def storage_hours_for(energy, hours=(6.0, 18.0, 50.0), max_power_mw: float = 3600.0):
    """Storage duration class of each pair: the shortest whose power fits ``max_power_mw``.

    Parameters
    ----------
    energy : array-like
        Energy [GWh].
    hours : sequence of float
        Duration classes [h] (ANU atlas: 6, 18 and 50 h).
    max_power_mw : float
        Largest plant considered [MW]; pairs too big for it at every duration get the longest.

    Returns
    -------
    Duration [h] per pair.
    """
    e = np.asarray(energy, dtype=np.float64)
    hs = np.sort(np.asarray(hours, dtype=np.float64))
    out = np.full(e.shape, hs[-1])
    for h in hs[::-1]:
        out = np.where(e * 1000.0 / h <= max_power_mw, h, out)
    return out


def _power_parts_usd(power_mw, head_m, separation_m, m: CostModel):
    p = np.minimum(power_mw, m.max_unit_mw)
    powerhouse = m.powerhouse_coeff * p**m.power_exp / head_m**m.head_exp
    tunnel = (m.power_slope_factor * p + m.slope_int) * head_m**m.head_coeff * separation_m + (
        m.power_offset * p + m.tunnel_fixed
    )
    return powerhouse + tunnel


def power_cost_usd_per_kw(power_mw, head_m, separation_km, model: CostModel | None = None):
    """Power-related capital cost (tunnel/penstock + powerhouse) of the ANU model [3].

    Parameters
    ----------
    power_mw : array-like
        Rated power [MW].
    head_m : array-like
        Head [m].
    separation_km : array-like
        Horizontal distance between the reservoirs [km].
    model : CostModel, optional
        Coefficients (ANU defaults).

    Returns
    -------
    Cost [US$/kW].

    References
    ----------
    ANU PHES_Searching ``set_FOM`` [3]; Stocks et al. (2021).
    """
    m = model or CostModel()
    p = np.asarray(power_mw, dtype=np.float64)
    h = np.asarray(head_m, dtype=np.float64)
    s = np.asarray(separation_km, dtype=np.float64) * 1000.0
    one = _power_parts_usd(p, h, s, m)
    two = 2.0 * _power_parts_usd(p / 2.0, h / 2.0, s, m)
    total = np.where(h > m.two_stage_head_m, two, one)
    return 0.001 * total / np.minimum(p, m.max_unit_mw)


def storage_cost_usd_per_kwh(dam_rock_m3, energy, model: CostModel | None = None):
    """Reservoir (dam wall) capital cost per kWh stored: dam_cost · rock volume / energy.

    Parameters
    ----------
    dam_rock_m3 : array-like
        Dam-wall volume attributed to the pair [m³].
    energy : array-like
        Energy [GWh].
    model : CostModel, optional

    Returns
    -------
    Cost [US$/kWh]. Equals the ANU ``energy_cost`` = dam_cost / (W/R · η · ρ g H) for a pair
    water-to-rock ratio W/R = V / rock [3].
    """
    m = model or CostModel()
    return m.dam_cost_usd_per_m3 * np.asarray(dam_rock_m3) / (np.asarray(energy) * 1e6)


def cost_class(cost_usd_per_kw, storage_hours, model: CostModel | None = None):
    """ANU atlas cost class (A best … E) of each pair, '' when dearer than class E.

    Parameters
    ----------
    cost_usd_per_kw : array-like
        Total capital cost per kW: power part + storage part × hours [US$/kW].
    storage_hours : array-like
        Duration [h].
    model : CostModel, optional

    Returns
    -------
    Array of str.

    References
    ----------
    ANU PHES_Searching ``variables`` "Class Cutoffs" and ``set_FOM`` [3]; Stocks et al. (2021).
    """
    m = model or CostModel()
    c = np.asarray(cost_usd_per_kw, dtype=np.float64)
    h = np.asarray(storage_hours, dtype=np.float64)
    out = np.full(c.shape, "", dtype=object)
    for name, (p_cut, s_cut) in sorted(m.class_cutoffs.items(), reverse=True):
        out = np.where(c < p_cut + h * s_cut, name, out)
    return out


def class_a_cutoff_usd_per_kw(storage_hours, model: CostModel | None = None):
    """Class-A cost limit at each duration [US$/kW] (used to rank pairs of different durations)."""
    m = model or CostModel()
    p_cut, s_cut = min(m.class_cutoffs.items())[1]
    return p_cut + np.asarray(storage_hours, dtype=np.float64) * s_cut


def price_pairs(
    head_m,
    separation_km,
    volume_m3,
    water_rock_upper,
    water_rock_lower,
    *,
    efficiency: float = 0.8,
    hours=(6.0, 18.0, 50.0),
    max_power_mw: float = 3600.0,
    model: CostModel | None = None,
) -> pd.DataFrame:
    """Energy, duration, power, ANU costs and class of upper/lower reservoir pairs.

    Parameters
    ----------
    head_m, separation_km, volume_m3 : array-like
        Head [m], distance [km] and usable volume [m³] of each pair.
    water_rock_upper, water_rock_lower : array-like
        Water-to-rock ratio of each reservoir [-] (inf: no wall, e.g. an existing reservoir).
    efficiency : float
        Efficiency in the energy formula [-].
    hours : sequence of float
        Storage-duration classes [h]; each pair gets the shortest whose power ≤ max_power_mw.
    max_power_mw : float
    model : CostModel, optional

    Returns
    -------
    DataFrame: ``head_m``, ``separation_km``, ``slope`` [-], ``volume_m3``, ``energy_gwh``,
    ``power_mw``, ``storage_hours``, ``power_cost_usd_per_kw``, ``storage_cost_usd_per_kwh``,
    ``cost_usd_per_kw`` (total), ``cost_class``, ``rel_cost`` (total / class-A limit) and the
    pair ``water_rock_ratio`` = V / (V/WRᵤ + V/WRₗ): each reservoir's dam rock scaled to the
    usable volume, as the ANU pair W/R [3].
    """
    m = model or CostModel()
    head = np.asarray(head_m, dtype=np.float64)
    sep = np.asarray(separation_km, dtype=np.float64)
    vol = np.asarray(volume_m3, dtype=np.float64)
    e = energy_gwh(head, vol, efficiency)
    h = storage_hours_for(e, hours, max_power_mw)
    power = e * 1000.0 / h
    rock = vol / np.asarray(water_rock_upper) + vol / np.asarray(water_rock_lower)
    pcost = power_cost_usd_per_kw(power, head, sep, m)
    scost = storage_cost_usd_per_kwh(rock, e, m)
    total = pcost + scost * h
    with np.errstate(divide="ignore", invalid="ignore"):
        wr = np.where(rock > 0, vol / rock, np.inf)
    return pd.DataFrame(
        {
            "head_m": head, "separation_km": sep, "slope": head / (sep * 1000.0),
            "volume_m3": vol, "energy_gwh": e, "power_mw": power, "storage_hours": h,
            "power_cost_usd_per_kw": pcost, "storage_cost_usd_per_kwh": scost,
            "cost_usd_per_kw": total, "cost_class": cost_class(total, h, m),
            "rel_cost": total / class_a_cutoff_usd_per_kw(h, m), "water_rock_ratio": wr,
        }
    )  # fmt: skip
