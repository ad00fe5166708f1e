"""Wind resource layers: hub-height speed, air density, capacity factor and a modelled speed.

Arrays in, arrays out: every function takes and returns lazy (dask-backed) ``xarray.DataArray``
rasters, float32, with ``units`` / ``long_name`` / ``method`` attributes. Nothing is computed here;
input checks that need the data (units that look wrong) raise :class:`~sitekit.errors.InputError`
when the graph is computed.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import os
from typing import Any, NamedTuple

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize
from scipy.special import gamma

from sitekit.errors import CRSError, InputError
from sitekit.science import terrain

#: Default turbine: Enercon E-141 EP4, 4.2 MW, 141 m rotor, hub heights 99–159 m. Its low
#: specific power (269 W/m²; E-126/4200: 332) suits thin air: at 4000 m a pitch-regulated curve
#: reaches rated power only at (1.225/0.82)^(1/3) = 1.14 × the sea-level rated speed, and a large
#: rotor per kW keeps CF up. High-altitude projects in Liangshan use even larger rotors (183 m).
DEFAULT_TURBINE = "E-141/4200"
#: ISA sea-level values (ISO 2533:1975): pressure [Pa], temperature [K], density [kg/m³].
P0_PA, T0_K, RHO0_KG_M3 = 101_325.0, 288.15, 1.225
LAPSE_RATE_K_PER_M = 0.0065
_G0, _M_AIR, _R_STAR = 9.80665, 0.0289644, 8.3144598  # m/s², kg/mol, J/(mol K)
_R_DRY = _R_STAR / _M_AIR  # 287.05 J/(kg K)
_SPEED_UNITS = {"m s-1", "m/s", "m s^-1", "m.s-1", "meter/second", "metre/second"}
_LENGTH_UNITS = {"m", "metre", "meter", "metres", "meters"}
# Capacity-factor lookup lattices (start, step, count): mean speed [m/s], density [kg/m³], k [-].
_SPEED_AXIS, _DENSITY_AXIS = (0.0, 0.05, 801), (0.30, 0.01, 131)
_SPEED_AXIS_3D, _DENSITY_AXIS_3D, _K_AXIS_3D = (0.0, 0.1, 401), (0.30, 0.02, 66), (1.0, 0.1, 31)
_BIN_M_S = 0.05  # width of the wind-speed bins the Weibull distribution is integrated over


class PowerCurve(NamedTuple):
    """A turbine power curve from the windpowerlib/oedb turbine library (standard density)."""

    wind_speed_m_s: np.ndarray
    power_w: np.ndarray
    nominal_power_w: float
    hub_heights_m: tuple[float, ...]
    rotor_diameter_m: float
    turbine_type: str

    @property
    def rated_power_w(self) -> float:
        """Normalising power for CF: the nominal power, or the curve's peak if that is higher."""
        return max(float(self.nominal_power_w), float(self.power_w.max()))

    @property
    def cut_out_m_s(self) -> float:
        """Last wind speed of the curve [m/s]: power is zero above it (cut-out)."""
        return float(self.wind_speed_m_s[-1])


# -- input checks --------------------------------------------------------------------------
def _check_units(arr: Any, allowed: set[str], what: str, expected: str) -> None:
    units = getattr(arr, "attrs", {}).get("units") if isinstance(arr, xr.DataArray) else None
    if units is not None and str(units).strip() not in allowed:
        raise InputError(
            f"{what} has units {units!r}; sitekit.science.wind expects {expected}: convert the layer "
            f"(or fix its `units:` in the catalogue)"
        )


def _check_pressure_pa(pressure: Any, what: str = "pressure") -> float:
    """Return ``pressure`` [Pa] as float; raise InputError for hPa/kPa-like magnitudes."""
    p = float(pressure)
    if 30_000.0 <= p <= 110_000.0:  # Everest summit ≈ 33.7 kPa, deepest land ≈ 107 kPa
        return p
    hint = "a value in Pa (sea level ≈ 101325 Pa)"
    if 300.0 <= p <= 1100.0:
        hint = f"{p:g} looks like hPa/mbar: pass {p * 100:g} Pa"
    elif 30.0 <= p <= 110.0:
        hint = f"{p:g} looks like kPa: pass {p * 1000:g} Pa"
    raise InputError(f"{what} = {p:g} is not a plausible air pressure in Pa; {hint}")


