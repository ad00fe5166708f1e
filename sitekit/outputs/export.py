"""Standard files out: one styled GeoPackage, Cloud-Optimized GeoTIFFs, CSV/XLSX tables.

Every writer works on a temporary sibling (:func:`sitekit.io.atomic.atomic_path`) and renames it over
the target only when complete, so a reader sees the previous file or the new one, never half.

* GeoPackage: all vector layers in one file, written as GeoPackage 1.2 (:data:`GPKG_VERSION`: GDAL
  3.6, as in Debian 12's QGIS 3.28, warns on 1.4 files) with pyogrio; each layer with a bilingual
  title and its data status (modelled/illustrative) in ``gpkg_contents``,
  plus a ``layer_styles`` table in the QGIS convention (each layer opens styled in QGIS, with
  Chinese field aliases, :mod:`sitekit.outputs.labels`) and the
  provenance as JSON in ``gpkg_metadata``/``gpkg_metadata_reference`` (spec §F.8, metadata
  extension, registered in ``gpkg_extensions``).
* COG (512 px tiles, overviews, DEFLATE + predictor): the Dask workers compress the tiles and
  compute the overviews from the full-resolution blocks, and the client only lays out the file
  (:mod:`sitekit.outputs.tilewrite`); a raster they cannot write (reprojected, or whose overviews
  do not halve it exactly) is computed strip by strip on the client into a tiled GeoTIFF that
  GDAL's COG driver copies. Both give the same file.
* Tables: CSV in UTF-8 *with* a byte-order mark, so Excel shows Chinese names correctly; XLSX via
  openpyxl. Geometry is dropped (``lon_deg``/``lat_deg`` of a representative point added instead),
  and text cells starting with ``= + - @`` are made inert (CSV: prefixed with ``'``; XLSX: stored
  as text), so a site name from a user file can never run as a spreadsheet formula.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pyproj
import xarray as xr

from sitekit.engine.logs import LOGGER
from sitekit.errors import CRSError, InputError, LayerError, OutputError
from sitekit.grid import parse_crs
from sitekit.io.atomic import atomic_path
from sitekit.outputs.style import MapStyle, VectorStyle

#: URI naming the JSON provenance document stored in gpkg_metadata.
METADATA_URI = "urn:sitekit:provenance:1"
METADATA_EXTENSION = "http://www.geopackage.org/spec/#extension_metadata"
RESERVED = ("gpkg_", "rtree_", "sqlite_", "layer_styles")
#: GeoPackage version written (GDAL ``VERSION`` creation option); readers back to GDAL 2.2 and
#: QGIS 3.x open 1.2 without a warning
GPKG_VERSION = "1.2"
BOUNDARY_LAYERS = ("prefectures", "counties", "study_area")

_METADATA_DDL = """
CREATE TABLE IF NOT EXISTS gpkg_metadata (
  id INTEGER CONSTRAINT m_pk PRIMARY KEY ASC NOT NULL,
  md_scope TEXT NOT NULL DEFAULT 'dataset',
  md_standard_uri TEXT NOT NULL,
  mime_type TEXT NOT NULL DEFAULT 'text/xml',
  metadata TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS gpkg_metadata_reference (
  reference_scope TEXT NOT NULL,
  table_name TEXT,
  column_name TEXT,
  row_id_value INTEGER,
  timestamp DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  md_file_id INTEGER NOT NULL,
  md_parent_id INTEGER,
  CONSTRAINT crmr_mfi_fk FOREIGN KEY (md_file_id) REFERENCES gpkg_metadata(id),
  CONSTRAINT crmr_mpi_fk FOREIGN KEY (md_parent_id) REFERENCES gpkg_metadata(id));
CREATE TABLE IF NOT EXISTS gpkg_extensions (
  table_name TEXT,
  column_name TEXT,
  extension_name TEXT NOT NULL,
  definition TEXT NOT NULL,
  scope TEXT NOT NULL,
  CONSTRAINT ge_tce UNIQUE (table_name, column_name, extension_name));
"""


def _json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True, default=str)


# -- GeoPackage ------------------------------------------------------------------------------
def write_geopackage(
    path: str | Path,
    layers: Mapping[str, gpd.GeoDataFrame],
    *,
    crs: Any = None,
    metadata: dict | None = None,
    styles: Mapping[str, str] | None = None,
    layer_metadata: Mapping[str, dict] | None = None,
    style: MapStyle | None = None,
) -> Path:
    """Write vector layers, their QGIS styles and the provenance into one GeoPackage, atomically.

    Parameters
    ----------
    path : target ``.gpkg``.
    layers : GeoDataFrames by layer name (empty ones are written as empty layers).
    crs : output CRS (e.g. ``"EPSG:4490"``); None keeps each layer's CRS.
    metadata : provenance (JSON-serialisable) stored for the whole GeoPackage.
    styles : QML per layer, overriding the default generated from ``style``.
    layer_metadata : extra JSON metadata per layer (reference scope ``table``).
    style : map style the default QML follows (colours, classes, labels); None = default.

    Returns
    -------
    The path written.
    """
    if not layers:
        raise InputError(f"{path}: no layers to write")
    from sitekit.outputs import tags
    from sitekit.outputs.labels import layer_title

    out_crs = parse_crs(crs, "export --crs") if crs is not None else None
    qml = {k: v for k, v in (styles or {}).items()}
    per_layer = dict(layer_metadata or {})
    with atomic_path(path) as part:
        tmp = part.with_name(part.name + ".gpkg")  # GDAL wants the .gpkg extension
        for name, gdf in layers.items():
            if not name or name.lower().startswith(RESERVED):
                raise InputError(f"layer name {name!r} is reserved in a GeoPackage; rename it")
            if gdf.crs is None:
                raise CRSError(f"layer '{name}' has no CRS; it cannot go into {path}")
            out = gdf.to_crs(out_crs) if out_crs is not None else gdf
            out = _plain_columns(out).set_crs(_resolved(out.crs.to_wkt()), allow_override=True)
            title = layer_title(name, style, metadata)
            status = ""
            if metadata is not None:  # the layer's own title and data status, then any given
                own = tags.file_tags(name, metadata)
                status = own["data_status"]
                given = per_layer.get(name) or {}
                per_layer[name] = {"title": title, **own, **given}
            pyogrio.write_dataframe(
                out,
                tmp,
                layer=name,
                driver="GPKG",
                dataset_options=None if tmp.exists() else {"VERSION": GPKG_VERSION},
                layer_options={"IDENTIFIER": title, "DESCRIPTION": status},
            )
            if name not in qml:
                qml[name] = default_qml(name, gdf, style)
        rows = _style_rows(tmp, {k: v for k, v in qml.items() if k in layers})
        pyogrio.write_dataframe(
            rows, tmp, layer="layer_styles", driver="GPKG", layer_options={"FID": "id"}
        )
        _write_metadata(tmp, metadata, per_layer)
        tmp.replace(part)
    LOGGER.debug("GeoPackage %s %s: %s", GPKG_VERSION, path, ", ".join(layers))
    return Path(path)


class _ResolvedCRS(pyproj.CRS):
    """A CRS whose EPSG code was looked up once. pyogrio calls ``crs.to_epsg()`` for every layer
    it writes, and for a custom CRS (sitekit's Albers) that search of the PROJ database takes
    0.4–0.8 s each time."""

    epsg: int | None = None

    def to_epsg(self, min_confidence: int = 70) -> int | None:
        return self.epsg


@functools.lru_cache(maxsize=16)
def _resolved(wkt: str) -> _ResolvedCRS:
    crs = _ResolvedCRS(wkt)
    crs.epsg = pyproj.CRS(wkt).to_epsg()
    return crs


def _plain_columns(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Object columns holding lists/dicts become JSON text (GeoPackage has no nested types)."""
    out = gdf.copy()
    for col in out.columns:
        if col == out.geometry.name or out[col].dtype != object:
            continue
        if out[col].map(lambda v: isinstance(v, list | tuple | dict | set)).any():
            out[col] = out[col].map(lambda v: v if v is None else _json(v))
    return out


def _style_rows(gpkg: Path, qml: Mapping[str, str]) -> pd.DataFrame:
    with sqlite3.connect(gpkg) as con:
        geom_col = dict(con.execute("SELECT table_name, column_name FROM gpkg_geometry_columns"))
    con.close()
    now = pd.Timestamp.now(tz="UTC").floor("s")
    return pd.DataFrame(
        {
            "f_table_catalog": "",
            "f_table_schema": "",
            "f_table_name": list(qml),
            "f_geometry_column": [geom_col.get(k, "") for k in qml],
            "styleName": list(qml),
            "styleQML": list(qml.values()),
            "styleSLD": "",
            "useAsDefault": True,
            "description": "sitekit default style",
            "owner": "",
            "ui": None,
            "update_time": now,
        }
    )


def _write_metadata(gpkg: Path, metadata: dict | None, per_layer: Mapping[str, dict]) -> None:
    if metadata is None and not per_layer:
        return
    con = sqlite3.connect(gpkg)
    try:
        with con:
            con.executescript(_METADATA_DDL)
            for table in ("gpkg_metadata", "gpkg_metadata_reference"):
                con.execute(
                    "INSERT OR IGNORE INTO gpkg_extensions VALUES (?, NULL, 'gpkg_metadata', ?, "
                    "'read-write')",
                    (table, METADATA_EXTENSION),
                )
            items = [("geopackage", None, metadata)] if metadata is not None else []
            items += [("table", name, md) for name, md in per_layer.items()]
            for scope, table, md in items:
                cur = con.execute(
                    "INSERT INTO gpkg_metadata (md_scope, md_standard_uri, mime_type, metadata) "
                    "VALUES ('dataset', ?, 'application/json', ?)",
                    (METADATA_URI, _json(md)),
                )
                con.execute(
                    "INSERT INTO gpkg_metadata_reference (reference_scope, table_name, "
                    "md_file_id) VALUES (?, ?, ?)",
                    (scope, table, cur.lastrowid),
                )
    finally:
        con.close()


def read_metadata(path: str | Path) -> dict[str, Any]:
    """sitekit JSON metadata of a GeoPackage: ``{"geopackage": {...}, "tables": {name: {...}}}``."""
    out: dict[str, Any] = {"geopackage": None, "tables": {}}
    con = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    try:
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "gpkg_metadata_reference" not in names:
            return out
        rows = con.execute(
            "SELECT r.reference_scope, r.table_name, m.metadata FROM gpkg_metadata_reference r "
            "JOIN gpkg_metadata m ON m.id = r.md_file_id WHERE m.md_standard_uri = ? "
            "ORDER BY m.id",
            (METADATA_URI,),
        ).fetchall()
    finally:
        con.close()
    for scope, table, text in rows:
        if scope == "geopackage":
            out["geopackage"] = json.loads(text)
        elif table:
            out["tables"][table] = json.loads(text)
    return out


def read_styles(path: str | Path) -> dict[str, str]:
    """Default QML per layer from a GeoPackage's ``layer_styles`` table (empty if none)."""
    if "layer_styles" not in set(pyogrio.list_layers(path)[:, 0]):
        return {}
    df = pyogrio.read_dataframe(path, layer="layer_styles", read_geometry=False)
    df = df.sort_values("useAsDefault")  # defaults last → they win
    return dict(zip(df["f_table_name"], df["styleQML"], strict=True))


# -- QGIS styles (QML) -----------------------------------------------------------------------
_PX_TO_MM = 0.2646  # 96 dpi


def _rgba(colour: str, alpha: float = 1.0) -> str:
    from matplotlib.colors import to_rgba

    r, g, b, _ = to_rgba(colour)
    return f"{round(r * 255)},{round(g * 255)},{round(b * 255)},{round(alpha * 255)}"


def _props(props: dict[str, Any]) -> str:
    from xml.sax.saxutils import quoteattr

    return "".join(f"<prop k={quoteattr(k)} v={quoteattr(str(v))}/>" for k, v in props.items())


def _symbol(kind: str, name: str, vs: VectorStyle, colour: str) -> str:
    dash = "dash" if vs.dash_array else "solid"
    if kind == "fill":
        layer = "SimpleFill"
        props = {
            "color": _rgba(colour, vs.fill_opacity if vs.fill else 0),
            "style": "solid" if vs.fill else "no",
            "outline_color": _rgba(vs.color),
            "outline_style": dash,
            "outline_width": round(vs.weight * _PX_TO_MM, 2),
            "outline_width_unit": "MM",
            "joinstyle": "bevel",
        }
    elif kind == "line":
        layer = "SimpleLine"
        props = {
            "line_color": _rgba(colour),
            "line_style": dash,
            "line_width": round(vs.weight * _PX_TO_MM, 2),
            "line_width_unit": "MM",
            "capstyle": "round",
            "joinstyle": "round",
        }
    else:
        layer = "SimpleMarker"
        props = {
            "name": "circle",
            "color": _rgba(colour, vs.fill_opacity),
            "outline_color": _rgba(vs.color),
            "outline_width": round(vs.weight * _PX_TO_MM, 2),
            "outline_width_unit": "MM",
            "size": round(2 * vs.radius_px * _PX_TO_MM, 2),
            "size_unit": "MM",
        }
    return (
        f'<symbol type="{kind}" name="{name}" alpha="1" clip_to_extent="1" force_rhr="0">'
        f'<layer class="{layer}" enabled="1" locked="0" pass="0">{_props(props)}</layer></symbol>'
    )


def default_qml(name: str, gdf: gpd.GeoDataFrame, style: MapStyle | None = None) -> str:
    """A QGIS style (QML) for a layer, following the map style: classes by rank for sites,
    categories by cost class for pumped-storage pairs, outlines + bilingual labels for boundaries.

    Uses only QGIS 3.x renderer elements (``singleSymbol``, ``graduatedSymbol``,
    ``categorizedSymbol``, ``<prop>`` symbol properties) that QGIS 3.4 and later read.
    """
    from xml.sax.saxutils import quoteattr

    style = style or MapStyle()
    vs = style.vectors.get(name) or VectorStyle(name_en=name)
    kinds = set(gdf.geom_type.dropna()) if len(gdf) else set()
    if kinds and kinds <= {"Point", "MultiPoint"}:
        kind, gtype = "marker", 0
    elif kinds and kinds <= {"LineString", "MultiLineString"}:
        kind, gtype = "line", 1
    else:
        kind, gtype = "fill", 2
    base = vs.fill_color or vs.color
    field = vs.color_by if vs.color_by in gdf.columns else None
    if field and vs.categories:
        cats = "".join(
            f'<category value={quoteattr(k)} symbol="{i}" label={quoteattr(k)} render="true"/>'
            for i, k in enumerate(vs.categories)
        )
        syms = "".join(_symbol(kind, str(i), vs, c) for i, c in enumerate(vs.categories.values()))
        renderer = (
            f'<renderer-v2 type="categorizedSymbol" attr={quoteattr(field)} symbollevels="0" '
            f'forceraster="0" enableorderby="0"><categories>{cats}</categories>'
            f"<symbols>{syms}</symbols></renderer-v2>"
        )
    elif field and vs.breaks and vs.colors and pd.api.types.is_numeric_dtype(gdf[field]):
        b = vs.breaks
        edges = [-1e12, *b, 1e12]  # open-ended first and last classes
        names = [f"≤ {b[0]:g}"] + [f"{x:g} – {y:g}" for x, y in zip(b, b[1:], strict=False)]
        names.append(f"> {b[-1]:g}")
        ranges = "".join(
            f'<range lower="{lo:.6f}" upper="{hi:.6f}" symbol="{i}" '
            f'label={quoteattr(names[i])} render="true"/>'
            for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True))
        )
        syms = "".join(_symbol(kind, str(i), vs, c) for i, c in enumerate(vs.colors))
        renderer = (
            f'<renderer-v2 type="graduatedSymbol" attr={quoteattr(field)} '
            'graduatedMethod="GraduatedColor" symbollevels="0" forceraster="0" enableorderby="0">'
            f'<ranges>{ranges}</ranges><symbols>{syms}</symbols><mode name="manual"/></renderer-v2>'
        )
    else:
        renderer = (
            '<renderer-v2 type="singleSymbol" symbollevels="0" forceraster="0" enableorderby="0">'
            f"<symbols>{_symbol(kind, '0', vs, base)}</symbols></renderer-v2>"
        )
    labels, enabled = "", 0
    if vs.label != "none" and {"name_zh", "name_en"} & set(gdf.columns):
        cols = [c for c in ("name_zh", "name_en") if c in gdf.columns]
        expr = " || ' / ' || ".join(f"coalesce(\"{c}\", '')" for c in cols)
        labels = (
            '<labeling type="simple"><settings calloutType="simple">'
            f'<text-style fieldName={quoteattr(expr)} isExpression="1" fontSize="9" '
            'fontSizeUnit="Point" textColor="0,0,0,255" fontWeight="75" textOpacity="1"/>'
            '<text-buffer bufferDraw="1" bufferSize="0.8" bufferSizeUnits="MM" '
            'bufferColor="255,255,255,255" bufferOpacity="0.8"/>'
            f'<placement placement="{0 if kind == "marker" else 1}" dist="0"/>'
            '<rendering scaleVisibility="0" obstacle="1"/></settings></labeling>'
        )
        enabled = 1
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.28.0" styleCategories="Symbology|Labeling|Fields" '
        f'labelsEnabled="{enabled}">'
        f"{renderer}{labels}{_aliases(name, gdf)}"
        f"<layerGeometryType>{gtype}</layerGeometryType></qgis>\n"
    )


