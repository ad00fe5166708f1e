"""Transmission routes: read a line, evaluate it against the screening layers, suggest a least-cost one.

:func:`evaluate_route` measures a route on the run's grid: length; length inside and number of
crossings of each hard constraint (exact line ∩ polygon geometry for polygon layers, runs of a
quarter-pixel sampling for raster masks); the elevation and slope profile, sampled bilinearly from
the lazy rasters at the stations only (the pixels around the stations are fetched with one
vectorised index, never the whole raster); shares of the route above 4000 m and on slopes > 25°
(linear between stations); and the candidate sites within the corridor (site polygon within
``corridor_km`` of the line). :func:`suggest_route` finds the least-cost path with
:func:`sitekit.science.proximity.least_cost_path` (8-connected MCP, Dijkstra 1959) with redlines impassable;
if no path avoids them it repeats the search with redlines costing ×1000 per metre, so the path
crosses the fewest redline km (Bagli et al. 2011 weight crossings the same way), and reports each
crossing. On a run folder, :func:`run_connection_cost` rebuilds the cost surface the run's
least-cost connections used (its recipe from ``run.json``: slope, ``grid.cost_terms`` from any
raster, per-rule ``grid.crossing_costs``, ``grid.forbidden`` zones at ``grid.forbidden_cost``;
:meth:`sitekit.engine.pipeline.Pipeline.line_cost`), and the suggestion follows it as it is
(``avoid=False``), so it costs what the run's ``connection_distance`` says.
:func:`write_route_report` writes the CSV tables, the profile plot, a bilingual summary and an
offline map (via :func:`sitekit.outputs.render.render_map`).
"""

from __future__ import annotations

import functools
import html
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pyproj
import shapely
import xarray as xr
from shapely.ops import substring

from sitekit.errors import CRSError, InputError, LayerError, SitekitWarning
from sitekit.grid import Grid, parse_crs, transformer
from sitekit.io.atomic import atomic_path, write_text
from sitekit.science import proximity

#: upper rank limits of the rank classes (1–10, 11–50, 51+)
RANK_CLASSES = (10, 50)
#: cost multiplier inside redlines when no path avoids them
REDLINE_PENALTY = 1000.0
#: stretches shorter than this [m] are corner grazes, not crossings
_MIN_CROSSING_M = 0.01
_MODELLED = ("yes", "demo terrain")
_LINES = ("LineString", "MultiLineString", "LinearRing")
_NAME_FIELDS = ("name_zh", "name_en", "name", "Name", "zone_id", "id")


# -- reading ---------------------------------------------------------------------------------
def read_route(
    path: str | Path, *, grid: Grid | None = None, layer: str | None = None, crs: Any = None
) -> gpd.GeoDataFrame:
    """Read a route line from GeoJSON, KML, GeoPackage or Shapefile (any CRS).

    Parameters
    ----------
    path : route file. KML is read with GDAL's KML/LIBKML driver (always EPSG:4326); every
        folder of a KML is read.
    grid : if given, the route is returned in the grid CRS and must touch the study area.
    layer : layer of a multi-layer file (GeoPackage).
    crs : CRS to assume when the file declares none (e.g. a Shapefile without ``.prj``).

    Returns
    -------
    GeoDataFrame of 2-D line features (``name`` column when the file has one).

    Raises
    ------
    InputError : unreadable or empty file, no line features, route outside the study area.
    CRSError : no CRS, or coordinates that contradict a geographic CRS.
    """
    path = Path(path)
    where = f"route file {path}"
    if not path.exists():
        raise InputError(f"{where}: file not found")
    try:
        names = [layer] if layer else [str(n) for n, _ in pyogrio.list_layers(path)]
        frames = [gpd.read_file(path, layer=n, engine="pyogrio") for n in names]
    except Exception as exc:  # pyogrio raises DataSourceError/DataLayerError/…
        msg = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise InputError(
            f"{where}: cannot read it as a vector file ({msg}); use GeoJSON, KML, GeoPackage "
            "or Shapefile"
        ) from None
    frames = [f for f in frames if len(f)]
    line_frames = [f for f in frames if f.geometry.geom_type.isin(_LINES).any()]
    if len(line_frames) > 1 and path.suffix.lower() not in (".kml", ".kmz"):
        raise InputError(f"{where}: several layers hold lines ({', '.join(names)}); name one")
    frames = line_frames or frames
    if not frames:
        raise InputError(f"{where}: the file holds no features; draw the route as a line")
    crs_in = frames[0].crs
    gdf = pd.concat([f.to_crs(crs_in) if f.crs and crs_in else f for f in frames])
    gdf = gpd.GeoDataFrame(gdf, geometry=frames[0].geometry.name, crs=crs_in)
    if crs is not None:
        gdf = gdf.set_crs(parse_crs(crs, where), allow_override=True)
    elif gdf.crs is None:
        raise CRSError(
            f"{where}: the route has no CRS (a Shapefile without its .prj?); add the .prj, "
            "re-save it with a CRS, or pass the CRS (CLI: --route-crs EPSG:4326)"
        )
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty].explode(index_parts=False)
    if gdf.empty:
        raise InputError(f"{where}: the file holds only empty geometries; draw the route as a line")
    is_line = gdf.geom_type.isin(_LINES)
    if not is_line.any():
        kinds = ", ".join(sorted(set(gdf.geom_type)))
        raise InputError(
            f"route must be a LineString or MultiLineString, but {where} holds {kinds}; draw "
            "the route as a line (path), not as a polygon or points"
        )
    if not is_line.all():
        warnings.warn(f"{where}: ignored {int((~is_line).sum())} non-line feature(s)",
                      SitekitWarning, stacklevel=2)  # fmt: skip
    gdf = gdf[is_line].copy()
    gdf[gdf.geometry.name] = shapely.force_2d(gdf.geometry.values)
    if "name" not in gdf.columns:
        for alt in ("Name", "NAME"):
            if alt in gdf.columns:
                gdf = gdf.rename(columns={alt: "name"})
                break
    b = gdf.total_bounds
    if pyproj.CRS(gdf.crs).is_geographic and (abs(b[1]) > 90 or abs(b[3]) > 90 or abs(b[0]) > 360):
        raise CRSError(f"{where}: CRS {gdf.crs.name} is geographic but the coordinates "
                       f"{tuple(np.round(b, 1))} are not degrees; declare its real CRS")  # fmt: skip
    gdf = gdf.reset_index(drop=True)
    if grid is not None:
        gdf = grid.to_grid_crs(gdf, where)
        check_in_study_area(gdf.union_all(), grid, where)
    return gdf


