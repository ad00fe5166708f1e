"""Readers with clear errors: rasters open lazily onto the grid, vectors land in the grid CRS.

Rasters are aligned chunk by chunk with a GDAL ``WarpedVRT`` per dask block: each block opens the
file, warps just its window onto the grid and closes it, so nothing is read whole and a distributed
worker needs only the path. (odc-geo's ``xr_reproject`` was 35× slower for this here: 30 s vs 0.85 s
for the 9.7 Mpx demo grid; see the foundation issue's note.)
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import rasterio
import rasterio.errors
import rasterio.windows
import shapely
import xarray as xr
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds

from sitekit.errors import CRSError, LayerError, SitekitWarning
from sitekit.grid import Grid, parse_crs

if TYPE_CHECKING:
    from sitekit.io.catalog import LayerSpec

#: plausible value ranges by declared units: (min, max, hint when outside)
PLAUSIBLE: dict[str, tuple[float, float, str]] = {
    "m": (-500.0, 9000.0, "elevation in feet or cm? values must be metres"),
    "m/s": (0.0, 40.0, "wind in km/h or knots? mean wind speed must be m/s"),
    "degree": (0.0, 360.0, "values must be degrees"),
    "kWh/m2/yr": (300.0, 3500.0, "GHI in W/m² or kWh/m²/day? declare `units: W/m2` or convert"),
    "kWh/m2/day": (0.5, 10.0, "GHI must be daily kWh/m²"),
    "W/m2": (10.0, 450.0, "mean irradiance in W/m²; annual kWh/m² needs `units: kWh/m2/yr`"),
    "kWh/kWp/yr": (300.0, 3000.0, "specific yield must be kWh/kWp per year"),
    "1": (0.0, 1.0, "fractions must be 0–1"),
    "K": (180.0, 340.0, "temperature must be kelvin"),
    "degC": (-70.0, 60.0, "temperature must be °C"),
}
#: edge [px] of the fixed tiles rasters are warped in
WARP_TILE_PX = 512
_RESAMPLING = {
    "nearest": Resampling.nearest,
    "bilinear": Resampling.bilinear,
    "cubic": Resampling.cubic,
    "average": Resampling.average,
    "mode": Resampling.mode,
}


# ---------------------------------------------------------------------------------- rasters
def raster_info(path: Path, spec: LayerSpec, where: str) -> dict[str, Any]:
    """Open ``path`` and check CRS, nodata and readability; returns its metadata."""
    if not path.exists():
        raise LayerError(f"{where}: file not found: {path}")
    try:
        with rasterio.open(path) as src:
            info = {
                "crs": src.crs,
                "nodata": src.nodatavals[spec.band - 1] if spec.band <= src.count else None,
                "count": src.count,
                "dtype": src.dtypes[min(spec.band, src.count) - 1],
                "shape": (src.height, src.width),
                "bounds": src.bounds,
                "res": src.res,
                "transform": src.transform,
                "tags": src.tags(),
                # GeoTIFF scale/offset (value = raw × scale + offset), applied on every read
                "scale": float(src.scales[min(spec.band, src.count) - 1] or 1.0),
                "offset": float(src.offsets[min(spec.band, src.count) - 1] or 0.0),
            }
    except rasterio.errors.RasterioIOError as exc:
        raise LayerError(f"{where}: cannot read raster ({exc}); is the file complete?") from None
    if spec.band > info["count"]:
        raise LayerError(f"{where}: band {spec.band} requested but the file has {info['count']}")
    if spec.crs:
        info["crs"] = rasterio.crs.CRS.from_user_input(parse_crs(spec.crs, where).to_wkt())
    elif info["crs"] is None:
        raise CRSError(
            f"{where}: raster has no CRS; add `crs: EPSG:4326` (or its real CRS) to its entry"
        )
    if spec.nodata is not None:
        info["nodata"] = spec.nodata
    elif info["nodata"] is None:
        raise LayerError(
            f"{where}: raster declares no nodata value; add `nodata: <value>` to its entry "
            "(use `nodata: .nan` for float rasters that mark gaps with NaN)"
        )
    crs = pyproj.CRS.from_wkt(info["crs"].to_wkt())
    b = info["bounds"]
    if crs.is_geographic and (abs(b.left) > 360 or abs(b.top) > 90 or abs(b.bottom) > 90):
        raise CRSError(
            f"{where}: declared CRS {crs.name} is geographic but the bounds {tuple(b)} are not "
            "degrees; declare the raster's real CRS"
        )
    info["pyproj_crs"] = crs
    return info


def _masks(nodata: float | None) -> bool:
    """True when ``nodata`` is a value to turn into NaN (not None, not already NaN)."""
    return nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata))


def _overview_shape(shape: tuple[int, int], size: int) -> tuple[int, int]:
    """(rows, cols) of a validation overview: ``shape`` decimated by one integer factor to
    ≤ ``size`` px on its long side."""
    h, w = shape
    f = max(1, math.ceil(max(h, w) / size))
    return max(1, h // f), max(1, w // f)


@contextlib.contextmanager
def _readable(where: str) -> Iterator[None]:
    """Turn GDAL's read errors inside the block into a LayerError that names the layer."""
    try:
        yield
    except rasterio.errors.RasterioIOError as exc:
        raise LayerError(f"{where}: raster data is unreadable ({exc}); is it truncated?") from None