def _check_range(block: np.ndarray, lo: float, hi: float, what: str, hint: str) -> None:
    bad = np.isfinite(block) & ((block < lo) | (block > hi))
    if bad.any():
        raise InputError(
            f"{what}: {int(bad.sum())} pixel(s) outside {lo:g}–{hi:g} (e.g. {block[bad].flat[0]:g})"
            f"; {hint}"
        )


def _same_grid(*arrays: Any, what: str) -> None:
    rasters = [a for a in arrays if isinstance(a, xr.DataArray)]
    try:
        xr.align(*rasters, join="exact")
    except ValueError as exc:
        raise InputError(f"{what}: input rasters are not on the same grid ({exc})") from None


def _to_dask(arrays: list[xr.DataArray], what: str) -> list[xr.DataArray]:
    """Align (exactly) and broadcast DataArrays and give them identical dask chunks."""
    _same_grid(*arrays, what=what)
    arrays = list(xr.broadcast(*arrays))
    ref = next((a for a in arrays if isinstance(a.data, da.Array)), None)
    chunks = dict(zip(ref.dims, ref.chunks, strict=True)) if ref is not None else {}
    arrays = [a if isinstance(a.data, da.Array) else a.chunk(chunks or "auto") for a in arrays]
    return list(xr.unify_chunks(*arrays))


# -- shear and density -------------------------------------------------------------------------
def hub_height_speed(
    speed_ref: xr.DataArray,
    ref_height_m: float,
    hub_height_m: float,
    alpha: float | xr.DataArray = 1 / 7,
) -> xr.DataArray:
    r"""Mean wind speed at hub height from a reference-height speed by the power law (Hellmann).

    .. math:: v_{hub} = v_{ref} \, (z_{hub} / z_{ref})^{\alpha}

    Parameters
    ----------
    speed_ref : DataArray
        Mean wind speed at ``ref_height_m`` [m/s].
    ref_height_m, hub_height_m : float
        Reference and hub height above ground [m].
    alpha : float or DataArray
        Shear exponent [-]: 1/7 (neutral flow over open land, the classic default), 0.2 (the IEC
        61400-1 normal wind profile); complex or forested terrain often 0.2–0.3.

    Returns
    -------
    DataArray
        Mean wind speed at hub height [m/s], float32.

    References
    ----------
    Peterson, E. W. & Hennessey, J. P. (1978): On the use of power laws for estimates of wind
    power potential. J. Appl. Meteorol. 17, 390–394. IEC 61400-1:2019, normal wind profile model.
    """
    _check_units(speed_ref, _SPEED_UNITS, "reference wind speed", "m s-1")
    if not (ref_height_m > 0 and hub_height_m > 0):
        raise InputError(f"heights must be > 0 m (got ref {ref_height_m}, hub {hub_height_m})")
    if not isinstance(alpha, xr.DataArray) and not 0.0 <= float(alpha) <= 1.0:
        raise InputError(f"shear exponent alpha = {alpha} outside 0–1 (typical 0.1–0.3)")
    _same_grid(speed_ref, alpha, what="hub_height_speed")
    ratio = float(hub_height_m) / float(ref_height_m)
    out = (speed_ref * ratio**alpha).astype(np.float32)
    a_txt = f"{float(alpha):.4g}" if not isinstance(alpha, xr.DataArray) else "raster"
    out.attrs = {
        **{k: v for k, v in speed_ref.attrs.items() if k in ("modelled",)},
        "units": "m s-1",
        "long_name": f"mean wind speed at {hub_height_m:g} m",
        "height_m": float(hub_height_m),
        "method": f"power-law shear from {ref_height_m:g} m, alpha={a_txt} (Peterson & "
        "Hennessey 1978)",
    }
    return out.rename("wind_speed_hub")


