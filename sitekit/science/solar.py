"""Annual PV specific yield [kWh/kWp/yr] and capacity factor per pixel.

Two paths, both lazy (dask) and both ending in the same pvlib chain:

* :func:`pv_yield_from_ghi` — a GHI climatology raster is given (Global Solar Atlas GeoTIFF …):
  the yield per unit of horizontal irradiation (transposition gain × performance ratio) comes from
  the chain below, evaluated for a range of clear-sky indices, and multiplies the user's GHI.
* :func:`modelled_pv_yield` — no climatology: the irradiance itself is modelled.

The chain, evaluated hourly over a representative non-leap year (``REFERENCE_YEAR``, time stamps at
mid-hour, UTC):

1. Sun position (NREL SPA, Reda & Andreas 2004, as ``pvlib.solarposition.get_solarposition``;
   the location-independent terms are computed once and shared by all nodes) and Kasten–Young
   relative air mass.
2. Clear-sky GHI: Ineichen & Perez (2002) with pvlib's monthly Linke turbidity climatology
   (``LinkeTurbidities.h5``, Remund et al. 2003, read offline) and the pixel elevation.
3. Cloudiness: GHI = clear-sky GHI × a monthly clear-sky index ``k``. Calibrated from NASA
   MERRA-2 monthly-mean GHI (Gelaro et al. 2017) on its 3° cells: ``k = GHI_MERRA-2 / GHI_clear``
   per cell and month, the clear-sky GHI being the mean over 5×5 points of the cell at their own
   elevation (pvlib ``Altitude.h5``) and turbidity; ``k`` is interpolated bilinearly between cell
   centres. MERRA-2 *over*estimates GHI in the cloudy Sichuan Basin (≈4.6 vs ≈3 kWh/m²/day
   observed at 105 °E 30 °N), so yields at the basin's western rim are optimistic; the plateau
   cells look right. The hourly profile within a month is the clear-sky one scaled by ``k``.
4. Erbs et al. (1982) decomposition into DNI and DHI; Perez et al. (1990) transposition to the
   plane of array, albedo 0.2; Fresnel/Snell IAM (``pvlib.iam.physical``, De Soto et al. 2006).
5. Mounting: fixed racks facing south (azimuth 180°) at the tilt that maximises the annual
   effective plane-of-array irradiation at each lattice node (searched over 0–60° in 1° steps,
   as PVGIS optimises its slope, Huld et al. 2012), or a horizontal N–S single-axis tracker
   (``pvlib.tracking.singleaxis``, ±60°, backtracking, GCR 0.35).
6. Cell temperature: Faiman (2008) with u0 = 25 W/m²K, u1 = 6.84 W s/m³K, wind 1 m/s; air
   temperature = a sea-level-equivalent monthly mean (``SEA_LEVEL_TEMP_C``) minus 6.5 K/km × the
   elevation (ICAO standard lapse rate), plus a diurnal cycle of ±5 K peaking at 14:00 solar time.
7. PVWatts DC (Dobos 2014) with γ = −0.0037/K, system losses ``losses_pct`` (PVWatts default 14 %,
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

Efficiency: the time series is never run per pixel. It runs on a coarse lattice (0.5° in
longitude and latitude × elevation levels every 500 m from 0 to 8000 m, plus N–S slope levels) in
one dask task per lattice row, and each pixel interpolates (multi-linearly) inside ``map_blocks``.

References
----------
Ineichen, P., Perez, R. (2002): A new airmass independent formulation for the Linke turbidity
coefficient. Solar Energy 73(3), 151–157.
Remund, J. et al. (2003): Worldwide Linke turbidity information. ISES Solar World Congress.
Gelaro, R. et al. (2017): The Modern-Era Retrospective Analysis for Research and Applications,
Version 2 (MERRA-2). J. Climate 30, 5419–5454.
Erbs, D.G., Klein, S.A., Duffie, J.A. (1982): Estimation of the diffuse radiation fraction for
hourly, daily and monthly-average global radiation. Solar Energy 28(4), 293–302.
Perez, R. et al. (1990): Modeling daylight availability and irradiance components from direct
and global irradiance. Solar Energy 44(5), 271–289.
Faiman, D. (2008): Assessing the outdoor operating temperature of photovoltaic modules.
Progress in Photovoltaics 16(4), 307–315.
Dobos, A.P. (2014): PVWatts Version 5 Manual. NREL/TP-6A20-62641.
Huld, T., Müller, R., Gambardella, A. (2012): A new solar radiation database for estimating PV
performance in Europe and Africa. Solar Energy 86(6), 1803–1815.
Anderson, K.S., Jensen, A.R. (2024): Shaded fraction and backtracking in single-axis trackers
on rolling terrain. J. Renewable Sustainable Energy 16, 023504.
Reda, I., Andreas, A. (2004): Solar position algorithm for solar radiation applications. Solar
Energy 76(5), 577–589.
GB 50797-2012: Code for design of photovoltaic power station. Ministry of Housing and
Urban-Rural Development of the PRC.
"""

