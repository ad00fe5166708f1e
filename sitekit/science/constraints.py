"""Hard exclusions: every constraint becomes a boolean raster and one bit of ``exclusion_reasons``.

Four kinds of constraint, plain dataclasses (recipes map onto them):

* :class:`PolygonConstraint` — polygon layers (生态保护红线 ecological redlines, protected areas,
  glaciers, lakes/reservoirs) with an optional buffer [m];
* :class:`FeatureSetback` — point/line layers (settlements, roads, rivers) with a setback [m];
* :class:`RasterThreshold` — a raster compared with a value (slope > X°, elevation > X m), optionally
  only where a second boolean condition holds;
* :class:`AspectOnSlope` — aspect ranges on steep slopes (e.g. north-facing slopes > 10° for PV),
  ranges may wrap through north (315° → 45°);
* :class:`ClassRaster` — a categorical raster (land cover in ESA WorldCover or CLCD codes) whose
  listed classes are excluded (``exclude``) or are the only ones kept (``include``).

Every constraint is ``overridable`` (a soft exclusion) unless it is marked as a hard legal ban
(``overridable=False``). :class:`ForcedInclusion` zones (planned bases, approved projects) keep
their pixels eligible whatever the overridable constraints say; hard bans still exclude. Forced
zones own a reason bit too, so the ``exclusion_reasons`` raster records both the exclusions and the
override. :func:`plant_footprints` turns built plants into the land they occupy.

Buffers are computed in the metric grid CRS (layers are reprojected first, never buffered in degrees).
The rasterisation rule is explicit per vector constraint: ``"centre"`` (pixel centre inside the
buffered geometry), ``"all_touched"`` (any pixel the geometry touches) or ``"fraction"`` (exact
covered fraction of each pixel, so eligible areas stay right at coarse resolutions; the boolean mask of
such a constraint uses the majority rule, covered fraction ≥ 0.5).

:func:`evaluate` combines a list of constraints on a :class:`~sitekit.grid.Grid` lazily;
:func:`excluded_area_km2` reports excluded km² per reason per zone (e.g. prefecture).
"""

from __future__ import annotations

import math
import operator
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import dask.array as da
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr

from sitekit.errors import InputError, LayerError, SitekitWarning
from sitekit.grid import Grid, rasterize

Rule = Literal["centre", "all_touched", "fraction"]
RULES = ("centre", "all_touched", "fraction")
OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
#: Segments per quarter circle for buffers: the inscribed 64-gon loses 0.16 % of a disc's area.
QUAD_SEGS = 16
MAX_CONSTRAINTS = 32
#: Buffers below 1 mm are treated as no buffer.
MIN_BUFFER_M = 1e-3


@dataclass(frozen=True, eq=False)
class _Constraint:
    code: str
    name_en: str
    name_zh: str
    #: False = a hard legal ban that forced-inclusion zones cannot override
    overridable: bool = field(default=True, kw_only=True)

    def _check(self) -> None:
        if not isinstance(self.code, str) or not self.code.strip():
            raise InputError(f"constraint code must be a non-empty string, got {self.code!r}")

    @property
    def label(self) -> str:
        return f"constraint layer {self.code!r} ({self.name_en})"


@dataclass(frozen=True, eq=False)
class PolygonConstraint(_Constraint):
    """Polygons excluded with an optional buffer ``buffer_m`` [m] (≥ 0) around them."""

    geoms: gpd.GeoDataFrame
    buffer_m: float = 0.0
    rule: Rule = "centre"

    def __post_init__(self) -> None:
        self._check()
        _check_rule(self, self.rule)
        if not self.buffer_m >= 0:
            raise InputError(f"{self.label}: buffer_m must be ≥ 0 m, got {self.buffer_m}")


@dataclass(frozen=True, eq=False)
class FeatureSetback(_Constraint):
    """Everything within ``setback_m`` [m] (> 0) of points/lines (or polygons) is excluded."""

    geoms: gpd.GeoDataFrame
    setback_m: float
    rule: Rule = "centre"

    def __post_init__(self) -> None:
        self._check()
        _check_rule(self, self.rule)
        if not self.setback_m > 0:
            raise InputError(f"{self.label}: setback_m must be > 0 m, got {self.setback_m}")