def air_density(
    elevation_m: xr.DataArray | float,
    temperature_sea_level_k: float = T0_K,
    pressure_sea_level_pa: float = P0_PA,
) -> xr.DataArray | float:
    r"""Air density from elevation with the standard-atmosphere barometric formula.

    Temperature falls at the standard lapse rate L = 6.5 K/km; pressure follows the hydrostatic
    barometric formula for a constant lapse rate; density from the ideal-gas law:

    .. math:: T = T_0 - L h, \quad p = p_0 (T/T_0)^{g_0 M / (R^* L)}, \quad \rho = p / (R_d T)

    With the defaults ρ = 1.225 kg/m³ at 0 m, 1.167 at 500 m and 0.819 at 4000 m.

    Parameters
    ----------
    elevation_m : DataArray or float
        Height above sea level [m] (the DEM plus hub height for the density at the rotor).
    temperature_sea_level_k : float
        Sea-level temperature [K] (ISA 288.15 K). A value below 150 is taken for °C: error.
    pressure_sea_level_pa : float
        Sea-level pressure [Pa] (ISA 101325 Pa). hPa-like values raise :class:`InputError`.

    Returns
    -------
    DataArray or float
        Air density [kg/m³], float32 for rasters.

    References
    ----------
    ISO 2533:1975 Standard Atmosphere (= ICAO Doc 7488/3, 1993), troposphere up to 11 km.
    """
    p0 = _check_pressure_pa(pressure_sea_level_pa, "pressure_sea_level_pa")
    t0 = float(temperature_sea_level_k)
    if not 180.0 <= t0 <= 330.0:
        raise InputError(
            f"temperature_sea_level_k = {t0:g} is not a plausible temperature in K"
            + (f"; it looks like °C: pass {t0 + 273.15:g} K" if -90 <= t0 <= 60 else "")
        )
    _check_units(elevation_m, _LENGTH_UNITS, "elevation", "metres (m)")
    expo = _G0 * _M_AIR / (_R_STAR * LAPSE_RATE_K_PER_M)
    t = t0 - LAPSE_RATE_K_PER_M * elevation_m
    rho = p0 * (t / t0) ** expo / (_R_DRY * t)
    if not isinstance(rho, xr.DataArray):
        return float(rho)
    rho = rho.astype(np.float32)
    rho.attrs = {
        "units": "kg m-3",
        "long_name": "air density",
        "modelled": "yes",
        "method": f"ISO 2533 standard atmosphere: T0={t0:g} K, p0={p0:g} Pa, lapse 6.5 K/km",
    }
    return rho.rename("air_density")


# -- turbine library ------------------------------------------------------------------------------
def _oedb_dir() -> str:
    import windpowerlib

    return os.path.join(os.path.dirname(windpowerlib.__file__), "oedb")


def _parse_heights(text: Any) -> tuple[float, ...]:
    if not isinstance(text, str):
        return ()
    parts = (p.strip().replace(",", ".") for p in text.split(";"))
    return tuple(float(p) for p in parts if p)