from __future__ import annotations

import calendar
import functools
import importlib.util
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import h5py
import numpy as np
import pandas as pd
import pyproj
import xarray as xr

from sitekit.errors import CRSError, InputError, LayerError

__all__ = [
    "REFERENCE_YEAR",
    "SEA_LEVEL_TEMP_C",
    "PVDesign",
    "air_temperature_c",
    "capacity_factor",
    "clearness_index_monthly",
    "ghi_to_kwh_m2_yr",
    "modelled_pv_yield",
    "pv_yield_from_ghi",
    "representative_year",
]

REFERENCE_YEAR = 2019
HOURS_PER_YEAR = 8760
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


class _LazyPvlib:
    """``pvlib``, imported on first use (0.4 s here): a re-run whose PV yield comes from the
    layer cache builds no PV model and never needs it."""

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module("pvlib"), name)


pvlib = _LazyPvlib()
_PVLIB_DATA = Path(importlib.util.find_spec("pvlib").origin).parent / "data"  # not imported
_MERRA2_COLUMNS = {"lat", "lon", "month", "ghi_mean_w_m2"}


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


# -- time, temperature, clearness --------------------------------------------------------------
def representative_year(year: int = REFERENCE_YEAR) -> pd.DatetimeIndex:
    """Hourly time stamps at mid-hour (UTC) of a non-leap year: the 8760 steps of the model."""
    if calendar.isleap(year):
        raise InputError(f"{year} is a leap year; use a non-leap representative year")
    return pd.date_range(f"{year}-01-01 00:30", periods=HOURS_PER_YEAR, freq="h", tz="UTC")


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


def _h5_lookup(name: str, dataset: str, lat: Any, lon: Any) -> np.ndarray:
    """Nearest-cell values of a pvlib 1/12° global h5 grid (pvlib's indexing), one window read."""
    lat, lon = np.atleast_1d(lat).astype(float), np.atleast_1d(lon).astype(float)
    i = np.clip(np.around((lat - (90.0 - 1 / 24)) * -12.0), 0, 2159).astype(int)
    j = np.clip(np.around((lon - (-180.0 + 1 / 24)) * 12.0), 0, 4319).astype(int)
    with h5py.File(_PVLIB_DATA / name, "r") as f:
        window = f[dataset][i.min() : i.max() + 1, j.min() : j.max() + 1]
    return window[i - i.min(), j - j.min()]


def _altitude_m(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """pvlib's 1/12° terrain altitude [m] (``Altitude.h5``, 28 m steps; nodata → 0)."""
    raw = _h5_lookup("Altitude.h5", "Altitude", lat, lon).astype(float)
    return np.where(raw == 255, 0.0, raw * 28.0 - 450.0)


def _linke_hourly(lat: Any, lon: Any, times: pd.DatetimeIndex) -> np.ndarray:
    """Linke turbidity at ``times`` [-] as ``pvlib.clearsky.lookup_linke_turbidity`` gives it.

    Monthly values at mid-month, linearly interpolated by day of year (UTC). Shape (T,) for a
    point, (T, n) for n points.
    """
    lts = _h5_lookup("LinkeTurbidities.h5", "LinkeTurbidity", lat, lon).astype(float) / 20.0
    mdays = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=float)
    middles = np.concatenate([[-15.5], np.cumsum(mdays) - mdays / 2.0, [365 + 15.5]])
    doy = pd.DatetimeIndex(times).day_of_year.to_numpy()
    out = np.stack(
        [np.interp(doy, middles, np.concatenate([[v[-1]], v, [v[0]]])) for v in lts], axis=1
    )
    return out[:, 0] if np.ndim(lat) == 0 else out