@dataclass(frozen=True, eq=False)
class RasterThreshold(_Constraint):
    """Pixels where ``layer op value`` (and ``where``, if given) are excluded; NaN never excludes."""

    layer: xr.DataArray
    op: Literal[">", ">=", "<", "<="]
    value: float
    where: xr.DataArray | None = None

    def __post_init__(self) -> None:
        self._check()
        if self.op not in OPS:
            raise InputError(f"{self.label}: op must be one of {list(OPS)}, got {self.op!r}")


@dataclass(frozen=True, eq=False)
class AspectOnSlope(_Constraint):
    """Pixels steeper than ``min_slope_deg`` [°] facing ``aspect_from_deg``→``aspect_to_deg``.

    Aspect is the downslope direction [° clockwise from north]; the range runs clockwise from
    ``aspect_from_deg`` to ``aspect_to_deg`` (both inclusive) and wraps through north when
    from > to (315 → 45 is the northern quadrant). Slope must exceed the limit strictly.
    """

    slope: xr.DataArray
    aspect: xr.DataArray
    min_slope_deg: float
    aspect_from_deg: float
    aspect_to_deg: float

    def __post_init__(self) -> None:
        self._check()


@dataclass(frozen=True, eq=False)
class ClassRaster(_Constraint):
    """Pixels of a categorical raster whose class is in ``classes`` (``mode="exclude"``) or is
    not (``mode="include"``) are excluded; NaN (nodata) never excludes.

    The raster must be on the grid already, resampled with ``nearest`` or ``mode`` (a class code
    averaged with its neighbours is another class: see :meth:`sitekit.io.catalog.Catalog.raster`).
    """

    layer: xr.DataArray
    classes: tuple[int, ...]
    mode: Literal["exclude", "include"] = "exclude"

    def __post_init__(self) -> None:
        self._check()
        if self.mode not in ("exclude", "include"):
            raise InputError(f"{self.label}: mode must be exclude or include, got {self.mode!r}")
        if not len(self.classes):
            raise InputError(f"{self.label}: give at least one class code")


@dataclass(frozen=True, eq=False)
class ForcedInclusion(_Constraint):
    """Polygons (planned bases, approved projects) whose pixel centres stay eligible whatever
    the overridable constraints say; constraints with ``overridable=False`` still exclude."""

    geoms: gpd.GeoDataFrame
    buffer_m: float = 0.0
    rule: Rule = "centre"

    def __post_init__(self) -> None:
        self._check()
        if self.rule == "fraction":
            raise InputError(f"{self.label}: forced inclusion uses rule centre or all_touched")
        _check_rule(self, self.rule)


Constraint = (
    PolygonConstraint | FeatureSetback | RasterThreshold | AspectOnSlope | ClassRaster
    | ForcedInclusion
)  # fmt: skip


class ReasonBit(NamedTuple):
    bit: int
    code: str
    name_en: str
    name_zh: str


@dataclass(frozen=True, eq=False)
class ConstraintResult:
    """Lazy outcome of :func:`evaluate`.

    Attributes
    ----------
    masks : dict[str, DataArray]
        Per constraint code, bool, True = the constraint excludes the pixel.
    fractions : dict[str, DataArray]
        Per code, float32 fraction of the pixel the constraint excludes (0/1 except for
        ``rule="fraction"``, where it is the exact covered fraction).
    reasons : DataArray
        uint32 ``exclusion_reasons``: bit ``i`` set = constraint ``legend[i]`` excludes the pixel.
    excluded : DataArray
        bool, ``reasons != 0``.
    inclusion_fraction : DataArray
        float32 0–1 fraction of each pixel that stays eligible (study-area fraction included).
    legend : list[ReasonBit]
        (bit, code, name_en, name_zh) per constraint, in input order.
    grid : Grid
    """

    masks: dict[str, xr.DataArray]
    fractions: dict[str, xr.DataArray]
    reasons: xr.DataArray
    excluded: xr.DataArray
    inclusion_fraction: xr.DataArray
    legend: list[ReasonBit]
    grid: Grid = field(repr=False)
    #: bit mask of the forced-inclusion zones' bits
    forced_bits: int = 0
    #: bit mask of the constraints forced inclusion cannot override (hard legal bans)
    hard_bits: int = 0