@functools.lru_cache(maxsize=32)
def load_power_curve(turbine_type: str = DEFAULT_TURBINE) -> PowerCurve:
    """Power curve, nominal power, hub heights and rotor diameter of a library turbine.

    Read offline from the oedb turbine library bundled with windpowerlib (``windpowerlib/oedb/
    *.csv``, the same files ``windpowerlib.get_turbine_types(turbine_library="local")`` lists);
    no network access. Powers are for standard air density (1.225 kg/m³).

    Parameters
    ----------
    turbine_type : str
        Library name such as ``"E-141/4200"`` or ``"V126/3450"``.

    Returns
    -------
    PowerCurve
        (wind_speed_m_s [m/s], power_w [W], nominal_power_w [W], hub_heights_m [m],
        rotor_diameter_m [m], turbine_type); arrays read-only.

    References
    ----------
    windpowerlib (wind-python/oemof), doi:10.5281/zenodo.824267; its turbine data come from the
    Open Energy Platform wind turbine library (supply.wind_turbine_library).
    """
    from windpowerlib import get_turbine_types

    known = get_turbine_types(turbine_library="local", print_out=False)
    with_curve = known.loc[known["has_power_curve"].astype(bool), "turbine_type"].tolist()
    if turbine_type not in with_curve:
        close = difflib.get_close_matches(str(turbine_type), with_curve, n=5, cutoff=0.4)
        raise InputError(
            f"turbine type {turbine_type!r} has no power curve in windpowerlib's turbine library"
            + (f"; did you mean {', '.join(map(repr, close))}?" if close else "")
            + " (list them with windpowerlib.get_turbine_types(print_out=True))"
        )
    lib = _oedb_dir()
    curve = pd.read_csv(os.path.join(lib, "power_curves.csv"), index_col=0)
    curve = curve[curve.index == turbine_type].iloc[0].dropna()
    row = pd.read_csv(os.path.join(lib, "turbine_data.csv"), index_col=0)
    row = row[row.index == turbine_type].iloc[0]
    order = np.argsort(curve.index.astype(np.float64))
    ws = curve.index.astype(np.float64).to_numpy()[order]
    pw = curve.to_numpy(np.float64)[order]
    ws.flags.writeable = pw.flags.writeable = False
    return PowerCurve(
        ws,
        pw,
        float(row["nominal_power"]) if pd.notna(row["nominal_power"]) else float(pw.max()),
        _parse_heights(row["hub_height"]),
        float(row["rotor_diameter"]),
        turbine_type,
    )


def density_corrected_power(
    wind_speed_m_s: np.ndarray, power_curve: PowerCurve, air_density_kg_m3: Any
) -> np.ndarray:
    r"""Power [W] at site density: the standard curve shifted in wind speed (IEC 61400-12-1).

    IEC 61400-12-1 normalises pitch-regulated power curves to the reference density with
    :math:`V_n = V (\rho/\rho_0)^{1/3}`, so at site density the standard power is reached at
    :math:`V (\rho_0/\rho)^{1/3}`: :math:`P_{site}(V) = P_{std}(V (\rho/\rho_0)^{1/3})`. Power is
    not scaled: thinner air needs more wind for the same power, rated power is still reached.
    Cut-out acts on the measured wind speed, so it stays at the curve's last speed.

    Parameters
    ----------
    wind_speed_m_s : array
        Hub-height wind speed [m/s].
    power_curve : PowerCurve
        Standard-density curve (:func:`load_power_curve`).
    air_density_kg_m3 : float or array
        Air density at hub height [kg/m³], broadcastable against ``wind_speed_m_s``.

    Returns
    -------
    ndarray
        Electrical power [W].

    References
    ----------
    IEC 61400-12-1:2017, Power performance measurements of electricity producing wind turbines,
    data normalisation for turbines with active power control.
    """
    v = np.asarray(wind_speed_m_s, np.float64)
    shift = (np.asarray(air_density_kg_m3, np.float64) / RHO0_KG_M3) ** (1 / 3)
    ws, pw = power_curve.wind_speed_m_s, power_curve.power_w
    p = np.interp(v * shift, ws, pw, left=0.0, right=pw[-1])
    return np.where((v >= 0) & (v <= power_curve.cut_out_m_s), p, 0.0)


# -- capacity factor -----------------------------------------------------------------------------
def _axis(spec: tuple[float, float, int]) -> np.ndarray:
    start, step, n = spec
    return start + step * np.arange(n)


