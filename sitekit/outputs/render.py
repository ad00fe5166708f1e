"""The results map: one self-contained Folium HTML page that works with no network.

Rasters become colour overlays: a PNG of at most ``style.overlay_max_px`` pixels on its long side
(default 1600 px), computed from the lazy array by block-averaging (or nearest sampling for classes),
so only that small overview is ever computed, then warped to Web Mercator. A hillshade of the DEM is
the base layer, so the map is useful without a tile server. Vectors are simplified for display
only (tolerance ``style.simplify_m``, default the grid pixel size) and rounded to 1e-5° (~1 m).
Every text from data or style files is HTML-escaped in Python before it reaches the page.
Leaflet and its plugins are inlined from ``sitekit/static``; the page is checked for any network
load before it is written (``--online-tiles`` adds OpenStreetMap tiles, the only exception).
"""

from __future__ import annotations

import base64
import bisect
import html
import io
import math
import threading
from pathlib import Path
from typing import Any

import branca.element
import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr
from affine import Affine
from folium import plugins
from jinja2 import Template
from jinja2.utils import htmlsafe_json_dumps

from sitekit.errors import LayerError, OutputError
from sitekit.grid import Grid, transformer
from sitekit.io.atomic import write_text
from sitekit.outputs.static import external_references, inline_assets, offline_assets
from sitekit.outputs.style import MapStyle, RasterStyle, VectorStyle
from sitekit.science import terrain

DEMO_BANNER = (
    "demo terrain — bring SRTM/Copernicus DEM for siting decisions · "
    "演示地形 — 选址决策请使用 SRTM/Copernicus DEM"
)
MODELLED = "modelled / 模拟"
#: bump when an overlay (PNG, bounds, legend) made from the same raster and style changes
OVERLAY_FORMAT = 2
_FALLBACK = "#969696"
_PANES = {
    "sk_base": 150,
    "sk_rasters": 350,
    "sk_bounds": 410,
    "sk_lines": 420,
    "sk_areas": 430,
    "sk_points": 440,
}


def esc(value: Any) -> str:
    """HTML-escape any value (quotes included)."""
    return html.escape(str(value), quote=True)