def excluded_from_reasons(reasons: Any, forced_bits: int = 0, hard_bits: int = 0) -> Any:
    """Boolean "excluded" from an ``exclusion_reasons`` raster (numpy or dask, uint32).

    A pixel is excluded when a hard-ban bit is set, or when any other exclusion bit is set and no
    forced-inclusion bit is. With no forced zones this is ``reasons != 0``.
    """
    if not forced_bits:
        return reasons != 0
    soft = np.uint32(0xFFFFFFFF & ~(forced_bits | hard_bits))
    hard = (reasons & np.uint32(hard_bits)) != 0
    forced = (reasons & np.uint32(forced_bits)) != 0
    return hard | (((reasons & soft) != 0) & ~forced)


def _check_rule(c: _Constraint, rule: str) -> None:
    if rule not in RULES:
        raise InputError(f"{c.label}: rule must be one of {list(RULES)}, got {rule!r}")


# -- vector preparation ----------------------------------------------------------------------
def _polygonal(geom: Any) -> Any:
    """Keep only the polygonal parts of a (repaired) geometry."""
    parts = shapely.get_parts(geom)
    polys = parts[np.isin(shapely.get_type_id(parts), (3, 6))]
    return shapely.union_all(polys) if len(polys) else shapely.Polygon()


def prepare_geoms(
    c: PolygonConstraint | FeatureSetback | ForcedInclusion, grid: Grid
) -> np.ndarray:
    """Reproject, repair, buffer and check a vector constraint's geometries (grid CRS).

    Raises
    ------
    LayerError
        The layer has no geometries, wrong geometry types, or misses the study area / grid.
    """
    gdf = grid.to_grid_crs(c.geoms, where=c.label)
    arr = np.asarray(gdf.geometry.values, dtype=object)
    arr = arr[~(shapely.is_missing(arr) | shapely.is_empty(arr))] if len(arr) else arr
    if len(arr) == 0:
        raise LayerError(
            f"{c.label} is empty (no geometries): check its file and filter, or drop the "
            "constraint from the recipe"
        )
    polygon_layer = isinstance(c, PolygonConstraint | ForcedInclusion)
    if polygon_layer:
        bad = ~np.isin(shapely.get_type_id(arr), (3, 6))
        if bad.any():
            kinds = sorted({g.geom_type for g in arr[bad]})
            raise LayerError(
                f"{c.label} holds {int(bad.sum())} non-polygon geometries ({', '.join(kinds)}); "
                "use a feature setback for points and lines"
            )
    invalid = ~shapely.is_valid(arr)
    if invalid.any():
        fixed = shapely.make_valid(arr[invalid])
        if polygon_layer:
            fixed = np.array([_polygonal(g) for g in fixed], dtype=object)
        arr = arr.copy()
        arr[invalid] = fixed
        noun = "polygons" if polygon_layer else "geometries"
        warnings.warn(
            f"{c.label}: repaired {int(invalid.sum())} invalid {noun} with shapely.make_valid; "
            "check the source data",
            SitekitWarning,
            stacklevel=3,
        )
    dist = c.buffer_m if polygon_layer else c.setback_m
    if dist >= MIN_BUFFER_M:  # GEOS returns empty geometries for vanishing distances
        arr = shapely.buffer(arr, float(dist), quad_segs=QUAD_SEGS)
    area = grid.study_area if grid.study_area is not None else shapely.box(*grid.bounds)
    if len(shapely.STRtree(arr).query(area, predicate="intersects")) == 0:
        where = "study area" if grid.study_area is not None else "grid bounds"
        raise LayerError(
            f"{c.label} does not intersect the {where} {tuple(round(b) for b in grid.bounds)} "
            f"(grid CRS {grid.crs.name}) even after buffering: wrong file, wrong CRS or swapped "
            "axes? Check the layer's CRS and extent"
        )
    return arr