@functools.lru_cache(maxsize=16)
def _cf_table(curve: tuple, ks: tuple[float, ...], axes: tuple) -> np.ndarray:
    """CF lattice [k, density, mean speed] by exact Weibull bin masses × binned site power."""
    ws_b, pw_b, rated, turbine = curve
    pc = PowerCurve(np.frombuffer(ws_b), np.frombuffer(pw_b), rated, (), 0.0, turbine)
    dens, speeds = _axis(axes[0]), _axis(axes[1])
    cut = pc.cut_out_m_s
    edges = np.union1d(np.arange(0.0, cut, _BIN_M_S), [cut])
    mid = 0.5 * (edges[1:] + edges[:-1])
    p_site = density_corrected_power(mid[None, :], pc, dens[:, None]) / pc.rated_power_w
    out = np.empty((len(ks), len(dens), len(speeds)))
    for i, k in enumerate(ks):
        c = np.where(speeds > 0, speeds, 1.0) / gamma(1.0 + 1.0 / k)  # Weibull scale [m/s]
        surv = np.exp(-((edges[:, None] / c[None, :]) ** k))  # P(V > edge)
        mass = surv[:-1] - surv[1:]  # probability of each bin, exact
        mass[:, speeds == 0] = 0.0  # calm: all mass at 0 m/s where power is 0
        out[i] = p_site @ mass
    out.flags.writeable = False  # cached: shared by every call with this (curve, k)
    return out


def _interp_regular(table: np.ndarray, axes: list[tuple], coords: list[np.ndarray]) -> np.ndarray:
    """Multilinear interpolation on a regular lattice (coords already inside the lattice)."""
    lo, fr = [], []
    for (start, step, n), x in zip(axes, coords, strict=True):
        t = (x - start) / step
        i = np.clip(np.floor(t), 0, n - 2).astype(np.intp)
        lo.append(i)
        fr.append(np.clip(t - i, 0.0, 1.0))
    out = np.zeros(coords[0].shape)
    for corner in itertools.product((0, 1), repeat=len(axes)):
        w = np.ones(coords[0].shape)
        for c, f in zip(corner, fr, strict=True):
            w = w * (f if c else 1.0 - f)
        out += w * table[tuple(i + c for i, c in zip(lo, corner, strict=True))]
    return out


def _cf_block(speed, rho, *rest, axes):
    k = rest[0] if len(rest) == 2 else None
    table = rest[-1]
    _check_range(speed, 0.0, 40.0, "mean wind speed [m/s]", "is it in km/h or knots?")
    _check_range(rho, 0.30, 1.60, "air density [kg/m³]", "is it in g/m³, or a pressure?")
    coords = [rho.astype(np.float64), speed.astype(np.float64)]
    if k is not None:
        _check_range(k, 1.0, 4.0, "Weibull k", "k rasters must lie in 1–4 (use a float k)")
        coords.insert(0, k.astype(np.float64))
    ok = np.logical_and.reduce([np.isfinite(c) for c in coords])
    coords = [np.where(ok, c, a[0]) for c, a in zip(coords, axes, strict=True)]
    cf = _interp_regular(table, list(axes), coords)
    return np.where(ok, cf, np.nan).astype(np.float32)