def check_in_study_area(geom: Any, grid: Grid, where: str = "route") -> None:
    """Raise InputError if ``geom`` (grid CRS) misses the study area; warn if it leaves the grid."""
    area = grid.study_area if grid.study_area is not None else shapely.box(*grid.bounds)
    if not geom.intersects(area):
        tr = _to_lonlat(grid.crs)
        (lo0, lo1), (la0, la1) = tr.transform(geom.bounds[0::2], geom.bounds[1::2])
        a = tr.transform(area.bounds[0::2], area.bounds[1::2])
        raise InputError(
            f"{where}: the route lies outside the study area (route {lo0:.2f}–{lo1:.2f} °E, "
            f"{la0:.2f}–{la1:.2f} °N; study area {a[0][0]:.2f}–{a[0][1]:.2f} °E, "
            f"{a[1][0]:.2f}–{a[1][1]:.2f} °N); wrong CRS, or lon/lat swapped?"
        )
    if not shapely.box(*grid.bounds).contains(geom):
        warnings.warn(f"{where}: part of the route lies outside the grid; its profile has gaps "
                      "there", SitekitWarning, stacklevel=3)  # fmt: skip


def _parts(route: Any, grid: Grid) -> list[shapely.LineString]:
    """Route (GeoDataFrame/GeoSeries/shapely) → ordered LineStrings in the grid CRS."""
    if isinstance(route, gpd.GeoSeries):
        route = route.to_frame("geometry")
    if isinstance(route, gpd.GeoDataFrame):
        geoms = np.asarray(grid.to_grid_crs(route, "route").geometry.values, dtype=object)
    else:
        items = list(route) if isinstance(route, list | tuple) else [route]
        geoms = np.empty(len(items), dtype=object)
        geoms[:] = items
    parts = [p for p in shapely.get_parts(shapely.force_2d(geoms)) if p.geom_type in _LINES]
    parts = [shapely.LineString(p.coords) for p in parts if p.length > 0]
    if not parts:
        raise InputError("route must be a LineString or MultiLineString of non-zero length")
    merged = shapely.line_merge(shapely.MultiLineString(parts), directed=True)
    return list(shapely.get_parts(merged))


@dataclass
class RunLayers:
    """What route and hosting analyses read back from a previous run's output folder."""

    grid: Grid
    elevation: xr.DataArray
    slope: xr.DataArray
    sites: dict[str, gpd.GeoDataFrame]
    points: gpd.GeoDataFrame | None
    constraints: dict[str, tuple[str, str, gpd.GeoDataFrame]]

    @property
    def redlines(self) -> gpd.GeoDataFrame | None:
        """All constraint polygons as one layer (grid CRS), or None."""
        frames = []
        for code, (_, zh, g) in self.constraints.items():
            names = g["name_zh"].astype(str) if "name_zh" in g.columns else [zh] * len(g)
            frames.append(gpd.GeoDataFrame({"code": code, "name_zh": list(names)},
                                           geometry=g.geometry.values, crs=g.crs))  # fmt: skip
        if not frames:
            return None
        return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=self.grid.crs)


def open_run(run_dir: str | Path, catalog: Any = None, chunks: int = 1024) -> RunLayers:
    """The layers of a run folder that routes and hosting use (rasters stay lazy).

    ``rasters/elevation.tif`` and ``slope.tif`` give the grid; from ``sitekit.gpkg``:
    ``prefectures`` (the study area), ``pv_sites``/``wind_sites``, ``grid_points`` and every
    ``constraint_<id>`` polygon layer, split by its ``class`` column when it has several (names
    from the :class:`~sitekit.io.catalog.Catalog` entry ``<id>`` if a catalogue is given). Vectors
    come back in the grid CRS.
    """
    import rioxarray

    run = Path(run_dir)
    rdir, gpkg = run / "rasters", run / "sitekit.gpkg"
    for f in (rdir / "elevation.tif", rdir / "slope.tif", gpkg):
        if not f.exists():
            raise InputError(f"{run}: {f.relative_to(run)} not found; point --run at the output "
                             "folder of `sitekit demo`/`sitekit run`")  # fmt: skip
    arrays = {}
    for key in ("elevation", "slope"):
        a = rioxarray.open_rasterio(rdir / f"{key}.tif", chunks=chunks, masked=True)
        arrays[key] = a.squeeze("band", drop=True) if "band" in a.dims else a
    crs = pyproj.CRS.from_wkt(arrays["elevation"].rio.crs.to_wkt())
    vec = {}
    for name, geom_type in pyogrio.list_layers(gpkg):
        if geom_type is not None:
            g = gpd.read_file(gpkg, layer=str(name), engine="pyogrio")
            vec[str(name)] = g.to_crs(crs) if g.crs and pyproj.CRS(g.crs) != crs else g
    pref = vec.get("prefectures")
    area = shapely.make_valid(pref.union_all()) if pref is not None and len(pref) else None
    e = arrays["elevation"]
    grid = Grid(crs, e.rio.transform(), tuple(e.shape), chunks, area, run.name)
    wrapped = {}
    for key, a in arrays.items():
        w = grid.wrap(a.data.astype(np.float32), key, str(a.attrs.get("units", "1")))
        w.attrs.update({k: v for k, v in a.attrs.items() if k in ("modelled", "method")})
        wrapped[key] = w
    sites = {t: vec[f"{t}_sites"] for t in ("pv", "wind") if f"{t}_sites" in vec}
    constraints: dict = {}
    for name in sorted(n for n in vec if n.startswith("constraint_") and len(vec[n])):
        g, code = vec[name], name.removeprefix("constraint_")
        en, zh = code, code
        if catalog is not None and code in catalog:
            spec = catalog.layer(code)
            en, zh = spec.name_en or code, spec.name_zh or code
        classes = list(dict.fromkeys(g["class"].astype(str))) if "class" in g.columns else []
        if len(classes) <= 1:
            constraints[code] = (en, zh, g)
            continue
        for c in classes:
            sub = g[g["class"].astype(str) == c]
            zhs = set(sub["name_zh"].astype(str)) if "name_zh" in sub.columns else set()
            constraints[f"{code}.{c}"] = (f"{en}: {c}", zhs.pop() if len(zhs) == 1 else c, sub)
    return RunLayers(grid, wrapped["elevation"], wrapped["slope"], sites, vec.get("grid_points"),
                     constraints)  # fmt: skip


@dataclass
class RunCost:
    """A run's connection cost surface (:func:`run_connection_cost`)."""

    cost: xr.DataArray  # cost per metre [1, flat open ground = 1]
    forbidden: xr.DataArray | None  # the recipe's grid.forbidden zones (bool), or None
    technology: str
    description: str  # what the surface holds, for the route summary
    search_radius_km: float | None = None  # the recipe's economics.search_radius_km [km]