# -- raster inputs ---------------------------------------------------------------------------
def _on_grid(arr: Any, grid: Grid, label: str) -> da.Array:
    data = arr.data if isinstance(arr, xr.DataArray) else arr
    if tuple(data.shape) != tuple(grid.shape):
        raise LayerError(
            f"{label}: raster shape {tuple(data.shape)} differs from the grid {grid.shape}; "
            "open it through the catalogue (Catalog.raster(id, grid) resamples onto the "
            "study grid) or reproject it with rioxarray's reproject_match first"
        )
    if not isinstance(data, da.Array):
        return da.from_array(np.asarray(data), chunks=grid.dask_chunks)
    return data.rechunk(grid.dask_chunks)


def _aspect_in_range(aspect: da.Array, lo: float, hi: float) -> da.Array:
    a = aspect % 360.0
    lo, hi = lo % 360.0, hi % 360.0
    if lo <= hi:
        return (a >= lo) & (a <= hi)
    return (a >= lo) | (a <= hi)


def _raster_mask(c: RasterThreshold | AspectOnSlope | ClassRaster, grid: Grid) -> da.Array:
    if isinstance(c, ClassRaster):
        vals = _on_grid(c.layer, grid, c.label)
        hit = da.isin(vals, np.asarray(c.classes, dtype=np.float64))
        return hit if c.mode == "exclude" else ~hit & da.isfinite(vals)
    if isinstance(c, RasterThreshold):
        mask = OPS[c.op](_on_grid(c.layer, grid, c.label), c.value)
        if c.where is not None:
            mask = mask & _on_grid(c.where, grid, c.label + " `where`").astype(bool)
        return mask
    slope = _on_grid(c.slope, grid, c.label + " slope")
    aspect = _on_grid(c.aspect, grid, c.label + " aspect")
    return (slope > c.min_slope_deg) & _aspect_in_range(aspect, c.aspect_from_deg, c.aspect_to_deg)