def _aliases(layer: str, gdf: gpd.GeoDataFrame) -> str:
    """QGIS field aliases (``中文 (unit)``, :func:`sitekit.outputs.labels.alias_zh`) of ``gdf``'s columns;
    the QML ``index`` counts the GeoPackage's ``fid`` first."""
    from xml.sax.saxutils import quoteattr

    from sitekit.outputs.labels import alias_zh

    cols = [c for c in gdf.columns if c != gdf.geometry.name]
    items = "".join(
        f'<alias field={quoteattr(str(c))} index="{i}" name={quoteattr(alias_zh(str(c), layer))}/>'
        for i, c in enumerate(cols, start=1)
        if alias_zh(str(c), layer) != str(c)
    )
    return f"<aliases>{items}</aliases>" if items else ""


# -- COG -------------------------------------------------------------------------------------
#: DataArray attrs written as GeoTIFF metadata (all in the file itself; sitekit.outputs.tags sets most)
COG_TAGS = (
    "units",
    "long_name",
    "modelled",
    "illustrative",
    "data_status",
    "method",
    "flag_masks",
    "flag_values",
    "flag_meanings",
    "flag_names",
    "value_0",
    "nodata_meaning",
)


def _colormap(spec: str | None) -> dict[int, tuple[int, int, int, int]] | None:
    """``"0:#bdbdbd,1:#1a9850,255:#00000000"`` → a GDAL colour table (value → RGBA)."""
    if not spec:
        return None
    from matplotlib.colors import to_rgba

    out = {}
    for item in str(spec).split(","):
        value, colour = item.split(":", 1)
        out[int(value)] = tuple(round(c * 255) for c in to_rgba(colour))
    return out