def run_connection_cost(
    run_dir: str | Path, catalog: Any, grid: Grid, *, technology: str | None = None
) -> RunCost | None:
    """The cost surface the run's least-cost connections used, rebuilt from ``run.json``.

    The recipe (of ``technology``, default: the first PV/wind recipe of the run) is read back
    from ``run.json`` and handed with the catalogue to
    :meth:`sitekit.engine.pipeline.Pipeline.connection_cost`: slope term × ``grid.cost_terms`` (any
    raster) × ``grid.crossing_costs`` (per rule), ``grid.forbidden`` zones at
    ``grid.forbidden_cost`` — the same function ``sitekit run`` prices connections with. Lazy.

    Returns None when the run folder has no ``run.json`` with a PV/wind recipe (an older or
    hand-made folder) or no catalogue is given: the caller then falls back to slope only.

    Raises
    ------
    InputError : ``technology`` not among the run's recipes, or the catalogue's grid is not the
        run's (another catalogue, resolution or CRS).
    """
    import json

    import yaml

    from sitekit.engine.pipeline import Pipeline
    from sitekit.specs.recipe import Recipe

    run = Path(run_dir)
    try:
        prov = json.loads((run / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    recipes = {}
    for name, entry in (prov.get("recipes") or {}).items():
        if isinstance(entry, dict) and entry.get("technology") in ("pv", "wind"):
            recipes.setdefault(entry["technology"], (name, entry.get("yaml", "")))
    if catalog is None or not recipes:
        return None
    if technology is not None and technology not in recipes:
        raise InputError(f"{run / 'run.json'}: the run has no '{technology}' recipe (it has "
                         f"{', '.join(recipes)}); choose one of those")  # fmt: skip
    tech = technology or next(iter(recipes))
    name, text = recipes[tech]
    recipe = Recipe.model_validate(yaml.safe_load(text))
    g = prov.get("grid", {})
    mine = catalog.grid(float(g.get("resolution_m", grid.resolution_m)), grid.crs,
                        int(g.get("chunks", grid.chunks)))  # fmt: skip
    if tuple(mine.shape) != tuple(grid.shape) or not mine.transform.almost_equals(grid.transform):
        raise InputError(
            f"catalogue {catalog.path} gives a {mine.shape[0]}×{mine.shape[1]} grid at "
            f"{tuple(round(v) for v in mine.bounds)}, the run {run} a {grid.shape[0]}×"
            f"{grid.shape[1]} one at {tuple(round(v) for v in grid.bounds)}; pass the run's "
            "catalogue with --catalog"
        )
    cost, forbidden = Pipeline(catalog, mine).connection_cost(recipe)
    r = recipe.grid
    parts = ["slope"]
    parts += [f"{t.layer} ×{{{', '.join(f'{k}: {v:g}' for k, v in t.classes.items())}}}"
              if t.classes is not None else f"{t.layer} > {t.above:g} ×{t.multiplier:g}"
              for t in r.cost_terms]  # fmt: skip
    parts += [f"crossing {k} ×{v:g}" for k, v in r.crossing_costs.items()]
    if forbidden is not None:
        parts.append(f"forbidden {'+'.join(r.forbidden)} ×{r.forbidden_cost:g}")
    desc = f"recipe {name} ({tech}): {', '.join(parts)}"
    return RunCost(cost, forbidden, tech, desc, recipe.economics.search_radius_km)


@functools.lru_cache(maxsize=16)
def _to_lonlat_wkt(wkt: str) -> pyproj.Transformer:
    return transformer(pyproj.CRS.from_wkt(wkt), 4326)


def _to_lonlat(crs: Any) -> pyproj.Transformer:
    """Cached grid CRS → lon/lat transformer (building one for a custom CRS takes ~0.1 s)."""
    return _to_lonlat_wkt(pyproj.CRS(crs).to_wkt())


# -- sampling --------------------------------------------------------------------------------
def sample(arrays: list[xr.DataArray], grid: Grid, x: np.ndarray, y: np.ndarray,
           method: str = "bilinear") -> list[np.ndarray]:  # fmt: skip
    """Values of grid-aligned rasters at points (x, y) [grid CRS]; computes only those pixels.

    ``bilinear`` interpolates between the four surrounding pixel centres (exact on a plane),
    renormalising the weights over non-NaN corners; ``nearest`` takes the pixel containing the
    point. Points outside the grid get NaN (False for bool arrays with ``nearest``).
    """
    for a in arrays:
        if tuple(a.shape) != tuple(grid.shape):
            raise LayerError(f"raster '{a.name}' has shape {a.shape}, the grid {grid.shape}")
    ny, nx = grid.shape
    col, row = ~grid.transform * (np.asarray(x, float), np.asarray(y, float))
    inside = (col >= 0) & (col < nx) & (row >= 0) & (row < ny)
    if method == "nearest":
        rs = [np.clip(np.floor(row), 0, ny - 1).astype(np.int64)]
        cs = [np.clip(np.floor(col), 0, nx - 1).astype(np.int64)]
        ws = [np.ones(len(rs[0]))]
    else:
        r, c = row - 0.5, col - 0.5
        r0, c0 = np.floor(r), np.floor(c)
        fr, fc = r - r0, c - c0
        ri = [np.clip(r0, 0, ny - 1).astype(np.int64), np.clip(r0 + 1, 0, ny - 1).astype(np.int64)]
        ci = [np.clip(c0, 0, nx - 1).astype(np.int64), np.clip(c0 + 1, 0, nx - 1).astype(np.int64)]
        rs = [ri[0], ri[0], ri[1], ri[1]]
        cs = [ci[0], ci[1], ci[0], ci[1]]
        ws = [(1 - fr) * (1 - fc), (1 - fr) * fc, fr * (1 - fc), fr * fc]
    flat = np.concatenate([a * nx + b for a, b in zip(rs, cs, strict=True)])
    uniq, inv = np.unique(flat, return_inverse=True)
    ur, uc = np.divmod(uniq, nx)
    sel = [a.isel(y=xr.DataArray(ur, dims="p"), x=xr.DataArray(uc, dims="p")).data for a in arrays]
    out = []
    for vals in dask.compute(*sel):
        v = np.asarray(vals)[inv].reshape(len(ws), -1)
        if v.dtype == bool:
            out.append(v[0] & inside)
            continue
        v = v.astype(np.float64)
        w = np.where(np.isfinite(v), np.stack(ws), 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            res = np.nansum(np.where(np.isfinite(v), v, 0.0) * w, axis=0) / w.sum(axis=0)
        out.append(np.where(inside, res, np.nan))
    return out


def _stations(parts: list, step_m: float) -> tuple:
    """Stations every ``step_m`` along each part (ends included): x, y, distance [m], the parts'
    start distances [m] and the index of each part's last station."""
    xs, ys, ds, offsets, off = [], [], [], [], 0.0
    for p in parts:
        n = max(1, math.ceil(p.length / step_m))
        d = np.append(np.arange(n) * step_m, p.length)
        d = d[np.r_[True, np.diff(d) > 1e-9]]
        pts = shapely.line_interpolate_point(p, d)
        xs.append(shapely.get_x(pts))
        ys.append(shapely.get_y(pts))
        ds.append(d + off)
        offsets.append(off)
        off += p.length
    ends = np.cumsum([len(v) for v in ds]) - 1
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ds), offsets, ends


def _share_above(d: np.ndarray, v: np.ndarray, limit: float, breaks: np.ndarray) -> float:
    """Share (0–1) of the sampled length where ``v > limit``, linear between stations."""
    length = np.diff(d)
    length[breaks[:-1]] = 0.0  # no length between the end of one part and the next part
    a, b = v[:-1], v[1:]
    ok = np.isfinite(a) & np.isfinite(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        cut = np.where(a > limit, (a - limit) / (a - b), (b - limit) / (b - a))
        frac = np.where((a > limit) & (b > limit), 1.0,
                        np.where((a > limit) | (b > limit), cut, 0.0))  # fmt: skip
    total = float(length[ok].sum())
    return float((length * frac)[ok].sum()) / total if total > 0 else float("nan")


# -- crossings -------------------------------------------------------------------------------
def _feature_names(gdf: gpd.GeoDataFrame) -> np.ndarray:
    for f in _NAME_FIELDS:
        if f in gdf.columns:
            return gdf[f].astype(str).to_numpy()
    return np.asarray([str(i) for i in range(len(gdf))])


def _polygon_runs(parts: list, offsets: list, gdf: gpd.GeoDataFrame, grid: Grid) -> list:
    """(entry_m, exit_m, length_m, piece, feature names) of each stretch inside the polygons."""
    gdf = grid.to_grid_crs(gdf, "constraint polygons")
    geoms = shapely.make_valid(np.asarray(gdf.geometry.values, dtype=object))
    names = _feature_names(gdf)
    union = shapely.union_all(geoms)
    tree = shapely.STRtree(geoms)
    runs = []
    for part, off in zip(parts, offsets, strict=True):
        inter = shapely.get_parts(part.intersection(union))
        lines = [g for g in inter if g.geom_type in _LINES and g.length > 0]
        if not lines:
            continue
        for piece in shapely.get_parts(shapely.line_merge(shapely.MultiLineString(lines))):
            if piece.length < _MIN_CROSSING_M:  # grazing a corner (reprojection noise)
                continue
            a = part.project(shapely.Point(piece.coords[0]))
            b = part.project(shapely.Point(piece.coords[-1]))
            hit = tree.query(piece, predicate="intersects")
            hit = hit[shapely.length(shapely.intersection(piece, geoms[hit])) > 1e-6]
            runs.append((off + min(a, b), off + max(a, b), piece.length, piece,
                         "; ".join(dict.fromkeys(names[hit]))))  # fmt: skip
    return runs


def _mask_runs(parts: list, offsets: list, mask: xr.DataArray, grid: Grid) -> list:
    """Stretches where a bool mask is True, sampled every quarter pixel (nearest pixel)."""
    step = grid.resolution_m / 4
    edges, mids, owner = [], [], []
    for i, p in enumerate(parts):
        e = np.linspace(0, p.length, max(1, math.ceil(p.length / step)) + 1)
        edges.append(e)
        mids.append(shapely.line_interpolate_point(p, (e[:-1] + e[1:]) / 2))
        owner.append(np.full(len(e) - 1, i))
    pts = np.concatenate(mids)
    (flags,) = sample([mask.astype(bool)], grid, shapely.get_x(pts), shapely.get_y(pts), "nearest")
    runs, k = [], 0
    for i, (part, off) in enumerate(zip(parts, offsets, strict=True)):
        f = np.r_[False, flags[k : k + len(edges[i]) - 1], False].astype(np.int8)
        k += len(edges[i]) - 1
        starts, ends = np.nonzero(np.diff(f) == 1)[0], np.nonzero(np.diff(f) == -1)[0]
        for s, t in zip(starts, ends, strict=True):
            a, b = edges[i][s], edges[i][t]
            runs.append((off + a, off + b, b - a, substring(part, a, b), ""))
    return runs


def crossings(route: Any, constraints: dict, grid: Grid) -> gpd.GeoDataFrame:
    """Every stretch of ``route`` inside each constraint, ordered along the route.

    Parameters
    ----------
    route : line(s) in the grid CRS (or a GeoDataFrame with a CRS).
    constraints : ``{code: (name_en, name_zh, polygons GeoDataFrame | bool DataArray mask)}``.

    Returns
    -------
    GeoDataFrame (grid CRS, one row per crossing): code, name_en, name_zh, crossing (1-based per
    code), features (names of the polygons crossed), entry_km, exit_km, length_km [km along the
    route], entry/exit x, y [m] and lon, lat [°]; geometry = the stretch inside.
    """
    parts = _parts(route, grid)
    offsets = list(np.cumsum([0.0] + [p.length for p in parts[:-1]]))
    tr = _to_lonlat(grid.crs)
    rows = []
    for code, (name_en, name_zh, layer) in constraints.items():
        if isinstance(layer, xr.DataArray):
            runs = _mask_runs(parts, offsets, layer, grid)
        elif layer is None or len(layer) == 0:
            runs = []
        else:
            runs = _polygon_runs(parts, offsets, layer, grid)
        for n, (a, b, length, piece, feats) in enumerate(sorted(runs, key=lambda r: r[0]), 1):
            (x0, y0), (x1, y1) = _along(parts, offsets, a), _along(parts, offsets, b)
            (lo0, lo1), (la0, la1) = tr.transform([x0, x1], [y0, y1])
            rows.append(dict(code=code, name_en=name_en, name_zh=name_zh, crossing=n,
                             features=feats, entry_km=a / 1e3, exit_km=b / 1e3,
                             length_km=length / 1e3, entry_x=x0, entry_y=y0, exit_x=x1,
                             exit_y=y1, entry_lon=lo0, entry_lat=la0, exit_lon=lo1,
                             exit_lat=la1, geometry=piece))  # fmt: skip
    cols = ["code", "name_en", "name_zh", "crossing", "features", "entry_km", "exit_km",
            "length_km", "entry_x", "entry_y", "exit_x", "exit_y", "entry_lon", "entry_lat",
            "exit_lon", "exit_lat"]  # fmt: skip
    df = pd.DataFrame(rows, columns=[*cols, "geometry"])
    return gpd.GeoDataFrame(df, geometry="geometry", crs=grid.crs)


def _along(parts: list, offsets: list, d: float) -> tuple[float, float]:
    i = max(0, int(np.searchsorted(offsets, d, side="right")) - 1)
    p = parts[i].interpolate(d - offsets[i])
    return p.x, p.y


def summarise_crossings(cross: pd.DataFrame, constraints: dict, length_km: float) -> pd.DataFrame:
    """Per constraint: length inside [km], share of the route [%] and number of crossings."""
    rows = []
    for code, (name_en, name_zh, _) in constraints.items():
        c = cross[cross["code"] == code]
        km = float(c["length_km"].sum())
        rows.append(dict(code=code, name_en=name_en, name_zh=name_zh, length_km=km,
                         share_pct=100 * km / length_km if length_km else 0.0,
                         n_crossings=len(c)))  # fmt: skip
    return pd.DataFrame(rows, columns=["code", "name_en", "name_zh", "length_km", "share_pct",
                                       "n_crossings"])  # fmt: skip


# -- evaluation ------------------------------------------------------------------------------
@dataclass
class RouteReport:
    """Everything :func:`evaluate_route` measured (lengths in km, shares 0–1)."""

    name: str
    length_km: float
    corridor_km: float
    constraints: pd.DataFrame
    crossings: gpd.GeoDataFrame
    profile: pd.DataFrame
    share_above_elevation: float
    share_steep: float
    elevation_threshold_m: float
    slope_threshold_deg: float
    capacity: pd.DataFrame
    sites: gpd.GeoDataFrame
    route: gpd.GeoDataFrame
    grid: Grid = field(repr=False)
    elevation: xr.DataArray | None = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list)


def rank_class(rank: Any, classes: tuple[int, ...] = RANK_CLASSES) -> np.ndarray:
    """Rank → class label ``1–10``, ``11–50``, ``51+`` (for the default classes)."""
    r = np.asarray(rank, dtype=float)
    labels, lo = [], 1
    for hi in classes:
        labels.append(f"{lo}–{hi}")
        lo = hi + 1
    labels.append(f"{lo}+")
    idx = np.searchsorted(np.asarray(classes, float), r, side="left")
    return np.asarray(labels, dtype=object)[idx]


def corridor_sites(
    sites: dict[str, gpd.GeoDataFrame] | None, route: Any, grid: Grid, corridor_km: float,
    rank_classes: tuple[int, ...] = RANK_CLASSES,
) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:  # fmt: skip
    """Sites whose polygon lies within ``corridor_km`` of the route, and MW by technology × rank.

    Returns (sites GeoDataFrame with technology, site_id, rank, rank_class, capacity_mw,
    energy_gwh, lcoe_cny_per_kwh, distance_km [to the line], route_km [position along the route
    nearest the site]; capacity table technology, rank_class, n_sites, capacity_mw, energy_gwh,
    with an ``all`` class per technology).
    """
    parts = _parts(route, grid)
    offsets = np.cumsum([0.0] + [p.length for p in parts[:-1]])
    line = shapely.MultiLineString(parts)
    keep = ["site_id", "rank", "capacity_mw", "energy_gwh", "lcoe_cny_per_kwh", "prefecture",
            "county", "grid_point_name"]  # fmt: skip
    frames = []
    for tech, gdf in (sites or {}).items():
        if gdf is None or len(gdf) == 0:
            continue
        g = grid.to_grid_crs(gdf, f"{tech} sites")
        d = shapely.distance(np.asarray(g.geometry.values, dtype=object), line)
        sel = g[d <= corridor_km * 1000.0].copy()
        if sel.empty:
            continue
        cen = shapely.centroid(np.asarray(sel.geometry.values, dtype=object))
        dist_parts = np.stack([shapely.distance(cen, p) for p in parts])
        near = dist_parts.argmin(axis=0)
        sel["route_km"] = [(offsets[i] + parts[i].project(c)) / 1e3 for i, c in zip(near, cen,
                                                                                    strict=True)]  # fmt: skip
        sel["distance_km"] = d[d <= corridor_km * 1000.0] / 1e3
        sel["technology"] = tech
        if "rank" not in sel.columns:
            sel["rank"] = np.arange(1, len(sel) + 1)
        sel["rank_class"] = rank_class(sel["rank"], rank_classes)
        cols = ["technology"] + [c for c in keep if c in sel.columns]
        frames.append(sel[[*cols, "rank_class", "distance_km", "route_km", sel.geometry.name]])
    if frames:
        out = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=grid.crs)
        out = out.sort_values(["technology", "rank"], kind="stable").reset_index(drop=True)
    else:
        out = gpd.GeoDataFrame({"technology": [], "site_id": [], "rank": [], "rank_class": [],
                                "capacity_mw": [], "energy_gwh": [], "distance_km": [],
                                "route_km": []}, geometry=[], crs=grid.crs)  # fmt: skip
    rows = []
    for tech, g in out.groupby("technology", sort=True):
        for cls, gg in [*g.groupby("rank_class", sort=False), ("all", g)]:
            rows.append(dict(technology=tech, rank_class=cls, n_sites=len(gg),
                             capacity_mw=float(gg["capacity_mw"].sum()),
                             energy_gwh=float(gg.get("energy_gwh", pd.Series(dtype=float)).sum())))  # fmt: skip
    cap = pd.DataFrame(rows, columns=["technology", "rank_class", "n_sites", "capacity_mw",
                                      "energy_gwh"])  # fmt: skip
    return out, cap


def evaluate_route(
    route: gpd.GeoDataFrame | shapely.LineString,
    *,
    grid: Grid,
    elevation: xr.DataArray,
    slope: xr.DataArray,
    constraints: dict | None = None,
    sites: dict[str, gpd.GeoDataFrame] | None = None,
    corridor_km: float = 20.0,
    sample_m: float | None = None,
    elevation_threshold_m: float = 4000.0,
    slope_threshold_deg: float = 25.0,
    rank_classes: tuple[int, ...] = RANK_CLASSES,
    name: str | None = None,
) -> RouteReport:
    """Measure a transmission route against the screening layers (computes the needed pixels).

    Parameters
    ----------
    route : line(s) in the grid CRS (a GeoDataFrame may be in any CRS); parts are joined in order.
    grid : the run's grid; ``elevation`` [m] and ``slope`` [°] are rasters on it (lazy is fine:
        only the pixels around the stations are computed).
    constraints : ``{code: (name_en, name_zh, polygons GeoDataFrame | bool DataArray mask)}``.
    sites : ``{technology: sites GeoDataFrame}`` (:data:`sitekit.science.sites.SITE_COLUMNS`).
    corridor_km : half-width of the corridor [km] in which sites count as collectable.
    sample_m : station spacing of the profile [m]; default the grid resolution.
    elevation_threshold_m, slope_threshold_deg : limits of the reported shares [m], [°].

    Returns
    -------
    RouteReport
    """
    parts = _parts(route, grid)
    line = shapely.MultiLineString(parts) if len(parts) > 1 else parts[0]
    check_in_study_area(line, grid)
    if name is None and isinstance(route, gpd.GeoDataFrame) and "name" in route.columns:
        name = str(route["name"].iloc[0])
    name = name or "route"
    length_m = float(sum(p.length for p in parts))
    step = float(sample_m or grid.resolution_m)
    x, y, d, offsets, ends = _stations(parts, step)
    elev, slp = sample([elevation, slope], grid, x, y)
    lon, lat = _to_lonlat(grid.crs).transform(x, y)
    profile = pd.DataFrame(dict(distance_km=d / 1e3, x=x, y=y, lon=lon, lat=lat, elevation_m=elev,
                                slope_deg=slp))  # fmt: skip
    high = _share_above(d, elev, elevation_threshold_m, ends)
    steep = _share_above(d, slp, slope_threshold_deg, ends)
    valid_e, valid_s = np.isfinite(elev), np.isfinite(slp)
    constraints = constraints or {}
    cross = crossings(parts, constraints, grid)
    summary = summarise_crossings(cross, constraints, length_m / 1e3)
    site_list, capacity = corridor_sites(sites, parts, grid, corridor_km, rank_classes)
    notes = []
    if not (valid_e.all() and valid_s.all()):
        notes.append(f"{int((~valid_e).sum())} of {len(d)} stations have no elevation data "
                     "(outside the grid or study area)")  # fmt: skip
    if isinstance(route, gpd.GeoDataFrame) and route.get("illustrative", pd.Series()).any():
        notes.append("the route is marked illustrative in its file / 示意线路，非规划线路")
    if elevation.attrs.get("modelled") in _MODELLED:
        notes.append("elevation is modelled (demo terrain): profile and shares are illustrative")
    route_gdf = gpd.GeoDataFrame({"name": [name], "length_km": [length_m / 1e3]},
                                 geometry=[line], crs=grid.crs)  # fmt: skip
    return RouteReport(name, length_m / 1e3, float(corridor_km), summary, cross, profile, high,
                       steep, float(elevation_threshold_m), float(slope_threshold_deg), capacity,
                       site_list, route_gdf, grid, elevation, notes)  # fmt: skip


# -- least-cost suggestion -------------------------------------------------------------------
@dataclass
class SuggestedRoute:
    """A least-cost route between two points, compared with the straight line."""

    line: shapely.LineString
    length_km: float
    cost_km: float  # accumulated cost [km of flat-equivalent line]
    straight_km: float
    straight_cost_km: float  # cost along the straight line (inf if it crosses impassable pixels)
    crosses_redlines: bool
    crossings: gpd.GeoDataFrame
    method: str
    crs: Any = None

    @property
    def length_ratio(self) -> float:
        """Route length / straight-line length [1]."""
        return self.length_km / self.straight_km if self.straight_km > 0 else float("nan")

    def to_geodataframe(self) -> gpd.GeoDataFrame:
        """One-row GeoDataFrame of the suggested line and its figures."""
        return gpd.GeoDataFrame(
            dict(name=["suggested route"], length_km=[self.length_km], cost_km=[self.cost_km],
                 straight_km=[self.straight_km], length_ratio=[self.length_ratio],
                 straight_cost_km=[self.straight_cost_km],
                 redline_km=[float(self.crossings["length_km"].sum())],
                 n_crossings=[len(self.crossings)], method=[self.method]),
            geometry=[self.line], crs=self.crs,
        )  # fmt: skip


def _dask(a: xr.DataArray, grid: Grid) -> da.Array:
    if tuple(a.shape) != tuple(grid.shape):
        raise LayerError(f"raster '{a.name}' has shape {a.shape}, the grid {grid.shape}")
    return a.data if isinstance(a.data, da.Array) else da.from_array(a.data, grid.dask_chunks)


def _override(cost: xr.DataArray, forbidden: xr.DataArray, factor: float | None,
              grid: Grid) -> xr.DataArray:  # fmt: skip
    """Cost with forbidden pixels impassable (``factor`` None) or multiplied by ``factor``."""
    c, f = _dask(cost, grid).astype(np.float32), _dask(forbidden, grid)
    out = da.where(f.astype(bool), np.float32(np.inf) if factor is None else c * factor, c)
    return grid.wrap(out, "line_cost", "1", "line cost per metre relative to flat ground")


def suggest_route(
    start_xy: tuple[float, float],
    end_xy: tuple[float, float],
    *,
    cost: xr.DataArray,
    forbidden_mask: xr.DataArray | None = None,
    grid: Grid,
    redlines: gpd.GeoDataFrame | None = None,
    redline_names: tuple[str, str] = ("Redlines", "生态保护红线"),
    penalty: float = REDLINE_PENALTY,
    avoid: bool = True,
    surface: str = "",
) -> SuggestedRoute:
    """Least-cost route from ``start_xy`` to ``end_xy`` [grid CRS, m] avoiding redlines if possible.

    Redline polygons are burnt with ``all_touched`` (a pixel they touch is forbidden) and joined
    with ``forbidden_mask``. If no path avoids them (start or end enclosed), the search repeats
    with the cost inside them multiplied by ``penalty`` [1] per metre, which makes the path cross
    the fewest redline km, and each crossing is reported. With ``avoid=False`` the path follows
    ``cost`` as given (it already prices the forbidden zones, e.g. a run's connection surface
    with ``grid.forbidden_cost``: :meth:`sitekit.engine.pipeline.Pipeline.connection_cost`), and the
    redlines/forbidden mask only name the crossings.

    Parameters
    ----------
    cost : cost per metre on the grid [1] (:func:`sitekit.science.proximity.cost_surface` without the
        redlines; ``inf``/NaN stay impassable in both searches).
    avoid : override the forbidden pixels (impassable, then ×``penalty``) or keep ``cost``.
    surface : what ``cost`` is, for the method text (e.g. the recipe it was built from).

    Returns
    -------
    SuggestedRoute (line from the exact start to the exact end point, in the grid CRS).

    References
    ----------
    Dijkstra (1959); Bagli, Geneletti & Orsi (2011), see :func:`sitekit.science.proximity.cost_surface`.
    """
    start, end = (float(start_xy[0]), float(start_xy[1])), (float(end_xy[0]), float(end_xy[1]))
    for label, (px, py) in (("start", start), ("end", end)):
        if not shapely.box(*grid.bounds).contains(shapely.Point(px, py)):
            raise InputError(f"route {label} ({px:.0f}, {py:.0f}) lies outside the grid "
                             f"{tuple(round(v) for v in grid.bounds)}")  # fmt: skip
    forbidden = None
    if redlines is not None and len(redlines):
        forbidden = grid.rasterize(grid.to_grid_crs(redlines, "redlines"), all_touched=True)
    if forbidden_mask is not None:  # combine the dask arrays (no coordinate alignment)
        fm = _dask(forbidden_mask, grid).astype(bool)
        fm = fm if forbidden is None else fm | _dask(forbidden, grid)
        forbidden = grid.wrap(fm, "forbidden", "bool")
    method = "least-cost path avoiding redlines"
    crosses = False
    if not avoid:
        method = "least-cost path on the connection cost surface"
        method += f" ({surface})" if surface else ""
        crosses = True  # whatever it crosses is reported (crossings below)
        res = proximity.least_cost_path(cost, start, [end], grid)
    elif forbidden is None:
        res = proximity.least_cost_path(cost, start, [end], grid)
    else:
        try:
            res = proximity.least_cost_path(_override(cost, forbidden, None, grid), start, [end],
                                            grid)  # fmt: skip
        except InputError:
            crosses = True
            method = f"no path avoids the redlines: redlines penalised ×{penalty:g} per metre"
            res = proximity.least_cost_path(_override(cost, forbidden, penalty, grid), start,
                                            [end], grid)  # fmt: skip
    coords = np.asarray(res.line.coords)
    coords = np.vstack([start, coords[1:-1], end]) if len(coords) > 2 else np.array([start, end])
    line = shapely.LineString(coords)
    straight = shapely.LineString([start, end])
    cons: dict = {}
    if redlines is not None and len(redlines):
        cons["redline"] = (*redline_names, redlines)
    if forbidden_mask is not None:
        cons["forbidden"] = ("Forbidden zones", "禁止通行区", forbidden_mask)
    cross = crossings(line, cons, grid)
    step = grid.resolution_m / 4
    n = max(1, math.ceil(straight.length / step))
    mids = shapely.line_interpolate_point(straight, (np.arange(n) + 0.5) * straight.length / n)
    c_forb = cost if forbidden is None or not avoid else _override(cost, forbidden, None, grid)
    (cs,) = sample([c_forb], grid, shapely.get_x(mids), shapely.get_y(mids), "nearest")
    straight_cost = float(np.sum(np.where(np.isnan(cs), np.inf, cs)) * straight.length / n / 1e3)
    return SuggestedRoute(line, line.length / 1e3, res.cost_m / 1e3, straight.length / 1e3,
                          straight_cost, crosses and len(cross) > 0, cross, method, grid.crs)  # fmt: skip


# -- writers ---------------------------------------------------------------------------------
def _md(value: Any) -> str:
    """Text for a Markdown table cell: HTML-escaped (names may hold markup), pipes escaped."""
    return html.escape(str(value), quote=True).replace("|", "\\|").replace("\n", " ")


def _cost_text(value: float) -> str:
    return f"{value:.1f}" if math.isfinite(value) else "impassable / 不可通行"


def _table(df: pd.DataFrame, cols: dict[str, str], fmt: dict[str, str] | None = None) -> str:
    fmt = fmt or {}
    head = "| " + " | ".join(cols.values()) + " |\n|" + "---|" * len(cols) + "\n"
    body = "".join(
        "| "
        + " | ".join(_md(format(r[c], fmt.get(c, "")) if c in fmt else r[c]) for c in cols)
        + " |\n"
        for _, r in df.iterrows()
    )
    return head + (body or "| " + " | ".join(["–"] * len(cols)) + " |\n")


def write_csv(target: Path, df: pd.DataFrame, provenance: dict | None = None) -> Path:
    """Atomically write a table (geometry dropped) as UTF-8 CSV with a BOM (opens in Excel),
    through the shared :func:`sitekit.outputs.export.write_table`; with the run's ``provenance`` a
    ``data_status`` column says what the rows rest on."""
    from sitekit.outputs.export import write_table

    return write_table(target, df, add_lonlat=False, provenance=provenance, float_format="%.6g")


def _profile_png(report: RouteReport, target: Path, provenance: dict | None = None) -> Path:
    from matplotlib.figure import Figure

    p = report.profile
    fig = Figure(figsize=(10, 6), layout="constrained")
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    ax1.plot(p["distance_km"], p["elevation_m"], color="#5b3a1e", lw=1.2)
    ax1.axhline(report.elevation_threshold_m, color="#b30000", ls="--", lw=0.8,
                label=f"{report.elevation_threshold_m:g} m")  # fmt: skip
    colours = ["#e7298a", "#1b9e77", "#7570b3", "#d95f02", "#66a61e", "#e6ab02"]
    codes = list(dict.fromkeys(report.crossings["code"]))
    for i, code in enumerate(codes):
        for j, (_, c) in enumerate(report.crossings[report.crossings["code"] == code].iterrows()):
            for ax in (ax1, ax2):
                ax.axvspan(c["entry_km"], c["exit_km"], color=colours[i % len(colours)], alpha=0.25,
                           label=str(code) if (ax is ax1 and j == 0) else None)  # fmt: skip
    ax1.set_ylabel("elevation [m]")
    ax1.legend(loc="best", fontsize=8)
    ax2.plot(p["distance_km"], p["slope_deg"], color="#444444", lw=0.9)
    ax2.axhline(report.slope_threshold_deg, color="#b30000", ls="--", lw=0.8)
    ax2.set_ylabel("slope [°]")
    ax2.set_xlabel("distance along the route [km]")
    title = report.name if all(ord(c) < 0x2E80 for c in report.name) else "route"  # no CJK font
    if report.elevation is not None and report.elevation.attrs.get("modelled") in _MODELLED:
        title += ", modelled demo terrain"
    ax1.set_title(f"Elevation and slope profile — {title} ({report.length_km:.1f} km)")
    from sitekit.outputs.tags import png_text

    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=120, metadata=png_text("route_profile", provenance))
    return Path(target)


