"""Annual PV specific yield [kWh/kWp/yr] and capacity factor per pixel.

Two paths, both lazy (dask) and both ending in the same pvlib chain:

* :func:`pv_yield_from_ghi` — a GHI climatology raster is given (Global Solar Atlas GeoTIFF …):
  the yield per unit of horizontal irradiation (transposition gain × performance ratio) comes from
  the chain below, evaluated for a range of clear-sky indices, and multiplies the user's GHI.
* :func:`modelled_pv_yield` — no climatology: the irradiance itself is modelled.

The chain is evaluated hourly over a representative non-leap year (``REFERENCE_YEAR``, time stamps
at mid-hour, UTC). Its sky — sun position (NREL SPA), pvlib's Linke turbidity and altitude grids,
the MERRA-2 monthly clear-sky index — is :mod:`sitekit.science.clearness`; its plant — Erbs
decomposition, Perez transposition, fixed racks at the optimal tilt or single-axis trackers,
Faiman cell temperature, PVWatts DC and inverter, row shading on sloping ground (GB 50797-2012
pitch) — is :mod:`sitekit.science.pv`. Both modules cite their sources.

Efficiency: the time series is never run per pixel. It runs on a coarse lattice (0.5° in
longitude and latitude × elevation levels every 500 m from 0 to 8000 m, plus N–S slope levels) in
one dask task per lattice row, and each pixel interpolates (multi-linearly) inside ``map_blocks``.
The functions here build that lattice and the per-pixel interpolation; nothing reads a file (the
MERRA-2 table arrives as a DataFrame, :func:`sitekit.io.climate.read_merra2`).

References
----------
Holmgren, W.F., Hansen, C.W., Mikofski, M.A. (2018): pvlib python. JOSS 3(29), 884.
Further references in :mod:`sitekit.science.clearness` and :mod:`sitekit.science.pv`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from sitekit.errors import CRSError, InputError, LayerError
from sitekit.grid import transformer
from sitekit.science.clearness import (  # noqa: F401 - re-exported: sitekit.science.solar's names
    HOURS_PER_YEAR,
    REFERENCE_YEAR,
    _altitude_m,
    _cell_clear_sky_monthly_w_m2,
    _clearness_source,
    _linke_hourly,
    clearness_index_monthly,
    clearness_label,
    representative_year,
)
from sitekit.science.pv import (  # noqa: F401 - re-exported: sitekit.science.solar's names
    SEA_LEVEL_TEMP_C,
    TRACKER_MAX_AXIS_TILT_DEG,
    PVDesign,
    _ac_yield,
    _gb50797_pitch,
    _horizontal,
    _node,
    _optimal_tilt,
    _poa,
    _sky,
    _tracker_orientation,
    air_temperature_c,
)

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


# -- the lattice --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Lattice:
    lat: np.ndarray
    lon: np.ndarray
    levels: np.ndarray
    s_levels: np.ndarray
    mult: np.ndarray


def _lonlat_bounds(arr: xr.DataArray, what: str) -> tuple[float, float, float, float]:
    """(lon_min, lat_min, lon_max, lat_max) of the pixel centres of ``arr``, from coords + CRS."""
    if arr.rio.crs is None:
        raise CRSError(f"{what} has no CRS; wrap it with Grid.wrap (or write one with rio)")
    x = np.asarray(arr[arr.rio.x_dim].values, dtype=float)
    y = np.asarray(arr[arr.rio.y_dim].values, dtype=float)
    if arr.rio.crs.is_geographic:
        return float(x.min()), float(y.min()), float(x.max()), float(y.max())
    xs = np.concatenate([x, x, np.full(y.size, x[0]), np.full(y.size, x[-1])])
    ys = np.concatenate([np.full(x.size, y[0]), np.full(x.size, y[-1]), y, y])
    lon, lat = transformer(arr.rio.crs, 4326).transform(xs, ys)  # cached per CRS pair
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
    clearness = _clearness_source(clearness)  # fail early on a path or a bad table
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


def _lattice_yield(
    lat: xr.DataArray,
    lon: xr.DataArray,
    elevation_m: xr.DataArray,
    slope_deg: xr.DataArray | None,
    aspect_deg: xr.DataArray | None,
    *,
    ghi: xr.DataArray | None,
    flat_yield: Callable[..., np.ndarray],
    clearness: Any,
    mult: np.ndarray,
    design: PVDesign,
    lattice_step_deg: float,
    elevation_step_m: float,
    elevation_range_m: tuple[float, float],
    long_name: str,
    modelled: str,
    source: str,
) -> xr.DataArray:
    """The lazy yield raster [kWh/kWp/yr] both public paths share: build the lattice, then per
    block interpolate the pixels' flat-ground yield (``flat_yield(lattice, ii, jj, zz[, ghi])``
    on the (lat, lon, elevation) lattice indices), times the terrain factor on sloping ground;
    NaN wherever an input is NaN. Inputs are checked by the caller."""
    lat_ax, lattice = _build_lattice(
        lat, clearness, mult, design, lattice_step_deg, elevation_step_m, elevation_range_m
    )
    chunks = lat.data.chunks if isinstance(lat.data, da.Array) else lat.shape
    lead = [] if ghi is None else [ghi]
    arrays = [_dask(a, chunks) for a in (*lead, lat, lon, elevation_m)]
    if slope_deg is not None:
        arrays += [_dask(slope_deg, chunks), _dask(aspect_deg, chunks)]
    n = len(lead)

    def _block(*blocks, lattice):
        head, (la, lo, z), rest = blocks[:n], blocks[n : n + 3], blocks[n + 3 :]
        ii, jj = _frac_index(la, lat_ax.lat), _frac_index(lo, lat_ax.lon)
        zz = _frac_index(np.clip(z, lat_ax.levels[0], lat_ax.levels[-1]), lat_ax.levels)
        y = flat_yield(lattice, ii, jj, zz, *head)
        if rest:
            s = np.clip(_slope_ns_deg(*rest), lat_ax.s_levels[0], lat_ax.s_levels[-1])
            y = y * _multilinear(lattice["terrain"], [ii, jj, _frac_index(s, lat_ax.s_levels)])
        bad = np.isnan(la) | np.isnan(lo) | np.isnan(z)
        for h in head:
            bad = bad | np.isnan(h)
        return np.where(bad, np.nan, y).astype(np.float32)

    data = da.map_blocks(_block, *arrays, lattice=lattice, dtype=np.float32)
    attrs = {
        "units": "kWh/kWp/yr",
        "long_name": long_name,
        "modelled": modelled,
        "method": _method(
            design, lattice_step_deg, elevation_step_m, source, slope_deg is not None
        ),
        "tracking": design.tracking,
        "losses_pct": design.losses_pct,
    }
    return _wrap(elevation_m, data, attrs)


def modelled_pv_yield(
    lat: xr.DataArray,
    lon: xr.DataArray,
    elevation_m: xr.DataArray,
    slope_deg: xr.DataArray | None = None,
    aspect_deg: xr.DataArray | None = None,
    *,
    clearness: pd.DataFrame | float | Sequence[float],
    tracking: str = "fixed",
    losses_pct: float = 14.0,
    design: PVDesign | None = None,
    lattice_step_deg: float = 0.5,
    elevation_step_m: float = 500.0,
    elevation_range_m: tuple[float, float] = (0.0, 8000.0),
) -> xr.DataArray:
    """Modelled annual PV specific yield [kWh/kWp/yr] where no irradiance climatology is given.

    Clear-sky irradiance (Ineichen–Perez, pvlib Linke turbidity, pixel elevation) × a monthly
    clear-sky index, then the chain of :mod:`sitekit.science.pv`, on a coarse lattice
    interpolated to the pixels. Lazy: nothing runs until the result is computed.

    Parameters
    ----------
    lat, lon : xarray.DataArray
        Pixel-centre latitude and longitude [degree] on the grid (``Grid.lonlat()``).
    elevation_m : xarray.DataArray
        Ground elevation [m]; clamped to ``elevation_range_m``.
    slope_deg, aspect_deg : xarray.DataArray, optional
        Ground slope [degree] and aspect [degree from north, downslope]; None = flat ground.
        Flat cells (aspect NaN) count as flat.
    clearness : DataFrame, float or 12 floats
        The MERRA-2 monthly GHI table (``layers/sichuan-west/resource/
        merra2_ghi_monthly_mean_3deg_subset.csv`` read with
        :func:`sitekit.io.climate.read_merra2`) or a uniform / monthly clear-sky index.
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

    def _flat(lattice, ii, jj, zz):
        return _multilinear(lattice["yield"], [ii, jj, zz], (0,))

    return _lattice_yield(
        lat, lon, elevation_m, slope_deg, aspect_deg, ghi=None, flat_yield=_flat,
        clearness=clearness, mult=np.array([1.0]), design=d, lattice_step_deg=lattice_step_deg,
        elevation_step_m=elevation_step_m, elevation_range_m=elevation_range_m,
        long_name="PV specific yield (modelled)", modelled="yes",
        source=clearness_label(_clearness_source(clearness)),
    )  # fmt: skip


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
    chain of :mod:`sitekit.science.pv`, evaluated on the lattice for uniform clear-sky indices
    ``k`` of 0.3–1.0; each pixel takes ``k`` = its GHI over its modelled clear-sky GHI (so clearer
    skies get the larger beam share and tilt gain), the rack tilt being optimised for each ``k``.
    ASSUMPTION: the same ``k`` in every month; the terrain factor is taken at ``k`` = 0.7.

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

    def _flat(lattice, ii, jj, zz, g):
        g = g * factor
        clear = _multilinear(lattice["ghi"], [ii, jj, zz], (mult.size - 1,))  # k = 1
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = lattice["yield"] / lattice["ghi"]
            k = np.clip(g / clear, mult[0], mult[-1])
        c0, cw = _frac_index(k, mult)
        return g * _multilinear(ratio, [ii, jj, zz, (c0, cw)])

    return _lattice_yield(
        lat, lon, elevation_m, slope_deg, aspect_deg, ghi=ghi, flat_yield=_flat, clearness=1.0,
        mult=mult, design=d, lattice_step_deg=lattice_step_deg, elevation_step_m=elevation_step_m,
        elevation_range_m=elevation_range_m, long_name="PV specific yield from GHI climatology",
        modelled="no", source="GHI climatology x yield per unit GHI",
    )  # fmt: skip


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
