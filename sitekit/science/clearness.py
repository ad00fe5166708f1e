"""The sky of the PV chain: the representative year, the Sun's position, the clear-sky atmosphere
(pvlib's Linke turbidity and altitude grids) and the monthly clear-sky index ``k``.

* Time: an hourly, non-leap representative year (``REFERENCE_YEAR``), stamps at mid-hour, UTC.
* Sun position: NREL SPA (Reda & Andreas 2004), as ``pvlib.solarposition.get_solarposition``;
  the location-independent terms are computed once and shared by all points.
* Clear-sky atmosphere: pvlib's monthly Linke turbidity climatology (``LinkeTurbidities.h5``,
  Remund et al. 2003) and terrain altitude (``Altitude.h5``), both 1/12° global grids shipped
  inside pvlib and read offline, one window per call.
* Cloudiness: GHI = clear-sky GHI (Ineichen & Perez 2002) × a monthly clear-sky index ``k``.
  Calibrated from NASA MERRA-2 monthly-mean GHI (Gelaro et al. 2017) on its 3° cells:
  ``k = GHI_MERRA-2 / GHI_clear`` per cell and month, the clear-sky GHI being the mean over 5×5
  points of the cell at their own elevation (pvlib ``Altitude.h5``) and turbidity; ``k`` is
  interpolated bilinearly between cell centres. MERRA-2 *over*estimates GHI in the cloudy Sichuan
  Basin (≈4.6 vs ≈3 kWh/m²/day observed at 105 °E 30 °N), so yields at the basin's western rim
  are optimistic; the plateau cells look right. The hourly profile within a month is the
  clear-sky one scaled by ``k``.

The MERRA-2 table is read from its file by :func:`sitekit.io.climate.read_merra2`; the functions
here take the table as a :class:`pandas.DataFrame` (or a uniform / monthly index) and never read
a user's file. The only files opened are pvlib's own bundled grids, as ``pvlib.clearsky`` and
``pvlib.location`` open them.

References
----------
Reda, I., Andreas, A. (2004): Solar position algorithm for solar radiation applications. Solar
Energy 76(5), 577–589.
Ineichen, P., Perez, R. (2002): A new airmass independent formulation for the Linke turbidity
coefficient. Solar Energy 73(3), 151–157.
Remund, J. et al. (2003): Worldwide Linke turbidity information. ISES Solar World Congress.
Gelaro, R. et al. (2017): The Modern-Era Retrospective Analysis for Research and Applications,
Version 2 (MERRA-2). J. Climate 30, 5419–5454.
"""

from __future__ import annotations

import calendar
import functools
import importlib
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from sitekit.errors import InputError, LayerError

__all__ = [
    "HOURS_PER_YEAR",
    "MERRA2_COLUMNS",
    "REFERENCE_YEAR",
    "check_merra2_table",
    "clearness_index_monthly",
    "clearness_label",
    "representative_year",
]

REFERENCE_YEAR = 2019
HOURS_PER_YEAR = 8760
#: columns of the MERRA-2 monthly GHI table (``ghi_mean_w_m2``: monthly mean of daily-mean GHI)
MERRA2_COLUMNS = frozenset({"lat", "lon", "month", "ghi_mean_w_m2"})


class _LazyPvlib:
    """``pvlib``, imported on first use (0.4 s here): a re-run whose PV yield comes from the
    layer cache builds no PV model and never needs it."""

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module("pvlib"), name)


pvlib = _LazyPvlib()
_PVLIB_DATA = Path(importlib.util.find_spec("pvlib").origin).parent / "data"  # not imported


# -- time ---------------------------------------------------------------------------------------
def representative_year(year: int = REFERENCE_YEAR) -> pd.DatetimeIndex:
    """Hourly time stamps at mid-hour (UTC) of a non-leap year: the 8760 steps of the model."""
    if calendar.isleap(year):
        raise InputError(f"{year} is a leap year; use a non-leap representative year")
    return pd.date_range(f"{year}-01-01 00:30", periods=HOURS_PER_YEAR, freq="h", tz="UTC")


# -- pvlib's bundled grids ------------------------------------------------------------------------
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


# -- sun position ---------------------------------------------------------------------------------
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


# -- clear-sky index ------------------------------------------------------------------------------
def check_merra2_table(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` if it has the MERRA-2 table's columns (lat, lon, month, ghi_mean_w_m2 [W/m²]),
    else :class:`LayerError`."""
    missing = MERRA2_COLUMNS - set(df.columns)
    if missing:
        raise LayerError(
            f"clearness table lacks columns {sorted(missing)}; expected lat, lon, month, "
            "ghi_mean_w_m2 (monthly mean of daily-mean GHI, W/m²)"
        )
    return df


def _clearness_source(source: Any) -> Any:
    """The clear-sky index source as the functions here take it: a checked MERRA-2 table, or a
    uniform / monthly index. A path is refused: read it with :func:`sitekit.io.climate.read_merra2`."""
    if isinstance(source, (str, os.PathLike)):
        raise InputError(
            f"clearness {source!r} is a path; read the MERRA-2 monthly GHI table with "
            "sitekit.io.climate.read_merra2 and pass the DataFrame"
        )
    if isinstance(source, pd.DataFrame):
        return check_merra2_table(source)
    return source


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
    source: pd.DataFrame | float | Sequence[float],
    latitude: Any,
    longitude: Any,
) -> np.ndarray:
    """Monthly clear-sky index ``k`` (GHI / clear-sky GHI) at points.

    Parameters
    ----------
    source : DataFrame, float or 12 floats
        The MERRA-2 monthly GHI table (columns lat, lon, month, ghi_mean_w_m2 [W/m²]; read from
        its file with :func:`sitekit.io.climate.read_merra2`) — then ``k`` per 3° cell is MERRA-2
        GHI over the cell's mean clear-sky GHI (see module docstring), interpolated bilinearly
        between cell centres (clamped at the table's edge) — or a uniform index, or 12 monthly
        indices.
    latitude, longitude : array_like
        Points [degree].

    Returns
    -------
    numpy.ndarray
        ``k`` [-], shape ``np.shape(latitude) + (12,)``, clipped to [0.05, 1].
    """
    lat = np.asarray(latitude, dtype=float)
    lon = np.asarray(longitude, dtype=float)
    source = _clearness_source(source)
    if not isinstance(source, pd.DataFrame):
        k = np.broadcast_to(np.asarray(source, dtype=float), (12,))
        return np.clip(np.broadcast_to(k, lat.shape + (12,)), 0.05, 1.0).copy()
    df = source
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


def clearness_label(clearness: Any) -> str:
    """How the sky was modelled, for a layer's ``method``: the MERRA-2 table's file name when
    :func:`sitekit.io.climate.read_merra2` recorded it (``DataFrame.attrs["source"]``)."""
    if isinstance(clearness, pd.DataFrame):
        name = clearness.attrs.get("source")
        return "Ineichen-Perez clear sky x MERRA-2 monthly clear-sky index" + (
            f" ({name})" if name else ""
        )
    return f"Ineichen-Perez clear sky x clear-sky index {np.round(clearness, 3).tolist()}"