def route_summary_markdown(
    report: RouteReport, suggestion: SuggestedRoute | None = None, provenance: dict | None = None
) -> str:
    """The bilingual Markdown summary of a route report (every name HTML-escaped); with the
    run's ``provenance`` a data-status line follows the heading (:func:`sitekit.outputs.tags.banner`)."""
    from sitekit.outputs.tags import banner

    p, r = report.profile, report
    e, s = p["elevation_m"], p["slope_deg"]
    status = banner("route_summary", provenance)
    lines = [f"# Route report / 线路评估报告: {_md(r.name)}", "", *([status, ""] if status else []),
             f"- Length / 线路长度: **{r.length_km:.1f} km**",
             f"- Corridor / 汇集走廊: ±{r.corridor_km:g} km", ""]  # fmt: skip
    lines += ["## Terrain / 地形", "", "| Measure / 指标 | Value / 数值 |", "|---|---|",
              f"| Max elevation / 最高海拔 [m] | {np.nanmax(e):.0f} |" if e.notna().any() else
              "| Max elevation / 最高海拔 [m] | – |",
              f"| Share above {r.elevation_threshold_m:g} m / 海拔 {r.elevation_threshold_m:g} m "
              f"以上占比 | {100 * r.share_above_elevation:.1f} % |",
              f"| Share on slopes > {r.slope_threshold_deg:g}° / 坡度 > {r.slope_threshold_deg:g}° "
              f"占比 | {100 * r.share_steep:.1f} % |",
              f"| Mean slope / 平均坡度 [°] | {np.nanmean(s):.1f} |" if s.notna().any() else
              "| Mean slope / 平均坡度 [°] | – |", ""]  # fmt: skip
    lines += ["## Hard constraints crossed / 穿越的刚性约束", "",
              _table(r.constraints, {"code": "Code / 代码", "name_en": "Constraint",
                                     "name_zh": "约束", "length_km": "Inside / 穿越长度 [km]",
                                     "share_pct": "Share / 占比 [%]",
                                     "n_crossings": "Crossings / 穿越次数"},
                     {"length_km": ".2f", "share_pct": ".1f"}),
              "### Crossings / 穿越明细", "",
              _table(r.crossings, {"code": "Code / 代码", "crossing": "#", "features":
                                   "Features / 图斑", "entry_km": "Entry / 进入 [km]",
                                   "exit_km": "Exit / 离开 [km]", "length_km": "Length / 长度 [km]",
                                   "entry_lon": "Entry lon", "entry_lat": "Entry lat",
                                   "exit_lon": "Exit lon", "exit_lat": "Exit lat"},
                     {"entry_km": ".2f", "exit_km": ".2f", "length_km": ".2f",
                      "entry_lon": ".4f", "entry_lat": ".4f", "exit_lon": ".4f",
                      "exit_lat": ".4f"})]  # fmt: skip
    lines += [f"## Candidate capacity within ±{r.corridor_km:g} km / 走廊内候选装机", "",
              _table(r.capacity, {"technology": "Technology / 技术", "rank_class":
                                  "Rank class / 排名区间", "n_sites": "Sites / 场址数",
                                  "capacity_mw": "Capacity / 装机 [MW]",
                                  "energy_gwh": "Energy / 年发电量 [GWh]"},
                     {"capacity_mw": ",.0f", "energy_gwh": ",.0f"}),
              "## Sites the route could collect / 可汇集的场址", "",
              "Best 30 by rank per technology; all in `route_sites.csv`. / 每类前30个，完整列表见 "
              "`route_sites.csv`。", "",
              _table(r.sites.groupby("technology").head(30) if len(r.sites) else r.sites,
                     {"technology": "Technology / 技术", "rank": "Rank / 排名",
                      "site_id": "Site / 场址", "capacity_mw": "MW",
                      "distance_km": "To line / 距线路 [km]",
                      "route_km": "At route km / 线路里程 [km]"},
                     {"capacity_mw": ",.0f", "distance_km": ".1f", "route_km": ".1f"})]  # fmt: skip
    if suggestion is not None:
        sg = suggestion
        lines += ["## Least-cost suggestion / 最小成本路径建议", "",
                  f"- Method / 方法: {_md(sg.method)}",
                  f"- Length / 长度: {sg.length_km:.1f} km; straight line / 直线: "
                  f"{sg.straight_km:.1f} km (ratio / 比值 {sg.length_ratio:.2f})",
                  f"- Cost / 成本: {sg.cost_km:.1f} km-equivalent / 等效公里; straight line / "
                  f"直线: {_cost_text(sg.straight_cost_km)}",
                  f"- Forbidden-zone km crossed / 穿越禁止通行区长度: "
                  f"{sg.crossings['length_km'].sum():.2f} km "
                  f"in {len(sg.crossings)} crossing(s) / 次", ""]  # fmt: skip
    lines += ["## Notes / 说明", "", "- Crossings: stretches of the line inside a constraint "
              "(polygon geometry, or quarter-pixel sampling of a raster mask). / 穿越：线路位于约束范围内"
              "的连续段。", "- Profile sampled bilinearly every "
              f"{float(p['distance_km'].diff().median() * 1000) if len(p) > 1 else 0:.0f} m. / "
              "剖面按固定间距双线性采样。"]  # fmt: skip
    lines += [f"- {_md(n)}" for n in r.notes]
    return "\n".join(lines) + "\n"