# -- rasters ---------------------------------------------------------------------------------
def overview(da: xr.DataArray, max_px: int, how: str = "average") -> tuple[np.ndarray, int]:
    """Compute a small overview of a lazy 2-D array: ≤ ``max_px`` on the long side.

    Returns the numpy overview and the integer reduction factor. ``average`` is a NaN-aware block
    mean (continuous data), ``nearest`` takes the centre pixel of each block (classes, bit masks).
    """
    ny, nx = da.shape[-2:]
    f = max(1, math.ceil(max(ny, nx) / max_px))
    dy, dx = da.dims[-2:]
    if f == 1:
        small = da
    elif how == "nearest":
        small = da.isel({dy: slice(f // 2, None, f), dx: slice(f // 2, None, f)})
    else:
        small = da.astype(np.float32).coarsen({dy: f, dx: f}, boundary="pad").mean()
    return np.asarray(small.values), f


def _overview_hillshade(elev: np.ndarray, grid: Grid, f: int) -> np.ndarray:
    """Hillshade [0–255] of an elevation overview with reduction factor ``f``: the DEM's own
    :func:`sitekit.science.terrain.hillshade` on the overview's pixels (``f`` × the grid's)."""
    if min(elev.shape) < 2:  # too small for a 3×3 gradient: lit as flat ground
        return np.where(np.isnan(elev), np.nan, 255.0 * math.sin(math.radians(45.0)))
    t = grid.transform
    return terrain.hillshade_array(elev.astype(np.float32), t.a * f, t.e * f)


def _to_mercator(idx: np.ndarray, grid: Grid, f: int) -> tuple[np.ndarray, list]:
    """Warp palette indices (0 = transparent) of an overview with reduction factor ``f`` to
    EPSG:3857 (nearest neighbour); return them and their Leaflet bounds [[S, W], [N, E]]."""
    from rasterio.crs import CRS
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    src_t = grid.transform @ Affine.scale(f)
    h, w = idx.shape
    left, top = src_t @ (0, 0)
    right, bottom = src_t @ (w, h)
    src_crs = CRS.from_wkt(grid.crs.to_wkt())
    dst_t, dw, dh = calculate_default_transform(
        src_crs, "EPSG:3857", w, h, left, bottom, right, top
    )
    dst = np.zeros((dh, dw), idx.dtype)
    reproject(
        idx,
        dst,
        src_transform=src_t,
        src_crs=src_crs,
        dst_transform=dst_t,
        dst_crs="EPSG:3857",
        src_nodata=0,
        dst_nodata=0,
        resampling=Resampling.nearest,
    )
    x0, y1 = dst_t @ (0, 0)
    x1, y0 = dst_t @ (dw, dh)
    lon, lat = transformer("EPSG:3857", 4326).transform([x0, x1], [y0, y1])
    return dst, [[lat[0], lon[0]], [lat[1], lon[1]]]


def _cmap(rs: RasterStyle):
    import matplotlib
    from matplotlib.colors import LinearSegmentedColormap

    if isinstance(rs.colormap, str):
        return matplotlib.colormaps[rs.colormap]
    return LinearSegmentedColormap.from_list("sitekit", rs.colormap)


def _hex(rgba: Any) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(round(255 * v)) for v in rgba[:3]))


def _png(idx: np.ndarray, colours: list[str]) -> str:
    """Palette PNG data URL: index 0 is transparent, index k>0 has ``colours[k-1]``."""
    from matplotlib.colors import to_rgb
    from PIL import Image

    pal = [0, 0, 0]
    for c in colours:
        pal += [int(round(255 * v)) for v in to_rgb(c)]
    img = Image.fromarray(np.ascontiguousarray(idx, dtype=np.uint8))
    img.putpalette(pal + [0] * (768 - len(pal)))
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True, transparency=bytes([0] + [255] * 255))
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def _continuous(values: np.ndarray, rs: RasterStyle, title: str) -> tuple[np.ndarray, list, str]:
    """Palette indices, colours and legend HTML for a continuous (or classified) raster."""
    finite = values[np.isfinite(values)]
    lo = rs.vmin if rs.vmin is not None else (float(np.percentile(finite, 2)) if finite.size else 0)
    hi = (
        rs.vmax if rs.vmax is not None else (float(np.percentile(finite, 98)) if finite.size else 1)
    )
    hi = hi if hi > lo else lo + 1.0
    cmap = _cmap(rs)
    idx = np.zeros(values.shape, np.uint8)
    ok = np.isfinite(values)
    if rs.breaks:
        n = len(rs.breaks) + 1
        colours = [_hex(cmap(k / max(n - 1, 1))) for k in range(n)]
        idx[ok] = np.digitize(values[ok], rs.breaks) + 1
        edges = [_num(b) for b in rs.breaks]
        names = [f"&lt; {edges[0]}"] + [f"{a}–{b}" for a, b in zip(edges, edges[1:], strict=False)]
        names.append(f"≥ {edges[-1]}")
        body = _swatches(list(zip(colours, names, strict=True)), escaped=True)
    else:
        colours = [_hex(cmap(k / 253)) for k in range(254)]
        scaled = (np.clip(values[ok], lo, hi) - lo) / (hi - lo)
        idx[ok] = 1 + np.round(scaled * 253).astype(np.uint8)
        stops = ", ".join(_hex(cmap(k / 10)) for k in range(11))
        body = (
            f'<div class="sk-bar" style="background:linear-gradient(to right, {stops})"></div>'
            f'<div class="sk-ticks"><span>{esc(_num(lo))}</span>'
            f"<span>{esc(_num((lo + hi) / 2))}</span><span>{esc(_num(hi))}</span></div>"
        )
    return idx, colours, f'<div class="sk-legend-title">{title}</div>{body}'


def _swatches(items: list[tuple[str, str]], escaped: bool = False, line: bool = False) -> str:
    cls = "sk-sw sk-sw-line" if line else "sk-sw"
    rows = "".join(
        f'<div class="sk-row"><i class="{cls}" style="background:{esc(c)}"></i>'
        f"{t if escaped else esc(t)}</div>"
        for c, t in items
    )
    return f'<div class="sk-swatches">{rows}</div>'


def _palette(rs: RasterStyle, n: int) -> list[str]:
    """``n`` class colours: the style's colour list, or a listed colormap's colours, cycled."""
    if isinstance(rs.colormap, list):
        base = list(rs.colormap)
    else:
        cmap = _cmap(rs)
        colors = getattr(cmap, "colors", None)
        base = (
            [_hex(c) for c in colors]
            if colors is not None and len(colors) <= 64
            else [_hex(cmap(k / max(n - 1, 1))) for k in range(max(n, 1))]
        )
    return [base[k % len(base)] for k in range(n)]


