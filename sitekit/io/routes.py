"""Read what route and hosting analyses start from: a route line file, and the layers of a
finished run folder (through :func:`sitekit.io.results.load_run`, the one reader of run folders).

:func:`read_route` reads a line from GeoJSON, KML, GeoPackage or Shapefile in any CRS;
:func:`open_run` gives a run's elevation and slope (lazy), study area, sites, connection points
and constraint polygons on the run's grid (:class:`RunLayers`), for
:mod:`sitekit.science.routes` and :mod:`sitekit.science.hosting`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pyproj
import shapely
import xarray as xr

from sitekit.errors import CRSError, InputError, SitekitWarning
from sitekit.grid import Grid, parse_crs
from sitekit.io.results import RunData, load_run
from sitekit.science.routes import _LINES, check_in_study_area


# -- route files ---------------------------------------------------------------------------------
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


# -- run folders -----------------------------------------------------------------------------
@dataclass
class RunLayers:
    """What route and hosting analyses read back from a previous run's output folder."""

    grid: Grid
    elevation: xr.DataArray
    slope: xr.DataArray
    sites: dict[str, gpd.GeoDataFrame]
    points: gpd.GeoDataFrame | None
    constraints: dict[str, tuple[str, str, gpd.GeoDataFrame]]
    provenance: dict[str, Any] = field(default_factory=dict)  # run.json, {} without one

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


def load_route_run(run_dir: str | Path, chunks: int = 1024) -> RunData:
    """:func:`sitekit.io.results.load_run` for the route and hosting steps, which also need
    ``rasters/slope.tif`` (the message names the files a run folder lacks)."""
    run = Path(run_dir)
    rdir, gpkg = run / "rasters", run / "sitekit.gpkg"
    for f in (rdir / "elevation.tif", rdir / "slope.tif", gpkg):
        if not f.exists():
            raise InputError(f"{run}: {f.relative_to(run)} not found; point --run at the output "
                             "folder of `sitekit demo`/`sitekit run`")  # fmt: skip
    return load_run(run, chunks)


def run_layers(data: RunData, catalog: Any = None) -> RunLayers:
    """The layers of a loaded run folder (:func:`load_route_run`) that routes and hosting use
    (rasters stay lazy).

    ``elevation`` and ``slope`` (float32, nodata as NaN) give the grid; from ``sitekit.gpkg``:
    ``prefectures`` (the study area), ``pv_sites``/``wind_sites``, ``grid_points`` and every
    ``constraint_<id>`` polygon layer, split by its ``class`` column when it has several (names
    from the :class:`~sitekit.io.catalog.Catalog` entry ``<id>`` if a catalogue is given). Vectors
    come back in the grid CRS.
    """
    crs, chunks = data.grid.crs, data.grid.chunks
    vec = {}
    for name, g in data.vectors.items():
        if isinstance(g, gpd.GeoDataFrame):  # attribute tables have no geometry
            vec[name] = g.to_crs(crs) if g.crs and pyproj.CRS(g.crs) != crs else g
    pref = vec.get("prefectures")
    area = shapely.make_valid(pref.union_all()) if pref is not None and len(pref) else None
    grid = Grid(crs, data.grid.transform, data.grid.shape, chunks, area, data.folder.name)
    wrapped = {}
    for key in ("elevation", "slope"):
        a = data.rasters[key]
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
                     constraints, dict(data.provenance))  # fmt: skip


def open_run(run_dir: str | Path, catalog: Any = None, chunks: int = 1024) -> RunLayers:
    """The layers of a run folder that routes and hosting use (:func:`load_route_run`, then
    :func:`run_layers`)."""
    return run_layers(load_route_run(run_dir, chunks), catalog)