def _nodata_to_nan(arr: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """``arr`` (float) with the raster's nodata value set to NaN and its scale/offset applied,
    in place."""
    if _masks(info["nodata"]):
        arr[arr == info["nodata"]] = np.nan
    return _unscale(arr, info)


def _scaled(block: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """A new float32 block ``block × scale + offset`` (dask blocks are never changed in place)."""
    return (block * np.float32(scale) + np.float32(offset)).astype(np.float32, copy=False)


def _unscale(arr: Any, info: dict[str, Any]) -> Any:
    """Raw values → physical values with the file's scale and offset (GDAL's convention:
    value = raw × scale + offset; bilinear/cubic resampling commutes with it)."""
    scale, offset = info.get("scale", 1.0), info.get("offset", 0.0)
    if scale != 1.0:
        arr *= np.asarray(scale, arr.dtype)
    if offset != 0.0:
        arr += np.asarray(offset, arr.dtype)
    return arr


def _overview(path: Path, spec: LayerSpec, info: dict, where: str, size: int = 512) -> np.ndarray:
    """A decimated float read of the whole raster (≤ ``size`` px on the long side).

    Without internal overviews GDAL decodes every block for it (~4.5 s on one core for a 268 Mpx
    DEFLATE file), so it is read in horizontal bands on one thread per core (GDAL releases the
    GIL; each thread opens the file itself), with GDAL's block cache bounded to a few rows of
    blocks (268 Mpx DEM: peak RSS 0.43 instead of 1.11 GiB, 1.9 instead of 2.4 s)."""
    h, w = info["shape"]
    oh, ow = _overview_shape(info["shape"], size)
    path_s = str(path)

    def _band(i0: int, i1: int) -> np.ndarray:
        with rasterio.open(path_s) as src:
            win = rasterio.windows.Window(0, i0 * h / oh, w, (i1 - i0) * h / oh)
            return src.read(spec.band, window=win, out_shape=(i1 - i0, ow))

    with _readable(where):
        with rasterio.open(path_s) as src:
            has_ov = bool(src.overviews(spec.band))
            bh, bw = src.block_shapes[spec.band - 1]
            item = np.dtype(src.dtypes[spec.band - 1]).itemsize
        n = 1 if has_ov or oh < 64 else min(os.cpu_count() or 1, 8)
        edges = [round(k * oh / n) for k in range(n + 1)]
        # GDAL's block cache (default 5 % of RAM) would keep every decoded block of the file:
        # 1.1 GiB for a 268 Mpx DEM. Each thread needs one row of blocks at a time (×2 spare).
        cache = max(256 << 20, 2 * n * math.ceil(w / bw) * bw * bh * item)
        with rasterio.Env(GDAL_CACHEMAX=int(cache)):  # bytes (rasterio passes an int)
            if n == 1:
                arr = _band(0, oh)
            else:
                with ThreadPoolExecutor(n) as pool:
                    arr = np.concatenate(list(pool.map(_band, edges[:-1], edges[1:])))
    return _nodata_to_nan(arr.astype(np.float64), info)


#: most tiles the quick validation sample decodes (64 tiles of 512² ≈ 17 Mpx)
SAMPLE_TILES = 64


def _sampled_overview(
    path: Path, spec: LayerSpec, info: dict, where: str, window: tuple[int, int, int, int],
    size: int = 512, max_tiles: int = SAMPLE_TILES,
) -> tuple[np.ndarray, np.ndarray, float] | None:  # fmt: skip
    """The :func:`_overview` grid filled from a regular lattice of at most ``max_tiles`` of the
    file's tiles inside ``window`` (rows r0, r1, cols c0, c1: the study area's footprint), or
    None when that would not decode fewer tiles than the full overview (internal overviews,
    strips, few tiles).

    Returns (overview, sampled, share): cells outside the sampled tiles are NaN with ``sampled``
    False; ``share`` is the sampled tiles' fraction of the footprint's.
    Without overviews :func:`_overview` decodes every tile of the file: a second full decode of
    a DEM the pipeline reads anyway (3.5 CPU-s of the 268 Mpx benchmark's ~49). The lattice
    keeps the same cell spacing inside the tiles it reads.
    """
    h, w = info["shape"]
    with rasterio.open(path) as src:
        if src.overviews(spec.band):
            return None
        bh, bw = src.block_shapes[spec.band - 1]
    if bw >= w or bh < 16:  # stripped file: the decimated read skips whole strips already
        return None
    r0, r1, c0, c1 = window
    ti = np.arange(r0 // bh, (r1 - 1) // bh + 1)
    tj = np.arange(c0 // bw, (c1 - 1) // bw + 1)
    n_all = math.ceil(h / bh) * math.ceil(w / bw)
    n_foot = ti.size * tj.size
    # k_i × k_j ≤ max_tiles evenly spaced tile rows and columns, in proportion to the footprint
    k_i = max(1, min(ti.size, round(math.sqrt(max_tiles * ti.size / tj.size))))
    k_j = max(1, min(tj.size, max_tiles // k_i))
    ti = ti[((np.arange(k_i) + 0.5) * ti.size / k_i).astype(int)]
    tj = tj[((np.arange(k_j) + 0.5) * tj.size / k_j).astype(int)]
    if ti.size * tj.size * 2 > n_all:  # not worth it: at least half the file's tiles
        return None
    oh, ow = _overview_shape(info["shape"], size)
    fy, fx = h / oh, w / ow
    cell_r = np.floor((np.arange(oh) + 0.5) * fy).astype(np.int64)  # source row of each cell
    cell_c = np.floor((np.arange(ow) + 0.5) * fx).astype(np.int64)
    ov = np.full((oh, ow), np.nan)
    sampled = np.zeros((oh, ow), bool)
    tiles = [(int(a), int(b)) for a in ti for b in tj]
    path_s = str(path)

    def _fill(part: list[tuple[int, int]]) -> None:
        with rasterio.open(path_s) as src:
            for a, b in part:
                ra, rb = a * bh, min((a + 1) * bh, h)
                ca, cb = b * bw, min((b + 1) * bw, w)
                ii = np.flatnonzero((cell_r >= ra) & (cell_r < rb))
                jj = np.flatnonzero((cell_c >= ca) & (cell_c < cb))
                if ii.size == 0 or jj.size == 0:
                    continue
                z = src.read(spec.band, window=((ra, rb), (ca, cb)))
                ov[np.ix_(ii, jj)] = z[np.ix_(cell_r[ii] - ra, cell_c[jj] - ca)]
                sampled[np.ix_(ii, jj)] = True

    n = max(1, min(os.cpu_count() or 1, 8, len(tiles)))
    with (
        _readable(where),
        rasterio.Env(GDAL_CACHEMAX=int(max(64 << 20, 2 * n * bh * bw * 8))),
        ThreadPoolExecutor(n) as pool,
    ):
        list(pool.map(_fill, [tiles[k::n] for k in range(n)]))
    return _nodata_to_nan(ov, info), sampled, ti.size * tj.size / n_foot


def _footprint(info: dict[str, Any], grid: Grid, area: Any) -> tuple[int, int, int, int]:
    """(r0, r1, c0, c1): the file's pixel window holding the study area's bounding box."""
    b = transform_bounds(grid.crs.to_wkt(), info["crs"], *area.bounds, densify_pts=21)
    h, w = info["shape"]
    inv = ~info["transform"]
    cs, rs = zip(*(inv * (x, y) for x in (b[0], b[2]) for y in (b[1], b[3])), strict=True)
    r0, r1 = max(0, math.floor(min(rs))), min(h, math.ceil(max(rs)))
    c0, c1 = max(0, math.floor(min(cs))), min(w, math.ceil(max(cs)))
    if r0 >= r1 or c0 >= c1:
        return 0, h, 0, w
    return r0, r1, c0, c1


def check_plausible(values: np.ndarray, units: str, where: str) -> tuple[float, float]:
    """(min, max) of ``values``; raise if they are impossible for ``units``."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise LayerError(f"{where}: raster holds only nodata/NaN values")
    lo, hi = float(finite.min()), float(finite.max())
    rng = PLAUSIBLE.get(units)
    if rng and (lo < rng[0] - 1e-6 or hi > rng[1] + 1e-6):
        raise LayerError(
            f"{where}: values {lo:g}…{hi:g} are implausible for units '{units}' "
            f"(expected {rng[0]:g}…{rng[1]:g}): {rng[2]}"
        )
    return lo, hi


def _check_study_coverage(
    ov: np.ndarray,
    info: dict[str, Any],
    grid: Grid,
    area: Any,
    where: str,
    n: int = 4000,
    sampled: np.ndarray | None = None,
) -> float:
    """Raise when (almost) no part of the study area has data: sample ~``n`` points in it.
    Returns the share of the sampled study-area points that have data.

    With ``sampled`` (cells of a tile-sampled overview), only points on sampled cells count,
    and fewer than 30 of them raise too (the caller then checks the full overview)."""
    x0, y0, x1, y1 = area.bounds
    step = math.sqrt((x1 - x0) * (y1 - y0) / n)
    xs, ys = np.meshgrid(np.arange(x0, x1, step) + step / 2, np.arange(y0, y1, step) + step / 2)
    inside = shapely.contains_xy(area, xs, ys)
    if not inside.any():
        return
    from sitekit.grid import transformer

    lon, lat = transformer(grid.crs, info["pyproj_crs"]).transform(xs[inside], ys[inside])
    h, w = info["shape"]
    fy, fx = h / ov.shape[0], w / ov.shape[1]
    cols, rows = ~info["transform"] @ (np.asarray(lon), np.asarray(lat))
    r = np.floor(rows / fy).astype(int)
    c = np.floor(cols / fx).astype(int)
    ok = (r >= 0) & (r < ov.shape[0]) & (c >= 0) & (c < ov.shape[1])
    valid = np.zeros(r.shape, bool)
    valid[ok] = np.isfinite(ov[r[ok], c[ok]])
    if sampled is not None:
        seen = np.zeros(r.shape, bool)
        seen[ok] = sampled[r[ok], c[ok]]
        if seen.sum() < 30:
            raise LayerError(f"{where}: too few sampled points in the study area")
        valid = valid[seen]
    if valid.mean() < 0.01:
        raise LayerError(
            f"{where}: raster has data on {100 * valid.mean():.1f}% of the study area (nodata "
            "or outside elsewhere); check its extent and nodata value"
        )
    return float(valid.mean())


#: share of the study area a raster must cover (sampled points with data) unless the
#: catalogue entry says ``allow_gaps: true``; 1 % leaves room for the sampling of the edge
MIN_COVERAGE = 0.99


def _approx_res_m(info: dict[str, Any]) -> float:
    """Source pixel size [m] (degrees converted at the raster's mid-latitude)."""
    rx, ry = info["res"]
    if info["pyproj_crs"].is_geographic:
        b = info["bounds"]
        lat = math.radians((b.top + b.bottom) / 2)
        return min(rx * 111_320 * math.cos(lat), ry * 110_574)
    return min(rx, ry)


def open_raster(
    path: Path,
    spec: LayerSpec,
    grid: Grid,
    where: str,
    resampling: str | None = None,
    report: dict[str, float] | None = None,
) -> xr.DataArray:
    """Validate a raster and return it lazily warped onto ``grid`` (float32, NaN = nodata).

    ``report`` (a dict) receives ``coverage``: the share of the study area with data."""
    info = raster_info(path, spec, where)
    # coverage of the study area
    gb = transform_bounds(info["crs"], grid.crs.to_wkt(), *info["bounds"], densify_pts=21)
    area = grid.study_area if grid.study_area is not None else shapely.box(*grid.bounds)
    if not shapely.box(*gb).intersects(area):
        raise LayerError(
            f"{where}: raster does not overlap the study area (its bounds in the grid CRS are "
            f"{tuple(round(v) for v in gb)}); wrong CRS declared, or lat/lon swapped?"
        )
    # a lattice of tiles first; the full overview decides when there is no sample, or when the
    # sample sees no data or too little of the study area (so those errors are never the
    # sample's). Implausible values in the sample are in the file: that error stands.
    # The coverage check on the sample is the lenient side of the full one (≥ 1 % of the sampled
    # points), with as many points on sampled tiles as the full check has on the whole area.
    quick = _sampled_overview(path, spec, info, where, _footprint(info, grid, area))
    checked = False
    if quick is not None and np.isfinite(quick[0]).any():
        check_plausible(quick[0], spec.units or "", where)
        n_pts = min(100_000, math.ceil(4000 / max(quick[2], 1e-6)))
        try:
            share = _check_study_coverage(
                quick[0], info, grid, area, where, n_pts, sampled=quick[1]
            )
            checked = share >= MIN_COVERAGE  # a gap seen in the sample is confirmed in full
        except LayerError:
            pass
    if not checked:
        ov = _overview(path, spec, info, where)
        check_plausible(ov, spec.units or "", where)
        share = _check_study_coverage(ov, info, grid, area, where)
        if share < MIN_COVERAGE:
            gap_km2 = (1.0 - share) * area.area / 1e6
            if not spec.allow_gaps:
                raise LayerError(
                    f"{where}: raster has data on only {100 * share:.1f}% of the study area "
                    f"(~{gap_km2:,.0f} km² without data); extend it to the whole area, or add "
                    "`allow_gaps: true` to its entry to run anyway (the area without data is then "
                    "excluded from every site and area figure)"
                )
            warnings.warn(
                f"{where}: no data on {100 * (1 - share):.1f}% of the study area "
                f"(~{gap_km2:,.0f} km²): excluded there (allow_gaps)",
                SitekitWarning,
                stacklevel=2,
            )
    if report is not None:
        report["coverage"] = share
    rs = _RESAMPLING[resampling or spec.resampling or "bilinear"]
    src_crs = info["crs"]
    src_nodata = info["nodata"]
    band = spec.band
    dst_crs = grid.crs.to_wkt()
    path_s = str(path)
    # source pixels per grid pixel (GDAL widens the kernel by this factor when downsampling)
    src_res_m = _approx_res_m(info)
    source_extra = int(min(512, 4 + 2 * math.ceil(grid.resolution_m / max(src_res_m, 1e-9))))

    offset = _aligned_offset(info, grid)
    if offset is not None:  # the file is on the grid already: windowed reads, no warping
        reader = _aligned_reader(path_s, band, src_nodata, info["shape"], offset, info["dtype"])
        return _wrap_read(reader, grid, grid, spec, info, path)

    def _read(window: tuple[int, int, int, int]) -> np.ndarray:
        r0, r1, c0, c1 = window
        with (
            rasterio.open(path_s) as src,
            WarpedVRT(
                src,
                src_crs=src_crs,
                src_nodata=src_nodata,
                crs=dst_crs,
                transform=grid.window_transform(r0, c0),
                width=c1 - c0,
                height=r1 - r0,
                resampling=rs,
                dtype="float32",
                nodata=np.nan,
                # results must not depend on the chunk window: an (almost) exact transformer, and
                # enough extra source pixels for the widened kernel when downsampling
                tolerance=1e-6,
                warp_extras={"SOURCE_EXTRA": source_extra},
            ) as vrt,
        ):
            return vrt.read(band)

    # warp in fixed tiles (GDAL's output depends slightly on the window when downsampling), then
    # rechunk: the aligned layer is then identical whatever --chunks the user picks
    return _wrap_read(_read, grid.with_chunks(WARP_TILE_PX), grid, spec, info, path, rs)


def _aligned_offset(info: dict[str, Any], grid: Grid) -> tuple[int, int] | None:
    """(row, col) of the grid's origin in the file when the file lies exactly on the grid (same
    CRS, pixel size and pixel edges, no rotation), else None."""
    t, g = info["transform"], grid.transform
    if t.b != 0 or t.d != 0 or g.b != 0 or g.d != 0:
        return None
    if not info["pyproj_crs"].equals(grid.crs, ignore_axis_order=True):
        return None
    if abs(t.a - g.a) > 1e-9 * abs(g.a) or abs(t.e - g.e) > 1e-9 * abs(g.e):
        return None
    col, row = (g.c - t.c) / t.a, (g.f - t.f) / t.e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return round(row), round(col)


#: source dtypes whose every value float32 holds exactly (read straight into the float32 block;
#: not int8, which GDAL < 3.7 stores as unsigned bytes flagged signed)
_EXACT_IN_FLOAT32 = frozenset({"float32", "int16", "uint16", "uint8"})


def _aligned_reader(
    path: str,
    band: int,
    nodata: float | None,
    shape: tuple[int, int],
    offset: tuple[int, int],
    dtype: str = "",
) -> Callable[[tuple[int, int, int, int]], np.ndarray]:
    """Block reader for a file on the grid: the window's overlap with the file, NaN elsewhere.
    Every resampling method returns the source values when source and grid pixels coincide.

    A window inside the file whose values float32 holds exactly (float32, int16, uint16, uint8)
    is decoded by GDAL straight into the float32 block (``read(out=...)``) and masked in place:
    no source-typed copy, no cast, no NaN prefill (0.98 instead of 1.50 s for the 16 blocks of
    2048² of a 67 Mpx DEM, one thread). The values are the same as the general path's."""
    dr, dc = offset
    h, w = shape
    direct = dtype in _EXACT_IN_FLOAT32

    def _read(window: tuple[int, int, int, int]) -> np.ndarray:
        r0, r1, c0, c1 = window
        sr0, sr1 = max(r0 + dr, 0), min(r1 + dr, h)
        sc0, sc1 = max(c0 + dc, 0), min(c1 + dc, w)
        if direct and (sr0, sr1, sc0, sc1) == (r0 + dr, r1 + dr, c0 + dc, c1 + dc):
            out = np.empty((r1 - r0, c1 - c0), np.float32)
            with rasterio.open(path) as src:
                src.read(band, window=((sr0, sr1), (sc0, sc1)), out=out)
            if _masks(nodata):
                out[out == nodata] = np.nan
            return out
        out = np.full((r1 - r0, c1 - c0), np.nan, np.float32)
        if sr0 >= sr1 or sc0 >= sc1:
            return out
        with rasterio.open(path) as src:
            z = src.read(band, window=((sr0, sr1), (sc0, sc1)))
        part = z.astype(np.float32)
        if _masks(nodata):
            part[z == nodata] = np.nan
        out[sr0 - dr - r0 : sr1 - dr - r0, sc0 - dc - c0 : sc1 - dc - c0] = part
        return out

    return _read


def _wrap_read(
    read: Callable[[tuple[int, int, int, int]], np.ndarray],
    tiles: Grid,
    grid: Grid,
    spec: LayerSpec,
    info: dict[str, Any],
    path: Path,
    resampling: Any = None,
) -> xr.DataArray:
    """Read ``tiles``-sized blocks, rechunk to the grid, wrap with the layer's metadata."""
    from dask.base import tokenize

    st = Path(path).stat()
    kind = "aligned" if tiles is grid else "warp"
    token = tokenize(tiles.token, str(path), st.st_size, st.st_mtime_ns, spec.band, resampling)
    data = tiles.map_blocks(read, dtype=np.float32, name=f"read-{kind}-{spec.id}-{token}")
    if info.get("scale", 1.0) != 1.0 or info.get("offset", 0.0) != 0.0:
        data = data.map_blocks(_scaled, info["scale"], info["offset"], dtype=np.float32)
    if tiles.dask_chunks != grid.dask_chunks:
        data = data.rechunk(grid.dask_chunks)
    out = grid.wrap(data, spec.id, spec.units or "1", spec.title)
    out.attrs.update(
        modelled="yes" if spec.modelled else "no",
        source=spec.source or "",
        path=str(path),
    )
    for k in ("SITEKIT_MODELLED", "SITEKIT_METHOD"):
        if k in info["tags"]:
            out.attrs[k.lower().replace("sitekit_", "file_")] = info["tags"][k]
    if "SITEKIT_MODELLED" in info["tags"]:
        out.attrs["modelled"] = "yes"
    return out


# ---------------------------------------------------------------------------------- vectors
def _read_points_csv(path: Path, spec: LayerSpec, where: str) -> gpd.GeoDataFrame:
    try:
        df = pd.read_csv(path)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise LayerError(f"{where}: cannot read CSV ({exc})") from None
    for col in (spec.x, spec.y):
        if col not in df.columns:
            raise LayerError(
                f"{where}: column '{col}' not found (columns: {', '.join(map(str, df.columns))})"
            )
    x = pd.to_numeric(df[spec.x], errors="coerce")
    y = pd.to_numeric(df[spec.y], errors="coerce")
    if x.isna().any() or y.isna().any():
        bad = int((x.isna() | y.isna()).sum())
        raise LayerError(f"{where}: {bad} rows have non-numeric or empty {spec.x}/{spec.y}")
    crs = parse_crs(spec.crs, where)
    if crs.is_geographic and ((y.abs() > 90).any() or (x.abs() > 180).any()):
        raise CRSError(
            f"{where}: {spec.y} values outside ±90° — are x/y (lon/lat) swapped? "
            f"set `x: {spec.y}` and `y: {spec.x}`"
        )
    return gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(x, y), crs=crs)


def read_vector(path: Path, spec: LayerSpec, where: str) -> gpd.GeoDataFrame:
    """Read a vector layer or a points CSV with its CRS; repair invalid polygons (with a warning)."""
    if not path.exists():
        raise LayerError(f"{where}: file not found: {path}")
    if spec.kind == "points-csv":
        gdf = _read_points_csv(path, spec, where)
    else:
        try:
            gdf = gpd.read_file(path, layer=spec.layer, engine="pyogrio")
        except UnicodeDecodeError as exc:
            raise LayerError(
                f"{where}: attribute names/values are not valid text ({exc})"
            ) from None
        except Exception as exc:  # pyogrio raises DataSourceError/DataLayerError/…
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise LayerError(f"{where}: cannot read vector layer: {msg}") from None
        if spec.crs:
            gdf = gdf.set_crs(parse_crs(spec.crs, where), allow_override=True)
        elif gdf.crs is None:
            raise CRSError(
                f"{where}: vector layer has no CRS; add `crs: EPSG:4490` (or its real CRS) to "
                "its entry"
            )
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    if gdf.empty:
        raise LayerError(f"{where}: layer has no features (or only empty geometries)")
    if (gdf.geom_type == "GeometryCollection").any():  # judge the parts, not the container
        gdf = gdf.explode(index_parts=False).reset_index(drop=True)
    kinds = {
        "polygon"
        if t in ("Polygon", "MultiPolygon")
        else "line"
        if t in ("LineString", "MultiLineString")
        else "point"
        if t in ("Point", "MultiPoint")
        else str(t)
        for t in gdf.geom_type.unique()
    }
    if len(kinds) > 1:
        raise LayerError(
            f"{where}: mixed geometry types ({', '.join(sorted(kinds))}); split it into one "
            "layer per geometry type"
        )
    b = gdf.total_bounds
    crs = pyproj.CRS(gdf.crs)
    if crs.is_geographic and (abs(b[1]) > 90 or abs(b[3]) > 90 or abs(b[0]) > 360):
        raise CRSError(
            f"{where}: layer declares geographic CRS {crs.name} but its coordinates "
            f"{tuple(round(float(v), 1) for v in b)} are not degrees; declare its real CRS"
        )
    invalid = ~gdf.geometry.is_valid
    if invalid.any():
        n = int(invalid.sum())
        gdf = gdf.copy()
        gdf.loc[invalid, gdf.geometry.name] = shapely.make_valid(gdf.geometry[invalid].values)
        warnings.warn(
            f"{where}: repaired {n} invalid geometr{'y' if n == 1 else 'ies'} (make_valid)",
            SitekitWarning,
            stacklevel=2,
        )
        if "polygon" in kinds:  # make_valid may emit lines/points from slivers: keep areas only
            gdf = gdf.explode(index_parts=False)
            gdf = gdf[
                gdf.geom_type.isin(["Polygon", "MultiPolygon"])
                & ~shapely.is_empty(gdf.geometry.values)
            ]
            gdf = gdf[shapely.area(gdf.geometry.values) > 0]  # units do not matter for > 0
            if gdf.empty:
                raise LayerError(
                    f"{where}: only degenerate (zero-area) polygons; nothing is left after repair"
                )
    return gdf.reset_index(drop=True)


def clip_to_grid(gdf: gpd.GeoDataFrame, grid: Grid, where: str) -> gpd.GeoDataFrame:
    """Reproject to the grid CRS and keep features that touch the study area (error if none)."""
    out = grid.to_grid_crs(gdf, where)
    area = grid.study_area if grid.study_area is not None else shapely.box(*grid.bounds)
    hit = out.intersects(area)
    if not hit.any():
        raise LayerError(
            f"{where}: no feature lies in the study area (layer bounds in the grid CRS "
            f"{tuple(round(float(v)) for v in out.total_bounds)}); wrong CRS, or lat/lon swapped?"
        )
    return out[hit].reset_index(drop=True)