def raster_transform(da: xr.DataArray) -> Any:
    """The DataArray's affine transform (rioxarray), without the PendingDeprecationWarning that
    rioxarray's ``Affine * Affine`` raises under affine ≥ 3."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Use `@` matmul", PendingDeprecationWarning)
        return da.rio.transform()


def write_cog(
    path: str | Path,
    da: xr.DataArray,
    *,
    nodata: float | int | None = None,
    crs: Any = None,
    blocksize: int = 512,
    tags: Mapping[str, Any] | None = None,
    writer: str = "auto",
) -> Path:
    """Write a georeferenced 2-D DataArray as a Cloud-Optimized GeoTIFF (DEFLATE + predictor,
    ``blocksize`` px tiles, overviews down to one tile: ``average`` for floats, ``nearest`` for
    integer and class rasters), atomically; the whole array is never in memory.

    Two writers make the same file (pixels and bytes):

    * ``workers`` — for a Dask array: the workers compress the tiles of each block and compute
      the overviews from the full-resolution blocks (GDAL on each block,
      :func:`sitekit.outputs.tilewrite.block_overviews`), and the client only receives
      compressed tiles and lays out the file (:class:`sitekit.outputs.tilewrite.CogAssembler`),
      so a remote scheduler never ships raw strips to the client. Needs every overview to halve
      the raster exactly (:func:`~sitekit.outputs.tilewrite.exact_overviews`), no reprojection
      and a file under 2 GiB uncompressed.
    * ``client`` — one strip of dask chunks at a time is computed on the client into an
      uncompressed tiled GeoTIFF next to ``path`` (deleted afterwards) that GDAL's COG driver
      then compresses with overviews.

    Parameters
    ----------
    path : target ``.tif``.
    da : 2-D DataArray with a CRS and transform (rioxarray); bool is written as uint8 and float64
        as float32.
    nodata : nodata value; None = NaN for floats, none for integers.
    crs : warp to this CRS (GDAL COG driver ``TARGET_SRS``); None keeps the array's CRS.
    blocksize : internal tile size [px] (multiple of 16, ≥ 128); overviews are built down to
        one tile.
    tags : extra GeoTIFF tags; ``units``, ``long_name``, ``modelled``, ``method`` come from attrs.
    writer : ``auto`` (``workers`` when it can, else ``client``), ``workers`` or ``client``.
    """
    import dask

    from sitekit.outputs import tilewrite

    if blocksize < 128 or blocksize % 16:
        raise OutputError(f"{path}: COG tile size must be a multiple of 16 and ≥ 128 px")
    if writer not in ("auto", "workers", "client"):
        raise OutputError(f"{path}: writer must be auto, workers or client, not {writer!r}")
    if da.ndim != 2:
        raise LayerError(f"{path}: write_cog needs a 2-D array, got dims {da.dims}")
    src_crs = da.rio.crs
    if src_crs is None:
        raise CRSError(f"raster '{da.name}' has no CRS; cannot write {path}")
    dtype = np.dtype(da.dtype)
    dtype = {np.dtype(bool): np.dtype(np.uint8), np.dtype(np.float64): np.dtype(np.float32)}.get(
        dtype, dtype
    )
    floating = np.issubdtype(dtype, np.floating)
    if nodata is None and floating:
        nodata = float("nan")
    ny, nx = da.shape
    data = da.data
    meta = {k: da.attrs[k] for k in COG_TAGS if k in da.attrs}
    meta.update(tags or {})
    if nodata is None and "_FillValue" in da.attrs:  # e.g. exclusion reasons outside the area
        nodata = da.attrs["_FillValue"]
    colormap = _colormap(da.attrs.get("_colormap")) if dtype == np.uint8 else None
    resampling = "AVERAGE" if floating else "NEAREST"
    stage_info = dict(
        crs=src_crs, transform=raster_transform(da), dtype=dtype, nodata=nodata, meta=meta,
        colormap=colormap, blocksize=blocksize,
    )  # fmt: skip
    why = _workers_refuse(data, ny, nx, dtype, crs, blocksize)
    if writer == "workers" and why:
        raise OutputError(f"{path}: the workers cannot write this COG: {why}")
    use_workers = writer != "client" and not why
    sizes = tilewrite.overview_sizes(nx, ny, blocksize)
    with atomic_path(path) as tmp:
        stage = tmp.with_name(tmp.name + ".stage.tif")
        try:
            if use_workers:
                # the client's own work: a small COG (256 px, 128 px tiles, one overview) with
                # the same tags, which the assembler copies into the file's IFDs
                tmpl = stage.with_suffix(".tmpl.tif")
                _stage(stage, 256, 256, **{**stage_info, "blocksize": 128})
                _gdal_cog(stage, tmpl, 128, resampling, None)
                template = tmpl.read_bytes()
                tmpl.unlink()
                plan = _tile_plan(data, dtype, nodata, blocksize, len(sizes) - 1, resampling)
                overviews = [[t[4] for t in tasks] for _, tasks in plan[1:]]
                with tilewrite.CogAssembler(tmp, template, sizes, blocksize) as cog:
                    # the overviews' tiles with the first rows of full-resolution blocks, then
                    # the next rows, ~32 Mpx per round trip: the client holds compressed bytes
                    for n, group in enumerate(_batches(_rows(plan[0][1]), 2**25)):
                        ovr, rows = dask.compute(
                            overviews if n == 0 else [], [[t[4] for t in row] for row in group]
                        )
                        for (lvl, tasks), encoded in zip(plan[:0:-1], ovr[::-1], strict=True):
                            cog.write(lvl, _in_order(tasks, encoded, sizes[lvl], blocksize))
                        for row, encoded in zip(group, rows, strict=True):
                            cog.write(0, _in_order(row, encoded, sizes[0], blocksize))
            else:
                with _stage(stage, nx, ny, keep_open=True, **stage_info) as dst:
                    for r0, r1 in _strip_edges(data, ny):
                        strip = np.asarray(
                            data[r0:r1].compute() if hasattr(data, "compute") else data[r0:r1]
                        )
                        dst.write(strip.astype(dtype, copy=False), 1, window=((r0, r1), (0, nx)))
                _gdal_cog(stage, tmp, blocksize, resampling, crs, floating)
        finally:
            stage.unlink(missing_ok=True)
    return Path(path)


def _workers_refuse(data: Any, ny: int, nx: int, dtype: np.dtype, crs: Any, blocksize: int) -> str:
    """Why the workers cannot write this raster's COG ('' if they can)."""
    from sitekit.outputs.tilewrite import exact_overviews, overview_sizes

    if not hasattr(data, "dask"):
        return "not a Dask array"
    if crs is not None:
        return "it is reprojected (GDAL's COG driver warps it)"
    if not exact_overviews(nx, ny, blocksize):
        return f"{nx}×{ny} px does not halve exactly into its overviews"
    raw = sum(w * h for w, h in overview_sizes(nx, ny, blocksize)) * dtype.itemsize
    if raw >= 2**31:
        return "over 2 GiB uncompressed (GDAL may make a BigTIFF)"
    return ""