def _read_merra2(source: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    if isinstance(source, pd.DataFrame):
        df = source
    else:
        path = Path(source)
        if not path.is_file():
            raise LayerError(
                f"clearness file {path} not found; pass the MERRA-2 monthly GHI table "
                "(layers/sichuan-west/resource/merra2_ghi_monthly_mean_3deg_subset.csv)"
            )
        df = pd.read_csv(path)
    missing = _MERRA2_COLUMNS - set(df.columns)
    if missing:
        raise LayerError(
            f"clearness table lacks columns {sorted(missing)}; expected lat, lon, month, "
            "ghi_mean_w_m2 (monthly mean of daily-mean GHI, W/m²)"
        )
    return df


@functools.lru_cache(maxsize=4096)
def _cell_clear_sky_monthly_w_m2(lat_c: float, lon_c: float) -> np.ndarray:
    """Monthly mean clear-sky GHI [W/m², all hours] averaged over a 3° cell (5×5 points)."""
    times = representative_year()
    zen = _sun_position(lat_c, lon_c)[0]
    am_rel = pvlib.atmosphere.get_relative_airmass(zen)
    dni_extra = pvlib.irradiance.get_extra_radiation(times).to_numpy()
    off = np.linspace(-1.2, 1.2, 5)
    plat, plon = (a.ravel() for a in np.meshgrid(lat_c + off, lon_c + off, indexing="ij"))
    alt = _altitude_m(plat, plon)
    tl = _linke_hourly(plat, plon, times)
    am_abs = am_rel[:, None] * pvlib.atmosphere.alt2pres(alt)[None, :] / 101325.0
    with np.errstate(invalid="ignore", divide="ignore"):
        cs = pvlib.clearsky.ineichen(
            zen[:, None], am_abs, tl, altitude=alt[None, :], dni_extra=dni_extra[:, None]
        )
    ghi = np.nan_to_num(np.asarray(cs["ghi"])).mean(axis=1)
    return pd.Series(ghi, index=times).groupby(times.month).mean().to_numpy()


def clearness_index_monthly(
    source: str | os.PathLike | pd.DataFrame | float | Sequence[float],
    latitude: Any,
    longitude: Any,
) -> np.ndarray:
    """Monthly clear-sky index ``k`` (GHI / clear-sky GHI) at points.

    Parameters
    ----------
    source : path, DataFrame, float or 12 floats
        The MERRA-2 monthly GHI table (columns lat, lon, month, ghi_mean_w_m2 [W/m²]) — then ``k``
        per 3° cell is MERRA-2 GHI over the cell's mean clear-sky GHI (see module docstring),
        interpolated bilinearly between cell centres (clamped at the table's edge) — or a
        uniform index, or 12 monthly indices.
    latitude, longitude : array_like
        Points [degree].

    Returns
    -------
    numpy.ndarray
        ``k`` [-], shape ``np.shape(latitude) + (12,)``, clipped to [0.05, 1].
    """
    lat = np.asarray(latitude, dtype=float)
    lon = np.asarray(longitude, dtype=float)
    if not isinstance(source, (str, os.PathLike, pd.DataFrame)):
        k = np.broadcast_to(np.asarray(source, dtype=float), (12,))
        return np.clip(np.broadcast_to(k, lat.shape + (12,)), 0.05, 1.0).copy()
    df = _read_merra2(source)
    lats, lons = np.unique(df["lat"].to_numpy(float)), np.unique(df["lon"].to_numpy(float))
    table = df.pivot_table(index=["lat", "lon"], columns="month", values="ghi_mean_w_m2")
    if list(table.columns) != list(range(1, 13)) or table.isna().any().any():
        raise LayerError("clearness table needs ghi_mean_w_m2 for months 1–12 in every cell")
    if lats.size < 2 or lons.size < 2:
        raise LayerError("clearness table needs at least 2×2 cells to interpolate between")
    half = 0.5 * min(np.diff(lats).min(), np.diff(lons).min())
    if lat.size and (
        lat.min() < lats[0] - half or lat.max() > lats[-1] + half
        or lon.min() < lons[0] - half or lon.max() > lons[-1] + half
    ):  # fmt: skip
        raise LayerError(
            f"clearness table covers lat {lats[0]:g}–{lats[-1]:g}, lon {lons[0]:g}–{lons[-1]:g} "
            f"(cell centres); the grid reaches lat {lat.min():.2f}–{lat.max():.2f}, lon "
            f"{lon.min():.2f}–{lon.max():.2f}: give a table that covers the study area"
        )
    fi = np.interp(lat, lats, np.arange(lats.size))
    fj = np.interp(lon, lons, np.arange(lons.size))
    i0 = np.clip(np.floor(fi).astype(int), 0, max(lats.size - 2, 0))
    j0 = np.clip(np.floor(fj).astype(int), 0, max(lons.size - 2, 0))
    out = np.zeros(lat.shape + (12,))
    for di in (0, 1):
        for dj in (0, 1):
            ii = np.minimum(i0 + di, lats.size - 1)
            jj = np.minimum(j0 + dj, lons.size - 1)
            w = (1 - np.abs(fi - ii)).clip(0, 1) * (1 - np.abs(fj - jj)).clip(0, 1)
            for idx in set(zip(ii.ravel().tolist(), jj.ravel().tolist(), strict=True)):
                key = (lats[idx[0]], lons[idx[1]])
                if key not in table.index:
                    raise LayerError(f"clearness table has no cell at lat {key[0]}, lon {key[1]}")
                cs = _cell_clear_sky_monthly_w_m2(float(key[0]), float(key[1]))
                k = table.loc[key].to_numpy(float) / cs
                sel = (ii == idx[0]) & (jj == idx[1])
                out[sel] += w[sel][:, None] * k
    return np.clip(out, 0.05, 1.0)


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


@functools.lru_cache(maxsize=2)
def _sun_time_terms(year: int = REFERENCE_YEAR) -> tuple[np.ndarray, ...]:
    """Location-independent NREL SPA terms of the representative year (computed once).

    Apparent sidereal time, geocentric right ascension and declination [degree] and the Sun's
    equatorial horizontal parallax [degree] (Reda & Andreas 2004, via ``pvlib.spa``).
    """
    from pvlib import spa

    times = representative_year(year)
    unixtime = times.as_unit("ns").asi8 / 1e9
    delta_t = spa.calculate_deltat(times.year.to_numpy(), times.month.to_numpy())
    v, alpha, delta = spa.solar_position_numpy(
        unixtime, 0.0, 0.0, 0.0, 1013.25, 12.0, delta_t, 0.5667, 0, sst=True
    )
    (radius,) = spa.solar_position_numpy(
        unixtime, 0.0, 0.0, 0.0, 1013.25, 12.0, delta_t, 0.5667, 0, esd=True
    )
    return v, alpha, delta, spa.equatorial_horizontal_parallax(radius)


def _sun_position(lat: float, lon: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apparent zenith, zenith and azimuth [degree] over the representative year.

    The topocentric part of NREL SPA at sea level, 1013.25 hPa and 12 °C, on the shared time
    terms: identical to ``pvlib.solarposition.get_solarposition(times, lat, lon)``.
    """
    from pvlib import spa

    v, alpha, delta, xi = _sun_time_terms()
    h = spa.local_hour_angle(v, lon, alpha)
    u = spa.uterm(lat)
    x, y = spa.xterm(u, lat, 0.0), spa.yterm(u, lat, 0.0)
    delta_alpha = spa.parallax_sun_right_ascension(x, xi, h, delta)
    delta_prime = spa.topocentric_sun_declination(delta, x, y, xi, delta_alpha, h)
    h_prime = spa.topocentric_local_hour_angle(h, delta_alpha)
    e0 = spa.topocentric_elevation_angle_without_atmosphere(lat, delta_prime, h_prime)
    e = spa.topocentric_elevation_angle(
        e0, spa.atmospheric_refraction_correction(1013.25, 12.0, e0, 0.5667)
    )
    azimuth = spa.topocentric_azimuth_angle(
        spa.topocentric_astronomers_azimuth(h_prime, delta_prime, lat)
    )
    return spa.topocentric_zenith_angle(e), spa.topocentric_zenith_angle(e0), azimuth


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


# -- the lattice --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Lattice:
    lat: np.ndarray
    lon: np.ndarray
    levels: np.ndarray
    s_levels: np.ndarray
    mult: np.ndarray


@functools.lru_cache(maxsize=32)
def _to_lonlat(wkt: str) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(pyproj.CRS.from_wkt(wkt), 4326, always_xy=True)


def _lonlat_bounds(arr: xr.DataArray, what: str) -> tuple[float, float, float, float]:
    """(lon_min, lat_min, lon_max, lat_max) of the pixel centres of ``arr``, from coords + CRS."""
    if arr.rio.crs is None:
        raise CRSError(f"{what} has no CRS; wrap it with Grid.wrap (or write one with rio)")
    wkt = arr.rio.crs.to_wkt()
    x = np.asarray(arr[arr.rio.x_dim].values, dtype=float)
    y = np.asarray(arr[arr.rio.y_dim].values, dtype=float)
    if arr.rio.crs.is_geographic:
        return float(x.min()), float(y.min()), float(x.max()), float(y.max())
    xs = np.concatenate([x, x, np.full(y.size, x[0]), np.full(y.size, x[-1])])
    ys = np.concatenate([np.full(x.size, y[0]), np.full(x.size, y[-1]), y, y])
    lon, lat = _to_lonlat(wkt).transform(xs, ys)
    return float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())


def _axis(lo: float, hi: float, step: float) -> np.ndarray:
    a, b = math.floor(lo / step) * step, math.ceil(hi / step) * step
    if b - a < step / 2:
        b = a + step
    return np.round(np.arange(a, b + step / 2, step), 9)


def _build_lattice(
    template: xr.DataArray,
    clearness: Any,
    mult: np.ndarray,
    design: PVDesign,
    lattice_step_deg: float,
    elevation_step_m: float,
    elevation_range_m: tuple[float, float],
) -> tuple[_Lattice, Any]:
    lon0, lat0, lon1, lat1 = _lonlat_bounds(template, "latitude raster")
    if lat0 < 0:
        raise InputError(
            f"grid reaches {lat0:.2f}°S: racks face south, the model is for the northern hemisphere"
        )
    s_max = TRACKER_MAX_AXIS_TILT_DEG if design.tracking == "single_axis" else 45.0
    lat_ax = _Lattice(
        lat=_axis(lat0, lat1, lattice_step_deg),
        lon=_axis(lon0, lon1, lattice_step_deg),
        levels=np.arange(elevation_range_m[0], elevation_range_m[1] + 1e-9, elevation_step_m),
        s_levels=np.arange(-s_max, s_max + 1e-9, 5.0 if s_max > 10 else 2.5),
        mult=mult,
    )
    if isinstance(clearness, (str, os.PathLike)):
        clearness = _read_merra2(clearness)  # fail early on a bad path or table
    # module-level functions + pure=True: equal inputs give equal keys, so two layers built on
    # the same grid and design (e.g. yields for several GHI rasters) share one lattice
    k = dask.delayed(_k_nodes, pure=True)(clearness, lat_ax.lat, lat_ax.lon)
    rows = [
        dask.delayed(_lattice_row, pure=True)(k, i, lat_ax, design) for i in range(lat_ax.lat.size)
    ]
    return lat_ax, dask.delayed(_stack_rows, pure=True)(rows)


def _k_nodes(clearness: Any, lat_nodes: np.ndarray, lon_nodes: np.ndarray) -> np.ndarray:
    la, lo = np.meshgrid(lat_nodes, lon_nodes, indexing="ij")
    return clearness_index_monthly(clearness, la, lo)


def _lattice_row(k_all: np.ndarray, i: int, ax: _Lattice, design: PVDesign) -> dict:
    nodes = [
        _node(ax.lat[i], lon, ax.levels, k_all[i, j], ax.mult, ax.s_levels, design)
        for j, lon in enumerate(ax.lon)
    ]
    return {key: np.stack([n[key] for n in nodes]) for key in nodes[0]}


def _stack_rows(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.stack([r[key] for r in rows]) for key in rows[0]}


def _frac_index(v: np.ndarray, axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower index and weight of ``v`` on a regular ``axis`` (clamped at its ends)."""
    f = np.clip((v - axis[0]) / (axis[1] - axis[0]), 0.0, axis.size - 1.0)
    # NaN (nodata) pixels: index 0, the weight stays NaN so the result stays NaN (no cast warning)
    i0 = np.clip(np.floor(np.nan_to_num(f)).astype(np.int64), 0, axis.size - 2)
    return i0, f - i0


def _multilinear(arr: np.ndarray, idx: list, tail: tuple = ()) -> np.ndarray:
    """Interpolate ``arr`` at (i0, w) pairs for its leading axes; ``tail`` indexes the rest."""
    out = 0.0
    for corner in np.ndindex(*(2,) * len(idx)):
        w = 1.0
        ix = []
        for (i0, wt), c in zip(idx, corner, strict=True):
            ix.append(i0 + c)
            w = w * (wt if c else 1.0 - wt)
        out = out + w * arr[tuple(ix) + tail]
    return out


def _slope_ns_deg(slope_deg: np.ndarray, aspect_deg: np.ndarray) -> np.ndarray:
    """N–S component of the ground slope [degree], > 0 when the ground falls toward the south."""
    s = np.nan_to_num(np.tan(np.radians(slope_deg)) * -np.cos(np.radians(aspect_deg)))
    s = np.where(np.isnan(slope_deg), np.nan, s)
    return np.degrees(np.arctan(s))


def _check_units(arr: xr.DataArray | None, accepted: set[str], what: str) -> None:
    if arr is None:
        return
    units = arr.attrs.get("units")
    if units is not None and str(units).strip().lower() not in accepted:
        raise LayerError(f"{what} has units {units!r}; expected one of {sorted(accepted)}")


def _inputs(lat, lon, elevation_m, slope_deg, aspect_deg):
    for arr, what in ((lat, "lat"), (lon, "lon"), (elevation_m, "elevation_m")):
        if not isinstance(arr, xr.DataArray):
            raise InputError(f"{what} must be an xarray.DataArray on the grid")
    if lat.shape != lon.shape or lat.shape != elevation_m.shape:
        raise InputError(
            f"lat {lat.shape}, lon {lon.shape} and elevation {elevation_m.shape} differ in shape"
        )
    _check_units(elevation_m, {"m", "metre", "meter", "metres", "meters"}, "elevation")
    for arr, what in ((slope_deg, "slope"), (aspect_deg, "aspect")):
        _check_units(arr, {"degree", "degrees", "deg", "°"}, what)
        if arr is not None and arr.shape != lat.shape:
            raise InputError(f"{what} shape {arr.shape} differs from lat {lat.shape}")
    if (slope_deg is None) != (aspect_deg is None):
        raise InputError("give both slope_deg and aspect_deg, or neither")


def _dask(arr: xr.DataArray, chunks: Any) -> da.Array:
    data = arr.data
    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data), chunks=chunks)
    return data.astype(np.float64).rechunk(chunks)


