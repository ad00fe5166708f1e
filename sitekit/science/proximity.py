"""Grid proximity: exact distance to grid features, and least-cost connection distance.

:func:`distance_to_features` gives the exact Euclidean distance from every pixel centre to the nearest
point or line, chunk by chunk: each chunk is cut into tiles of ``tile`` × ``tile`` pixels; the nearest
feature segment to the tile centre (shapely ``STRtree.query_nearest``) bounds the distance of every
pixel in the tile by ``d_centre + half-diagonal``, so only segments within that bound of the tile
(``STRtree.query(predicate="dwithin")``) can be nearest. A numba kernel then narrows the candidates
by branch and bound on boxes of 128, 32 and 8 px (a segment whose minimum distance to a box exceeds
another's maximum cannot be nearest to any pixel in it) and measures each 8 × 8 px box's pixels to
its few survivors in a branch-free loop: ~0.03 CPU-s/Mpx on the benchmark's 4,250 grid segments
(0.14 with the former per-pixel scan, 0.7 with numpy). No approximation (no densifying), no
full-grid raster.

:func:`cost_surface`, :func:`least_cost_distance` and :func:`least_cost_path` give slope- and
crossing-weighted connection distances with scikit-image's ``MCP_Geometric`` (8-connected; the
cost of a step is its length times the mean cost of the two pixels; Dijkstra 1959).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import dask
import dask.array as da
import geopandas as gpd
import numba
import numpy as np
import shapely
import xarray as xr
from affine import Affine
from dask.base import tokenize

from sitekit.errors import InputError, LayerError
from sitekit.grid import Grid, parse_crs, rasterize

#: Least-cost analysis runs on at most this many pixels; larger grids are coarsened first.
DEFAULT_MAX_PIXELS = 16_000_000
#: Edge [px] of the sub-tiles each search tile is cut into for the branch-and-bound (speed only).
SUBTILE = 8
#: Feature ids travel as float32 next to the distance: exact below 2**24 features.
MAX_FEATURES = 2**24


# -- exact distance ------------------------------------------------------------------------
class _Segments:
    """Feature segments (points are zero-length segments) with a lazily built STRtree."""

    def __init__(self, a: np.ndarray, b: np.ndarray, fid: np.ndarray) -> None:
        self.a, self.b, self.fid = a, b, fid
        self._tree: shapely.STRtree | None = None

    def __getstate__(self) -> dict:
        return {"a": self.a, "b": self.b, "fid": self.fid, "_tree": None}

    @property
    def tree(self) -> shapely.STRtree:
        if self._tree is None:
            point = np.all(self.a == self.b, axis=1)
            geoms = np.empty(len(self.a), dtype=object)
            geoms[point] = shapely.points(self.a[point])
            geoms[~point] = shapely.linestrings(np.stack([self.a[~point], self.b[~point]], axis=1))
            self._tree = shapely.STRtree(geoms)
        return self._tree


def _segments(features: gpd.GeoDataFrame, grid: Grid) -> _Segments:
    gdf = grid.to_grid_crs(features, where="grid features layer")
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    parts, owner = shapely.get_parts(geoms, return_index=True)
    types = shapely.get_type_id(parts)
    if np.isin(types, (3, 6)).any():
        raise LayerError(
            "grid features layer holds polygons; pass points (e.g. substation centroids) or "
            "lines (e.g. polygon boundaries)"
        )
    a_list, b_list, f_list = [], [], []
    pts = types == 0
    if pts.any():
        xy = shapely.get_coordinates(parts[pts])
        a_list.append(xy)
        b_list.append(xy)
        f_list.append(owner[pts])
    lines = np.isin(types, (1, 2))
    if lines.any():
        xy, idx = shapely.get_coordinates(parts[lines], return_index=True)
        same = idx[:-1] == idx[1:]
        a_list.append(xy[:-1][same])
        b_list.append(xy[1:][same])
        f_list.append(owner[lines][idx[:-1][same]])
    if not a_list or sum(len(a) for a in a_list) == 0:
        raise LayerError("grid features layer is empty: it needs at least one point or line")
    if len(geoms) > MAX_FEATURES:
        raise LayerError(
            f"grid features layer has {len(geoms):,} features; at most {MAX_FEATURES:,} are "
            "supported (dissolve lines or split the layer)"
        )
    return _Segments(np.concatenate(a_list), np.concatenate(b_list), np.concatenate(f_list))


@numba.njit(cache=True, nogil=True)
def _seg_d2(px: float, py: float, ax: float, ay: float, bx: float, by: float) -> float:
    """Squared distance [m²] from point (px, py) to segment a–b (a point if a == b)."""
    dx, dy = bx - ax, by - ay
    len2 = dx * dx + dy * dy
    t = 0.0
    if len2 > 0.0:
        t = ((px - ax) * dx + (py - ay) * dy) / len2
        t = min(max(t, 0.0), 1.0)
    ex = px - (ax + t * dx)
    ey = py - (ay + t * dy)
    return ex * ex + ey * ey


@numba.njit(cache=True, nogil=True)
def _box_seg_d2(
    x0: float, y0: float, x1: float, y1: float, ax: float, ay: float, bx: float, by: float
) -> tuple[float, float]:
    """(min, max) squared distance [m²] between the box [x0, x1] × [y0, y1] and segment a–b.

    The maximum is at a box corner (the distance to a segment is convex). The minimum is 0 when
    the segment meets the box (Liang–Barsky clipping), else it is attained at a vertex of one of
    the two convex sets: an end of the segment against the box, or a box corner against the segment.
    """
    c00 = _seg_d2(x0, y0, ax, ay, bx, by)
    c01 = _seg_d2(x0, y1, ax, ay, bx, by)
    c10 = _seg_d2(x1, y0, ax, ay, bx, by)
    c11 = _seg_d2(x1, y1, ax, ay, bx, by)
    hi = max(max(c00, c01), max(c10, c11))
    # Liang–Barsky: does a + t·(b − a), t ∈ [0, 1], meet the box?
    dx, dy = bx - ax, by - ay
    t0, t1 = 0.0, 1.0
    meets = True
    for pk, qk in ((-dx, ax - x0), (dx, x1 - ax), (-dy, ay - y0), (dy, y1 - ay)):
        if pk == 0.0:
            if qk < 0.0:
                meets = False
        else:
            r = qk / pk
            if pk < 0.0:
                t0 = max(t0, r)
            else:
                t1 = min(t1, r)
    if meets and t0 <= t1:
        return 0.0, hi
    ex = max(max(x0 - ax, 0.0), ax - x1)
    ey = max(max(y0 - ay, 0.0), ay - y1)
    fx = max(max(x0 - bx, 0.0), bx - x1)
    fy = max(max(y0 - by, 0.0), by - y1)
    lo = min(min(ex * ex + ey * ey, fx * fx + fy * fy), min(min(c00, c01), min(c10, c11)))
    return lo, hi


@numba.njit(cache=True, nogil=True)
def _prune(
    xa: float, ya: float, xb: float, yb: float, cand: np.ndarray, a: np.ndarray, b: np.ndarray,
    lo: np.ndarray, keep: np.ndarray,
) -> int:  # fmt: skip
    """Write to ``keep`` (in their order) the segments of ``cand`` that can be nearest to some
    point of the box spanned by (xa, ya)–(xb, yb): those whose minimum squared distance to the
    box is not above the smallest maximum of any of them (with a relative slack of 1e-9 against
    rounding). Returns how many."""
    x0, x1, y0, y1 = min(xa, xb), max(xa, xb), min(ya, yb), max(ya, yb)
    upper = np.inf
    for j in range(cand.shape[0]):
        s = cand[j]
        lo[j], d_hi = _box_seg_d2(x0, y0, x1, y1, a[s, 0], a[s, 1], b[s, 0], b[s, 1])
        upper = min(upper, d_hi)
    limit = upper * (1.0 + 1e-9) + 1e-6
    n = 0
    for j in range(cand.shape[0]):
        if lo[j] <= limit:
            keep[n] = cand[j]
            n += 1
    return n


@numba.njit(cache=True, nogil=True)
def _tiles_nearest(
    xs: np.ndarray, ys: np.ndarray, rr: np.ndarray, re: np.ndarray, cc: np.ndarray,
    ce: np.ndarray, starts: np.ndarray, cand: np.ndarray, a: np.ndarray, b: np.ndarray,
    fid: np.ndarray, sub: int, out: np.ndarray,
) -> None:  # fmt: skip
    """Nearest segment of every pixel centre, tile by tile (exact, float64 metres).

    ``cand[starts[i]:starts[i + 1]]`` (ascending) are tile ``i``'s candidates, a superset of the
    segments nearest to any of its pixels. Branch and bound on three levels: the tile, its
    sub-tiles of ``4·sub`` px and theirs of ``sub`` px keep only the candidates whose minimum
    distance to the box (over pixel centres) is not above the smallest maximum distance of any
    candidate. Every pixel of the last level is then measured to each survivor in a branch-free
    loop; survivors stay in ascending index order and only a strictly smaller distance replaces
    the best, so ties go to the lowest index and the result does not depend on the tiling. ``out[0]`` gets the distance [km], ``out[1]`` the feature id.
    """
    nc = cand.shape[0]
    lo = np.empty(nc)
    k0, k1, k2 = np.empty(nc, np.int64), np.empty(nc, np.int64), np.empty(nc, np.int64)
    # per segment: origin, direction, 1/|d|² (0 for a point: t = 0)
    ox, oy = a[:, 0].copy(), a[:, 1].copy()
    dx, dy = b[:, 0] - ox, b[:, 1] - oy
    len2 = dx * dx + dy * dy
    inv = np.where(len2 > 0.0, 1.0 / np.where(len2 > 0.0, len2, 1.0), 0.0)
    mid = 4 * sub
    npx = sub * sub
    qx, qy = np.empty(npx), np.empty(npx)
    best, best_s = np.empty(npx), np.empty(npx)
    for i in range(len(rr)):
        n0 = _prune(xs[cc[i]], ys[rr[i]], xs[ce[i] - 1], ys[re[i] - 1],
                    cand[starts[i]:starts[i + 1]], a, b, lo, k0)  # fmt: skip
        for mr in range(rr[i], re[i], mid):
            mr1 = min(mr + mid, re[i])
            for mc in range(cc[i], ce[i], mid):
                mc1 = min(mc + mid, ce[i])
                n1 = _prune(xs[mc], ys[mr], xs[mc1 - 1], ys[mr1 - 1], k0[:n0], a, b, lo, k1)
                for sr in range(mr, mr1, sub):
                    sr1 = min(sr + sub, mr1)
                    for sc in range(mc, mc1, sub):
                        sc1 = min(sc + sub, mc1)
                        n2 = _prune(xs[sc], ys[sr], xs[sc1 - 1], ys[sr1 - 1], k1[:n1], a, b,
                                    lo, k2)  # fmt: skip
                        w = sc1 - sc
                        m = (sr1 - sr) * w
                        for r in range(sr, sr1):
                            for c in range(sc, sc1):
                                k = (r - sr) * w + c - sc
                                qx[k], qy[k] = xs[c], ys[r]
                                best[k], best_s[k] = np.inf, -1.0
                        for j in range(n2):
                            s = k2[j]
                            sx, sy, ux, uy, iv = ox[s], oy[s], dx[s], dy[s], inv[s]
                            fs = np.float64(s)  # float like best_s: the update is a select
                            for k in range(m):
                                t = ((qx[k] - sx) * ux + (qy[k] - sy) * uy) * iv
                                t = min(max(t, 0.0), 1.0)
                                ex = qx[k] - (sx + t * ux)
                                ey = qy[k] - (sy + t * uy)
                                d2 = ex * ex + ey * ey
                                closer = d2 < best[k]
                                best_s[k] = fs if closer else best_s[k]
                                best[k] = d2 if closer else best[k]
                        for r in range(sr, sr1):
                            for c in range(sc, sc1):
                                k = (r - sr) * w + c - sc
                                out[0, r, c] = np.sqrt(best[k]) / 1000.0
                                out[1, r, c] = fid[int(best_s[k])]


def _nearest_block(
    block: np.ndarray,
    segs: _Segments,
    t: Affine,
    tile: int,
    block_info: dict | None = None,
) -> np.ndarray:
    (r0, r1), (c0, c1) = block_info[0]["array-location"]
    ny, nx = r1 - r0, c1 - c0
    out = np.empty((2, ny, nx), np.float32)
    res_x, res_y = abs(t.a), abs(t.e)
    xs = t.c + t.a * (np.arange(c0, c1) + 0.5)
    ys = t.f + t.e * (np.arange(r0, r1) + 0.5)
    tr = np.arange(0, ny, tile)
    tc = np.arange(0, nx, tile)
    rr, cc = np.meshgrid(tr, tc, indexing="ij")
    rr, cc = rr.ravel(), cc.ravel()
    re, ce = np.minimum(rr + tile, ny), np.minimum(cc + tile, nx)
    # tile boxes over pixel edges
    bx0 = t.c + t.a * (c0 + cc)
    bx1 = t.c + t.a * (c0 + ce)
    by1 = t.f + t.e * (r0 + rr)
    by0 = t.f + t.e * (r0 + re)
    centres = shapely.points((bx0 + bx1) / 2, (by0 + by1) / 2)
    half_diag = 0.5 * np.hypot(bx1 - bx0, by1 - by0)
    _, d_c = segs.tree.query_nearest(centres, return_distance=True, all_matches=False)
    bound = d_c + half_diag + 1e-6 * max(res_x, res_y)
    boxes = shapely.box(bx0, by0, bx1, by1)
    pairs = segs.tree.query(boxes, predicate="dwithin", distance=bound)
    order = np.lexsort((pairs[1], pairs[0]))  # by tile, then ascending segment index
    tiles_of, cand = pairs[0][order], pairs[1][order]
    starts = np.searchsorted(tiles_of, np.arange(len(boxes) + 1))
    _tiles_nearest(xs, ys, rr, re, cc, ce, starts, cand.astype(np.int64), segs.a, segs.b,
                   segs.fid.astype(np.float64), SUBTILE, out)  # fmt: skip
    return out


def _nearest(grid: Grid, features: gpd.GeoDataFrame, tile: int) -> da.Array:
    segs = _segments(features, grid)
    token = tokenize(grid.token, segs.a, segs.b, segs.fid, tile)
    template = da.zeros(grid.shape, chunks=grid.dask_chunks, dtype=np.uint8)
    return da.map_blocks(
        _nearest_block,
        template,
        dask.delayed(segs, pure=True, name="segments-" + token),
        grid.transform,
        tile,
        new_axis=0,
        chunks=((2,), *template.chunks),
        dtype=np.float32,
        name="nearest-" + token,
    )


def distance_to_features(
    grid: Grid, features: gpd.GeoDataFrame, *, tile: int = 128
) -> xr.DataArray:
    """Exact Euclidean distance [km] from each pixel centre to the nearest point or line.

    Parameters
    ----------
    grid : Grid
        Study grid (metric CRS).
    features : GeoDataFrame
        Points and/or lines (multi-parts allowed), reprojected to the grid CRS if needed.
    tile : int
        Edge [pixels] of the tiles a chunk is searched in (speed only; the result is exact).

    Returns
    -------
    DataArray
        float32 ``grid_distance_km`` [km], lazy; computed per chunk without a full-grid raster.
        Exact in float64 metres; storing km as float32 rounds by < 0.03 m below 500 km.

    Raises
    ------
    LayerError
        Empty features, polygons, or no CRS.
    """
    near = _nearest(grid, features, tile)
    dist = near[0]  # already float32 km (rounded once from float64 metres)
    return grid.wrap(
        dist,
        "grid_distance_km",
        "km",
        "distance to the nearest grid feature",
        method="exact Euclidean distance from pixel centres (STRtree candidates per tile)",
    )


def nearest_feature_index(
    grid: Grid, features: gpd.GeoDataFrame, *, tile: int = 128
) -> xr.DataArray:
    """Row position (0-based, ``features.iloc``) of the nearest feature to each pixel centre.

    Shares its dask graph with :func:`distance_to_features` (same keys), so computing both together
    evaluates the search once. Returns int32 ``nearest_feature_index``.
    """
    near = _nearest(grid, features, tile)
    return grid.wrap(
        near[1].astype(np.int32), "nearest_feature_index", "1", "index of the nearest grid feature"
    )


# -- least-cost connection -----------------------------------------------------------------
def cost_surface(
    slope_deg: xr.DataArray,
    forbidden: xr.DataArray | None = None,
    penalty: xr.DataArray | None = None,
    *,
    base_cost: float = 1.0,
    slope_factor: float = 1.0,
    slope_ref_deg: float = 10.0,
    slope_exponent: float = 2.0,
    forbidden_cost: float = np.inf,
) -> xr.DataArray:
    """Relative cost per metre of building a line across each pixel.

    ``cost = base_cost × (1 + slope_factor × (slope / slope_ref_deg)^slope_exponent) × penalty``;
    forbidden pixels (e.g. ecological redlines) get ``forbidden_cost`` (``inf`` = impassable, a
    large finite value = heavily penalised); NaN slope (nodata) is impassable. The default quadratic
    slope term (cost doubles at 10°, ×5 at 20°) is a sitekit assumption standing in for the
    slope-class reclassification of the cited studies; tune it per project.

    Parameters
    ----------
    slope_deg : DataArray
        Terrain slope [°].
    forbidden : DataArray of bool, optional
        True where a line may not pass.
    penalty : DataArray, optional
        Multiplier [1] for crossings (rivers, roads, protected buffers …), 1 = none.
    base_cost : float
        Cost per metre on flat open ground [relative, 1 = flat].

    Returns
    -------
    DataArray
        float32 cost per metre [1 relative to flat ground], ``inf`` where impassable.

    References
    ----------
    Bagli, S., Geneletti, D., Orsi, F. (2011). Routeing of power lines through least-cost path
    analysis and multicriteria evaluation to minimise environmental impacts. *Environmental Impact
    Assessment Review* 31(3), 234–239. EPRI & Georgia Transmission Corp. (2006). *EPRI-GTC Overhead
    Electric Transmission Line Siting Methodology*, EPRI report 1013080.
    """
    s = slope_deg.astype(np.float32)
    cost = base_cost * (1.0 + slope_factor * (abs(s) / slope_ref_deg) ** slope_exponent)
    if penalty is not None:
        cost = cost * penalty.astype(np.float32)
    if forbidden is not None:
        cost = xr.where(forbidden.astype(bool), np.float32(forbidden_cost), cost)
    cost = xr.where(np.isnan(cost), np.float32(np.inf), cost).astype(np.float32)
    cost.attrs = {
        "units": "1",
        "long_name": "line cost per metre relative to flat ground",
        "method": f"{base_cost:g} × (1 + {slope_factor:g}·(slope/{slope_ref_deg:g}°)^"
        f"{slope_exponent:g}) × penalty; forbidden = {forbidden_cost:g}",
        "modelled": "yes",
    }
    if slope_deg.rio.crs is not None:  # attrs were replaced: georeference again
        cost = cost.rio.write_crs(slope_deg.rio.crs).rio.write_transform(slope_deg.rio.transform())
    return cost.rename("line_cost")


def _grid_of(cost: xr.DataArray, grid: Grid | None) -> Grid:
    if grid is not None:
        if tuple(cost.shape) != tuple(grid.shape):
            raise LayerError(f"cost raster shape {cost.shape} differs from the grid {grid.shape}")
        return grid
    chunks = cost.data.chunksize[0] if isinstance(cost.data, da.Array) else max(cost.shape)
    crs = parse_crs(cost.rio.crs, where="cost raster")
    return Grid(crs, cost.rio.transform(), tuple(cost.shape), int(chunks))


def _target_labels(targets: Any, grid: Grid) -> tuple[da.Array, bool]:
    """Targets as an int32 label raster (feature position + 1, 0 = none); True if indexed."""
    if isinstance(targets, xr.DataArray):
        if tuple(targets.shape) != tuple(grid.shape):
            raise InputError(f"target mask shape {targets.shape} differs from grid {grid.shape}")
        data = targets.data if isinstance(targets.data, da.Array) else da.from_array(targets.data)
        return data.astype(bool).astype(np.int32).rechunk(grid.dask_chunks), False
    if isinstance(targets, gpd.GeoDataFrame | gpd.GeoSeries):
        gdf = targets if isinstance(targets, gpd.GeoDataFrame) else targets.to_frame("geometry")
        geoms = np.asarray(grid.to_grid_crs(gdf, where="targets").geometry.values, dtype=object)
    else:
        xy = np.asarray(targets, dtype=np.float64).reshape(-1, 2)
        geoms = shapely.points(xy)
    if not shapely.intersects(geoms, shapely.box(*grid.bounds)).any():
        raise InputError("no connection target lies inside the grid; check their CRS and extent")

    def _burn(window: tuple[int, int, int, int]) -> np.ndarray:
        r0, r1, c0, c1 = window
        pairs = [(geoms[i], i + 1) for i in range(len(geoms) - 1, -1, -1) if geoms[i] is not None]
        return rasterize(
            pairs,
            out_shape=(r1 - r0, c1 - c0),
            transform=grid.window_transform(r0, c0),
            all_touched=True,
            dtype=np.int32,
        )

    return grid.map_blocks(_burn, dtype=np.int32), True


def _coarsen(cost: da.Array, labels: da.Array, f: int) -> tuple[da.Array, da.Array]:
    if f == 1:
        return cost, labels
    ny, nx = cost.shape
    pad = ((0, -ny % f), (0, -nx % f))
    c = da.pad(cost.astype(np.float64), pad, constant_values=np.nan)
    lab = da.pad(labels, pad, constant_values=0)
    c = c.rechunk(tuple(max(f, (s // f) * f) for s in c.chunksize))
    lab = lab.rechunk(c.chunks)

    def _mean(x: np.ndarray, axis: Any = None) -> np.ndarray:
        n = np.sum(~np.isnan(x), axis=axis)
        s = np.nansum(x, axis=axis)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, s / n, np.inf)

    return da.coarsen(_mean, c, {0: f, 1: f}), da.coarsen(np.max, lab, {0: f, 1: f})


def _factor(grid: Grid, max_pixels: int) -> int:
    n = grid.shape[0] * grid.shape[1]
    return 1 if n <= max_pixels else math.ceil(math.sqrt(n / max_pixels))


def _mcp(cost: np.ndarray, labels: np.ndarray, res_m: float, ends: Any = None) -> Any:
    """skimage's MCP_Geometric from every target pixel: ``(mcp, cumulative cost, traceback)``;
    with ``ends`` the search stops once all of them are reached."""
    from skimage.graph import MCP_Geometric

    c = np.where(np.isfinite(cost) & (cost >= 0), cost, np.inf).astype(np.float64)
    starts = np.argwhere((labels > 0) & np.isfinite(c))
    if not len(starts):
        raise InputError(
            "every connection target lies on an impassable (forbidden or nodata) pixel; "
            "allow them in the cost surface or choose other targets"
        )
    mcp = MCP_Geometric(c, fully_connected=True, sampling=(res_m, res_m))
    if ends is None:
        cum, tb = mcp.find_costs(starts)
    else:
        cum, tb = mcp.find_costs(starts, ends=ends, find_all_ends=True)
    return mcp, cum, tb


@numba.njit(cache=True)
def _trace(tb: np.ndarray, offsets: np.ndarray, r: int, c: int) -> np.ndarray:
    """Pixels (row, col) from ``(r, c)`` back to its search start, following MCP's traceback
    (offset index per pixel, negative at a start)."""
    out = [(r, c)]
    while tb[r, c] >= 0:
        k = tb[r, c]
        r, c = r - offsets[k, 0], c - offsets[k, 1]
        out.append((r, c))
    res = np.empty((len(out), 2), np.int64)
    for i in range(len(out)):
        res[i, 0], res[i, 1] = out[i]
    return res


def _search(
    c_np: np.ndarray, lab_np: np.ndarray, res_m: float, ends: list, cache_dir: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(cumulative cost, traceback, offsets)`` of the MCP search from the targets.

    Without ``cache_dir`` the search stops at the last of ``ends``. With it, the search covers
    the whole grid and is saved under ``cache_dir/mcp/`` keyed by the content of the cost and
    target rasters, so a re-run with other sites (new weights) only traces paths. A finished
    pixel's cost and predecessor do not depend on where Dijkstra stops, so both give the same
    paths and costs (tested)."""
    if cache_dir is None:
        mcp, cum, tb = _mcp(c_np, lab_np, res_m, ends=ends)
        return cum, tb, np.asarray(mcp.offsets, np.int64)
    from pathlib import Path

    from sitekit.engine.cache import array_digest, best_effort, code_digest, digest, touch
    from sitekit.io.atomic import atomic_path

    entry = Path(cache_dir) / "mcp" / (
        digest("mcp", code_digest(), array_digest(c_np), array_digest(lab_np), res_m) + ".npz"
    )  # fmt: skip
    if entry.is_file():
        touch(entry)
        try:  # a .npz is a zip: every member's CRC-32 is checked as it is read
            with np.load(entry) as z:
                return z["cum"], z["traceback"], z["offsets"]
        except Exception as exc:  # noqa: BLE001 - any damage: drop it and recompute
            from sitekit.engine.cache import damaged

            damaged(entry, f"{type(exc).__name__}: {exc}")
    mcp, cum, tb = _mcp(c_np, lab_np, res_m)
    offsets = np.asarray(mcp.offsets, np.int64)
    with best_effort(entry), atomic_path(entry) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, cum=cum, traceback=tb, offsets=offsets)
    return cum, tb, offsets


