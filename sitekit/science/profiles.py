"""Typical-day generation profiles (12 months × 24 h, Beijing time) for PV and wind sites and
hydro plants, the input of the hydro–wind–solar base sizing (:mod:`sitekit.science.bases`).

* **PV** — the hourly pvlib chain of :mod:`sitekit.science.pv` (NREL SPA sun, Ineichen–Perez clear
  sky with pvlib's Linke turbidity, MERRA-2 monthly clear-sky index, Erbs, Perez, Faiman,
  PVWatts; fixed racks at the optimal tilt or single-axis trackers), run once per 0.5° lattice
  node and averaged per month and hour. Each site takes its node's *shape* scaled to its own
  annual capacity factor (the site's ``energy_gwh`` / (``capacity_mw`` × 8.76)), so terrain and
  elevation effects already in the site yield are kept.
* **Wind** — a seasonal × diurnal shape from a catalogue table (``monthly_factors``, 12 values,
  mean 1; ``diurnal_amplitude`` and ``diurnal_peak_hour``), scaled to the site's annual CF.
  Modelled, never measured.
* **Hydro** — monthly generation shares per regulation class or plant (a catalogue table) ×
  the plant's annual energy (installed MW × a design capacity factor). Within a day the energy
  is fixed; how freely it moves between hours is the plant's regulation class
  (:data:`REGULATION_CLASSES`), taken from the reservoirs table when it names one, else from
  the GEM technology type.

Every default shape here is labelled with its ``status``: ``cited`` (numbers from the named
source), ``unverified`` (a qualitative pattern that a source describes but whose numbers were
not found: the values are an illustration of that pattern). Profiles are modelled data.
The tables are read and validated as :mod:`sitekit.specs.bases` models (``pipelines/bases.yaml``);
the functions here take those objects, or any with the same attributes, and import no spec.

References
----------
Holmgren, W.F., Hansen, C.W., Mikofski, M.A. (2018): pvlib python. JOSS 3(29), 884.
Global Energy Monitor (2023): Global Hydropower Tracker, May 2023 release (CC BY 4.0).
严锦江 (2020): 大渡河流域梯级电站联合调度 (国电大渡河流域水电开发有限公司), copy at
m.handmsg.com/page/2020/0922/17265798.shtml — regulation classes of the Dadu cascade (下尔呷
multi-year, 双江口 and 瀑布沟 annual, 猴子岩 and 长河坝 seasonal, the others weekly, daily or
run-of-river).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sitekit.errors import InputError, LayerError
from sitekit.science.clearness import (
    HOURS_PER_YEAR,
    _altitude_m,
    clearness_index_monthly,
    representative_year,
)
from sitekit.science.pv import (
    PVDesign,
    _ac_yield,
    _horizontal,
    _optimal_tilt,
    _poa,
    _sky,
    _tracker_orientation,
    air_temperature_c,
)

if TYPE_CHECKING:  # the models live in sitekit.specs.bases; science takes any object like them
    from sitekit.specs.bases import BasesSpec, WindShape


#: days per month of the non-leap representative year
DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=float)
#: Beijing time (UTC+8): the grid dispatches on it
UTC_OFFSET_H = 8
#: regulation classes and what they mean within a day: ``run_of_river`` — no pondage, output
#: follows the (daily-mean) inflow: flat within the day; ``daily`` — daily/weekly pondage: the
#: day's energy can be moved between hours down to ``min_output_frac`` × the day's mean power;
#: ``seasonal`` — seasonal, annual or multi-year storage: the day's energy moves freely between
#: an ecological minimum (``min_output_frac`` × installed MW) and the installed MW.
REGULATION_CLASSES = ("run_of_river", "daily", "seasonal")
#: lattice step of the PV shape [degree]: the shape varies little within it
PV_NODE_STEP_DEG = 0.5


# -- shapes -------------------------------------------------------------------------------------
def typical_day(hourly_utc: np.ndarray, times_utc: pd.DatetimeIndex) -> np.ndarray:
    """Mean of an hourly series per month and Beijing-time hour [same units], shape (12, 24)."""
    local = pd.DatetimeIndex(times_utc) + pd.Timedelta(hours=UTC_OFFSET_H)
    df = pd.DataFrame({"v": np.asarray(hourly_utc, float), "m": local.month, "h": local.hour})
    out = df.pivot_table(index="m", columns="h", values="v", aggfunc="mean")
    return out.reindex(index=range(1, 13), columns=range(24)).fillna(0.0).to_numpy()


def annual_mean(profile: np.ndarray) -> float:
    """Day-weighted annual mean of a (12, 24) profile."""
    p = np.asarray(profile, float)
    return float((p.mean(axis=1) * DAYS_IN_MONTH).sum() / DAYS_IN_MONTH.sum())


def scale_to_cf(shape: np.ndarray, cf: float) -> np.ndarray:
    """``shape`` (12, 24) rescaled so its annual mean is ``cf`` [-], clipped to [0, 1]."""
    m = annual_mean(shape)
    if m <= 0:
        raise InputError("profile shape has no output")
    return np.clip(np.asarray(shape, float) * (cf / m), 0.0, 1.0)


def pv_shape(
    lat: float,
    lon: float,
    clearness: pd.DataFrame | float | Sequence[float],
    design: PVDesign | None = None,
) -> np.ndarray:
    """Typical-day AC output per kWp DC at a point [kW/kWp], (12, 24), Beijing time.

    The hourly chain of :mod:`sitekit.science.pv` at the point's pvlib altitude: ``clearness`` is
    what :func:`sitekit.science.clearness.clearness_index_monthly` takes (the MERRA-2 table as a
    DataFrame, :func:`sitekit.io.climate.read_merra2`, or indices). Kept per point, index and
    design.
    """
    k = clearness_index_monthly(clearness, lat, lon)
    return _pv_shape(lat, lon, tuple(np.asarray(k, float).tolist()), design)


@functools.lru_cache(maxsize=256)
def _pv_shape(
    lat: float, lon: float, k_month: tuple[float, ...], design: PVDesign | None
) -> np.ndarray:
    """:func:`pv_shape` at the point's 12 monthly clear-sky indices ``k_month`` [-]."""
    d = design or PVDesign()
    sky = _sky(lat, lon)
    level = _altitude_m(np.array([lat]), np.array([lon]))
    one = np.array([1.0])
    with np.errstate(invalid="ignore", divide="ignore"):
        ghi, dni, dhi = _horizontal(sky, level, np.asarray(k_month, float), one)
        temp = air_temperature_c(sky.times, lon, level, d)[:, :, None]
        if d.tracking == "fixed":
            tilt = (_optimal_tilt(sky, ghi[:, 0, :], dni[:, 0, :], dhi[:, 0, :], d)
                    if d.tilt_deg is None else np.array([float(d.tilt_deg)]))  # fmt: skip
            direct, diffuse, iam = _poa(sky, tilt[None, None, :], 180.0, ghi, dni, dhi, d)
        else:
            st, sa = _tracker_orientation(sky, d, 0.0)
            direct, diffuse, iam = _poa(sky, st, sa, ghi, dni, dhi, d)
        # _ac_yield sums over its first axis: a leading axis of length 1 keeps the hours
        pac = _ac_yield(direct[None], diffuse[None], iam[None], temp[None], d)
    hourly = np.zeros(HOURS_PER_YEAR)
    times = representative_year()
    hourly[times.get_indexer(sky.times)] = np.asarray(pac).reshape(len(sky.times))
    return typical_day(hourly, times)