def _wrap(template: xr.DataArray, data: da.Array, attrs: dict[str, Any]) -> xr.DataArray:
    out = template.copy(data=data)
    out.name = "pv_yield"
    out.attrs = attrs
    out.encoding = {}
    if template.rio.crs is not None:
        out.rio.write_crs(template.rio.crs, inplace=True)
    return out


def _design(design: PVDesign | None, tracking: str | None, losses_pct: float | None) -> PVDesign:
    d = design or PVDesign()
    changes: dict[str, Any] = {}
    if tracking is not None:
        changes["tracking"] = tracking
    if losses_pct is not None:
        changes["losses_pct"] = float(losses_pct)
    if changes:
        d = PVDesign(**{**d.__dict__, **changes})
    return d


def _method(design: PVDesign, step: float, dz: float, source: str, terrain: bool) -> str:
    if design.tracking == "fixed":
        tilt = "the node-optimal tilt" if design.tilt_deg is None else f"{design.tilt_deg:g}°"
        mount = f"fixed racks facing south at {tilt}"
        ground = "GB 50797 row pitch with slope-aware row shading"
    else:
        mount = "N-S single-axis trackers with backtracking"
        ground = f"tracker axis following the N-S slope (max {TRACKER_MAX_AXIS_TILT_DEG:g}°)"
    return (
        f"{source}; Erbs decomposition, Perez transposition, {mount}; Faiman cell temperature "
        f"(air {design.lapse_rate_k_per_km:g} K/km lapse rate); PVWatts DC (gamma "
        f"{design.gamma_pdc}/K), {design.losses_pct:g}% losses, PVWatts inverter"
        + (f"; {ground}" if terrain else "; flat ground")
        + f"; hourly representative year on a {step:g}° x {dz:g} m lattice, interpolated to "
        "pixels (sitekit.science.solar)"
    )