def _strip_edges(data: Any, ny: int) -> list[tuple[int, int]]:
    edges = (
        np.cumsum((0,) + tuple(data.chunks[0]))
        if hasattr(data, "chunks") and data.chunks
        else range(0, ny + 1024, 1024)
    )
    edges = sorted({min(int(r), ny) for r in edges})
    return list(zip(edges[:-1], edges[1:], strict=True))


def _stage(
    path: Path, width: int, height: int, *, crs: Any, transform: Any, dtype: np.dtype,
    nodata: Any, meta: Mapping[str, Any], colormap: Any, blocksize: int, keep_open: bool = False,
) -> Any:  # fmt: skip
    """An uncompressed tiled GeoTIFF with the COG's georeferencing, nodata, tags, colour table,
    band description and unit; its tiles stay sparse until written. Open for writing if
    ``keep_open``, else closed."""
    import rasterio

    dst = rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=1,
        dtype=dtype.name,
        crs=crs,
        transform=transform,
        nodata=nodata,
        tiled=True,
        blockxsize=blocksize,
        blockysize=blocksize,
        # uncompressed: the COG driver re-encodes it anyway (a DEFLATE level-1 stage cost
        # 0.35 s more per 10 Mpx float32 raster: 0.87 vs 0.52 s, ninth session)
        compress="NONE",
        BIGTIFF="IF_SAFER",
        sparse_ok=True,
    )
    dst.update_tags(**{k: str(v) for k, v in meta.items()})
    if colormap:  # embedded colour table of a byte class raster
        dst.write_colormap(1, colormap)
    if "long_name" in meta:
        dst.set_band_description(1, str(meta["long_name"]))
    if "units" in meta:
        dst.set_band_unit(1, str(meta["units"]))
    if keep_open:
        return dst
    dst.close()
    return None