# -- evaluation ------------------------------------------------------------------------------
def evaluate(constraints: list[Constraint], grid: Grid, burn: Any = None) -> ConstraintResult:
    """Rasterise hard constraints on ``grid`` and combine them (lazy).

    Parameters
    ----------
    constraints : list
        Up to 32 constraints with distinct codes; constraint ``i`` owns bit ``i`` of ``reasons``.
    grid : Grid
        The study grid (metric CRS). Vector layers are reprojected to it before buffering.
    burn : callable, optional
        Replaces :meth:`Grid.rasterize` (same signature) for every vector burn and the study
        fraction: the engine passes its cached burn (:meth:`sitekit.engine.pipeline.Pipeline.burn`).

    Returns
    -------
    ConstraintResult
        Lazy masks, per-constraint excluded fractions, ``reasons`` (uint32), ``excluded`` (bool) and
        ``inclusion_fraction`` (float32, 0–1): ``(1 - union of fraction-rule coverage) × (0 where
        a centre/all-touched/raster constraint excludes) × grid.study_fraction()``. The union of
        fraction-rule layers is burnt on one sub-pixel raster, so overlaps are not subtracted
        twice; multiplying by the study fraction assumes independence inside boundary pixels.

    Raises
    ------
    InputError
        More than 32 constraints, duplicate codes or an unknown constraint type.
    LayerError
        An empty or out-of-area vector layer, or a raster not on the grid.
    """
    if len(constraints) > MAX_CONSTRAINTS:
        raise InputError(
            f"{len(constraints)} constraints given; at most {MAX_CONSTRAINTS} fit the uint32 "
            "exclusion_reasons raster"
        )
    codes = [c.code for c in constraints]
    dup = sorted({x for x in codes if codes.count(x) > 1})
    if dup:
        raise InputError(f"duplicate constraint codes {dup}: each constraint needs its own code")

    rasterize = grid.rasterize if burn is None else burn
    masks: dict[str, xr.DataArray] = {}
    fractions: dict[str, xr.DataArray] = {}
    legend: list[ReasonBit] = []
    frac_geoms: list[np.ndarray] = []
    frac_cov: list[xr.DataArray] = []
    hard: da.Array | None = None
    any_mask: da.Array | None = None  # union of all exclusion masks, on bools
    ban_mask: da.Array | None = None  # union of the masks forced inclusion cannot override
    forced_mask: da.Array | None = None  # union of the forced-inclusion zones
    forced_bits = hard_bits = 0
    reasons = da.zeros(grid.shape, chunks=grid.dask_chunks, dtype=np.uint32)
    for bit, c in enumerate(constraints):
        attrs = {"name_zh": c.name_zh, "bit": bit}
        if isinstance(c, ForcedInclusion):
            geoms = prepare_geoms(c, grid)
            mask = rasterize(geoms, all_touched=c.rule == "all_touched", name=c.code).data
            forced_mask = mask if forced_mask is None else forced_mask | mask
            forced_bits |= 1 << bit
            masks[c.code] = grid.wrap(
                mask, c.code, "bool", c.name_en, method="forced inclusion", **attrs
            )
            fractions[c.code] = grid.wrap(
                da.zeros_like(mask, dtype=np.float32), f"{c.code}_fraction", "1",
                f"excluded fraction: {c.name_en} (forced inclusion, none)", **attrs,
            )  # fmt: skip
            reasons = reasons | da.where(mask, np.uint32(1 << bit), np.uint32(0))
            legend.append(ReasonBit(bit, c.code, c.name_en, c.name_zh))
            continue
        if isinstance(c, PolygonConstraint | FeatureSetback):
            geoms = prepare_geoms(c, grid)
            dist = c.buffer_m if isinstance(c, PolygonConstraint) else c.setback_m
            method = f"{type(c).__name__} buffer {dist:g} m, rule {c.rule}"
            if c.rule == "fraction":
                cov = rasterize(geoms, fraction=True, name=c.code)
                frac_geoms.append(geoms)
                frac_cov.append(cov)
                mask = cov.data >= 0.5
                frac = cov.data
            else:
                mask = rasterize(geoms, all_touched=c.rule == "all_touched", name=c.code).data
        elif isinstance(c, RasterThreshold | AspectOnSlope | ClassRaster):
            mask = _raster_mask(c, grid)
            method = _describe(c)
        else:
            raise InputError(f"unknown constraint type {type(c).__name__} for code {c.code!r}")
        if not (isinstance(c, PolygonConstraint | FeatureSetback) and c.rule == "fraction"):
            frac = mask.astype(np.float32)
            hard = mask if hard is None else hard | mask
        masks[c.code] = grid.wrap(mask, c.code, "bool", c.name_en, method=method, **attrs)
        fractions[c.code] = grid.wrap(
            frac, f"{c.code}_fraction", "1", f"excluded fraction: {c.name_en}", **attrs
        )
        reasons = reasons | da.where(mask, np.uint32(1 << bit), np.uint32(0))
        any_mask = mask if any_mask is None else any_mask | mask
        if not c.overridable:
            hard_bits |= 1 << bit
            ban_mask = mask if ban_mask is None else ban_mask | mask
        legend.append(ReasonBit(bit, c.code, c.name_en, c.name_zh))

    keep = da.ones(grid.shape, chunks=grid.dask_chunks, dtype=np.float32)
    if len(frac_cov) == 1:
        keep = keep - frac_cov[0].data
    elif frac_cov:
        union = rasterize(np.concatenate(frac_geoms), fraction=True, name="union")
        keep = keep - union.data
    if hard is not None:
        keep = da.where(hard, np.float32(0), keep)
    if forced_mask is not None:  # forced zones keep their whole pixel unless a hard ban hits it
        lift = forced_mask if ban_mask is None else forced_mask & ~ban_mask
        keep = da.where(lift, np.float32(1), keep)
        any_mask = any_mask & ~lift if any_mask is not None else None
    incl = da.clip(keep * grid.study_fraction(burn).data, 0, 1).astype(np.float32)

    flags = {
        "flag_masks": [1 << rb.bit for rb in legend],
        "flag_meanings": " ".join(rb.code for rb in legend),
    }
    reasons_da = grid.wrap(
        reasons, "exclusion_reasons", "1", "exclusion reasons (bit flags)", **flags
    )
    return ConstraintResult(
        masks=masks,
        fractions=fractions,
        reasons=reasons_da,
        excluded=grid.wrap(
            any_mask if any_mask is not None else da.zeros_like(reasons, dtype=bool),
            "excluded",
            "bool",
            "excluded by any hard constraint",
        ),  # fmt: skip
        inclusion_fraction=grid.wrap(
            incl, "inclusion_fraction", "1", "eligible fraction of each pixel"
        ),
        legend=legend,
        grid=grid,
        forced_bits=forced_bits,
        hard_bits=hard_bits,
    )