def capacity_factor(
    mean_speed: xr.DataArray,
    air_density: xr.DataArray | float,
    power_curve: PowerCurve | str = DEFAULT_TURBINE,
    k: float | xr.DataArray = 2.0,
) -> xr.DataArray:
    r"""Capacity factor of a turbine: density-corrected power curve over a Weibull distribution.

    .. math:: CF = \frac{1}{P_r}\int_0^{V_{out}} P_{std}\!\left(V (\rho/\rho_0)^{1/3}\right)
              f_W(V; c, k)\, dV, \qquad c = \bar v / \Gamma(1 + 1/k)

    (density correction of :func:`density_corrected_power`, IEC 61400-12-1). The integral is
    tabulated once per (curve, k) on a lattice — mean speed 0–40 m/s by 0.05, density 0.30–1.60
    kg/m³ by 0.01 — with exact Weibull probabilities of 0.05 m/s speed bins, then interpolated
    bilinearly per pixel (a chunk-wise ``blockwise`` op; the table is one graph key). With a
    k raster the table gains a k axis (1–4 by 0.1; speed by 0.1, density by 0.02) and the
    interpolation is trilinear; agreement with direct integration ≲ 1e-3 in CF.
    CF lies in [0, 1] (normalised by the nominal power, or by the curve's peak if higher). It
    rises with mean speed up to a peak (13.5–17 m/s for E-141/4200 with k 1.2–4 and ρ 0.5–1.4
    kg/m³); above that, time beyond cut-out makes it fall again.

    For E-141/4200, mean 6 m/s, k = 2: CF 0.299 at 500 m (ρ = 1.167 kg/m³) and 0.234 at 4000 m
    (ρ = 0.819), 22 % less. windpowerlib's own ``power_curve_density_correction`` uses
    Svenningsen's (2010) exponent rising from 1/3 (≤ 7.5 m/s) to 2/3 (≥ 12.5 m/s), which pushes
    rated speed further out in thin air: it gives 0.225 at 4000 m (4 % below this function) and
    0.297 at 500 m (0.5 % below); at 8 m/s mean, 0.385 against 0.401 at 4000 m.

    Parameters
    ----------
    mean_speed : DataArray
        Annual mean wind speed at hub height [m/s] (0–40; else InputError at compute time).
    air_density : DataArray or float
        Air density at hub height [kg/m³] (0.30–1.60; hPa/Pa/g m⁻³ magnitudes raise InputError).
    power_curve : PowerCurve or str
        Curve from :func:`load_power_curve`, or a library turbine name.
    k : float or DataArray
        Weibull shape parameter [-] (float 0.5–10; raster 1–4).

    Returns
    -------
    DataArray
        Capacity factor [-], float32, NaN where an input is NaN.

    References
    ----------
    IEC 61400-12-1:2017 (density normalisation). Justus, C. G., Hargraves, W. R., Mikhail, A. &
    Graber, D. (1978): Methods for estimating wind speed frequency distributions. J. Appl.
    Meteorol. 17, 350–353 (Weibull). Svenningsen, L. (2010): Power curve air density correction
    and other power curve options in WindPRO. EMD International.
    """
    pc = load_power_curve(power_curve) if isinstance(power_curve, str) else power_curve
    if not isinstance(mean_speed, xr.DataArray):
        raise InputError("mean_speed must be an xarray.DataArray on the grid [m/s]")
    _check_units(mean_speed, _SPEED_UNITS, "mean wind speed", "m s-1")
    if isinstance(air_density, xr.DataArray):
        _check_units(air_density, {"kg m-3", "kg/m3", "kg m^-3", "kg/m^3"}, "air density", "kg m-3")
    else:
        _check_range(np.asarray(float(air_density)), 0.30, 1.60, "air density [kg/m³]",
                     "is it in g/m³, or a pressure in Pa/hPa?")  # fmt: skip
        air_density = xr.full_like(mean_speed, float(air_density), dtype=np.float32)
    raster_k = isinstance(k, xr.DataArray)
    if not raster_k and not 0.5 <= float(k) <= 10.0:
        raise InputError(f"Weibull k = {k} outside 0.5–10 (wind climates: 1.2–3.5)")
    arrays = _to_dask([mean_speed, air_density, *([k] if raster_k else [])], "capacity_factor")
    if raster_k:
        axes = (_K_AXIS_3D, _DENSITY_AXIS_3D, _SPEED_AXIS_3D)
        ks = tuple(np.round(_axis(_K_AXIS_3D), 10))
    else:
        axes, ks = (_DENSITY_AXIS, _SPEED_AXIS), (float(k),)
    curve_key = (pc.wind_speed_m_s.tobytes(), pc.power_w.tobytes(), pc.rated_power_w,
                 pc.turbine_type)  # fmt: skip
    table = _cf_table(curve_key, ks, axes[-2:])
    table = table if raster_k else table[0]
    tab = da.from_array(table, chunks=table.shape, name="cf-table-" + tokenize(curve_key, ks, axes))
    ind = "yxzw"[: mean_speed.ndim]
    lut_ind = "KDS"[-table.ndim :]
    args = [x for a in (arrays[1], *arrays[2:]) for x in (a.data, ind)]
    data = da.blockwise(
        functools.partial(_cf_block, axes=axes), ind, arrays[0].data, ind, *args,
        tab, lut_ind, dtype=np.float32, concatenate=True,
    )  # fmt: skip
    k_txt = f"{float(k):g}" if not raster_k else "raster"
    out = arrays[0].copy(data=data).rename("wind_cf")
    out.attrs = {
        **{a: v for a, v in mean_speed.attrs.items() if a == "modelled"},
        "units": "1",
        "long_name": f"wind capacity factor ({pc.turbine_type})",
        "turbine_type": pc.turbine_type,
        "weibull_k": k_txt,
        "method": f"power curve {pc.turbine_type} (windpowerlib oedb library), IEC 61400-12-1 "
        f"density shift V*(rho/1.225)^(1/3), Weibull k={k_txt}, no wake/availability losses",
    }
    return out


