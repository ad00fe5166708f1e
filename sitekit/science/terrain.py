"""Terrain derivatives of a DEM: slope, aspect, hillshade, ruggedness (TRI) and position (TPI).

Slope, aspect and hillshade use Horn's (1981) 3×3 finite differences, the method of ``gdaldem``
and of most GIS packages. Every function is lazy (dask) and neighbourhood-safe: the work is done
with :func:`dask.array.map_overlap`, so a chunked DEM gives results identical bit-for-bit to the same
DEM in one chunk.

Cell size
    Read from the DataArray's ``x``/``y`` coordinates and its CRS (``dem.rio.crs``), never assumed.
    Projected CRSs: the coordinate step times the CRS's linear unit (metres, feet …). Geographic
    CRSs (lon/lat degrees): metric spacing per row on the CRS's own ellipsoid,
    ``dx = N(φ)·cos φ·Δλ`` and ``dy = M(φ)·Δφ`` with ``N`` the prime-vertical and ``M`` the
    meridional radius of curvature (Snyder 1987, eqs. 4-18 and 4-20), and each of the three rows of
    the 3×3 window uses its own ``dx``. Degrees are never taken as metres.
Edges
    Like ``gdaldem … -compute_edges``: the DEM is extended by one ring of linearly extrapolated
    cells (``2·z_edge − z_inner``), so edge pixels get values (a plane keeps its exact slope up to
    the border). At the four corner pixels gdaldem 3.6 uses a slightly different stencil.
No data
    NaN propagates: a pixel whose 3×3 window holds a NaN is NaN (TPI instead averages the valid
    neighbours, see :func:`tpi`).

References
----------
Horn, B.K.P. (1981): Hill shading and the reflectance map. Proc. IEEE 69(1), 14–47.
Riley, S.J., DeGloria, S.D., Elliot, R. (1999): A terrain ruggedness index that quantifies
topographic heterogeneity. Intermountain Journal of Sciences 5(1–4), 23–27.
Weiss, A. (2001): Topographic position and landforms analysis. Poster, ESRI User Conference.
Snyder, J.P. (1987): Map Projections — A Working Manual. USGS Professional Paper 1395.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import dask.array as da
import numba
import numpy as np
import pyproj
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from sitekit.errors import CRSError, LayerError

__all__ = ["aspect", "cell_size_m", "hillshade", "hillshade_array", "slope", "tpi", "tri"]


# -- cell size ---------------------------------------------------------------------------------
def _xy_dims(dem: xr.DataArray) -> tuple[str, str]:
    if dem.ndim != 2:
        raise LayerError(f"DEM {dem.name!r} must be 2-D (y, x), got dims {dem.dims}")
    try:
        return dem.rio.y_dim, dem.rio.x_dim
    except Exception:  # rioxarray raises its own MissingSpatialDimensionError
        raise LayerError(
            f"DEM {dem.name!r} has dims {dem.dims}; name them (y, x) or (lat, lon)"
        ) from None


def _step(coord: np.ndarray, what: str, name: object) -> float:
    if coord.size < 2:
        raise LayerError(f"DEM {name!r} needs at least 2 pixels along {what}, got {coord.size}")
    steps = np.diff(coord.astype(np.float64))
    step = float(steps[0])
    if step == 0 or not np.allclose(steps, step, rtol=1e-6, atol=0):
        raise LayerError(
            f"DEM {name!r} has irregular {what} coordinates; resample it onto a regular grid "
            "first (open it through the catalogue, Catalog.raster(id, grid), or use "
            "rioxarray's reproject_match onto the study grid)"
        )
    return step


def cell_size_m(dem: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """Signed metric pixel spacing of each row of ``dem``.

    Parameters
    ----------
    dem : xarray.DataArray
        2-D raster with regular ``x``/``y`` (or ``lon``/``lat``) coordinates and a CRS.

    Returns
    -------
    dx_m, dy_m : numpy.ndarray
        Per-row spacing [m] along the columns and the rows, signed like the coordinate steps
        (``dy_m`` is negative for a north-up raster). Constant for projected CRSs; for geographic
        CRSs computed on the CRS's ellipsoid from each row's latitude.

    References
    ----------
    Snyder, J.P. (1987): Map Projections — A Working Manual. USGS PP 1395, eqs. 4-18, 4-20.
    """
    ydim, xdim = _xy_dims(dem)
    if dem.rio.crs is None:
        raise CRSError(
            f"DEM {dem.name!r} has no CRS, so its cell size is unknown; write one with "
            "dem.rio.write_crs(...) or set `crs:` in the layer's catalogue entry"
        )
    crs = pyproj.CRS.from_user_input(dem.rio.crs.to_wkt())
    x = np.asarray(dem[xdim].values, dtype=np.float64)
    y = np.asarray(dem[ydim].values, dtype=np.float64)
    sx, sy = _step(x, "x", dem.name), _step(y, "y", dem.name)
    ny = y.size
    if crs.is_geographic:
        ell = crs.ellipsoid
        a = ell.semi_major_metre
        f = 1.0 / ell.inverse_flattening if ell.inverse_flattening else 0.0
        e2 = f * (2.0 - f)
        phi = np.radians(y)
        w = 1.0 - e2 * np.sin(phi) ** 2
        n_radius = a / np.sqrt(w)
        m_radius = a * (1.0 - e2) / w**1.5
        return n_radius * np.cos(phi) * np.radians(sx), m_radius * np.radians(sy)
    units = [ax.unit_conversion_factor for ax in crs.axis_info if ax.unit_conversion_factor]
    factor = float(units[0]) if units else 1.0
    return np.full(ny, sx * factor), np.full(ny, sy * factor)


# -- the chunk-safe 3×3 machinery --------------------------------------------------------------
def _as_dask(dem: xr.DataArray, ydim: str, xdim: str) -> da.Array:
    data = dem.transpose(ydim, xdim).data
    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data), chunks=data.shape)
    # float32 stays float32 through map_overlap's halo exchange (half the bytes); blocks are
    # converted to float64 inside the kernels
    return data if data.dtype in (np.float32, np.float64) else data.astype(np.float64)


def _extend_1d(v: np.ndarray) -> np.ndarray:
    """``v`` with one linearly extrapolated value at each end (``2·edge − inner``)."""
    return np.concatenate([[2 * v[0] - v[1]], v, [2 * v[-1] - v[-2]]])


def _extend_block(b: np.ndarray, top: bool, bottom: bool, left: bool, right: bool) -> np.ndarray:
    """Add the linearly extrapolated ring (``2·edge − inner``) on the sides at the raster edge."""
    if top:
        b = np.concatenate([2 * b[:1] - b[1:2], b], axis=0)
    if bottom:
        b = np.concatenate([b, 2 * b[-1:] - b[-2:-1]], axis=0)
    if left:
        b = np.concatenate([2 * b[:, :1] - b[:, 1:2], b], axis=1)
    if right:
        b = np.concatenate([b, 2 * b[:, -1:] - b[:, -2:-1]], axis=1)
    return b


def _window3(z: np.ndarray) -> tuple[np.ndarray, ...]:
    """The nine shifted views a…i of a block (centre e = interior cells)."""
    return (
        z[:-2, :-2], z[:-2, 1:-1], z[:-2, 2:],
        z[1:-1, :-2], z[1:-1, 1:-1], z[1:-1, 2:],
        z[2:, :-2], z[2:, 1:-1], z[2:, 2:],
    )  # fmt: skip


@numba.njit(cache=True, nogil=True, inline="always")
def _horn_at(
    z: np.ndarray, r: int, c: int, dx_top: float, dx_mid: float, dx_bot: float, dy_mid: float
) -> tuple[float, float]:
    """Horn (1981) dz/dx, dz/dy (float64) of the cell whose 3×3 window starts at ``z[r, c]``
    (float32 input is widened exactly)."""
    a, b, cc = np.float64(z[r, c]), np.float64(z[r, c + 1]), np.float64(z[r, c + 2])
    d, f = np.float64(z[r + 1, c]), np.float64(z[r + 1, c + 2])
    g, h, i = np.float64(z[r + 2, c]), np.float64(z[r + 2, c + 1]), np.float64(z[r + 2, c + 2])
    p = ((cc - a) / dx_top + 2.0 * (f - d) / dx_mid + (i - g) / dx_bot) / 8.0
    q = ((g + 2.0 * h + i) - (a + 2.0 * b + cc)) / (8.0 * dy_mid)
    return p, q


@numba.njit(cache=True, nogil=True)
def _horn_pq(z: np.ndarray, dxr: np.ndarray, dyr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Horn (1981) dz/dx, dz/dy of the interior of ``z`` in one pass (float64; ``dxr``/``dyr``:
    spacing [m] of each row of ``z``). Same operations in the same order as the numpy form
    (no fastmath), so the numbers are identical, without its dozen full-size temporaries."""
    ny, nx = z.shape[0] - 2, z.shape[1] - 2
    p = np.empty((ny, nx))
    q = np.empty((ny, nx))
    for r in range(ny):
        dx_top, dx_mid, dx_bot, dy_mid = dxr[r], dxr[r + 1], dxr[r + 2], dyr[r + 1]
        for c in range(nx):
            p[r, c], q[r, c] = _horn_at(z, r, c, dx_top, dx_mid, dx_bot, dy_mid)
    return p, q