def _describe(c: RasterThreshold | AspectOnSlope | ClassRaster) -> str:
    if isinstance(c, ClassRaster):
        return f"{c.layer.name or 'raster'} classes {c.mode} {list(c.classes)}"
    if isinstance(c, RasterThreshold):
        extra = " where condition" if c.where is not None else ""
        return f"{c.layer.name or 'raster'} {c.op} {c.value:g}{extra}"
    return f"slope > {c.min_slope_deg:g}° and aspect {c.aspect_from_deg:g}°→{c.aspect_to_deg:g}°"


# -- reporting -------------------------------------------------------------------------------
def _zone_ids(grid: Grid, geoms: np.ndarray) -> da.Array:
    """Zone number (1-based, 0 = none) of each pixel centre, burnt chunk by chunk."""
    bounds = shapely.bounds(geoms)

    def _burn(window: tuple[int, int, int, int]) -> np.ndarray:
        r0, r1, c0, c1 = window
        win = grid.window(r0, c0, r1 - r0, c1 - c0)
        x0, y0, x1, y1 = win.bounds
        hit = np.flatnonzero(
            (bounds[:, 0] <= x1)
            & (bounds[:, 2] >= x0)
            & (bounds[:, 1] <= y1)
            & (bounds[:, 3] >= y0)
        )
        if not len(hit):
            return np.zeros((r1 - r0, c1 - c0), np.int32)
        return rasterize(
            ((geoms[i], int(i) + 1) for i in hit),
            out_shape=win.shape,
            transform=win.transform,
            dtype=np.int32,
        )

    return grid.map_blocks(_burn, dtype=np.int32)