def modelled_pv_yield(
    lat: xr.DataArray,
    lon: xr.DataArray,
    elevation_m: xr.DataArray,
    slope_deg: xr.DataArray | None = None,
    aspect_deg: xr.DataArray | None = None,
    *,
    clearness: str | os.PathLike | pd.DataFrame | float | Sequence[float],
    tracking: str = "fixed",
    losses_pct: float = 14.0,
    design: PVDesign | None = None,
    lattice_step_deg: float = 0.5,
    elevation_step_m: float = 500.0,
    elevation_range_m: tuple[float, float] = (0.0, 8000.0),
) -> xr.DataArray:
    """Modelled annual PV specific yield [kWh/kWp/yr] where no irradiance climatology is given.

    Clear-sky irradiance (Ineichen–Perez, pvlib Linke turbidity, pixel elevation) × a monthly
    clear-sky index, then the chain of the module docstring, on a coarse lattice interpolated to
    the pixels. Lazy: nothing runs until the result is computed.

    Parameters
    ----------
    lat, lon : xarray.DataArray
        Pixel-centre latitude and longitude [degree] on the grid (``Grid.lonlat()``).
    elevation_m : xarray.DataArray
        Ground elevation [m]; clamped to ``elevation_range_m``.
    slope_deg, aspect_deg : xarray.DataArray, optional
        Ground slope [degree] and aspect [degree from north, downslope]; None = flat ground.
        Flat cells (aspect NaN) count as flat.
    clearness : path, DataFrame, float or 12 floats
        The MERRA-2 monthly GHI table (e.g. ``layers/sichuan-west/resource/
        merra2_ghi_monthly_mean_3deg_subset.csv``) or a uniform / monthly clear-sky index.
    tracking : {"fixed", "single_axis"}
        Mounting.
    losses_pct : float, default 14
        DC system losses [%].
    design : PVDesign, optional
        Other plant assumptions (``tracking`` and ``losses_pct`` above take precedence).
    lattice_step_deg, elevation_step_m, elevation_range_m
        Lattice spacing [degree], elevation level spacing [m] and range [m].

    Returns
    -------
    xarray.DataArray
        Specific yield [kWh/kWp/yr] (AC energy per kW DC), float32, lazy, on the grid of ``lat``;
        attrs ``modelled="yes"`` and ``method``.
    """
    d = _design(design, tracking, losses_pct)
    _inputs(lat, lon, elevation_m, slope_deg, aspect_deg)
    lat_ax, lattice = _build_lattice(
        lat, clearness, np.array([1.0]), d, lattice_step_deg, elevation_step_m,
        elevation_range_m,
    )  # fmt: skip
    chunks = lat.data.chunks if isinstance(lat.data, da.Array) else lat.shape
    arrays = [_dask(a, chunks) for a in (lat, lon, elevation_m)]
    if slope_deg is not None:
        arrays += [_dask(slope_deg, chunks), _dask(aspect_deg, chunks)]

    def _block(la, lo, z, *rest, lattice):
        ii, jj = _frac_index(la, lat_ax.lat), _frac_index(lo, lat_ax.lon)
        zz = _frac_index(np.clip(z, lat_ax.levels[0], lat_ax.levels[-1]), lat_ax.levels)
        y = _multilinear(lattice["yield"], [ii, jj, zz], (0,))
        if rest:
            s = np.clip(_slope_ns_deg(*rest), lat_ax.s_levels[0], lat_ax.s_levels[-1])
            f = _multilinear(lattice["terrain"], [ii, jj, _frac_index(s, lat_ax.s_levels)])
            y = y * f
        bad = np.isnan(la) | np.isnan(lo) | np.isnan(z)
        return np.where(bad, np.nan, y).astype(np.float32)

    data = da.map_blocks(_block, *arrays, lattice=lattice, dtype=np.float32)
    attrs = {
        "units": "kWh/kWp/yr",
        "long_name": "PV specific yield (modelled)",
        "modelled": "yes",
        "method": _method(
            d,
            lattice_step_deg,
            elevation_step_m,
            _clearness_label(clearness),
            slope_deg is not None,
        ),  # fmt: skip
        "tracking": d.tracking,
        "losses_pct": d.losses_pct,
    }
    return _wrap(elevation_m, data, attrs)