def least_cost_distance(
    cost: xr.DataArray, targets: Any, grid: Grid, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> xr.DataArray:
    """Least-cost (cost-weighted) distance [km] from every pixel to the nearest target.

    The accumulated cost is a global computation: it runs as ONE task on the whole grid (the 250 m
    western-Sichuan grid, ~10 Mpx, needs ~0.5 GB). Grids above ``max_pixels`` are coarsened by
    an integer factor ``f`` first (block-mean cost; a block with any impassable pixel is
    impassable, so narrow corridors may close), the result is repeated back to full resolution:
    errors up to about one coarse pixel (``f × resolution``) times the local cost at each end.

    Parameters
    ----------
    cost : DataArray
        Cost per metre [1] on the grid (:func:`cost_surface`); ``inf``/NaN/negative = impassable.
    targets : bool DataArray, GeoDataFrame/GeoSeries (points or lines) or (N, 2) x/y [m]
        Connection points; lines (transmission) connect anywhere along them.
    grid : Grid

    Returns
    -------
    DataArray
        float32 ``least_cost_distance_km`` [km of flat-equivalent line], ``inf`` where no path
        exists. With ``cost ≡ 1`` it is the 8-connected path length, which exceeds the straight
        distance by up to 8.2 % (1/cos 22.5°) between the 45° directions.

    References
    ----------
    Dijkstra, E. W. (1959). A note on two problems in connexion with graphs. *Numerische
    Mathematik* 1, 269–271. Bagli, Geneletti & Orsi (2011), see :func:`cost_surface`.
    """
    grid = _grid_of(cost, grid)
    labels, _ = _target_labels(targets, grid)
    f = _factor(grid, max_pixels)
    c_coarse, l_coarse = _coarsen(cost.data, labels, f)

    def _run(c: np.ndarray, lab: np.ndarray) -> np.ndarray:
        return (_mcp(c, lab, grid.resolution_m * f)[1] / 1000.0).astype(np.float32)

    # one task on the whole (coarsened) grid, kept in the array graph: handing the arrays to
    # dask.delayed instead made dask build a renamed copy of their whole upstream graph (DEM
    # read, slope, constraints), which a joint persist then computed twice
    acc = da.map_blocks(
        _run,
        c_coarse.rechunk(-1),
        l_coarse.rechunk(-1),
        dtype=np.float32,
        meta=np.empty((0, 0), np.float32),
    )
    if f > 1:
        step = max(1, grid.chunks // f)
        acc = acc.rechunk(step)
        acc = da.repeat(da.repeat(acc, f, axis=0), f, axis=1)[: grid.shape[0], : grid.shape[1]]
    acc = acc.rechunk(grid.dask_chunks)
    return grid.wrap(
        acc,
        "least_cost_distance_km",
        "km",
        "least-cost distance to the nearest connection point",
        method=f"MCP_Geometric 8-connected, coarsening factor {f}",
        modelled="yes",
    )


class LeastCostPath(NamedTuple):
    """A least-cost path from a site to its connection target."""

    line: shapely.LineString | None
    length_m: float
    cost_m: float
    target_index: int


def least_cost_paths(
    cost: xr.DataArray,
    starts_xy: Any,
    targets: Any,
    grid: Grid | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    cache_dir: Any = None,
) -> list[LeastCostPath]:
    """Least-cost paths from many sites to their cheapest target, with one MCP run (computes).

    The search spreads from the targets and stops once every start is reached; each path is
    traced back and returned from the site (first vertex) to the target (last vertex), through
    pixel centres in the grid CRS. ``length_m`` is the polyline length [m], ``cost_m`` the
    accumulated cost [m of flat-equivalent line], ``target_index`` the position of the target
    in ``targets`` (-1 for a mask). Unreachable sites get ``line=None``, NaN length and inf cost.
    Coarsening above ``max_pixels`` as in :func:`least_cost_distance`. With ``cache_dir`` (a
    folder) the whole search is kept there and reused by later calls on the same cost surface
    and targets (see :func:`_search`).
    """
    grid = _grid_of(cost, grid)
    labels, indexed = _target_labels(targets, grid)
    f = _factor(grid, max_pixels)
    c_coarse, l_coarse = _coarsen(cost.data, labels, f)
    c_np, lab_np = dask.compute(c_coarse, l_coarse)
    xy = np.asarray(starts_xy, dtype=np.float64).reshape(-1, 2)
    t = grid.transform * Affine.scale(f)
    cols, rows = (~t) * (xy[:, 0], xy[:, 1])
    rows, cols = np.floor(rows).astype(int), np.floor(cols).astype(int)
    inside = (rows >= 0) & (rows < c_np.shape[0]) & (cols >= 0) & (cols < c_np.shape[1])
    if not inside.all():
        bad = xy[~inside][0]
        raise InputError(f"site ({bad[0]:.0f}, {bad[1]:.0f}) lies outside the grid {grid.bounds}")
    ends = list(zip(rows.tolist(), cols.tolist(), strict=True))
    cum, tb, offsets = _search(c_np, lab_np, grid.resolution_m * f, ends, cache_dir)
    out = []
    for r, c in ends:
        total = float(cum[r, c])
        if not np.isfinite(total):
            out.append(LeastCostPath(None, float("nan"), float("inf"), -1))
            continue
        path = _trace(tb, offsets, r, c)  # from the site to its target
        pr, pc = path.astype(np.float64).T
        px, py = t * (pc + 0.5, pr + 0.5)
        pts = np.column_stack([px, py])
        if len(pts) == 1:
            pts = np.vstack([pts, pts])
        line = shapely.LineString(pts)
        end = tuple(path[-1])
        idx = int(lab_np[end]) - 1 if indexed else -1
        out.append(LeastCostPath(line, float(line.length), total, idx))
    return out


def least_cost_path(
    cost: xr.DataArray,
    start_xy: tuple[float, float],
    targets: Any,
    grid: Grid | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> LeastCostPath:
    """Least-cost path from one site to the cheapest target: ``(line, length_m, cost_m, index)``.

    Raises
    ------
    InputError
        No path exists (the site or all targets are enclosed by impassable pixels).
    """
    (res,) = least_cost_paths(cost, [start_xy], targets, grid, max_pixels=max_pixels)
    if res.line is None:
        raise InputError(
            f"no least-cost path from ({start_xy[0]:.0f}, {start_xy[1]:.0f}) to any connection "
            "target: every route crosses impassable (forbidden or nodata) pixels; relax the "
            "forbidden zones (finite forbidden_cost) or add targets"
        )
    return res