def _route_map(
    report: RouteReport,
    target: Path,
    suggestion: SuggestedRoute | None,
    cache_dir: str | Path | None = None,
    provenance: dict | None = None,
) -> Path:
    from sitekit.engine.cache import LayerCache
    from sitekit.outputs import render
    from sitekit.outputs.style import MapStyle, VectorStyle

    grid = report.grid
    corridor = report.route.geometry.iloc[0].buffer(report.corridor_km * 1000.0)
    (c0, c1), (r1, r0) = ~grid.transform * (
        np.array(corridor.bounds[0::2]),
        np.array(corridor.bounds[1::2]),
    )
    ny, nx = grid.shape
    r0, c0 = max(0, math.floor(r0)), max(0, math.floor(c0))
    r1, c1 = min(ny, math.ceil(r1)), min(nx, math.ceil(c1))
    win = Grid(grid.crs, grid.window_transform(r0, c0), (r1 - r0, c1 - c0), grid.chunks,
               None, report.name)  # fmt: skip
    rasters = {}
    if report.elevation is not None and r1 > r0 and c1 > c0:
        rasters["elevation"] = report.elevation.isel(y=slice(r0, r1), x=slice(c0, c1))
    base = MapStyle()
    extra = {
        "corridor": VectorStyle(name_en="Corridor", name_zh="汇集走廊", color="#e7298a",
                                weight=1.0, dash_array="2 4", fill=False),
        "route_crossings": VectorStyle(name_en="Constraint crossings", name_zh="约束穿越段",
                                       color="#d7191c", weight=6.0, fill=False),
        "suggested_route": VectorStyle(name_en="Least-cost suggestion", name_zh="最小成本路径",
                                       color="#1a9641", weight=3.0, fill=False),
    }  # fmt: skip
    style = MapStyle(title_en=f"Route {report.name}", title_zh="线路评估",
                     vectors={**base.vectors, **extra}, layer_control_collapsed=False)  # fmt: skip
    vectors: dict[str, gpd.GeoDataFrame] = {
        "corridor": gpd.GeoDataFrame({"name": [f"±{report.corridor_km:g} km"]},
                                     geometry=[corridor], crs=grid.crs),
    }  # fmt: skip
    for tech in sorted(set(report.sites["technology"])):
        vectors[f"{tech}_sites"] = report.sites[report.sites["technology"] == tech]
    vectors["routes"] = report.route
    if suggestion is not None:
        vectors["suggested_route"] = suggestion.to_geodataframe()
    if len(report.crossings):
        vectors["route_crossings"] = report.crossings[["code", "name_en", "name_zh", "crossing",
                                                       "features", "entry_km", "exit_km",
                                                       "length_km", "geometry"]]  # fmt: skip
    prov = {**(provenance or {}), "title": f"{report.name} — route report / 线路评估"}
    if report.elevation is not None and report.elevation.attrs.get("modelled") in _MODELLED:
        prov["demo_terrain"] = True
    # overlays are keyed by their pixels' content: a re-run on the same terrain reuses them
    cache = LayerCache(cache_dir, win, "") if cache_dir is not None else None
    return render.render_map(target, grid=win, rasters=rasters, vectors=vectors, style=style,
                             provenance=prov, cache=cache)  # fmt: skip


