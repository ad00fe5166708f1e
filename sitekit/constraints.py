"""Hard exclusions: every constraint becomes a boolean raster and one bit of ``exclusion_reasons``.

Four kinds of constraint, plain dataclasses (recipes map onto them):

* :class:`PolygonConstraint` — polygon layers (生态保护红线 ecological redlines, protected areas,
  glaciers, lakes/reservoirs) with an optional buffer [m];
* :class:`FeatureSetback` — point/line layers (settlements, roads, rivers) with a setback [m];
* :class:`RasterThreshold` — a raster compared with a value (slope > X°, elevation > X m), optionally
  only where a second boolean condition holds;
* :class:`AspectOnSlope` — aspect ranges on steep slopes (e.g. north-facing slopes > 10° for PV),
  ranges may wrap through north (315° → 45°).

Buffers are computed in the metric grid CRS (layers are reprojected first, never buffered in degrees).
The rasterisation rule is explicit per vector constraint: ``"centre"`` (pixel centre inside the
buffered geometry), ``"all_touched"`` (any pixel the geometry touches) or ``"fraction"`` (exact
covered fraction of each pixel, so eligible areas stay right at coarse resolutions; the boolean mask of
such a constraint uses the majority rule, covered fraction ≥ 0.5).

:func:`evaluate` combines a list of constraints on a :class:`~sitekit.grid.Grid` lazily;
:func:`excluded_area_km2` reports excluded km² per reason per zone (e.g. prefecture).
"""

from __future__ import annotations

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


Constraint = PolygonConstraint | FeatureSetback | RasterThreshold | AspectOnSlope


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


def _check_rule(c: _Constraint, rule: str) -> None:
    if rule not in RULES:
        raise InputError(f"{c.label}: rule must be one of {list(RULES)}, got {rule!r}")


# -- vector preparation ----------------------------------------------------------------------
def _polygonal(geom: Any) -> Any:
    """Keep only the polygonal parts of a (repaired) geometry."""
    parts = shapely.get_parts(geom)
    polys = parts[np.isin(shapely.get_type_id(parts), (3, 6))]
    return shapely.union_all(polys) if len(polys) else shapely.Polygon()


def prepare_geoms(c: PolygonConstraint | FeatureSetback, grid: Grid) -> np.ndarray:
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
    polygon_layer = isinstance(c, PolygonConstraint)
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
            "align it with grid.align() first"
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


def _raster_mask(c: RasterThreshold | AspectOnSlope, grid: Grid) -> da.Array:
    if isinstance(c, RasterThreshold):
        mask = OPS[c.op](_on_grid(c.layer, grid, c.label), c.value)
        if c.where is not None:
            mask = mask & _on_grid(c.where, grid, c.label + " `where`").astype(bool)
        return mask
    slope = _on_grid(c.slope, grid, c.label + " slope")
    aspect = _on_grid(c.aspect, grid, c.label + " aspect")
    return (slope > c.min_slope_deg) & _aspect_in_range(aspect, c.aspect_from_deg, c.aspect_to_deg)


# -- evaluation ------------------------------------------------------------------------------
def evaluate(constraints: list[Constraint], grid: Grid) -> ConstraintResult:
    """Rasterise hard constraints on ``grid`` and combine them (lazy).

    Parameters
    ----------
    constraints : list
        Up to 32 constraints with distinct codes; constraint ``i`` owns bit ``i`` of ``reasons``.
    grid : Grid
        The study grid (metric CRS). Vector layers are reprojected to it before buffering.

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

    masks: dict[str, xr.DataArray] = {}
    fractions: dict[str, xr.DataArray] = {}
    legend: list[ReasonBit] = []
    frac_geoms: list[np.ndarray] = []
    frac_cov: list[xr.DataArray] = []
    hard: da.Array | None = None
    any_mask: da.Array | None = None  # union of all masks = (reasons != 0), on bools
    reasons = da.zeros(grid.shape, chunks=grid.dask_chunks, dtype=np.uint32)
    for bit, c in enumerate(constraints):
        attrs = {"name_zh": c.name_zh, "bit": bit}
        if isinstance(c, PolygonConstraint | FeatureSetback):
            geoms = prepare_geoms(c, grid)
            dist = c.buffer_m if isinstance(c, PolygonConstraint) else c.setback_m
            method = f"{type(c).__name__} buffer {dist:g} m, rule {c.rule}"
            if c.rule == "fraction":
                cov = grid.rasterize(geoms, fraction=True, name=c.code)
                frac_geoms.append(geoms)
                frac_cov.append(cov)
                mask = cov.data >= 0.5
                frac = cov.data
            else:
                mask = grid.rasterize(geoms, all_touched=c.rule == "all_touched", name=c.code).data
        elif isinstance(c, RasterThreshold | AspectOnSlope):
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
        legend.append(ReasonBit(bit, c.code, c.name_en, c.name_zh))

    keep = da.ones(grid.shape, chunks=grid.dask_chunks, dtype=np.float32)
    if len(frac_cov) == 1:
        keep = keep - frac_cov[0].data
    elif frac_cov:
        union = grid.rasterize(np.concatenate(frac_geoms), fraction=True, name="union")
        keep = keep - union.data
    if hard is not None:
        keep = da.where(hard, np.float32(0), keep)
    incl = da.clip(keep * grid.study_fraction().data, 0, 1).astype(np.float32)

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
            any_mask if any_mask is not None else reasons != 0,
            "excluded",
            "bool",
            "excluded by any hard constraint",
        ),  # fmt: skip
        inclusion_fraction=grid.wrap(
            incl, "inclusion_fraction", "1", "eligible fraction of each pixel"
        ),
        legend=legend,
        grid=grid,
    )


def _describe(c: RasterThreshold | AspectOnSlope) -> str:
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
        x0, y1 = grid.window_transform(r0, c0) * (0, 0)
        x1, y0 = grid.window_transform(r0, c0) * (c1 - c0, r1 - r0)
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
            out_shape=(r1 - r0, c1 - c0),
            transform=grid.window_transform(r0, c0),
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
