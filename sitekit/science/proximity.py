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

:func:`cost_surface`, :func:`least_cost_distance` and :func:`least_cost_path` (slope- and
crossing-weighted connection distances) live in :mod:`sitekit.science.leastcost` and are
re-exported here.
"""

from __future__ import annotations

import dask
import dask.array as da
import geopandas as gpd
import numba
import numpy as np
import shapely
import xarray as xr
from affine import Affine
from dask.base import tokenize

from sitekit.errors import LayerError
from sitekit.grid import Grid

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


from sitekit.science.leastcost import (  # noqa: E402, F401 - re-exported (this module's old API)
    DEFAULT_MAX_PIXELS,
    LeastCostPath,
    SearchStore,
    cost_surface,
    least_cost_distance,
    least_cost_path,
    least_cost_paths,
)