def write_route_report(
    report: RouteReport, out_dir: str | Path, *, suggestion: SuggestedRoute | None = None,
    make_map: bool = True, cache_dir: str | Path | None = None, provenance: dict | None = None,
) -> dict[str, Path]:  # fmt: skip
    """Write a route report: ``route_profile.csv``/``.png``, ``route_summary.md``,
    ``route_crossings.csv``, ``route_sites.csv``, ``route_capacity.csv`` and ``route_map.html``
    (self-contained, offline; every name escaped), plus ``route_suggestion.geojson`` when a
    suggestion is given. Every file is written atomically. With ``cache_dir`` (the run's layer
    cache) the map's overlays are kept there. With the run's ``provenance`` (``run.json``) every
    table, the PNG, the summary and the map say what they rest on (:mod:`sitekit.outputs.tags`).
    Returns {name: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prov = provenance
    files = {
        "profile_csv": write_csv(out / "route_profile.csv", report.profile, prov),
        "crossings_csv": write_csv(out / "route_crossings.csv", report.crossings, prov),
        "sites_csv": write_csv(out / "route_sites.csv", report.sites, prov),
        "capacity_csv": write_csv(out / "route_capacity.csv", report.capacity, prov),
        "profile_png": _profile_png(report, out / "route_profile.png", prov),
        "summary_md": write_text(
            out / "route_summary.md", route_summary_markdown(report, suggestion, prov)
        ),  # fmt: skip
    }
    if suggestion is not None:
        target = out / "route_suggestion.geojson"
        with atomic_path(target) as tmp:
            gdf = suggestion.to_geodataframe().to_crs(4326)
            for col in ("cost_km", "straight_cost_km"):  # GeoJSON has no inf: null = impassable
                gdf[col] = gdf[col].astype(object).where(np.isfinite(gdf[col].astype(float)), None)
            if prov is not None:  # the run's data status as a property (sitekit.outputs.tags)
                from sitekit.outputs.tags import status

                gdf["data_status"] = status("suggested_route", prov)
            gdf.to_file(tmp, driver="GeoJSON", engine="pyogrio")
        files["suggestion_geojson"] = target
    if make_map:
        files["map_html"] = _route_map(report, out / "route_map.html", suggestion, cache_dir,
                                       prov)  # fmt: skip
    return files