def wind_shape(spec: WindShape) -> np.ndarray:
    """Typical-day wind output shape [-], (12, 24), annual mean 1 before CF scaling.

    ``spec``: a :class:`sitekit.specs.bases.WindShape`, or any object with its
    ``monthly_factors`` (12), ``diurnal_amplitude`` [-] and ``diurnal_peak_hour`` [h, BJT]."""
    f = np.asarray(spec.monthly_factors, float)
    f = f / (f * DAYS_IN_MONTH).sum() * DAYS_IN_MONTH.sum()
    h = np.arange(24) + 0.5
    d = 1.0 + spec.diurnal_amplitude * np.cos(2 * np.pi * (h - spec.diurnal_peak_hour) / 24.0)
    return f[:, None] * d[None, :]


def _lonlat(gdf) -> tuple[np.ndarray, np.ndarray]:
    if gdf.crs is None:
        raise LayerError("sites have no CRS")
    cen = gdf.geometry.representative_point()
    from sitekit.grid import transformer

    tr = transformer(gdf.crs, 4326)  # cached per CRS pair
    lon, lat = tr.transform(cen.x.to_numpy(), cen.y.to_numpy())
    return np.asarray(lat), np.asarray(lon)


def site_cf(sites: pd.DataFrame) -> np.ndarray:
    """Annual capacity factor of each site [-] = energy_gwh / (capacity_mw × 8.76)."""
    mw = sites["capacity_mw"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        cf = sites["energy_gwh"].to_numpy(float) / (mw * 8.76)
    return np.where(np.isfinite(cf) & (cf > 0), np.minimum(cf, 1.0), 0.0)


def site_profiles(sites, technology: str, *, wind: WindShape | None = None, clearness=0.6,
                  design: PVDesign | None = None) -> np.ndarray:  # fmt: skip
    """Per-MW typical-day output of every site [MW/MW], shape (n, 12, 24).

    PV: the shape of the site's 0.5° lattice node (:func:`pv_shape`); wind: :func:`wind_shape`.
    Each is scaled to the site's own annual CF (:func:`site_cf`).
    """
    n = len(sites)
    out = np.zeros((n, 12, 24))
    if n == 0:
        return out
    cf = site_cf(sites)
    if technology == "wind":
        if wind is None:
            raise InputError("wind site profiles need the wind shape table (bases.yaml wind:)")
        shape = wind_shape(wind)
        for i in range(n):
            out[i] = scale_to_cf(shape, cf[i]) if cf[i] > 0 else 0.0
        return out
    if technology != "pv":
        raise InputError(f"no profile model for technology {technology!r}")
    lat, lon = _lonlat(sites)
    node_lat = np.round(lat / PV_NODE_STEP_DEG) * PV_NODE_STEP_DEG
    node_lon = np.round(lon / PV_NODE_STEP_DEG) * PV_NODE_STEP_DEG
    shapes: dict[tuple[float, float], np.ndarray] = {}
    for i in range(n):
        key = (float(node_lat[i]), float(node_lon[i]))
        if key not in shapes:
            shapes[key] = pv_shape(*key, clearness, design)
        out[i] = scale_to_cf(shapes[key], cf[i]) if cf[i] > 0 else 0.0
    return out


# -- hydro ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HydroProfile:
    """A plant's typical days: daily energy per month [MWh/day], bounds [MW] and its class."""

    energy_mwh_per_day: np.ndarray  # (12,)
    min_mw: np.ndarray  # (12,) lowest hourly output
    max_mw: float  # installed MW
    regulation: str
    spilled_mwh_per_yr: float  # monthly energy above 24 h × max_mw (cannot be generated)

    def flat(self) -> np.ndarray:
        """The undispatched profile (daily energy spread evenly) [MW], (12, 24)."""
        return np.repeat((self.energy_mwh_per_day / 24.0)[:, None], 24, axis=1)


def hydro_profile(capacity_mw: float, annual_cf: float, shares, regulation: str,
                  min_output_frac: float) -> HydroProfile:  # fmt: skip
    """Typical days of one plant from its monthly shares of annual energy.

    Annual energy = ``capacity_mw`` × ``annual_cf`` × 8760 [MWh]; month m gets share m,
    spread over its days; any month above 24 h × installed MW is capped (the excess counted as
    spilled). ``min_output_frac`` follows :data:`REGULATION_CLASSES`.
    """
    if regulation not in REGULATION_CLASSES:
        raise InputError(f"regulation {regulation!r}: use one of {REGULATION_CLASSES}")
    s = np.asarray(shares, float)
    s = s / s.sum()
    month_mwh = capacity_mw * annual_cf * 8760.0 * s
    day = month_mwh / DAYS_IN_MONTH
    capped = np.minimum(day, 24.0 * capacity_mw)
    spilled = float(((day - capped) * DAYS_IN_MONTH).sum())
    mean = capped / 24.0
    if regulation == "run_of_river":
        lo = mean
    elif regulation == "daily":
        lo = min_output_frac * mean
    else:
        lo = np.minimum(min_output_frac * capacity_mw, mean)
    return HydroProfile(capped, lo, float(capacity_mw), regulation, spilled)


def regulation_class(
    technology: str | None, name_zh: str | None, spec: BasesSpec
) -> tuple[str, str]:
    """A plant's class and where it comes from: the spec's ``plant_regulation`` table (each
    row cited) matched on the Chinese name, else the GEM technology type — "run-of-river" (also
    "conventional and run-of-river") → run_of_river, anything else → daily (the cautious
    default: a storage dam's regulation class is not in the GEM tracker). ``spec``: a
    :class:`sitekit.specs.bases.BasesSpec`, or any object whose ``plant_regulation`` rows have
    ``name_zh``, ``regulation`` and ``source``."""
    for p in spec.plant_regulation:
        if name_zh and p.name_zh in str(name_zh):
            return p.regulation, p.source
    t = str(technology or "").lower()
    if "run-of-river" in t:
        return "run_of_river", "default: GEM technology type run-of-river"
    return "daily", f"default: GEM technology type {technology or 'unknown'!s}"