def excluded_area_km2(
    result: ConstraintResult, zones: gpd.GeoDataFrame, zone_field: str
) -> pd.DataFrame:
    """Excluded area [km²] per reason per zone (e.g. prefecture), from the rasters.

    Each pixel goes to the zone holding its centre; its area counts as pixel area × study-area
    fraction × excluded fraction of each constraint. Per-chunk ``bincount`` keeps memory bounded;
    this reporting function computes (on the current Dask scheduler).

    Parameters
    ----------
    result : ConstraintResult
        From :func:`evaluate`.
    zones : GeoDataFrame
        Zone polygons (any CRS); rows sharing a ``zone_field`` value form one zone.
    zone_field : str
        Column naming the zone.

    Returns
    -------
    DataFrame
        Index = zone values; columns ``area_km2`` (zone area inside the study area),
        ``excluded_km2`` (union of all reasons, = area − eligible area) and ``<code>_km2`` per
        constraint (overlapping reasons each count their full area).
    """
    grid = result.grid
    if zone_field not in zones.columns:
        raise LayerError(f"zones layer has no field {zone_field!r}; fields: {list(zones.columns)}")
    zones = grid.to_grid_crs(zones, where="zones layer")
    codes_z, uniques = pd.factorize(zones[zone_field])
    geoms = np.asarray(zones.geometry.values, dtype=object)
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if not ok.any():
        raise LayerError("zones layer has no geometries")
    # one geometry per zone so overlapping rows of the same zone are burnt once
    per_zone = np.array(
        [shapely.union_all(geoms[ok & (codes_z == k)]) for k in range(len(uniques))], dtype=object
    )
    nz = len(uniques)
    zid = _zone_ids(grid, per_zone).astype(np.float32)
    sf = grid.study_fraction().data
    layers = [zid, sf, sf - result.inclusion_fraction.data]
    layers += [result.fractions[rb.code].data * sf for rb in result.legend]
    stack = da.stack([a.astype(np.float32) for a in layers]).rechunk({0: -1})
    k = len(layers) - 1

    def _count(block: np.ndarray) -> np.ndarray:
        z = block[0].astype(np.int64).ravel()
        out = np.empty(((nz + 1) * k, 1, 1))
        for j in range(k):
            counts = np.bincount(
                z, weights=block[j + 1].ravel().astype(np.float64), minlength=nz + 1
            )
            out[j * (nz + 1) : (j + 1) * (nz + 1), 0, 0] = counts
        return out

    nb = stack.numblocks
    per_block = da.map_blocks(
        _count,
        stack,
        chunks=(((nz + 1) * k,), (1,) * nb[1], (1,) * nb[2]),
        dtype=np.float64,
    )
    totals = per_block.sum(axis=(1, 2)).compute().reshape(k, nz + 1)[:, 1:] * grid.pixel_area_km2
    columns = ["area_km2", "excluded_km2"] + [f"{rb.code}_km2" for rb in result.legend]
    df = pd.DataFrame(totals.T, index=pd.Index(uniques, name=zone_field), columns=columns)
    df["excluded_km2"] = df["excluded_km2"].clip(lower=0.0)
    return df


# -- existing plants -------------------------------------------------------------------------
def plant_footprints(
    plants: gpd.GeoDataFrame,
    power_density_mw_per_km2: float,
    capacity_field: str = "capacity_mw",
) -> gpd.GeoDataFrame:
    """The land built plants occupy: their polygons, or a disc of capacity ÷ density around a point.

    A point plant of ``P`` MW at density ``d`` MW/km² occupies a disc of area ``P / d`` km², radius
    ``sqrt(P / (π d))`` km (the recipe's own site density, so new and built farms are sized the
    same way). Polygons are kept as they are. Points with no positive capacity are dropped.

    Parameters
    ----------
    plants : GeoDataFrame
        Points and/or polygons in a metric CRS (the grid CRS).
    power_density_mw_per_km2 : float
        Installed capacity per km² of project area [MW/km²], > 0.
    capacity_field : str
        Column with installed capacity [MW].

    Returns
    -------
    GeoDataFrame
        Polygons, same CRS, same attributes.

    References
    ----------
    Denholm et al. (2009), Land-use requirements of modern wind power plants, NREL/TP-6A2-45834.
    """
    if not power_density_mw_per_km2 > 0:
        raise InputError(f"power density must be > 0 MW/km², got {power_density_mw_per_km2}")
    if plants.crs is None or plants.crs.is_geographic:
        raise InputError("plant footprints need a metric CRS: reproject to the grid CRS first")
    geom = np.asarray(plants.geometry.values, dtype=object)
    polygonal = np.isin(shapely.get_type_id(geom), (3, 6))
    if capacity_field in plants.columns:
        cap = pd.to_numeric(plants[capacity_field], errors="coerce").to_numpy(dtype=float)
    elif polygonal.all():
        cap = np.zeros(len(plants))
    else:
        raise InputError(
            f"plant list has point plants but no {capacity_field!r} column to size their footprint"
        )
    radius_m = np.sqrt(np.where(cap > 0, cap, 0.0) / power_density_mw_per_km2 / math.pi) * 1000.0
    keep = polygonal | (radius_m > 0)
    out = np.where(polygonal, geom, shapely.buffer(geom, radius_m, quad_segs=QUAD_SEGS))
    return gpd.GeoDataFrame(
        plants.drop(columns=plants.geometry.name)[keep].reset_index(drop=True),
        geometry=list(out[keep]),
        crs=plants.crs,
    )
