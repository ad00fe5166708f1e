"""Transmission routes: evaluate a line against the screening layers, suggest a least-cost one.

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
crossing. On a run folder, :func:`sitekit.engine.routes.run_connection_cost` rebuilds the cost
surface the run's least-cost connections used (its recipe from ``run.json``: slope,
``grid.cost_terms`` from any raster, per-rule ``grid.crossing_costs``, ``grid.forbidden`` zones at
``grid.forbidden_cost``; :meth:`sitekit.engine.pipeline.Pipeline.line_cost`), and the suggestion
follows it as it is (``avoid=False``), so it costs what the run's ``connection_distance`` says.

Analysis only: route files and run folders are read by :mod:`sitekit.io.routes`, the CSV tables,
profile plot, bilingual summary and offline map are written by :mod:`sitekit.outputs.routes`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as da
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr
from shapely.ops import substring

from sitekit.errors import InputError, LayerError, SitekitWarning
from sitekit.grid import Grid, transformer
from sitekit.science import proximity

#: upper rank limits of the rank classes (1–10, 11–50, 51+)
RANK_CLASSES = (10, 50)
#: cost multiplier inside redlines when no path avoids them
REDLINE_PENALTY = 1000.0
#: stretches shorter than this [m] are corner grazes, not crossings
_MIN_CROSSING_M = 0.01
#: ``modelled`` attribute values of a demo elevation raster
MODELLED = ("yes", "demo terrain")
_LINES = ("LineString", "MultiLineString", "LinearRing")
_NAME_FIELDS = ("name_zh", "name_en", "name", "Name", "zone_id", "id")


# -- geometry --------------------------------------------------------------------------------
def check_in_study_area(geom: Any, grid: Grid, where: str = "route") -> None:
    """Raise InputError if ``geom`` (grid CRS) misses the study area; warn if it leaves the grid."""
    area = grid.study_area if grid.study_area is not None else shapely.box(*grid.bounds)
    if not geom.intersects(area):
        tr = transformer(grid.crs, 4326)
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
    tr = transformer(grid.crs, 4326)
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
    lon, lat = transformer(grid.crs, 4326).transform(x, y)
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
    if elevation.attrs.get("modelled") in MODELLED:
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