def _gdal_cog(
    stage: Path, out: Path, blocksize: int, resampling: str, crs: Any, floating: bool = False
) -> None:
    """GDAL's COG driver: ``stage`` → ``out`` (DEFLATE + predictor, overviews, optional warp)."""
    import rasterio.shutil

    options = dict(
        driver="COG",
        BLOCKSIZE=blocksize,
        COMPRESS="DEFLATE",
        PREDICTOR="YES",
        OVERVIEWS="IGNORE_EXISTING",
        OVERVIEW_RESAMPLING=resampling,
        BIGTIFF="IF_SAFER",
        NUM_THREADS="2",
    )
    if crs is not None:
        options.update(
            TARGET_SRS=parse_crs(crs, "export --crs").to_wkt(),
            RESAMPLING="BILINEAR" if floating else "NEAREST",
        )
    rasterio.shutil.copy(stage, out, **options)


def _tile_plan(
    data: Any, dtype: np.dtype, nodata: Any, blocksize: int, levels: int, resampling: str
) -> list[tuple[int, list[tuple[int, int, int, int, Any]]]]:
    """Per level (0 = full resolution, then each overview) the delayed encodings of its blocks:
    ``(row0, col0, height, width, delayed list of tile bytes)``. Overview blocks come from the
    full-resolution blocks' overviews (GDAL on each block), regrouped on the tile grid."""
    import math
    import operator

    import dask
    import dask.array as darr

    from sitekit.outputs.tilewrite import TileFormat, aligned, block_overviews

    unit = math.lcm(blocksize, 2**levels)
    if not aligned(data.chunks, unit):  # blocks on the tile grid, each halving exactly
        step = unit * max(1, round(max(data.chunks[0][0], data.chunks[1][0]) / unit))
        data = data.rechunk(step)
    fmt = TileFormat(dtype.name, blocksize, "DEFLATE", 3 if dtype.kind == "f" else 2, nodata)
    encode = dask.delayed(_encode_block, pure=True)

    def blocks_of(arr: Any) -> list[tuple[int, int, int, int, Any]]:
        r0, c0 = np.cumsum((0, *arr.chunks[0])), np.cumsum((0, *arr.chunks[1]))
        cells = arr.to_delayed(optimize_graph=False)
        return [
            (int(r0[i]), int(c0[j]), int(r0[i + 1] - r0[i]), int(c0[j + 1] - c0[j]),
             encode(cells[i, j], fmt))
            for i in range(cells.shape[0])
            for j in range(cells.shape[1])
        ]  # fmt: skip

    plan = [(0, blocks_of(data))]
    if levels:
        cells = data.to_delayed(optimize_graph=False)
        ni, nj = cells.shape
        pyramid = dask.delayed(block_overviews, pure=True, nout=levels)
        pyr = [
            [pyramid(cells[i, j], levels, resampling, nodata, dtype.name) for j in range(nj)]
            for i in range(ni)
        ]
        for k in range(1, levels + 1):
            level = darr.block(
                [
                    [
                        darr.from_delayed(
                            dask.delayed(operator.getitem, pure=True)(pyr[i][j], k - 1),
                            shape=(h >> k, w >> k),
                            dtype=dtype,
                        )
                        for j, w in enumerate(data.chunks[1])
                    ]
                    for i, h in enumerate(data.chunks[0])
                ]
            )
            if not aligned(level.chunks, blocksize):
                level = level.rechunk(blocksize)
            plan.append((k, blocks_of(level)))
    return plan