def _clearness_label(clearness: Any) -> str:
    if isinstance(clearness, (str, os.PathLike)):
        return (
            f"Ineichen-Perez clear sky x MERRA-2 monthly clear-sky index ({Path(clearness).name})"
        )
    if isinstance(clearness, pd.DataFrame):
        return "Ineichen-Perez clear sky x MERRA-2 monthly clear-sky index"
    return f"Ineichen-Perez clear sky x clear-sky index {np.round(clearness, 3).tolist()}"


_GHI_UNITS = {
    "kwh/m2/yr": 1.0,
    "kwh/m2/year": 1.0,
    "kwh/m2/a": 1.0,
    "kwhm-2yr-1": 1.0,
    "kwhm-2a-1": 1.0,
    "kwh/m2/day": 365.0,
    "kwh/m2/d": 365.0,
    "kwhm-2day-1": 365.0,
    "kwhm-2d-1": 365.0,
    "w/m2": HOURS_PER_YEAR / 1000.0,
    "wm-2": HOURS_PER_YEAR / 1000.0,
}


def ghi_to_kwh_m2_yr(units: str | None) -> float:
    """Factor converting a GHI climatology in ``units`` to kWh/m²/yr.

    Accepts kWh/m²/yr (or /year, /a), kWh/m²/day (Global Solar Atlas "AvgDailyTotals", × 365)
    and a mean irradiance in W/m² (× 8.76). Raises :class:`LayerError` for anything else.
    """
    if units is None:
        raise LayerError(
            "GHI raster has no `units` attribute; set `units: kWh/m2/yr` (or kWh/m2/day, W/m2) "
            "in its catalogue entry"
        )
    key = (
        str(units).lower().replace(" ", "").replace("²", "2").replace("^", "").replace("**", "")
        .replace("⁻¹", "-1").replace("⁻2", "-2").replace("year-1", "yr-1")
    )  # fmt: skip
    if key not in _GHI_UNITS:
        raise LayerError(
            f"GHI raster has units {units!r}; use kWh/m2/yr, kWh/m2/day or W/m2 (mean "
            "irradiance) and convert other units before loading"
        )
    return _GHI_UNITS[key]