def _exclusions(
    values: np.ndarray, legend: list, title: str, rs: RasterStyle
) -> tuple[np.ndarray, list, str]:
    """Colour each pixel by the first listed reason whose bit is set (``bit`` = bit position)."""
    tab = _palette(rs, len(legend))
    v = values.astype(np.uint64)
    idx = np.zeros(v.shape, np.uint8)
    items = []
    for k, (bit, code, name_en, name_zh) in enumerate(legend):
        hit = (idx == 0) & ((v >> np.uint64(int(bit))) & np.uint64(1)).astype(bool)
        idx[hit] = k + 1
        items.append((tab[k], f"{code} — {name_zh} / {name_en}"))
    idx[(idx == 0) & (v != 0)] = len(legend) + 1
    colours = [c for c, _ in items] + [_FALLBACK]
    items.append((_FALLBACK, "other / 其他"))
    note = '<div class="sk-note">colour = first listed reason · 颜色为首个排除原因</div>'
    return idx, colours, f'<div class="sk-legend-title">{title}</div>{_swatches(items)}{note}'


# -- vectors ---------------------------------------------------------------------------------
def _fmt(v: Any, decimals: int | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT:
        return "–"
    if isinstance(v, bool | np.bool_):
        return "yes / 是" if v else "no / 否"
    if isinstance(v, int | np.integer):
        return f"{int(v):,}" if abs(int(v)) >= 10000 else str(int(v))
    if isinstance(v, float | np.floating):
        if decimals is not None:
            return f"{float(v):,.{decimals}f}"
        return _num(float(v)) if abs(v) >= 1000 else f"{float(v):.4g}"
    return str(v)


def _colour(vs: VectorStyle, row: dict) -> str:
    base = vs.fill_color or vs.color
    if not vs.color_by or vs.color_by not in row or row[vs.color_by] is None:
        return base
    v = row[vs.color_by]
    if vs.categories is not None:
        return vs.categories.get(str(v), _FALLBACK)
    if vs.breaks and vs.colors:
        try:
            return vs.colors[bisect.bisect_left(vs.breaks, float(v))]
        except (TypeError, ValueError):
            return _FALLBACK
    return base


def _name(row: dict, style: MapStyle) -> str:
    zh, en = row.get("name_zh"), row.get("name_en")
    if zh and en:
        return style.label(str(en), str(zh))
    if zh or en:
        return str(zh or en)
    for k in ("site_id", "pair_id", "name"):
        if row.get(k) is not None:
            return str(row[k])
    return ""


def _features(
    gdf: gpd.GeoDataFrame, key: str, vs: VectorStyle, style: MapStyle, simplify_m: float, title: str
) -> tuple[dict, folium.JsCode]:
    """GeoJSON (EPSG:4326) holding only pre-escaped strings, and its per-layer onEachFeature.

    Popup labels and the base style are written once per layer; each feature carries its escaped
    values (``_v``), name (``_n``), hover text (``_t``) or permanent label (``_l``) and colour.
    """
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    if vs.max_features and len(gdf) > vs.max_features:
        gdf = gdf.sort_values("rank") if "rank" in gdf else gdf
        gdf = gdf.iloc[: vs.max_features]
    geoms = np.asarray(gdf.geometry.values)
    if simplify_m > 0:
        geoms = shapely.simplify(geoms, simplify_m, preserve_topology=True)
    geoms = gpd.GeoSeries(geoms, crs=gdf.crs).to_crs(4326).values
    geoms = shapely.set_precision(np.asarray(geoms), 1e-5)
    table = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
    first = [k for k in (vs.popup_fields or []) if k in table]
    keys = first + [k for k in table.columns if k not in first]
    decimals = [style.fields[k].decimals if k in style.fields else None for k in keys]
    boundary = key in ("prefectures", "counties")
    feats = []
    for geom, row in zip(geoms, table.to_dict("records"), strict=True):
        if geom is None or shapely.is_empty(geom):
            continue
        name = _name(row, style)
        props: dict[str, Any] = {"_c": _colour(vs, row)}
        if vs.label == "permanent" and name:
            props["_l"] = esc(name)
        elif name and vs.label == "hover":
            rank = f"#{_fmt(row['rank'], 0)} " if "rank" in row else ""
            props["_t"] = esc(rank + name)
        if not (boundary and vs.label == "permanent"):
            props["_n"] = esc(name)
            props["_v"] = [esc(_fmt(row[k], d)) for k, d in zip(keys, decimals, strict=True)]
        feats.append(
            {"type": "Feature", "geometry": shapely.geometry.mapping(geom), "properties": props}
        )
    linear = bool(len(gdf)) and set(gdf.geom_type) <= {"LineString", "MultiLineString"}
    base = {
        "color": vs.color,
        "weight": vs.weight,
        "opacity": 0.9,
        "fill": vs.fill and not linear,
        "fillColor": vs.fill_color or vs.color,
        "fillOpacity": vs.fill_opacity,
        "dashArray": vs.dash_array,
        "radius": vs.radius_px,
    }
    js = _ON_EACH.render(
        base=htmlsafe_json_dumps(base),
        labels=htmlsafe_json_dumps([esc(style.field_label(k)) for k in keys]),
        title=htmlsafe_json_dumps(title),
        paint="color" if linear else "fillColor",
        label_class=htmlsafe_json_dumps(f"sk-label sk-lz-{vs.label_min_zoom}"),
    )
    return {"type": "FeatureCollection", "features": feats}, folium.JsCode(js)


_ON_EACH = Template(
    """function (feature, layer) {
    var p = feature.properties, K = {{ labels }}, T = {{ title }};
    var s = Object.assign({}, {{ base }});
    s.{{ paint }} = p._c;
    layer.setStyle(s);
    if (p._v) {
        layer.bindPopup(function () {
            var h = '<div class="sk-popup"><b>' + T + (p._n ? ' · ' + p._n : '') + '</b><table>';
            for (var i = 0; i < K.length; i++) {
                h += '<tr><th>' + K[i] + '</th><td>' + p._v[i] + '</td></tr>';
            }
            return h + '</table></div>';
        }, {maxWidth: 440, maxHeight: 380});
    }
    if (p._l) {
        layer.bindTooltip(p._l, {permanent: true, direction: 'center', className: {{ label_class }}});
    } else if (p._t) { layer.bindTooltip(p._t, {sticky: true, className: 'sk-tip'}); }
}"""
)


def _vector_legend(vs: VectorStyle, title: str, style: MapStyle | None = None) -> str:
    field = (style or MapStyle()).field_label(vs.color_by) if vs.color_by else ""
    if vs.categories:
        items = [(c, f"{field} = {k}") for k, c in vs.categories.items()]
    elif vs.breaks and vs.colors:
        b = [_fmt(x, None) for x in vs.breaks]
        labels = [f"{field} ≤ {b[0]}"]
        labels += [f"{x} < {field} ≤ {y}" for x, y in zip(b, b[1:], strict=False)]
        labels.append(f"{field} > {b[-1]}")
        items = list(zip(vs.colors, labels, strict=True))
    else:
        items = [(vs.fill_color or vs.color, "")]
    return f'<div class="sk-legend-title">{title}</div>{_swatches(items, line=not vs.fill)}'


# -- page furniture --------------------------------------------------------------------------
#: CSS font stack: Latin first, then CJK fonts found on Linux (Noto Sans CJK), Windows (Microsoft
#: YaHei) and macOS (PingFang), so Chinese labels never fall back to a random font
FONT_STACK = (
    'system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans CJK SC",'
    '"Noto Sans SC","Source Han Sans SC","Microsoft YaHei","PingFang SC","Hiragino Sans GB",'
    '"WenQuanYi Micro Hei",sans-serif'
)
_CSS = """
.leaflet-container,.sk-box,.sk-banner,.sk-label,.sk-popup,.leaflet-control-layers{
 font-family:FONT_STACK}
.sk-banner{position:fixed;top:8px;left:50%;transform:translateX(-50%);z-index:1001;
 background:#b30000;color:#fff;font:bold 13px/1.3 sans-serif;padding:5px 12px;border-radius:4px;
 box-shadow:0 1px 5px rgba(0,0,0,.4);pointer-events:none;max-width:70%;text-align:center}
.sk-box{background:rgba(255,255,255,.92);padding:6px 9px;border-radius:4px;
 box-shadow:0 1px 5px rgba(0,0,0,.4);font:12px/1.35 sans-serif;max-width:300px}
.sk-legend{max-height:55vh;overflow-y:auto}
.sk-legend-block{margin:4px 0 6px}
.sk-legend-title{font-weight:bold;margin-bottom:2px}
.sk-bar{height:10px;width:220px;border:1px solid #888}
.sk-ticks{display:flex;justify-content:space-between;width:222px;font-size:11px}
.sk-row{white-space:nowrap}.sk-sw{display:inline-block;width:14px;height:10px;margin-right:5px;
 border:1px solid #666;vertical-align:middle}.sk-sw-line{height:3px;border:0}
.sk-note{font-size:10px;color:#555}.sk-title{font-weight:bold;font-size:13px}
.sk-modelled{color:#b35806;font-weight:bold}
.sk-label{background:rgba(255,255,255,.75);border:0;box-shadow:none;font:bold 11px sans-serif;
 padding:1px 3px}.sk-lz-8{font-weight:normal;color:#333}
.sk-popup table{border-collapse:collapse;font-size:12px}
.sk-popup th{text-align:left;padding:1px 8px 1px 0;color:#444;font-weight:normal}
.sk-popup td{padding:1px 0;font-weight:bold}
""".replace("sans-serif", "FONT_STACK").replace("FONT_STACK", FONT_STACK)


class _Verbatim(branca.element.Element):
    """A rendered macro's text, kept as text.

    branca's ``MacroElement.render`` wraps each macro's output (a layer's GeoJSON, an overlay's
    base64 PNG) in ``Element(text)``, which compiles that text as a Jinja template and renders
    it a second time: lexing the demo map's megabytes took 0.4–0.6 s, and a ``{{`` in the data
    would have been evaluated."""

    def __init__(self, template: str | None = None, template_name: str | None = None) -> None:
        super().__init__(template_name=template_name)
        text = template or ""
        self._text = text[:-1] if text.endswith("\n") else text  # as Jinja drops the last one

    def render(self, **kwargs: Any) -> str:
        return self._text


_RENDER_LOCK = threading.Lock()


def _render_page(m: folium.Map) -> str:
    """The map's HTML page, with :class:`_Verbatim` for the macros' rendered text (branca looks
    ``Element`` up in its module at render time; restored afterwards, under a lock)."""
    with _RENDER_LOCK:
        saved = branca.element.Element
        branca.element.Element = _Verbatim
        try:
            return m.get_root().render()
        finally:
            branca.element.Element = saved


class _Controls(folium.MacroElement):
    """Banner, info box, legends that follow layer visibility, label zoom rules, window.sitekit."""

    _template = Template(
        """
{% macro header(this, kwargs) %}<style>{{ this.css }}</style>{% endmacro %}
{% macro html(this, kwargs) %}{{ this.banner }}{% endmacro %}
{% macro script(this, kwargs) %}
(function () {
  var map = {{ this._parent.get_name() }};
  var layers = { {% for k, v in this.layers %}{{ k|tojson }}: {{ v }},{% endfor %} };
  var legends = {{ this.legends }};
  var info = L.control({position: 'bottomleft'});
  info.onAdd = function () { var d = L.DomUtil.create('div', 'sk-box sk-info');
    d.innerHTML = {{ this.info }}; L.DomEvent.disableClickPropagation(d); return d; };
  info.addTo(map);
  var leg = L.control({position: 'bottomright'});
  leg.onAdd = function () { var d = L.DomUtil.create('div', 'sk-box sk-legend');
    L.DomEvent.disableClickPropagation(d); L.DomEvent.disableScrollPropagation(d); return d; };
  leg.addTo(map);
  function refresh() {
    var parts = [];
    legends.forEach(function (l) { if (map.hasLayer(layers[l[0]])) {
      parts.push('<div class="sk-legend-block">' + l[1] + '</div>'); } });
    var d = leg.getContainer(); d.innerHTML = parts.join('');
    d.style.display = parts.length ? '' : 'none';
    var z = map.getZoom(), c = map.getContainer();
    {{ this.zooms }}.forEach(function (m) { c.classList.toggle('sk-below-' + m, z < m); });
  }
  map.on('overlayadd overlayremove baselayerchange zoomend', refresh);
  refresh();
  window.sitekit = {map: map, layers: layers, ready: true};
})();
{% endmacro %}
"""
    )

    def __init__(self, layers: dict, legends: list, info: str, banner: str, zooms: list[int]):
        super().__init__()
        self._name = "SitekitControls"
        self.layers = [(k, v.get_name()) for k, v in layers.items()]
        self.legends = htmlsafe_json_dumps(legends)
        self.info = htmlsafe_json_dumps(info)
        self.banner = banner
        self.zooms = htmlsafe_json_dumps(sorted(set(zooms)))
        self.css = _CSS + "".join(f".sk-below-{z} .sk-lz-{z}{{display:none}}" for z in zooms)


def _modelled(key: str, prov: dict, attrs: dict | None = None) -> str:
    mark = _tag_mark(key, prov)
    if mark:
        return mark
    flag = (prov.get("modelled") or {}).get(key)
    if flag is None and attrs is not None and str(attrs.get("modelled", "")).lower() == "yes":
        flag = True
    if not flag:
        return ""
    text = MODELLED if flag is True else str(flag)
    return f' <span class="sk-modelled">({esc(text)})</span>'


ILLUSTRATIVE = "illustrative / 示意"


def _tag_mark(key: str, prov: dict) -> str:
    """``(modelled / 模拟, illustrative / 示意)`` for a layer computed from such inputs
    (:func:`sitekit.outputs.tags.depends_on` on the run's provenance); "" otherwise."""
    from sitekit.outputs import tags

    if not prov.get("modelled") and not prov.get("inputs"):
        return ""
    mod, ill = tags.depends_on(key, prov)
    words = ([MODELLED] if mod else []) + ([ILLUSTRATIVE] if ill else [])
    return f' <span class="sk-modelled">({esc(", ".join(words))})</span>' if words else ""


def _auto_vector_style(key: str, prov: dict) -> VectorStyle:
    """Style of a layer the map style does not name: a constraint layer gets its catalogue
    names (an illustrative one says so and starts hidden), anything else its key."""
    from sitekit.outputs.labels import constraint_title, extra_title

    con = constraint_title(key, prov)
    if con is None:
        zh_en = extra_title(key)
        if zh_en is None:
            return VectorStyle(name_en=key)
        return VectorStyle(name_en=zh_en[1], name_zh=zh_en[0])
    en, zh, illustrative = con
    return VectorStyle(
        name_en=en,
        name_zh=zh,
        color="#b30000",
        fill_color="#fb6a4a",
        fill_opacity=0.25,
        weight=1.0,
        dash_array="4 3",
        show=not illustrative,
    )


def _layer_keys(style: MapStyle, rasters: dict, vectors: dict) -> list[str]:
    given = list(rasters) + list(vectors)
    if style.layers is not None:
        return [k for k in style.layers if k in given]
    known = [k for k in list(style.rasters) + list(style.vectors) if k in given]
    return known + [k for k in given if k not in known]


def render_map(
    out_html: str | Path,
    *,
    grid: Grid,
    rasters: dict[str, xr.DataArray],
    vectors: dict[str, gpd.GeoDataFrame],
    style: MapStyle | None = None,
    provenance: dict | None = None,
    online_tiles: bool = False,
    cache: Any = None,
) -> Path:
    """Write the results map (one self-contained HTML file) and return its path.

    Parameters
    ----------
    out_html : target file (written atomically).
    grid : the run's grid; every raster must have its shape, every vector its CRS.
    rasters : lazy 2-D layers by name (``hillshade``, ``elevation``, ``pv_yield``, ``wind_cf``,
        ``pv_score``, ``wind_score``, ``exclusion_reasons``, ``grid_distance`` …); only an overview
        of ≤ ``style.overlay_max_px`` pixels of each is computed.
    vectors : GeoDataFrames by name (``prefectures``, ``counties``, ``pv_sites``, ``wind_sites``,
        ``ps_reservoirs``, ``ps_pairs``, ``grid_points``, ``grid_lines``, ``routes`` …).
    style : map style (``maps/default.yaml``); None = the default style.
    provenance : ``title``, ``demo_terrain`` (bool), ``modelled`` {layer: bool or label},
        ``exclusion_legend`` [(bit position, code, name_en, name_zh)], ``attribution``.
    online_tiles : add an OpenStreetMap base layer (the page then needs the internet for it).
    cache : a :class:`sitekit.engine.cache.LayerCache`: each raster's overlay (PNG, bounds, legend) is
        kept keyed by the raster's content and its style, so a re-run whose weights left a layer
        unchanged does not compute, warp and encode it again.

    Raises
    ------
    LayerError if a raster does not match the grid; OutputError if the page would load anything
    from the network while ``online_tiles`` is False.
    """
    style = style or MapStyle()
    prov = provenance or {}
    to_ll = transformer(grid.crs, 4326)
    x0, y0, x1, y1 = grid.bounds
    lon, lat = to_ll.transform([x0, x0, x1, x1], [y0, y1, y0, y1])
    bounds = [[min(lat), min(lon)], [max(lat), max(lon)]]
    m = folium.Map(
        location=[sum(lat) / 4, sum(lon) / 4], zoom_start=7, tiles=None, control_scale=True
    )
    m.default_js, m.default_css = offline_assets("map")
    m.fit_bounds(bounds)
    for name, z in _PANES.items():
        folium.map.CustomPane(
            name, z_index=z, pointer_events=name not in ("sk_base", "sk_rasters")
        ).add_to(m)

    keys = _layer_keys(style, rasters, vectors)
    simplify_m = style.simplify_m if style.simplify_m is not None else grid.resolution_m
    objs: dict[str, Any] = {}
    legends: list[tuple[str, str]] = []
    names: set[str] = set()

    def unique(label: str) -> str:
        n, out = 2, label
        while out in names:
            out, n = f"{label} ({n})", n + 1
        names.add(out)
        return out

    if (
        "hillshade" not in rasters
        and "elevation" in rasters
        and (style.layers is None or "hillshade" in style.layers)
    ):
        # shaded from an overview of the elevation when its overlay is made
        rasters = {**rasters, "hillshade": rasters["elevation"]}
        keys = ["hillshade"] + keys
        derived_shade = True
    else:
        derived_shade = False

    for key in keys:
        if key not in rasters:
            continue
        da = rasters[key]
        rs = style.rasters.get(key) or RasterStyle(name_en=key)
        derived = key == "hillshade" and derived_shade
        if tuple(da.shape[-2:]) != tuple(grid.shape):
            raise LayerError(f"raster '{key}' has shape {da.shape}, the grid {grid.shape}")
        attrs = {} if derived else da.attrs
        units = rs.units if rs.units is not None else str(attrs.get("units", ""))
        mark = _modelled(key, prov, attrs)
        label = esc(style.label(rs.name_en, rs.name_zh))
        title = label + (f" [{esc(units)}]" if units and units != "1" else "") + mark
        legend_spec = (prov.get("exclusion_legend") or []) if key == "exclusion_reasons" else None

        def _overlay(da=da, rs=rs, title=title, legend_spec=legend_spec, derived=derived):
            if derived:
                elev, f = overview(da, style.overlay_max_px)
                values = _overview_hillshade(elev, grid, f)
            else:
                values, f = overview(da, style.overlay_max_px, rs.resampling)
            if legend_spec is not None:
                idx, colours, legend = _exclusions(values, legend_spec, title, rs)
            else:
                idx, colours, legend = _continuous(values.astype(np.float32), rs, title)
            merc, ll_bounds = _to_mercator(idx, grid, f)
            return {"png": _png(merc, colours), "bounds": ll_bounds, "legend": legend}

        if cache is None:
            ov = _overlay()
        else:
            ov = cache.memo_json(
                "overlays",
                [
                    OVERLAY_FORMAT,
                    cache.content_digest(da.data),
                    grid.token,
                    rs.model_dump(mode="json"),
                    title,
                    style.overlay_max_px,
                    legend_spec,
                    derived,
                ],
                _overlay,
            )
        legend = ov["legend"]
        layer = folium.raster_layers.ImageOverlay(
            ov["png"],
            ov["bounds"],
            name=unique(label + mark),
            opacity=rs.opacity,
            overlay=not rs.base,
            show=rs.show or rs.base,
            pane="sk_base" if rs.base else "sk_rasters",
            interactive=False,
            pixelated=rs.resampling == "nearest",
        )
        layer.add_to(m)
        objs[key] = layer
        if not rs.base:
            legends.append((key, legend))

    if online_tiles:
        folium.TileLayer(
            "OpenStreetMap", name="OpenStreetMap", overlay=False, show="hillshade" not in objs
        ).add_to(m)

    for key in keys:
        if key not in vectors or vectors[key] is None or len(vectors[key]) == 0:
            continue
        gdf = vectors[key]
        if gdf.crs is None:
            raise LayerError(f"vector layer '{key}' has no CRS")
        vs = style.vectors.get(key) or _auto_vector_style(key, prov)
        label = esc(style.label(vs.name_en, vs.name_zh))
        mark = _modelled(key, prov)
        title = label + mark
        kinds = set(gdf.geom_type.dropna())
        points = kinds <= {"Point", "MultiPoint"}
        if key in ("prefectures", "counties"):
            pane = "sk_bounds"  # lowest vector pane: sites and points stay clickable above
        elif points:
            pane = "sk_points"
        elif kinds <= {"LineString", "MultiLineString"}:
            pane = "sk_lines"
        else:
            pane = "sk_areas"
        data, on_each = _features(gdf, key, vs, style, 0.0 if points else simplify_m, title)
        shown = len(data["features"])
        if vs.max_features and len(gdf) > shown:
            title += f" <small>(top {shown} of {len(gdf)})</small>"
        layer = folium.GeoJson(
            data,
            name=unique(title),
            show=vs.show,
            on_each_feature=on_each,
            pane=pane,
            marker=folium.CircleMarker(radius=vs.radius_px, pane=pane) if points else None,
        )
        layer.add_to(m)
        objs[key] = layer
        if key not in ("prefectures", "counties"):
            legends.append((key, _vector_legend(vs, title, style)))

    folium.LayerControl(collapsed=style.layer_control_collapsed).add_to(m)
    fs = plugins.Fullscreen(position="topleft")
    ms = plugins.MeasureControl(
        position="topleft",
        primary_length_unit="kilometers",
        secondary_length_unit="meters",
        primary_area_unit="sqkilometers",
        secondary_area_unit="hectares",
        units={"sqkilometers": {"factor": 1e-6, "display": "km²", "decimals": 2}},
    )
    fs.default_js, fs.default_css = offline_assets("fullscreen")
    ms.default_js, ms.default_css = offline_assets("measure")
    fs.add_to(m)
    ms.add_to(m)

    title = prov.get("title") or style.label(style.title_en, style.title_zh)
    info = [f'<div class="sk-title">{esc(title)}</div>']
    if prov.get("demo_terrain"):
        info.append(f'<div class="sk-modelled">{esc(DEMO_BANNER)}</div>')
    if any((prov.get("modelled") or {}).values()):
        info.append(
            f'<div class="sk-note"><span class="sk-modelled">{esc(MODELLED)}</span>: '
            "computed by sitekit, not measured · 模型计算值，非实测</div>"
        )
    if prov.get("attribution"):
        info.append(f'<div class="sk-note">{esc(prov["attribution"])}</div>')
    lines = [DEMO_BANNER] if prov.get("demo_terrain") else []
    lines += [banner_text(prov.get("rules"))] if prov.get("rules") else []  # rules applied/missing
    banner = f'<div class="sk-banner">{"<br>".join(esc(x) for x in lines)}</div>' if lines else ""
    zooms = [v.label_min_zoom for k, v in style.vectors.items() if k in objs and v.label_min_zoom]
    _Controls(objs, legends, "".join(info), banner, zooms).add_to(m)

    page = inline_assets(_render_page(m))
    if not online_tiles:
        ext = external_references(page)
        if ext:
            raise OutputError(
                f"map would load {len(ext)} resource(s) from the network ({ext[0]} …); "
                "every asset must be inlined (or pass online_tiles=True)"
            )
    return write_text(out_html, page)


def banner_text(rules_prov: dict[str, Any] | None) -> str:
    """One line for the map banner: what "eligible" was judged against."""
    if not rules_prov:
        return ""
    parts = []
    for tech, info in rules_prov.items():
        st = info.get("rules", [])
        applied = [s["id"] for s in st if s["status"] == "applied"]
        missing = [s["id"] for s in st if s["status"] == "layer_missing"]
        text = f"{tech}: eligible under {len(applied)} rule(s) applied"
        if missing:
            text += f"; {len(missing)} NOT applied, layer missing ({', '.join(missing)})"
        parts.append(text)
    return " · ".join(parts)