# -- modelled mean speed ---------------------------------------------------------------------------
def _resolution_m(dem: xr.DataArray) -> float:
    crs = dem.rio.crs if hasattr(dem, "rio") else None
    if crs is not None and crs.is_geographic:
        raise CRSError("DEM is on a geographic (degree) grid; align it to the metric sitekit Grid")
    if "x" not in dem.coords or dem.sizes.get("x", 0) < 2:
        raise InputError("DEM needs an 'x' coordinate in metres with at least 2 columns")
    return abs(float(dem["x"][1] - dem["x"][0]))


def _box_tpi(dem: xr.DataArray, radius_m: float = 2000.0) -> xr.DataArray:
    """TPI: elevation minus the mean elevation of the (2r+1)² box around each pixel [m]
    (:func:`sitekit.science.terrain.tpi` with ``window="box"``, r = ``radius_m`` / pixel width).

    NaN cells and cells beyond the raster edge are left out of the mean. Chunked == unchunked
    bit for bit.

    References
    ----------
    Weiss, A. (2001): Topographic position and landforms analysis. ESRI User Conference poster.
    """
    _resolution_m(dem)  # a metric grid with an x coordinate
    out = terrain.tpi(dem, radius_m=radius_m, window="box")
    out.attrs = {"units": "m", "long_name": "topographic position index", "radius_m": radius_m}
    return out