def pv_yield_from_ghi(
    ghi: xr.DataArray,
    lat: xr.DataArray,
    lon: xr.DataArray,
    elevation_m: xr.DataArray,
    slope_deg: xr.DataArray | None = None,
    aspect_deg: xr.DataArray | None = None,
    *,
    tracking: str = "fixed",
    losses_pct: float = 14.0,
    design: PVDesign | None = None,
    lattice_step_deg: float = 0.5,
    elevation_step_m: float = 500.0,
    elevation_range_m: tuple[float, float] = (0.0, 8000.0),
) -> xr.DataArray:
    """PV specific yield [kWh/kWp/yr] from a GHI climatology raster.

    ``yield = GHI × r(k)``: ``r`` is the annual AC yield per kWh/m² of horizontal irradiation
    (transposition gain × performance ratio incl. temperature at the pixel elevation) from the
    module's chain, evaluated on the lattice for uniform clear-sky indices ``k`` of 0.3–1.0;
    each pixel takes ``k`` = its GHI over its modelled clear-sky GHI (so clearer skies get the
    larger beam share and tilt gain), the rack tilt being optimised for each ``k``. ASSUMPTION:
    the same ``k`` in every month; the terrain factor is taken at ``k`` = 0.7.

    Parameters
    ----------
    ghi : xarray.DataArray
        Annual GHI; ``attrs["units"]`` one of kWh/m2/yr, kWh/m2/day, W/m2 (else LayerError).
    lat, lon, elevation_m, slope_deg, aspect_deg, tracking, losses_pct, design, lattice_*
        As in :func:`modelled_pv_yield`.

    Returns
    -------
    xarray.DataArray
        Specific yield [kWh/kWp/yr], float32, lazy; attrs ``modelled="no"``, ``method``.
    """
    factor = ghi_to_kwh_m2_yr(ghi.attrs.get("units"))
    d = _design(design, tracking, losses_pct)
    _inputs(lat, lon, elevation_m, slope_deg, aspect_deg)
    if ghi.shape != lat.shape:
        raise InputError(f"GHI shape {ghi.shape} differs from lat {lat.shape}; align it first")
    mult = np.round(np.linspace(0.3, 1.0, 8), 6)
    lat_ax, lattice = _build_lattice(
        lat, 1.0, mult, d, lattice_step_deg, elevation_step_m, elevation_range_m
    )
    chunks = lat.data.chunks if isinstance(lat.data, da.Array) else lat.shape
    arrays = [_dask(a, chunks) for a in (ghi, lat, lon, elevation_m)]
    if slope_deg is not None:
        arrays += [_dask(slope_deg, chunks), _dask(aspect_deg, chunks)]

    def _block(g, la, lo, z, *rest, lattice):
        g = g * factor
        ii, jj = _frac_index(la, lat_ax.lat), _frac_index(lo, lat_ax.lon)
        zz = _frac_index(np.clip(z, lat_ax.levels[0], lat_ax.levels[-1]), lat_ax.levels)
        clear = _multilinear(lattice["ghi"], [ii, jj, zz], (mult.size - 1,))  # k = 1
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = lattice["yield"] / lattice["ghi"]
            k = np.clip(g / clear, mult[0], mult[-1])
        c0, cw = _frac_index(k, mult)
        r = _multilinear(ratio, [ii, jj, zz, (c0, cw)])
        y = g * r
        if rest:
            s = np.clip(_slope_ns_deg(*rest), lat_ax.s_levels[0], lat_ax.s_levels[-1])
            y = y * _multilinear(lattice["terrain"], [ii, jj, _frac_index(s, lat_ax.s_levels)])
        bad = np.isnan(g) | np.isnan(la) | np.isnan(lo) | np.isnan(z)
        return np.where(bad, np.nan, y).astype(np.float32)

    data = da.map_blocks(_block, *arrays, lattice=lattice, dtype=np.float32)
    attrs = {
        "units": "kWh/kWp/yr",
        "long_name": "PV specific yield from GHI climatology",
        "modelled": "no",
        "method": _method(
            d,
            lattice_step_deg,
            elevation_step_m,
            "GHI climatology x yield per unit GHI",
            slope_deg is not None,
        ),  # fmt: skip
        "tracking": d.tracking,
        "losses_pct": d.losses_pct,
    }
    return _wrap(elevation_m, data, attrs)


def capacity_factor(pv_yield: xr.DataArray) -> xr.DataArray:
    """Capacity factor [-] = specific yield [kWh/kWp/yr] / 8760 h (AC energy per kW DC)."""
    if pv_yield.attrs.get("units") != "kWh/kWp/yr":
        raise LayerError(
            f"capacity_factor needs a yield in kWh/kWp/yr, got units {pv_yield.attrs.get('units')!r}"
        )
    out = (pv_yield / HOURS_PER_YEAR).astype(np.float32)
    out.name = "pv_capacity_factor"
    out.attrs = {
        **pv_yield.attrs,
        "units": "1",
        "long_name": "PV capacity factor (AC energy / (kW DC × 8760 h))",
    }
    return out
