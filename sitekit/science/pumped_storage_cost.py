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


def energy_gwh(head_m, usable_volume_m3, efficiency: float = 0.9):
    """Stored energy per cycle: E = V_usable · ρ · g · head · η / 3.6e12.

    Parameters
    ----------
    head_m : array-like
        Head between the two water levels [m].
    usable_volume_m3 : array-like
        Usable water volume (between minimum operating level and full supply level) [m³].
    efficiency : float
        Generation efficiency η [-] (ANU atlas: 0.9; the usable fraction 0.85 is separate).

    Returns
    -------
    Energy [GWh] per full cycle (storage, not annual generation).

    References
    ----------
    Stocks et al. (2021), Joule 5(1) 270–284; ANU PHES_Searching ``variables``
    (generation_efficiency 0.9, usable_volume 0.85) and ``find_required_volume`` [3].
    """
    return (
        RHO_WATER * GRAVITY * np.asarray(head_m) * np.asarray(usable_volume_m3) * efficiency
        / J_PER_GWH
    )  # fmt: skip


def required_volume_m3(energy, head_m, efficiency: float = 0.9, usable_fraction: float = 0.85):
    """Gross reservoir volume [m³] that stores ``energy`` [GWh] at ``head_m`` [m].

    V = E · 3.6e12 / (ρ g head η u), u the usable fraction of the gross volume (ANU
    ``find_required_volume``: 5 GWh at 213 m needs 11.27 GL with η 0.9, u 0.85) [3].
    """
    return (
        np.asarray(energy, dtype=np.float64) * J_PER_GWH
        / (RHO_WATER * GRAVITY * np.asarray(head_m, dtype=np.float64) * efficiency
           * usable_fraction)
    )  # fmt: skip


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
