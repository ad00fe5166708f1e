"""QGIS styles for the exported rasters: a ``.qml`` sidecar next to each GeoTIFF (QGIS loads
``name.qml`` with ``name.tif``) and, for class and bit-flag rasters, a raster attribute table in
the GDAL ``.tif.aux.xml`` (QGIS ≥ 3.30 shows it; GDAL tools read it).

Continuous rasters get a colour ramp from the map style (``maps/default.yaml``: colormap, vmin,
vmax, class breaks); the hillshade is grey; eligibility is a two-class palette; the exclusion
reasons get one palette entry per bit combination present, named by its constraints.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from sitekit.engine.logs import LOGGER
from sitekit.outputs.style import MapStyle, RasterStyle

_HEAD = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
#: eligibility classes: value → (colour, 中文 / English)
ELIGIBLE_CLASSES = {0: ("#d9d9d9", "不适宜 / not eligible"), 1: ("#1a9850", "适宜 / eligible")}
#: raster keys styled as in the map under another name (pv_lcoe → a cost ramp, …)
_LIKE = {"wind_speed": "wind_cf"}
_DEFAULTS = {
    "aspect": RasterStyle(name_en="Aspect", name_zh="坡向", colormap="twilight", vmin=0, vmax=360),
    "slope": RasterStyle(name_en="Slope", name_zh="坡度", colormap="YlOrBr", vmin=0, vmax=45),
    "pv_lcoe": RasterStyle(name_en="PV LCOE", name_zh="光伏度电成本", colormap="RdYlGn_r"),
    "wind_lcoe": RasterStyle(name_en="Wind LCOE", name_zh="风电度电成本", colormap="RdYlGn_r"),
    "wind_speed": RasterStyle(name_en="Wind speed", name_zh="风速", colormap="PuBu"),
    "connection_distance": RasterStyle(
        name_en="Connection distance", name_zh="并网线路距离", colormap="magma_r", vmin=0
    ),
    # a technology's own connection distance (its line settings differ from the first recipe's)
    "pv_connection_distance": RasterStyle(
        name_en="PV connection distance", name_zh="光伏并网线路距离", colormap="magma_r", vmin=0
    ),
    "wind_connection_distance": RasterStyle(
        name_en="Wind connection distance", name_zh="风电并网线路距离", colormap="magma_r", vmin=0
    ),
}


def _hex(rgba: Any) -> str:
    from matplotlib.colors import to_hex

    return to_hex(rgba, keep_alpha=False)


def _stretch(path: Path, rs: RasterStyle) -> tuple[float, float]:
    """Ramp ends: the style's vmin/vmax, else the 2nd/98th percentile of the smallest overview."""
    if rs.vmin is not None and rs.vmax is not None:
        return float(rs.vmin), float(rs.vmax)
    import rasterio

    with rasterio.open(path) as src:
        levels = src.overviews(1)
        f = levels[-1] if levels else 1
        data = src.read(
            1, out_shape=(max(1, src.height // f), max(1, src.width // f)), masked=True
        ).astype("float64")
    vals = data.compressed()
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return float(rs.vmin or 0.0), float(rs.vmax or 1.0)
    lo, hi = np.percentile(vals, [2, 98])
    lo = float(rs.vmin) if rs.vmin is not None else float(lo)
    hi = float(rs.vmax) if rs.vmax is not None else float(hi)
    return lo, hi if hi > lo else lo + 1.0


def _pipe(renderer: str) -> str:
    return (
        f'{_HEAD}<qgis version="3.28.0" styleCategories="Symbology">'
        f"<pipe>{renderer}"
        '<brightnesscontrast brightness="0" contrast="0" gamma="1"/>'
        '<huesaturation colorizeOn="0" saturation="0" grayscaleMode="0"/>'
        '<rasterresampler maxOversampling="2"/></pipe>'
        "<blendMode>0</blendMode></qgis>\n"
    )


def ramp_qml(path: Path, rs: RasterStyle, units: str = "") -> str:
    """A ``singlebandpseudocolor`` style: interpolated ramp (or discrete classes for ``breaks``)."""
    import matplotlib
    from matplotlib.colors import LinearSegmentedColormap

    cmap = (
        matplotlib.colormaps[rs.colormap]
        if isinstance(rs.colormap, str)
        else LinearSegmentedColormap.from_list("c", rs.colormap)
    )
    lo, hi = _stretch(path, rs)
    unit = f" {units}" if units and units != "1" else ""
    if rs.breaks:
        edges = [b for b in rs.breaks if lo < b < hi] if rs.vmin is None else list(rs.breaks)
        n = len(edges) + 1
        kind = "DISCRETE"
        values = [*edges, hi if hi > edges[-1] else edges[-1] * 2]
        labels = [f"< {edges[0]:g}{unit}"]
        labels += [f"{a:g} – {b:g}{unit}" for a, b in zip(edges, edges[1:], strict=False)]
        labels.append(f"≥ {edges[-1]:g}{unit}")
        items = [
            (v, cmap(i / max(1, n - 1)), lab)
            for i, (v, lab) in enumerate(zip(values, labels, strict=True))
        ]
    else:
        kind = "INTERPOLATED"
        items = [
            (lo + (hi - lo) * t, cmap(t), f"{lo + (hi - lo) * t:.4g}{unit}")
            for t in np.linspace(0, 1, 6)
        ]
    entries = "".join(
        f'<item value="{v:.6g}" color="{_hex(c)}" alpha="255" label={quoteattr(lab)}/>'
        for v, c, lab in items
    )
    renderer = (
        f'<rasterrenderer type="singlebandpseudocolor" band="1" opacity="{rs.opacity:g}" '
        f'alphaBand="-1" classificationMin="{lo:.6g}" classificationMax="{hi:.6g}" nodataColor="">'
        f'<rastershader><colorrampshader colorRampType="{kind}" classificationMode="1" '
        f'clip="0" minimumValue="{lo:.6g}" maximumValue="{hi:.6g}" labelPrecision="4">'
        f"{entries}</colorrampshader></rastershader></rasterrenderer>"
    )
    return _pipe(renderer)


def gray_qml(lo: float = 0.0, hi: float = 255.0) -> str:
    """A grey stretch (hillshade)."""
    return _pipe(
        '<rasterrenderer type="singlebandgray" grayBand="1" gradient="BlackToWhite" '
        'opacity="1" alphaBand="-1" nodataColor=""><contrastEnhancement>'
        f"<minValue>{lo:g}</minValue><maxValue>{hi:g}</maxValue>"
        "<algorithm>StretchToMinimumMaximum</algorithm></contrastEnhancement></rasterrenderer>"
    )


def paletted_qml(classes: Mapping[int, tuple[str, str]], opacity: float = 1.0) -> str:
    """A ``paletted`` style: value → (colour, label)."""
    entries = "".join(
        f'<paletteEntry value="{int(v)}" color="{c}" alpha="255" label={quoteattr(lab)}/>'
        for v, (c, lab) in classes.items()
    )
    return _pipe(
        f'<rasterrenderer type="paletted" band="1" opacity="{opacity:g}" alphaBand="-1" '
        f'nodataColor=""><colorPalette>{entries}</colorPalette></rasterrenderer>'
    )


def reason_classes(
    values: np.ndarray, legend: list[Any], colormap: str = "tab10"
) -> dict[int, tuple[str, str]]:
    """Palette of exclusion-reason codes present: 0 allowed, a single bit in its constraint's
    colour, several bits in a darker mix; each labelled with its constraints (中文 / English)."""
    import matplotlib

    cmap = matplotlib.colormaps[colormap]
    by_bit = {int(b[0]): (str(b[3]), str(b[2])) for b in legend}
    colour = {int(b[0]): _hex(cmap(k % cmap.N)) for k, b in enumerate(legend)}
    out: dict[int, tuple[str, str]] = {0: ("#ffffff", "允许 / allowed")}
    for v in sorted(int(x) for x in values if int(x) != 0):
        bits = [b for b in range(32) if v >> b & 1]
        names = [by_bit.get(b, (f"bit {b}", f"bit {b}")) for b in bits]
        label = " + ".join(zh for zh, _ in names) + " / " + " + ".join(en for _, en in names)
        c = colour.get(bits[0], "#000000") if len(bits) == 1 else "#525252"
        out[v] = (c, label)
    return out


def rat_aux_xml(classes: Mapping[int, tuple[str, str]], extra: str = "") -> str:
    """A GDAL PAM ``.aux.xml`` with a thematic raster attribute table (Value, Name, colour)."""
    from matplotlib.colors import to_rgb

    rows = []
    for i, (v, (c, lab)) in enumerate(classes.items()):
        r, g, b = (round(x * 255) for x in to_rgb(c))
        rows.append(
            f'<Row index="{i}"><F>{int(v)}</F><F>{escape(lab)}</F>'
            f"<F>{r}</F><F>{g}</F><F>{b}</F></Row>"
        )
    fields = "".join(
        f'<FieldDefn index="{i}"><Name>{n}</Name><Type>{t}</Type><Usage>{u}</Usage></FieldDefn>'
        for i, (n, t, u) in enumerate(
            (("Value", 0, 5), ("Name", 2, 2), ("Red", 0, 6), ("Green", 0, 7), ("Blue", 0, 8))
        )
    )
    return (
        '<PAMDataset><PAMRasterBand band="1">'
        f'{extra}<GDALRasterAttributeTable tableType="thematic">{fields}{"".join(rows)}'
        "</GDALRasterAttributeTable></PAMRasterBand></PAMDataset>\n"
    )


def _unique(path: Path, limit: int = 256) -> np.ndarray:
    """Distinct valid values of a class raster (read strip by strip), at most ``limit``."""
    import rasterio

    seen: set[int] = set()
    with rasterio.open(path) as src:
        nodata = src.nodata
        for _, win in src.block_windows(1):
            block = src.read(1, window=win)
            vals = np.unique(block)
            seen.update(int(v) for v in vals if nodata is None or v != nodata)
            if len(seen) > limit:
                break
    return np.array(sorted(seen)[:limit])


def write_sidecars(
    raster_dir: str | Path,
    style: MapStyle | None = None,
    provenance: dict[str, Any] | None = None,
) -> list[Path]:
    """Write ``<name>.qml`` (and for class rasters ``<name>.tif.aux.xml``) next to every
    ``*.tif`` in ``raster_dir``. ``provenance``: the run's, for the exclusion legends
    ``[(bit, code, name_en, name_zh)]`` (:func:`sitekit.outputs.tags.legend_for`). Returns the files
    written."""
    from sitekit.io.atomic import write_text
    from sitekit.outputs.tags import legend_for

    style = style or MapStyle()
    written: list[Path] = []
    for tif in sorted(Path(raster_dir).glob("*.tif")):
        key = tif.stem
        rs = style.rasters.get(key) or _DEFAULTS.get(key)
        aux = None
        if key.endswith("exclusion_reasons"):
            classes = reason_classes(_unique(tif), legend_for(key, provenance))
            qml = paletted_qml(classes, opacity=0.8)
            aux = rat_aux_xml(classes)
        elif key.endswith("_eligible"):
            qml = paletted_qml(ELIGIBLE_CLASSES, opacity=0.8)
            aux = rat_aux_xml(ELIGIBLE_CLASSES)
        elif key == "hillshade":
            qml = gray_qml()
        else:
            if rs is None:
                rs = style.rasters.get(_LIKE.get(key, "")) or RasterStyle(name_en=key)
            import rasterio

            with rasterio.open(tif) as src:
                units = src.units[0] or src.tags().get("units", "")
            qml = ramp_qml(tif, rs, units)
        target = tif.with_suffix(".qml")
        write_text(target, qml)
        written.append(target)
        if aux is not None:
            side = tif.with_name(tif.name + ".aux.xml")
            write_text(side, aux)
            written.append(side)
    LOGGER.debug("%d QGIS style files (.qml, .aux.xml) in %s", len(written), raster_dir)
    return written