def _encode_block(block: Any, fmt: Any) -> list[bytes]:
    """A worker's task: one block cast to the file's type, compressed tile by tile."""
    from sitekit.outputs.tilewrite import encode_tiles

    return encode_tiles(np.asarray(block).astype(fmt.dtype, copy=False), fmt)


def _rows(
    tasks: list[tuple[int, int, int, int, Any]],
) -> list[list[tuple[int, int, int, int, Any]]]:
    """The blocks grouped by row (their tiles are whole rows of the level's tiles)."""
    rows: dict[int, list] = {}
    for t in tasks:
        rows.setdefault(t[0], []).append(t)
    return [rows[r] for r in sorted(rows)]


def _batches(rows: list[list[tuple]], pixels: int) -> list[list[list[tuple]]]:
    """Consecutive rows of blocks in groups of about ``pixels`` px."""
    groups: list[list[list[tuple]]] = [[]]
    size = 0
    for row in rows:
        if groups[-1] and size >= pixels:
            groups.append([])
            size = 0
        groups[-1].append(row)
        size += sum(t[2] * t[3] for t in row)
    return groups


def _in_order(
    tasks: list[tuple[int, int, int, int, Any]],
    encoded: Any,
    size: tuple[int, int],
    tile: int,
) -> list[bytes]:
    """The blocks' tiles in the level's row-major tile order (rows the blocks cover)."""
    ntx = -(-size[0] // tile)
    by_index: dict[int, bytes] = {}
    for (r0, c0, _h, w, _), tiles in zip(tasks, encoded, strict=True):
        bx = -(-w // tile)
        for n, data in enumerate(tiles):
            ty, tx = divmod(n, bx)
            by_index[(r0 // tile + ty) * ntx + c0 // tile + tx] = data
    return [by_index[i] for i in sorted(by_index)]


# -- tables ----------------------------------------------------------------------------------
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _table(df: pd.DataFrame, add_lonlat: bool) -> pd.DataFrame:
    if isinstance(df, gpd.GeoDataFrame):
        geom = df.geometry
        out = pd.DataFrame(df.drop(columns=geom.name))
        if add_lonlat and geom.crs is not None and len(df):
            pts = gpd.GeoSeries(geom.representative_point(), crs=geom.crs).to_crs(4326)
            out["lon_deg"] = pts.x.round(6).to_numpy()
            out["lat_deg"] = pts.y.round(6).to_numpy()
        return out
    return pd.DataFrame(df)


def write_table(
    path: str | Path,
    df: pd.DataFrame,
    *,
    sheet_name: str | None = None,
    add_lonlat: bool = True,
    provenance: Mapping[str, Any] | None = None,
    float_format: str | None = None,
) -> Path:
    """Write a table as ``.csv`` (UTF-8 with BOM) or ``.xlsx``, atomically; geometry dropped.

    ``add_lonlat`` adds ``lon_deg``/``lat_deg`` (WGS84/CGCS2000 degrees) of a point inside each
    feature of a GeoDataFrame. ``sheet_name`` (default: the file's stem) also names the layer
    whose field names apply. With a run's ``provenance``, a last column ``data_status`` says
    whether the rows rest on modelled or illustrative inputs (:func:`sitekit.outputs.tags.status`), and
    the XLSX's notes sheet lists sources, licences and modelled flags. ``float_format`` (CSV
    only, e.g. ``"%.6g"``) rounds floats as :meth:`pandas.DataFrame.to_csv` does.

    The XLSX opens on the table with two header rows (``中文 / English (unit)``, then the column
    name), frozen, with an autofilter; a second sheet ``notes 说明`` explains each column and
    the data.
    """
    path = Path(path)
    sheet_name = sheet_name or path.stem
    table = _table(df, add_lonlat)
    if provenance is not None:
        from sitekit.outputs.tags import status

        table["data_status"] = status(sheet_name, provenance)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".xlsx"):
        raise OutputError(f"{path}: table format must be .csv or .xlsx")
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            safe = table.copy()
            for col in safe.columns:
                if safe[col].dtype == object or pd.api.types.is_string_dtype(safe[col]):
                    safe[col] = safe[col].map(
                        lambda v: "'" + v if isinstance(v, str) and v.startswith(_FORMULA) else v
                    )
            safe.to_csv(tmp, index=False, encoding="utf-8-sig", float_format=float_format)
        else:
            _write_xlsx(tmp, table, sheet_name, provenance)
    return path


def write_csv(
    path: str | Path,
    df: pd.DataFrame,
    provenance: Mapping[str, Any] | None = None,
    *,
    float_format: str | None = "%.6g",
) -> Path:
    """The one CSV writer of the analysis tables (routes, hosting, bases, validation):
    :func:`write_table` without ``lon_deg``/``lat_deg`` columns — UTF-8 with BOM, written
    atomically, geometry dropped, text cells that would start a formula made inert, and with the
    run's ``provenance`` a last ``data_status`` column. Floats are written with
    ``float_format`` (default ``"%.6g"``: six significant digits; None = full precision)."""
    if Path(path).suffix.lower() != ".csv":
        raise OutputError(f"{path}: write_csv writes .csv files")
    return write_table(path, df, add_lonlat=False, provenance=provenance, float_format=float_format)


def _write_xlsx(
    target: Path, table: pd.DataFrame, sheet_name: str, provenance: Mapping[str, Any] | None
) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    from sitekit.outputs.labels import label_bilingual

    wb = Workbook()
    ws = wb.active
    ws.title = sheet_name[:31]
    ws.append([label_bilingual(str(c), sheet_name) for c in table.columns])
    ws.append([str(c) for c in table.columns])
    for cell in ws[1]:
        cell.font = Font(bold=True)
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    for cell in ws[2]:
        cell.font = Font(italic=True, color="666666")
    for row in table.itertuples(index=False):
        values = []
        for v in row:
            if isinstance(v, np.generic):
                v = v.item()
            if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
                v = None
            elif not isinstance(v, str | int | float | bool):
                v = str(v)
            values.append(v)
        ws.append(values)
    for cells in ws.iter_rows(min_row=3):
        for cell in cells:
            if isinstance(cell.value, str) and cell.value.startswith(_FORMULA):
                cell.data_type = "s"  # text, never a formula
    ws.freeze_panes = "A3"
    if len(table.columns):
        ws.auto_filter.ref = f"A2:{ws.cell(2, len(table.columns)).column_letter}{len(table) + 2}"
    for i, col in enumerate(table.columns, start=1):
        width = max([len(str(col))] + [len(str(v)) for v in table[col].head(200)])
        ws.column_dimensions[ws.cell(1, i).column_letter].width = min(max(width + 2, 10), 50)
    _notes_sheet(wb.create_sheet("notes 说明"), table, sheet_name, provenance)
    wb.save(target)


def notes_rows(
    columns: list[str], layer: str, provenance: Mapping[str, Any] | None
) -> list[list[Any]]:
    """Rows of a table's notes: the data status, then per column its Chinese and English name
    and unit, then per input its source, licence and modelled/illustrative flags."""
    from sitekit.outputs import tags
    from sitekit.outputs.labels import field_info

    rows: list[list[Any]] = [["sitekit", layer, "", ""]]
    if provenance is not None:
        rows.append(["数据状态 / data status", tags.status(layer, provenance), "", ""])
        for k, v in tags.modelled_sources(provenance).items():
            rows.append(["模拟数据 / modelled", k, v, ""])
        for k, v in tags.illustrative_inputs(provenance).items():
            rows.append(["示意数据 / illustrative", k, v, ""])
    rows += [[], ["列 / column", "中文", "English", "单位 / unit"]]
    for c in columns:
        zh, en, unit = field_info(c, layer) or ("", "", "")
        if c == "data_status":
            zh, en = "数据状态", "Data status (modelled / illustrative inputs)"
        rows.append([c, zh, en, unit])
    if provenance is not None:
        rows += [[], ["输入 / input", "来源 / source", "许可 / licence", "模拟/示意 flags"]]
        for k, v in (provenance.get("inputs") or {}).items():
            if not isinstance(v, Mapping):
                continue
            flags = ", ".join(f for f in ("modelled", "illustrative") if v.get(f)) or "—"
            rows.append([k, str(v.get("source") or ""), str(v.get("licence") or ""), flags])
    return rows


def _notes_sheet(
    ws: Any, table: pd.DataFrame, layer: str, provenance: Mapping[str, Any] | None
) -> None:
    from openpyxl.styles import Font

    for row in notes_rows([str(c) for c in table.columns], layer, provenance):
        ws.append(row)
        if row and isinstance(row[0], str) and row[0].startswith(("列 /", "输入 /", "数据状态")):
            for cell in ws[ws.max_row]:
                cell.font = Font(bold=True)
    for cells in ws.iter_rows():
        for cell in cells:
            if isinstance(cell.value, str) and cell.value.startswith(_FORMULA):
                cell.data_type = "s"
    for letter, width in zip("ABCD", (26, 40, 60, 22), strict=True):
        ws.column_dimensions[letter].width = width


# -- re-export an existing run ---------------------------------------------------------------
def reexport(
    run_dir: str | Path, fmt: str, crs: Any = None, out: str | Path | None = None
) -> list[Path]:
    """Re-export a finished run (``RUN/sitekit.gpkg``, ``RUN/rasters/*.tif``) for ``sitekit export``.

    Parameters
    ----------
    run_dir : the run's output folder.
    fmt : ``gpkg`` (one GeoPackage, styles and metadata kept), ``cog`` (every raster),
        ``csv`` or ``xlsx`` (one table per non-boundary layer).
    crs : output CRS (e.g. ``EPSG:4490``); None keeps the run's CRS.
    out : output folder; default ``RUN/export``.

    Returns
    -------
    The files written.
    """
    run = Path(run_dir)
    dest = Path(out) if out is not None else run / "export"
    gpkg = run / "sitekit.gpkg"
    if fmt not in ("gpkg", "cog", "csv", "xlsx"):
        raise InputError(f"unknown export format {fmt!r}; use gpkg, cog, csv or xlsx")
    if fmt == "cog":
        tifs = sorted((run / "rasters").glob("*.tif"))
        if not tifs:
            raise InputError(f"{run}: no rasters/*.tif to export; is this a sitekit run folder?")
        return [_recog(t, dest / "rasters" / t.name, crs) for t in tifs]
    if not gpkg.exists():
        raise InputError(f"{run}: no sitekit.gpkg; run `sitekit run` (or `sitekit demo`) first")
    names = [n for n in pyogrio.list_layers(gpkg)[:, 0] if n != "layer_styles"]
    layers = {n: pyogrio.read_dataframe(gpkg, layer=n) for n in names}
    if fmt == "gpkg":
        md = read_metadata(gpkg)
        meta = md["geopackage"]
        if crs is not None:
            meta = {**(meta or {}), "reexported_crs": str(crs)}
        return [
            write_geopackage(
                dest / "sitekit.gpkg",
                layers,
                crs=crs,
                metadata=meta,
                styles=read_styles(gpkg),
                layer_metadata=md["tables"],
            )
        ]
    written = []
    prov = read_metadata(gpkg)["geopackage"]
    for name, gdf in layers.items():
        if name in BOUNDARY_LAYERS:
            continue
        if crs is not None:
            gdf = gdf.to_crs(parse_crs(crs, "export --crs"))
        written.append(write_table(dest / f"{name}.{fmt}", gdf, sheet_name=name, provenance=prov))
    return written


def _recog(src: Path, dst: Path, crs: Any) -> Path:
    import rioxarray

    da = rioxarray.open_rasterio(
        src, chunks={"band": 1, "y": 1024, "x": 1024}, masked=False
    ).squeeze("band", drop=True)
    nodata = da.rio.nodata
    attrs = dict(da.attrs)
    da.attrs = {k: attrs[k] for k in COG_TAGS if k in attrs}
    return write_cog(dst, da, nodata=nodata, crs=crs)