def modelled_reference_speed(
    dem: xr.DataArray,
    tpi: xr.DataArray | None = None,
    *,
    base_speed_m_s: float = 5.5,
    reference_height_m: float = 100.0,
    base_elevation_m: float = 1500.0,
    elevation_gain_m_s_per_km: float = 0.5,
    max_elevation_m: float = 4500.0,
    tpi_radius_m: float = 2000.0,
    speedup_coefficient: float = 1.6,
    speedup_limits: tuple[float, float] = (-0.4, 0.6),
    speed_limits_m_s: tuple[float, float] = (2.0, 12.0),
) -> xr.DataArray:
    r"""Modelled annual mean wind speed at 100 m from terrain exposure, when no climatology exists.

    .. math:: v = \mathrm{clip}\Big(\big[v_0 + g\,\mathrm{clip}(z - z_0, 0, z_{max} - z_0)\big]
              \big(1 + \mathrm{clip}(B\,\mathrm{TPI}/R)\big),\; 2,\; 12\Big)

    * ``v0`` = 5.5 m/s at 100 m: a regional ASSUMPTION for the valleys and basins of the western
      Sichuan plateau, not a measurement. Plausibility anchor: Goldwind's high-altitude pilot on
      Xitieshan (Qinghai, ≈ 3000 m) reported a 6.5 m/s hub-height mean at ρ = 0.88 kg/m³
      (Materials Today news, 2011); this model gives 6.25 m/s on flat ground at 3000 m.
    * elevation term ``g`` = +0.5 m/s per km above 1500 m, capped at 4500 m (+1.5 m/s): plateau
      surfaces reach into the stronger westerlies; an assumption of this model.
    * exposure term: the linear-theory speed-up over low hills (Jackson & Hunt 1975), in the
      guideline form ΔS = B·H/L of Taylor & Lee (1984) with B = 1.6 (3-D hills), using the TPI
      (height above the mean of the surrounding box) for H and the box radius R for L; ridges
      speed up, valleys (negative TPI) slow down; ΔS is clipped to [−0.4, +0.6] because the
      theory holds only for slopes ≲ 0.3 (Taylor & Lee 1984). Howard & Clark (2007) use the same
      linear theory to downscale NWP winds to unresolved hills.

    Screening only: replace it with a climatology (e.g. Global Wind Atlas v3 GeoTIFF at 100 m,
    Davis et al. 2023) whenever one is available.

    Parameters
    ----------
    dem : DataArray
        Elevation [m] on a metric grid.
    tpi : DataArray, optional
        Topographic position index [m]; computed with a ``tpi_radius_m`` box when None.
    base_speed_m_s, elevation_gain_m_s_per_km, base_elevation_m, max_elevation_m : float
        Elevation term [m/s, m/s per km, m, m].
    tpi_radius_m : float
        Box radius R [m] of the TPI (also the L of the speed-up; pass the radius a given ``tpi``
        was computed with).
    speedup_coefficient : float
        B [-]; ``speedup_limits`` bound ΔS [-]; ``speed_limits_m_s`` bound the result [m/s].

    Returns
    -------
    DataArray
        Mean wind speed at ``reference_height_m`` [m/s], float32, attrs ``modelled="yes"``.

    References
    ----------
    Jackson, P. S. & Hunt, J. C. R. (1975): Turbulent wind flow over a low hill. Q. J. R.
    Meteorol. Soc. 101, 929–955. Taylor, P. A. & Lee, R. J. (1984): Simple guidelines for
    estimating wind speed variations due to small-scale topographic features. Climatol. Bull.
    18(2), 3–32. Howard, T. & Clark, P. (2007): Correction and downscaling of NWP wind speed
    forecasts. Meteorol. Appl. 14, 105–116. Davis, N. N. et al. (2023): The Global Wind Atlas.
    Bull. Amer. Meteor. Soc. 104(8).
    """
    _check_units(dem, _LENGTH_UNITS, "DEM", "metres (m)")
    if tpi is None:
        tpi = _box_tpi(dem, tpi_radius_m)
    else:
        _check_units(tpi, _LENGTH_UNITS, "TPI", "metres (m)")
        _same_grid(dem, tpi, what="modelled_reference_speed")
    dz = (dem - base_elevation_m).clip(0.0, max_elevation_m - base_elevation_m)
    v_elev = base_speed_m_s + elevation_gain_m_s_per_km * dz / 1000.0
    speedup = (speedup_coefficient * tpi / tpi_radius_m).clip(*speedup_limits)
    speed = (v_elev * (1.0 + speedup)).clip(*speed_limits_m_s).astype(np.float32)
    speed.attrs = {
        "units": "m s-1",
        "long_name": f"modelled mean wind speed at {reference_height_m:g} m",
        "height_m": float(reference_height_m),
        "modelled": "yes",
        "method": (
            f"terrain-exposure model: {base_speed_m_s:g} m/s + {elevation_gain_m_s_per_km:g} "
            f"m/s/km above {base_elevation_m:g} m (cap {max_elevation_m:g} m), times "
            f"1+{speedup_coefficient:g}*TPI/{tpi_radius_m:g} m clipped {speedup_limits} "
            f"(Jackson & Hunt 1975; Taylor & Lee 1984), clipped to {speed_limits_m_s} m/s"
        ),
    }
    return speed.rename("wind_speed_ref")


__all__ = [
    "DEFAULT_TURBINE",
    "PowerCurve",
    "air_density",
    "capacity_factor",
    "density_corrected_power",
    "hub_height_speed",
    "load_power_curve",
    "modelled_reference_speed",
]
