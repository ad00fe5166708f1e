"""The hourly PV chain at a point: plant design, air and cell temperature, irradiance on the
plane of array and the AC yield (pvlib), evaluated over the representative year of
:mod:`sitekit.science.clearness` (which also gives the sun position, the clear-sky atmosphere and
the clear-sky index ``k``). :mod:`sitekit.science.solar` runs it on a lattice of nodes and
interpolates it to pixels.

1. Sun position (NREL SPA) and Kasten–Young relative air mass.
2. Clear-sky GHI: Ineichen & Perez (2002) with pvlib's monthly Linke turbidity climatology and
   the node's elevation levels, × the monthly clear-sky index ``k``.
3. Erbs et al. (1982) decomposition into DNI and DHI; Perez et al. (1990) transposition to the
   plane of array, albedo 0.2; Fresnel/Snell IAM (``pvlib.iam.physical``, De Soto et al. 2006).
4. Mounting: fixed racks facing south (azimuth 180°) at the tilt that maximises the annual
   effective plane-of-array irradiation at each lattice node (searched over 0–60° in 1° steps,
   as PVGIS optimises its slope, Huld et al. 2012), or a horizontal N–S single-axis tracker
   (``pvlib.tracking.singleaxis``, ±60°, backtracking, GCR 0.35).
5. Cell temperature: Faiman (2008) with u0 = 25 W/m²K, u1 = 6.84 W s/m³K, wind 1 m/s; air
   temperature = a sea-level-equivalent monthly mean (``SEA_LEVEL_TEMP_C``) minus 6.5 K/km × the
   elevation (ICAO standard lapse rate), plus a diurnal cycle of ±5 K peaking at 14:00 solar time.
6. PVWatts DC (Dobos 2014) with γ = −0.0037/K, system losses ``losses_pct`` (PVWatts default 14 %,
   which already books 3 % shading and 2 % soiling), PVWatts inverter (96 % nominal, DC/AC 1.2).

Terrain (the ground's slope and aspect). Racks follow a fixed layout: rows along east–west at the
horizontal pitch that GB 50797-2012 (Code for design of photovoltaic power station) requires on
flat ground — no row shades the next between 9:00 and 15:00 solar time on the winter solstice.
On ground falling toward the south the front row sits lower and shades less; toward the north it
shades more. The beam shading is ``pvlib.shading.shaded_fraction1d`` with the N–S component of the
ground slope as its cross-axis slope (Anderson & Jensen 2024), and the terrain factor is the
shaded yield on the slope over the shaded yield on flat ground with the same layout (flat ground's
own row shading is inside ``losses_pct``). Trackers: the axis follows the N–S slope component
(limited to ±10°), tilting the plane toward the sun on south-facing ground. East–west slope
components and horizon shading by distant terrain are ignored.

References
----------
Ineichen, P., Perez, R. (2002): A new airmass independent formulation for the Linke turbidity
coefficient. Solar Energy 73(3), 151–157.
Erbs, D.G., Klein, S.A., Duffie, J.A. (1982): Estimation of the diffuse radiation fraction for
hourly, daily and monthly-average global radiation. Solar Energy 28(4), 293–302.
Perez, R. et al. (1990): Modeling daylight availability and irradiance components from direct
and global irradiance. Solar Energy 44(5), 271–289.
De Soto, W., Klein, S.A., Beckman, W.A. (2006): Improvement and validation of a model for
photovoltaic array performance. Solar Energy 80(1), 78–88.
Faiman, D. (2008): Assessing the outdoor operating temperature of photovoltaic modules.
Progress in Photovoltaics 16(4), 307–315.
Dobos, A.P. (2014): PVWatts Version 5 Manual. NREL/TP-6A20-62641.
Huld, T., Müller, R., Gambardella, A. (2012): A new solar radiation database for estimating PV
performance in Europe and Africa. Solar Energy 86(6), 1803–1815.
Anderson, K.S., Jensen, A.R. (2024): Shaded fraction and backtracking in single-axis trackers
on rolling terrain. J. Renewable Sustainable Energy 16, 023504.
GB 50797-2012: Code for design of photovoltaic power station. Ministry of Housing and
Urban-Rural Development of the PRC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sitekit.errors import InputError
from sitekit.science.clearness import (
    _altitude_m,
    _linke_hourly,
    _sun_position,
    pvlib,
    representative_year,
)

__all__ = [
    "SEA_LEVEL_TEMP_C",
    "TRACKER_MAX_AXIS_TILT_DEG",
    "PVDesign",
    "air_temperature_c",
]

LAPSE_RATE_K_PER_KM = 6.5
#: Kunming (1891 m) monthly mean air temperature 2009 [°C], China Statistical Yearbook 2010,
#: table 12-13 "Monthly Average Temperature of Major Cities" (National Bureau of Statistics).
KUNMING_2009_C = (8.3, 13.9, 15.8, 17.7, 19.8, 20.6, 21.3, 20.6, 20.1, 18.5, 11.8, 10.5)
#: Sea-level-equivalent monthly mean air temperature [°C]: Kunming's, raised by 6.5 K/km × 1.891 km.
#: ASSUMPTION: Kunming, on the Yunnan plateau just south of Panzhihua/Liangshan, shares the
#: region's low-latitude plateau-monsoon regime; with the lapse rate it gives ≈10 °C in January
#: at Xichang (1590 m) and ≈ −5 °C at Litang (3950 m). One year of one station: pass your own
#: ``sea_level_temp_c`` when station normals are at hand.
SEA_LEVEL_TEMP_C = tuple(round(t + LAPSE_RATE_K_PER_KM * 1.891, 2) for t in KUNMING_2009_C)
DIURNAL_HALF_RANGE_K = 5.0
TRACKER_MAX_AXIS_TILT_DEG = 10.0


@dataclass(frozen=True)
class PVDesign:
    """Plant design assumptions shared by both yield paths (defaults documented in the module).

    Parameters
    ----------
    tracking : {"fixed", "single_axis"}
        Fixed south-facing racks at the optimal tilt, or horizontal N–S single-axis trackers.
    losses_pct : float
        DC system losses [%] (PVWatts: soiling, shading, mismatch, wiring, LID, availability …).
    tilt_deg : float or None
        Fixed rack tilt [degree]; None = the tilt maximising annual effective POA at each node.
    gamma_pdc : float
        Power temperature coefficient [1/K].
    dc_ac_ratio : float
        Array DC rating over inverter AC rating [-].
    eta_inv_nom : float
        Nominal inverter efficiency [-].
    albedo : float
        Ground reflectance [-].
    u0, u1 : float
        Faiman heat-loss coefficients [W/m²K], [W s/m³K].
    wind_speed_m_s : float
        Wind speed for the cell temperature [m/s].
    tracker_max_angle_deg, tracker_gcr : float
        Tracker rotation limit [degree] and ground coverage ratio [-].
    sea_level_temp_c : 12 floats
        Sea-level-equivalent monthly mean air temperature [°C].
    lapse_rate_k_per_km, diurnal_half_range_k : float
        Temperature lapse rate [K/km] and half the diurnal range [K].
    """

    tracking: str = "fixed"
    losses_pct: float = 14.0
    tilt_deg: float | None = None
    gamma_pdc: float = -0.0037
    dc_ac_ratio: float = 1.2
    eta_inv_nom: float = 0.96
    albedo: float = 0.2
    u0: float = 25.0
    u1: float = 6.84
    wind_speed_m_s: float = 1.0
    tracker_max_angle_deg: float = 60.0
    tracker_gcr: float = 0.35
    sea_level_temp_c: tuple[float, ...] = field(default=SEA_LEVEL_TEMP_C)
    lapse_rate_k_per_km: float = LAPSE_RATE_K_PER_KM
    diurnal_half_range_k: float = DIURNAL_HALF_RANGE_K

    def __post_init__(self) -> None:
        if self.tracking not in ("fixed", "single_axis"):
            raise InputError(f"tracking must be 'fixed' or 'single_axis', got {self.tracking!r}")
        if not 0 <= self.losses_pct < 100:
            raise InputError(f"losses_pct must be in [0, 100), got {self.losses_pct}")
        if len(self.sea_level_temp_c) != 12:
            raise InputError("sea_level_temp_c needs 12 monthly values [°C]")
        if self.tilt_deg is not None and not 0 <= self.tilt_deg <= 90:
            raise InputError(f"tilt_deg must be in [0, 90], got {self.tilt_deg}")


# -- temperature -------------------------------------------------------------------------------
def air_temperature_c(
    times: pd.DatetimeIndex,
    longitude: float,
    elevation_m: Any,
    design: PVDesign | None = None,
) -> np.ndarray:
    """Modelled hourly air temperature [°C] at ``elevation_m`` [m].

    ``T = T_sea(month) − Γ·z + A·cos(2π (h_solar − 14) / 24)`` with the design's sea-level monthly
    means, lapse rate Γ (6.5 K/km, ICAO standard atmosphere) and half diurnal range A.

    Returns
    -------
    numpy.ndarray
        Shape ``(len(times),) + np.shape(elevation_m)`` [°C].
    """
    d = design or PVDesign()
    t = pd.DatetimeIndex(times)
    month = t.month.to_numpy() - 1
    solar_hour = (t.hour.to_numpy() + t.minute.to_numpy() / 60.0 + longitude / 15.0) % 24.0
    base = np.asarray(d.sea_level_temp_c, dtype=np.float64)[month] + d.diurnal_half_range_k * (
        np.cos(2.0 * np.pi * (solar_hour - 14.0) / 24.0)
    )
    z = np.asarray(elevation_m, dtype=np.float64)
    return base.reshape(base.shape + (1,) * z.ndim) - d.lapse_rate_k_per_km * z / 1000.0


# -- the time-series chain at one lattice node -------------------------------------------------
@dataclass
class _Sky:
    times: pd.DatetimeIndex  # daylight hours only
    zen_app: np.ndarray
    zen: np.ndarray
    azi: np.ndarray
    am_rel: np.ndarray
    dni_extra: np.ndarray
    linke: np.ndarray
    month: np.ndarray


def _sky(lat: float, lon: float) -> _Sky:
    times = representative_year()
    zen_app, zen, azi = _sun_position(lat, lon)
    day = zen_app < 90.0
    t = times[day]
    return _Sky(
        times=t,
        zen_app=zen_app[day],
        zen=zen[day],
        azi=azi[day],
        am_rel=pvlib.atmosphere.get_relative_airmass(zen_app[day]),
        dni_extra=pvlib.irradiance.get_extra_radiation(t).to_numpy(),
        linke=_linke_hourly(lat, lon, times)[day],
        month=t.month.to_numpy() - 1,
    )


def _horizontal(sky: _Sky, levels: np.ndarray, k_month: np.ndarray, mult: np.ndarray):
    """GHI, DNI, DHI [W/m²] of shape (T, L, C): clear sky × k × multiplier, Erbs split."""
    am_abs = sky.am_rel[:, None] * pvlib.atmosphere.alt2pres(levels)[None, :] / 101325.0
    cs = pvlib.clearsky.ineichen(
        sky.zen_app[:, None], am_abs, sky.linke[:, None], altitude=levels[None, :],
        dni_extra=sky.dni_extra[:, None],
    )  # fmt: skip
    kt = k_month[sky.month][:, None, None] * mult[None, None, :]
    ghi = np.asarray(cs["ghi"])[:, :, None] * kt
    doy = sky.times.day_of_year.to_numpy()[:, None, None]
    erbs = pvlib.irradiance.erbs(ghi, sky.zen[:, None, None], doy)
    return ghi, np.asarray(erbs["dni"]), np.asarray(erbs["dhi"])


def _expand(a: np.ndarray, ndim: int) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    return a.reshape(a.shape + (1,) * (ndim - a.ndim))


def _poa(sky: _Sky, tilt, azim, ghi, dni, dhi, design: PVDesign):
    """Effective and global POA [W/m²] (Perez, physical IAM); tilt/azim broadcast on (T, …)."""
    nd = ghi.ndim
    tilt, azim = _expand(tilt, nd), _expand(azim, nd)
    z, a = _expand(sky.zen_app, nd), _expand(sky.azi, nd)
    irr = pvlib.irradiance.get_total_irradiance(
        tilt, azim, z, a, dni, ghi, dhi, dni_extra=_expand(sky.dni_extra, nd),
        airmass=_expand(sky.am_rel, nd), albedo=design.albedo, model="perez",
    )  # fmt: skip
    iam = pvlib.iam.physical(pvlib.irradiance.aoi(tilt, azim, z, a))
    direct, diffuse = np.asarray(irr["poa_direct"]), np.asarray(irr["poa_diffuse"])
    return direct, diffuse, iam


def _ac_yield(direct, diffuse, iam, temp_air, design: PVDesign, shade=None) -> np.ndarray:
    """Annual AC energy per kWp DC [kWh/kWp] summed over the first axis."""
    if shade is not None:
        direct = direct * (1.0 - shade)
    eff = direct * iam + diffuse
    poa_global = direct + diffuse
    t_cell = pvlib.temperature.faiman(
        poa_global, temp_air, design.wind_speed_m_s, u0=design.u0, u1=design.u1
    )
    pdc = pvlib.pvsystem.pvwatts_dc(eff, t_cell, 1.0, design.gamma_pdc)
    pdc = pdc * (1.0 - design.losses_pct / 100.0)
    pdc0_inv = 1.0 / (design.dc_ac_ratio * design.eta_inv_nom)
    pac = pvlib.inverter.pvwatts(pdc, pdc0_inv, eta_inv_nom=design.eta_inv_nom)
    return np.nansum(np.maximum(pac, 0.0), axis=0)


def _optimal_tilt(sky: _Sky, ghi, dni, dhi, design: PVDesign) -> np.ndarray:
    """Tilt [degree, 1° steps in 0–60] maximising annual effective POA, per column of (T, C)."""
    all_tilts = np.arange(0.0, 61.0)
    iam_all = pvlib.iam.physical(pvlib.irradiance.aoi(all_tilts, 180.0, sky.zen_app[:, None],
                                                      sky.azi[:, None]))  # fmt: skip
    g, n, h = ghi[..., None], dni[..., None], dhi[..., None]

    def _annual(tilts: np.ndarray) -> np.ndarray:  # tilts (C, K) -> annual (C, K)
        irr = pvlib.irradiance.get_total_irradiance(
            tilts[None], 180.0, sky.zen_app[:, None, None], sky.azi[:, None, None], n, g, h,
            dni_extra=sky.dni_extra[:, None, None], airmass=sky.am_rel[:, None, None],
            albedo=design.albedo, model="perez",
        )  # fmt: skip
        iam = iam_all[:, tilts.astype(int)]
        return np.nansum(np.asarray(irr["poa_direct"]) * iam + irr["poa_diffuse"], axis=0)

    ncol = ghi.shape[1]
    coarse = np.ascontiguousarray(np.broadcast_to(all_tilts[::5], (ncol, 13)))
    best = coarse[0][np.argmax(_annual(coarse), axis=-1)]
    fine = np.clip(best[:, None] + np.arange(-4.0, 5.0)[None, :], 0.0, 60.0)
    return fine[np.arange(ncol), np.argmax(_annual(fine), axis=-1)]


def _gb50797_pitch(lat: float, tilt: float) -> float:
    """Horizontal row pitch per unit collector width: no shade 9–15 h solar on 21 December."""
    phi, dec, omega = math.radians(abs(lat)), math.radians(-23.44), math.radians(45.0)
    sin_alt = math.sin(phi) * math.sin(dec) + math.cos(phi) * math.cos(dec) * math.cos(omega)
    alt = math.asin(max(sin_alt, 0.05))
    cos_az = (sin_alt * math.sin(phi) - math.sin(dec)) / (math.cos(alt) * math.cos(phi))
    b = math.radians(tilt)
    return math.cos(b) + math.sin(b) * min(cos_az, 1.0) / math.tan(alt)


def _tracker_orientation(sky: _Sky, design: PVDesign, slope_ns_deg: float):
    axis_az = 180.0 if slope_ns_deg >= 0 else 0.0
    tr = pvlib.tracking.singleaxis(
        sky.zen_app, sky.azi, axis_tilt=abs(slope_ns_deg), axis_azimuth=axis_az,
        max_angle=design.tracker_max_angle_deg, backtrack=True, gcr=design.tracker_gcr,
    )  # fmt: skip
    tilt = np.nan_to_num(np.asarray(tr["surface_tilt"], dtype=float))
    azim = np.nan_to_num(np.asarray(tr["surface_azimuth"], dtype=float), nan=180.0)
    return tilt, azim


def _node(
    lat: float,
    lon: float,
    levels: np.ndarray,
    k_month: np.ndarray,
    mult: np.ndarray,
    s_levels: np.ndarray,
    design: PVDesign,
) -> dict[str, np.ndarray]:
    """Yield (L, C), annual GHI (L, C), terrain factors (S,) and tilt (C,) at one node."""
    sky = _sky(lat, lon)
    with np.errstate(invalid="ignore", divide="ignore"):
        ghi, dni, dhi = _horizontal(sky, levels, k_month, mult)
        temp = air_temperature_c(sky.times, lon, levels, design)[:, :, None]
        ref = int(np.argmin(np.abs(levels - _altitude_m(np.array([lat]), np.array([lon]))[0])))
        # terrain factor and its tilt: at the modelled sky (one multiplier) or, on the GHI
        # path's range of clear-sky indices, at a typical k = 0.7
        c_ref = int(np.argmin(np.abs(mult - (1.0 if mult.size == 1 else 0.7))))
        if design.tracking == "fixed":
            if design.tilt_deg is None:
                tilt = _optimal_tilt(sky, ghi[:, ref, :], dni[:, ref, :], dhi[:, ref, :], design)
            else:
                tilt = np.full(mult.shape, float(design.tilt_deg))
            direct, diffuse, iam = _poa(sky, tilt[None, None, :], 180.0, ghi, dni, dhi, design)
            y = _ac_yield(direct, diffuse, iam, temp, design)
            # terrain: inter-row beam shading vs the N–S ground slope (reference level, c_ref)
            t_ref = float(tilt[c_ref])
            pitch = _gb50797_pitch(lat, t_ref)
            shade = pvlib.shading.shaded_fraction1d(
                sky.zen_app[:, None], sky.azi[:, None], 90.0, t_ref, collector_width=1.0,
                pitch=pitch, cross_axis_slope=s_levels[None, :],
            )  # fmt: skip
            shade = np.clip(np.nan_to_num(np.asarray(shade, dtype=float)), 0.0, 1.0)
            d1, f1, i1 = direct[:, ref, c_ref, None], diffuse[:, ref, c_ref, None], iam[:, 0, c_ref]
            ys = _ac_yield(d1, f1, i1[:, None], temp[:, ref, :], design, shade=shade)
        else:
            tilt = np.full(mult.shape, np.nan)
            st, sa = _tracker_orientation(sky, design, 0.0)
            direct, diffuse, iam = _poa(sky, st, sa, ghi, dni, dhi, design)
            y = _ac_yield(direct, diffuse, iam, temp, design)
            ys = np.empty(s_levels.size)
            g1, n1, h1 = ghi[:, ref, c_ref], dni[:, ref, c_ref], dhi[:, ref, c_ref]
            for n, s in enumerate(s_levels):
                st, sa = _tracker_orientation(sky, design, float(s))
                d1, f1, i1 = _poa(sky, st, sa, g1, n1, h1, design)
                ys[n] = _ac_yield(d1, f1, i1, temp[:, ref, 0], design)
        flat = float(np.interp(0.0, s_levels, ys))
        factor = ys / flat if flat > 0 else np.ones_like(ys)
    return {
        "yield": y,
        "ghi": np.nansum(ghi, axis=0) / 1000.0,
        "terrain": factor,
        "tilt": tilt,
    }