def _horn_gradient(z: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Horn (1981) dz/dx and dz/dy of the interior of a block (dx, dy: spacing per row [m])."""
    return _horn_pq(np.ascontiguousarray(z, dtype=np.float64), dx, dy)


def _kernel3(ext: np.ndarray, dx: np.ndarray, dy: np.ndarray, kernel: Callable) -> np.ndarray:
    """``kernel(p, q, window)`` on the interior of a halo'd float64 block (dx, dy: spacing per
    row [m]); NaN where the centre is NaN (Horn's stencil skips the centre: a hole stays a hole)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p, q = _horn_gradient(ext, dx, dy)
        win = _window3(ext)
        res = kernel(p, q, win)
    res[np.isnan(win[4])] = np.nan
    return res


def _apply3(
    dem: xr.DataArray,
    kernel: Callable[..., np.ndarray] | None,
    name: str,
    units: str,
    long_name: str,
    method: str,
    fused: Callable[..., None] | None = None,
) -> xr.DataArray:
    """Run ``kernel(p, q, window)`` over ``dem`` with a 1-pixel halo; wrap the result.

    Interior chunk borders get their halo from ``map_overlap``; at the raster's outer edges the
    block is extended with the linearly extrapolated ring, so every chunking sees the same numbers.
    ``fused(z, dx, dy, out, i0, j0)`` instead writes the result of the halo'd block ``z`` (float32
    or float64, read as float64) straight into ``out`` from row ``i0``, column ``j0`` (one pass,
    no full-size temporaries).
    """
    ydim, xdim = _xy_dims(dem)
    dx_row, dy_row = cell_size_m(dem)
    z = _as_dask(dem, ydim, xdim)
    if min(z.shape) < 2:
        raise LayerError(f"DEM {dem.name!r} needs at least 2×2 pixels, got {z.shape}")
    dx_ext, dy_ext = _extend_1d(dx_row), _extend_1d(dy_row)  # index = row + 1
    row_starts = np.concatenate([[0], np.cumsum(z.chunks[0])])
    col_starts = np.concatenate([[0], np.cumsum(z.chunks[1])])

    def _block(zb: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        (ci, cj), (ni, nj) = block_info[0]["chunk-location"], block_info[0]["num-chunks"]
        top, bottom, left, right = ci == 0, ci == ni - 1, cj == 0, cj == nj - 1
        r0, r1 = row_starts[ci], row_starts[ci + 1]
        c0, c1 = col_starts[cj], col_starts[cj + 1]
        i0, j0 = (0 if top else 1), (0 if left else 1)
        if fused is not None:
            out = np.empty(zb.shape, np.float32)
            if top or bottom or left or right:  # only edge blocks are copied
                zb = _extend_block(zb.astype(np.float64), top, bottom, left, right)
            fused(zb, dx_ext[r0 : r1 + 2], dy_ext[r0 : r1 + 2], out, i0, j0)
            return out
        ext = _extend_block(zb.astype(np.float64), top, bottom, left, right)
        # ext now covers rows r0-1 … r1 and columns c0-1 … c1 (extended index r0 … r1+1)
        res = _kernel3(ext, dx_ext[r0 : r1 + 2], dy_ext[r0 : r1 + 2], kernel)
        out = np.full(zb.shape, np.nan, np.float32)
        out[i0 : i0 + r1 - r0, j0 : j0 + c1 - c0] = res
        return out

    res = da.map_overlap(_block, z, depth=1, boundary="none", dtype=np.float32, trim=True)
    return _wrap_like(dem, res, ydim, xdim, name, units, long_name, method)


def _wrap_like(
    dem: xr.DataArray,
    data: da.Array,
    ydim: str,
    xdim: str,
    name: str,
    units: str,
    long_name: str,
    method: str,
) -> xr.DataArray:
    template = dem.transpose(ydim, xdim)
    out = template.copy(data=data)
    out.name = name
    out.attrs = {"units": units, "long_name": long_name, "method": method}
    out.encoding = {}
    if dem.rio.crs is not None:
        out.rio.write_crs(dem.rio.crs, inplace=True)
    return out


# -- public functions --------------------------------------------------------------------------
def slope(dem: xr.DataArray) -> xr.DataArray:
    """Slope of the terrain [degree] by Horn's 3×3 method.

    Parameters
    ----------
    dem : xarray.DataArray
        Elevation [m], 2-D with regular coordinates and a CRS (projected or geographic).

    Returns
    -------
    xarray.DataArray
        Slope [degree], 0 (flat) to 90, float32, lazy, on the DEM's grid.

    References
    ----------
    Horn, B.K.P. (1981): Hill shading and the reflectance map. Proc. IEEE 69(1), 14–47.
    """

    return _apply3(
        dem, None, "slope", "degree", "terrain slope", "Horn (1981) 3x3", fused=_horn_slope
    )


@numba.njit(cache=True, nogil=True)
def _horn_slope(
    z: np.ndarray, dxr: np.ndarray, dyr: np.ndarray, out: np.ndarray, i0: int, j0: int
) -> None:
    """Horn (1981) slope [degree] of the interior of ``z`` into ``out[i0:, j0:]`` (float32).

    The gradient is :func:`_horn_at`, shared with :func:`_horn_pq`;
    slope = ``degrees(arctan(sqrt(p² + q²)))``. A NaN centre gives NaN (Horn's stencil skips it).
    """
    ny, nx = z.shape[0] - 2, z.shape[1] - 2
    for r in range(ny):
        dx_top, dx_mid, dx_bot, dy_mid = dxr[r], dxr[r + 1], dxr[r + 2], dyr[r + 1]
        for c in range(nx):
            p, q = _horn_at(z, r, c, dx_top, dx_mid, dx_bot, dy_mid)
            v = np.degrees(np.arctan(np.sqrt(p * p + q * q)))
            out[i0 + r, j0 + c] = np.nan if np.isnan(z[r + 1, c + 1]) else v


def aspect(dem: xr.DataArray) -> xr.DataArray:
    """Aspect: the downslope direction [degree clockwise from north] by Horn's 3×3 method.

    0 = the ground falls toward the north, 90 = east, 180 = south, 270 = west (gdaldem's
    convention). Flat cells (zero gradient) are NaN.

    Parameters
    ----------
    dem : xarray.DataArray
        Elevation [m], 2-D with regular coordinates and a CRS.

    Returns
    -------
    xarray.DataArray
        Aspect [degree] in [0, 360), NaN where flat, float32, lazy.

    References
    ----------
    Horn, B.K.P. (1981): Hill shading and the reflectance map. Proc. IEEE 69(1), 14–47.
    """

    def _k(p: np.ndarray, q: np.ndarray, _w: tuple) -> np.ndarray:
        # downslope vector (east, north) = (-dz/dx, -dz/dy); azimuth from north, clockwise
        az = np.mod(np.degrees(np.arctan2(-p, -q)), 360.0).astype(np.float32)
        az[az >= 360.0] = 0.0
        az[(p == 0) & (q == 0)] = np.nan
        return az

    return _apply3(
        dem, _k, "aspect", "degree", "terrain aspect (downslope, clockwise from north)",
        "Horn (1981) 3x3; flat = NaN",
    )  # fmt: skip


def _shade_kernel(azimuth: float, altitude: float) -> Callable[..., np.ndarray]:
    """``255·max(cos i, 0)`` from the gradient (p, q), i the sun's incidence angle."""
    az, alt = np.radians(azimuth), np.radians(altitude)
    sx, sy, sz = np.sin(az) * np.cos(alt), np.cos(az) * np.cos(alt), np.sin(alt)

    def _k(p: np.ndarray, q: np.ndarray, _w: tuple) -> np.ndarray:
        cos_i = (sz - p * sx - q * sy) / np.sqrt(1.0 + p * p + q * q)
        return (255.0 * np.clip(cos_i, 0.0, None)).astype(np.float32)

    return _k


def hillshade(dem: xr.DataArray, azimuth: float = 315.0, altitude: float = 45.0) -> xr.DataArray:
    """Shaded relief: 255 × cosine of the sun's incidence angle on the terrain (0 in self-shadow).

    Parameters
    ----------
    dem : xarray.DataArray
        Elevation [m], 2-D with regular coordinates and a CRS.
    azimuth : float, default 315
        Sun azimuth [degree clockwise from north] (315 = north-west, cartographic convention).
    altitude : float, default 45
        Sun elevation above the horizon [degree].

    Returns
    -------
    xarray.DataArray
        Brightness 0–255 (float32; flat ground = 255·sin(altitude)), lazy. ``gdaldem hillshade``
        writes ``1 + 254·cos i`` as bytes, i.e. within 1 of this value.

    References
    ----------
    Horn, B.K.P. (1981): Hill shading and the reflectance map. Proc. IEEE 69(1), 14–47.
    """
    return _apply3(
        dem, _shade_kernel(azimuth, altitude), "hillshade", "1",
        f"hillshade (sun azimuth {azimuth:g}°, altitude {altitude:g}°)",
        "Horn (1981) 3x3 normal; 255*cos(incidence)",
    )  # fmt: skip


def hillshade_array(
    z: np.ndarray, dx_m: float, dy_m: float, azimuth: float = 315.0, altitude: float = 45.0
) -> np.ndarray:
    """:func:`hillshade` of an in-memory elevation array on a regular metric grid (e.g. a map's
    overview): the same numbers as :func:`hillshade` of a DEM with these pixels, without Dask.

    Parameters
    ----------
    z : numpy.ndarray
        Elevation [m], 2-D, at least 2×2; NaN = no data.
    dx_m, dy_m : float
        Signed pixel spacing [m] along the columns and the rows (``dy_m`` < 0 for north-up).
    azimuth, altitude : float
        Sun azimuth [degree clockwise from north] and elevation [degree].

    Returns
    -------
    numpy.ndarray
        Brightness 0–255, float32.
    """
    z = np.asarray(z)
    if z.ndim != 2 or min(z.shape) < 2:
        raise LayerError(f"hillshade needs a 2-D array of at least 2×2 pixels, got {z.shape}")
    ny = z.shape[0]
    dx = _extend_1d(np.full(ny, float(dx_m)))
    dy = _extend_1d(np.full(ny, float(dy_m)))
    ext = _extend_block(z.astype(np.float64), True, True, True, True)
    return _kernel3(ext, dx, dy, _shade_kernel(azimuth, altitude))


def tri(dem: xr.DataArray) -> xr.DataArray:
    """Terrain Ruggedness Index of Riley et al. (1999) [m].

    ``TRI = sqrt(Σ (z_i − z_0)²)`` over the 8 neighbours of each cell (``gdaldem TRI -alg Riley``).

    Parameters
    ----------
    dem : xarray.DataArray
        Elevation [m], 2-D with regular coordinates and a CRS.

    Returns
    -------
    xarray.DataArray
        TRI [m] (0 on flat ground), float32, lazy.

    References
    ----------
    Riley, S.J., DeGloria, S.D., Elliot, R. (1999): A terrain ruggedness index that quantifies
    topographic heterogeneity. Intermountain Journal of Sciences 5(1–4), 23–27.
    """

    def _k(_p: np.ndarray, _q: np.ndarray, w: tuple) -> np.ndarray:
        e = w[4]
        acc = np.zeros_like(e)
        for k in (0, 1, 2, 3, 5, 6, 7, 8):
            acc += (w[k] - e) ** 2
        return np.sqrt(acc).astype(np.float32)

    return _apply3(dem, _k, "tri", "m", "terrain ruggedness index", "Riley et al. (1999)")


def _window_sum(z: np.ndarray, r: int, axis: int) -> np.ndarray:
    """Sum over ±r cells along ``axis`` (zeros beyond the block); fixed order, so chunk-exact."""
    out = np.zeros_like(z)
    n = z.shape[axis]
    for d in range(-r, r + 1):
        src = slice(max(d, 0), n + min(d, 0))
        dst = slice(max(-d, 0), n - max(d, 0))
        o = [slice(None)] * z.ndim
        s = [slice(None)] * z.ndim
        o[axis], s[axis] = dst, src
        out[tuple(o)] += z[tuple(s)]
    return out


def _tpi_box(zb: np.ndarray, r: int) -> np.ndarray:
    """TPI of a halo'd block over the (2r+1)² box, centre included (separable sums)."""
    zb = zb.astype(np.float64)
    ok = np.isfinite(zb)
    total = _window_sum(_window_sum(np.where(ok, zb, 0.0), r, 0), r, 1)
    count = _window_sum(_window_sum(ok.astype(np.float64), r, 0), r, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (zb - total / count).astype(np.float32)


def _tpi_disc(zb: np.ndarray, r: int) -> np.ndarray:
    """TPI of a halo'd block over the disc of radius ``r + 0.5`` px, centre excluded."""
    offsets = [
        (di, dj)
        for di in range(-r, r + 1)
        for dj in range(-r, r + 1)
        if (di or dj) and di * di + dj * dj <= (r + 0.5) ** 2
    ]
    zb = zb.astype(np.float64)
    out = np.full(zb.shape, np.nan, np.float32)
    ny, nx = zb.shape
    if ny <= 2 * r or nx <= 2 * r:
        return out
    centre = zb[r : ny - r, r : nx - r]
    total = np.zeros_like(centre)
    count = np.zeros_like(centre)
    for di, dj in offsets:
        v = zb[r + di : ny - r + di, r + dj : nx - r + dj]
        ok = ~np.isnan(v)
        total += np.where(ok, v, 0.0)
        count += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        out[r : ny - r, r : nx - r] = centre - total / count
    return out


def tpi(
    dem: xr.DataArray,
    radius_px: int = 1,
    *,
    radius_m: float | None = None,
    window: Literal["disc", "box"] = "disc",
) -> xr.DataArray:
    """Topographic Position Index: elevation minus the mean of its neighbourhood [m].

    ``window="disc"`` (default): the cells whose centres lie within ``radius_px + 0.5`` pixels,
    centre excluded; ``radius_px=1`` is the 3×3 window of ``gdaldem TPI``. ``window="box"``: the
    whole (2r+1)² box, centre included (the wind model's exposure, :mod:`sitekit.science.wind`),
    summed separably. Neighbours outside the raster or NaN are left out of the mean (so the raster
    edges get values); a NaN centre gives NaN. Positive on ridges and summits, negative in
    valleys, ≈0 on planes. Chunked == unchunked bit for bit (``map_overlap`` with depth r and a
    fixed summation order).

    Parameters
    ----------
    dem : xarray.DataArray
        Elevation [m], 2-D with regular coordinates and a CRS.
    radius_px : int, default 1
        Neighbourhood radius [pixels], ≥ 1.
    radius_m : float, optional
        Radius [m] instead of ``radius_px``: ``max(1, round(radius_m / pixel width))`` pixels
        (projected CRSs only).
    window : "disc" or "box", default "disc"
        Neighbourhood shape (see above).

    Returns
    -------
    xarray.DataArray
        TPI [m], float32, lazy.

    References
    ----------
    Weiss, A. (2001): Topographic position and landforms analysis. ESRI User Conference poster.
    """
    if window not in ("disc", "box"):
        raise LayerError(f"tpi window must be 'disc' or 'box', got {window!r}")
    ydim, xdim = _xy_dims(dem)
    dx_row, _ = cell_size_m(dem)  # validates CRS and coordinates
    if radius_m is not None:
        if dem.rio.crs.is_geographic:
            raise CRSError("tpi radius_m needs a projected (metric) CRS; give radius_px instead")
        r = max(1, round(radius_m / abs(float(dx_row[0]))))
    else:
        r = int(radius_px)
    if r < 1:
        raise LayerError(f"tpi radius_px must be ≥ 1, got {radius_px}")
    z = _as_dask(dem, ydim, xdim)
    kernel = _tpi_box if window == "box" else _tpi_disc
    res = da.map_overlap(kernel, z, depth=r, boundary=np.nan, dtype=np.float32, trim=True, r=r)
    shape = "" if window == "disc" else "box "
    return _wrap_like(
        dem, res, ydim, xdim, "tpi", "m", f"topographic position index ({shape}radius {r} px)",
        f"Weiss (2001), {window} radius {r} px",
    )  # fmt: skip
