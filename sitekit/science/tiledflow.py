"""Tiled D8 flow routing, flat resolution, flow accumulation and dam sites on a filled DEM.

The results equal :func:`sitekit.science.hydrology.flow_receivers`,
:func:`~sitekit.science.hydrology.flow_accumulation` and the pour-point mask of
:func:`~sitekit.science.hydrology.dam_sites` on the whole array, pixel for pixel, but no task
holds more than one chunk (plus a one-pixel halo) of the DEM. Two small global tasks hold only
sparse data: the pixels of flats and the chunk-perimeter pixels.

How:

1. per chunk (one-pixel halo), steepest-descent D8 directions as a code per pixel (int8: 0–7 in
   ``hydrology._D8`` order, −1 for a pixel with no lower neighbour, −2 for a hole); the pixels
   with no lower neighbour and which of their neighbours share their height (8 bits) are listed;
2. one task resolves the flats over that sparse list (the same breadth-first rings as
   ``hydrology._settle_flats``: each pixel drains to the first equal-height neighbour, in D8
   order, that is one ring nearer an outlet; a closed flat drains to its first pixel in
   row-major order);
3. per chunk, the flat codes are put in and the chunk's own accumulation is computed with no
   inflow; each perimeter pixel reports that count, and where its flow next meets the chunk's
   perimeter (or leaves the chunk);
4. one task solves the perimeter graph in topological order (Barnes 2017): the inflow every
   chunk receives across its edges;
5. per chunk, the accumulation is computed again with that inflow added where it enters
   (Barnes's "evict" strategy: the first pass's counts are not kept), and the dam sites follow.

Counts are integers held in float64, so the order of additions does not change them.

References
----------
Barnes, R. (2017). Parallel non-divergent flow accumulation for trillion cell digital elevation
models on desktops or clusters. Environmental Modelling & Software 92, 202–212.
https://doi.org/10.1016/j.envsoft.2017.02.022
Barnes, R., Lehman, C., Mulla, D. (2014). An efficient assignment of drainage direction over
flat surfaces in raster digital elevation models. Computers & Geosciences 62, 128–135.
https://doi.org/10.1016/j.cageo.2013.01.009 (flats drain towards their outlets; here by
breadth-first distance, the rule of ``hydrology.flow_receivers``).
"""

from __future__ import annotations

import operator
from typing import Any

import dask.array as da
import numba
import numpy as np
from dask.base import tokenize
from dask.graph_manipulation import clone

from sitekit.science import rawgraph
from sitekit.science.hydrology import _D8, steepest_codes

__all__ = ["flow_routing_tiled", "dam_sites_tiled", "receivers_from_codes"]

_DR = np.array([d[0] for d in _D8], np.int64)
_DC = np.array([d[1] for d in _D8], np.int64)
HOLE = -2  #: code of a non-finite pixel
SINK = -1  #: code of a valid pixel that drains nowhere


# -- pass 1: steepest descent ----------------------------------------------------------------
def _steepest(zh: np.ndarray, r0: int, c0: int, gx: int) -> dict[str, Any]:
    """D8 codes of a chunk given with a one-pixel halo (NaN beyond the grid), and its flats.

    The arithmetic is ``hydrology.flow_receivers``' (same dtype, same tie rule), so the codes
    are the same. Returns ``code`` (int8), ``idx`` (global flat indices of the valid pixels
    with no lower neighbour) and ``eq`` (uint8, bit k: neighbour k is valid and equally high).
    """
    valid_h = np.isfinite(zh)
    zp = np.where(valid_h, zh, np.inf)
    zz = zp[1:-1, 1:-1]
    code = steepest_codes(zp)  # SINK (−1) where no neighbour is lower
    valid = valid_h[1:-1, 1:-1]
    code[~valid] = HOLE
    lr, lc = np.nonzero(code == SINK)
    eq = np.zeros(lr.size, np.uint8)
    zc = zz[lr, lc]
    for k, (dr, dc) in enumerate(_D8):
        eq |= (zp[1 + lr + dr, 1 + lc + dc] == zc).astype(np.uint8) << k
    # the halo ring (rows 0 and -1, columns 0 and -1 of ``zh``) for the dam sites of pass 3, so
    # the haloed copy of the chunk need not stay in memory until then
    ring = (zh[0].copy(), zh[-1].copy(), zh[:, 0].copy(), zh[:, -1].copy())
    return {"code": code, "idx": (lr + r0) * gx + lc + c0, "eq": eq, "ring": ring}


# -- pass 2: flats (global, sparse) ----------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _find(idx: np.ndarray, i: int, off: int) -> int:  # pragma: no cover - numba
    """Position of pixel ``idx[i] + off`` in the sorted ``idx``, −1 if absent. The neighbour
    lies within |off| + 1 positions of ``i`` (no more pixels fit in between), so the search
    stays near ``i``."""
    g = idx[i] + off
    if off > 0:
        lo, hi = i + 1, min(idx.size, i + off + 1)
    else:
        lo, hi = max(0, i + off), i
    while lo < hi:
        mid = (lo + hi) // 2
        if idx[mid] < g:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < idx.size and idx[lo] == g else -1


@numba.njit(cache=True, nogil=True)
def _bfs(idx: np.ndarray, eq: np.ndarray, offs: np.ndarray) -> np.ndarray:  # pragma: no cover
    """Ring (breadth-first distance) of every flat pixel: 1 next to an outlet (an equally high
    neighbour that is not flat, i.e. drains); closed flats count from their first pixel (ring
    0, in index order, which is row-major order). Neighbours are found by searching ``idx``,
    so the sparse graph is never built (~20 B per flat pixel in all)."""
    n = idx.size
    dist = np.full(n, -1, np.int32)
    queue = np.empty(n, np.int32)
    head = tail = 0
    for i in range(n):
        e = eq[i]
        for k in range(8):
            if (e >> k) & 1 and _find(idx, i, offs[k]) < 0:
                dist[i] = 1
                queue[tail] = i
                tail += 1
                break
    for start in range(-1, n):
        if start >= 0:
            if dist[start] >= 0:
                continue
            dist[start] = 0  # the sink of a closed flat: the first pixel not reached
            queue[tail] = start
            tail += 1
        while head < tail:
            i = queue[head]
            head += 1
            e = eq[i]
            for k in range(8):
                if (e >> k) & 1:
                    j = _find(idx, i, offs[k])
                    if j >= 0 and dist[j] < 0:
                        dist[j] = dist[i] + 1
                        queue[tail] = j
                        tail += 1
    return dist


@numba.njit(cache=True, nogil=True)
def _choose(idx, eq, offs, dist) -> np.ndarray:  # pragma: no cover - numba
    """Each flat pixel drains to its first neighbour in D8 order one ring nearer the outlet
    (an outlet for ring 1): ``hydrology._settle_flats``' choice; ring 0 is a sink."""
    n = idx.size
    code = np.full(n, SINK, np.int8)
    for i in range(n):
        d = dist[i]
        if d <= 0:
            continue
        e = eq[i]
        for k in range(8):
            if not (e >> k) & 1:
                continue
            j = _find(idx, i, offs[k])
            if (j < 0 and d == 1) or (j >= 0 and dist[j] == d - 1):
                code[i] = k
                break
    return code


def _flat_codes(idx: np.ndarray, eq: np.ndarray, gx: int) -> np.ndarray:
    """D8 codes (−1 for the sink of a closed flat) of the flat pixels ``idx`` (sorted).

    The breadth-first rings of ``hydrology._settle_flats`` give each pending pixel its ring
    (distance to the nearest equally high pixel that drains, over equally high pending
    pixels); a pixel then drains to the first neighbour in D8 order one ring nearer. Pixels
    never reached form closed flats; each drains, ring by ring, to its first pixel.
    """
    if idx.size >= 2**31:
        raise ValueError(f"{idx.size:,} flat pixels: more than this solver's 2³¹")
    offs = np.array([dr * gx + dc for dr, dc in _D8], np.int64)
    idx = np.ascontiguousarray(idx, np.int64)
    eq = np.ascontiguousarray(eq, np.uint8)
    return _choose(idx, eq, offs, _bfs(idx, eq, offs))


def _solve_flats(parts: list[dict[str, Any]], gx: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Codes of every chunk's flat pixels: a (global index, code) pair per chunk."""
    sizes = [p["idx"].size for p in parts]
    idx = np.concatenate([p["idx"] for p in parts])
    order = np.argsort(idx, kind="stable")
    idx = idx[order]
    eq = np.concatenate([p["eq"] for p in parts])[order]
    code = np.empty(idx.size, np.int8)
    if idx.size:
        code[order] = _flat_codes(idx, eq, gx)
    del eq
    idx_t = np.empty_like(idx)
    idx_t[order] = idx  # back to chunk order
    cuts = np.cumsum(sizes)[:-1]
    return list(zip(np.split(idx_t, cuts), np.split(code, cuts), strict=True))


# -- per-chunk accumulation ------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _topo_order(rcv: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """Nodes in topological order of a forest given as receivers (−1: none), sources first
    (Kahn's algorithm)."""
    n = rcv.size
    indeg = np.zeros(n, np.int32)
    for i in range(n):
        if rcv[i] >= 0:
            indeg[rcv[i]] += 1
    stack = np.empty(n, np.int64)
    order = np.empty(n, np.int64)
    top = m = 0
    for i in range(n):
        if indeg[i] == 0:
            stack[top] = i
            top += 1
    while top > 0:
        top -= 1
        i = stack[top]
        order[m] = i
        m += 1
        j = rcv[i]
        if j >= 0:
            indeg[j] -= 1
            if indeg[j] == 0:
                stack[top] = j
                top += 1
    return order[:m]


@numba.njit(cache=True, nogil=True)
def _code_receivers(code, r0: int, c0: int, gy: int, gx: int) -> np.ndarray:  # pragma: no cover
    """Flat receiver index (int64) of each pixel of a window of D8 codes whose first pixel is
    (``r0``, ``c0``) in a grid of ``gy`` × ``gx``; −1 for none or outside that grid."""
    ny, nx = code.shape
    out = np.full(ny * nx, -1, np.int64)
    for r in range(ny):
        for c in range(nx):
            k = code[r, c]
            if k >= 0:
                rr = r + r0 + _DR[k]
                cc = c + c0 + _DC[k]
                if 0 <= rr < gy and 0 <= cc < gx:
                    out[r * nx + c] = rr * gx + cc
    return out


@numba.njit(cache=True, nogil=True)
def _tile_acc(rcv: np.ndarray, w: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """Accumulation inside one chunk (``rcv``: receivers within it, −1 none or leaving): each
    pixel's weight plus everything draining into it without leaving the chunk."""
    acc = w.ravel().copy()
    for i in _topo_order(rcv):
        if rcv[i] >= 0:
            acc[rcv[i]] += acc[i]
    return acc.reshape(w.shape)


@numba.njit(cache=True, nogil=True)
def _tile_links(code, rcv, r0: int, c0: int, gx: int):  # pragma: no cover - numba
    """Perimeter pixels of a chunk (global indices, row-major), where each one's flow goes
    next (global index of the next perimeter pixel downstream, or of the receiver in another
    chunk; −1 if the flow ends in the chunk) and whether that step leaves the chunk. ``rcv``:
    receivers within the chunk (inner pixels never leave it)."""
    ny, nx = code.shape
    n = ny * nx
    cf = code.ravel()
    per = np.zeros(n, np.bool_)
    for i in range(n):
        r, c = i // nx, i % nx
        if r == 0 or c == 0 or r == ny - 1 or c == nx - 1:
            per[i] = True
    # first perimeter pixel at or below each pixel (−1: the flow ends in the chunk first)
    t = np.full(n, -2, np.int64)
    path = np.empty(n, np.int64)
    for i0 in range(n):
        m = 0
        i = i0
        while t[i] == -2:
            if per[i]:
                t[i] = i
                break
            if rcv[i] < 0:
                t[i] = -1
                break
            path[m] = i
            m += 1
            i = rcv[i]
        for q in range(m):
            t[path[q]] = t[i]
    np_ = 0
    for i in range(n):
        if per[i]:
            np_ += 1
    idx = np.empty(np_, np.int64)
    nxt = np.full(np_, -1, np.int64)
    cross = np.zeros(np_, np.bool_)
    j = 0
    for i in range(n):
        if not per[i]:
            continue
        r, c = i // nx, i % nx
        idx[j] = (r + r0) * gx + c + c0
        k = cf[i]
        if k >= 0:
            rr, cc = r + _DR[k], c + _DC[k]
            if 0 <= rr < ny and 0 <= cc < nx:
                d = t[rr * nx + cc]
                if d >= 0:
                    nxt[j] = (d // nx + r0) * gx + d % nx + c0
            else:
                nxt[j] = (rr + r0) * gx + cc + c0
                cross[j] = True
        j += 1
    return idx, nxt, cross


def _tile_pass1(a: dict[str, Any], flats: tuple, r0: int, c0: int, gx: int) -> dict[str, Any]:
    """Final codes of a chunk and its perimeter links with the chunk's own counts."""
    code = a["code"].copy()
    fidx, fcode = flats
    lr, lc = np.divmod(fidx, gx)
    code[lr - r0, lc - c0] = fcode
    rcv = _code_receivers(code, 0, 0, *code.shape)
    acc = _tile_acc(rcv, (code > HOLE).astype(np.float64))
    idx, nxt, cross = _tile_links(code, rcv, r0, c0, gx)
    pr, pc = np.divmod(idx, gx)
    return {"code": code, "idx": idx, "nxt": nxt, "cross": cross, "acc": acc[pr - r0, pc - c0],
            "ring": a["ring"]}  # fmt: skip


@numba.njit(cache=True, nogil=True)
def _inflow(pos: np.ndarray, cross: np.ndarray, own: np.ndarray) -> np.ndarray:  # pragma: no cover
    """Inflow from other chunks into each perimeter node, in topological order of the links."""
    n = pos.size
    inner = np.zeros(n)  # inflow from other chunks passing through the node
    ext = np.zeros(n)  # inflow received directly across the chunk edge
    for q in _topo_order(pos):
        p = pos[q]
        if p < 0:
            continue
        v = own[q] + inner[q] if cross[q] else inner[q]
        if cross[q]:
            ext[p] += v
        inner[p] += v
    return ext


def _solve_perimeter(parts: list[dict[str, Any]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Inflow across the edges into every chunk: a (global index, count) pair per chunk."""
    idx = np.concatenate([p["idx"] for p in parts])
    order = np.argsort(idx, kind="stable")
    s = idx[order]
    nxt = np.concatenate([p["nxt"] for p in parts])[order]
    cross = np.concatenate([p["cross"] for p in parts])[order]
    own = np.concatenate([p["acc"] for p in parts])[order]
    pos = np.searchsorted(s, nxt)
    pos = np.where(nxt >= 0, pos, -1)
    ext = np.empty(idx.size)
    ext[order] = _inflow(pos, cross, own)
    cuts = np.cumsum([p["idx"].size for p in parts])[:-1]
    out = []
    for i, e in zip(np.split(idx, cuts), np.split(ext, cuts), strict=True):
        m = e > 0
        out.append((i[m], e[m]))
    return out


def _tile_pass2(
    p1: dict[str, Any], inflow: tuple, z: np.ndarray | None, r0: int, c0: int, gx: int,
    ci: float, thr: float,
) -> dict[str, Any]:  # fmt: skip
    """Accumulation of a chunk with its inflow; with ``z`` (the chunk of the filled DEM) also
    its dam sites (the halo ring comes from pass 1)."""
    code = p1["code"]
    w = (code > HOLE).astype(np.float64)
    i, e = inflow
    lr, lc = np.divmod(i, gx)
    w[lr - r0, lc - c0] += e
    acc = _tile_acc(_code_receivers(code, 0, 0, *code.shape), w)
    out: dict[str, Any] = {"code": code, "acc": acc}
    if z is not None:
        ny, nx = code.shape
        zh = np.empty((ny + 2, nx + 2), np.asarray(z).dtype)
        zh[1:-1, 1:-1] = z
        zh[0], zh[-1], zh[:, 0], zh[:, -1] = p1["ring"]
        rr, cc = np.nonzero(code >= 0)
        k = code[rr, cc]
        z0 = zh[1 + rr, 1 + cc]
        zr = zh[1 + rr + _DR[k], 1 + cc + _DC[k]]
        pp = np.zeros((ny, nx), bool)
        pp[rr, cc] = (np.floor(z0 / ci) * ci > zr) & (acc[rr, cc] >= thr)
        out["pp"] = pp
    return out


# -- public ----------------------------------------------------------------------------------
def _passes(
    zf: da.Array, dams: tuple[float, float] | None, keys: tuple[str, ...], reread: bool = False
):
    """Dask arrays (``zf``'s chunks) of the last pass's ``keys`` ("code", "acc", "pp").

    The graph is written out directly (one task per chunk and pass, two global tasks), so its
    construction stays linear in the number of chunks. With ``reread`` the dam sites read
    ``zf``'s chunks again (a clone of its graph: for a ``zf`` on disk) instead of keeping them
    in memory across the two global steps.
    """
    if zf.ndim != 2:
        raise ValueError(f"flow routing needs a 2-D DEM, got {zf.ndim} dimensions")
    gy, gx = zf.shape
    zh = da.overlap.overlap(zf, depth={0: 1, 1: 1}, boundary={0: np.nan, 1: np.nan})
    zd = clone(zf) if reread and dams is not None else zf  # the chunks the dam sites read
    tok = tokenize(zh, dams, keys, zd)
    nbi, nbj = len(zf.chunks[0]), len(zf.chunks[1])
    rb = np.cumsum((0, *zf.chunks[0]))[:-1]
    cb = np.cumsum((0, *zf.chunks[1]))[:-1]
    tiles = [(i, j, int(rb[i]), int(cb[j])) for i in range(nbi) for j in range(nbj)]
    a, fl, fp, p1, pe, ip, p2 = (
        f"tiledflow-{s}-{tok}" for s in ("a", "f", "fp", "p1", "pe", "ip", "p2")
    )
    ci, thr = dams if dams is not None else (1.0, 0.0)
    g: dict = {fl: (_solve_flats, [(a, t) for t in range(len(tiles))], gx)}
    g[pe] = (_solve_perimeter, [(p1, t) for t in range(len(tiles))])
    for t, (i, j, r0, c0) in enumerate(tiles):
        g[(a, t)] = (_steepest, (zh.name, i, j), r0, c0, gx)
        g[(fp, t)] = (operator.getitem, fl, t)
        g[(p1, t)] = (_tile_pass1, (a, t), (fp, t), r0, c0, gx)
        g[(ip, t)] = (operator.getitem, pe, t)
        zk = (zd.name, i, j) if dams is not None else None
        g[(p2, t)] = (_tile_pass2, (p1, t), (ip, t), zk, r0, c0, gx, ci, thr)
    dtypes = {"code": np.int8, "acc": np.float64, "pp": np.bool_}
    names = {key: f"tiledflow-{key}-{tok}" for key in keys}
    main = f"tiledflow-{tok}"
    layers = {main: (g, rawgraph.layer_of(zh) | rawgraph.layer_of(zd))}
    for key, name in names.items():
        layers[name] = (
            {
                (name, i, j): (operator.getitem, (p2, t), key)
                for t, (i, j, _, _) in enumerate(tiles)
            },
            {main},
        )
    hlg = rawgraph.graph([zh, zd], layers)
    return [da.Array(hlg, name, zf.chunks, dtype=dtypes[key]) for key, name in names.items()]


def _as_dask(zf: Any) -> da.Array:
    a = getattr(zf, "data", zf)
    return a if isinstance(a, da.Array) else da.from_array(np.asarray(a))


def flow_routing_tiled(zf: Any) -> tuple[da.Array, da.Array]:
    """D8 codes (int8) and flow accumulation [pixels] (float64) of a filled DEM, chunk by chunk.

    Parameters
    ----------
    zf : dask array (2-D, float, NaN for holes)
        Depression-filled elevation [m] (e.g. from
        :func:`sitekit.science.tiledfill.fill_depressions_tiled`); its chunks are the tiles.

    Returns
    -------
    (codes, accumulation), lazy, with ``zf``'s chunks. Codes: 0–7 index ``hydrology._D8``
    (steepest descent, flats towards their outlet), −1 for none, −2 for holes;
    :func:`receivers_from_codes` turns them into ``hydrology.flow_receivers``' flat indices.
    Accumulation equals ``hydrology.flow_accumulation``.
    """
    code, acc = _passes(_as_dask(zf), None, ("code", "acc"))
    return code, acc


def dam_sites_tiled(
    zf: Any, contour_interval_m: float, min_catchment_px: int, reread: bool = False
) -> tuple[da.Array, da.Array]:
    """D8 codes (int8) and dam-site mask (bool) of a filled DEM, chunk by chunk; equal to
    :func:`sitekit.science.hydrology.dam_sites` (``filled=True``) on the whole array. With
    ``reread`` (for a ``zf`` read from disk) the last pass reads ``zf``'s chunks again instead
    of holding them from the first."""
    dams = (float(contour_interval_m), float(min_catchment_px))
    code, pp = _passes(_as_dask(zf), dams, ("code", "pp"), reread)
    return code, pp


def receivers_from_codes(code: np.ndarray, origin: tuple[int, int], gshape: tuple[int, int]):
    """Flat receiver indices (int64) of a window of D8 codes whose first pixel is pixel
    ``origin`` (row, col) of a grid of shape ``gshape``; −1 for none and for receivers outside
    that grid (``origin`` (0, 0) and the window's own shape give indices within the window)."""
    code = np.ascontiguousarray(code, np.int8)
    out = _code_receivers(code, int(origin[0]), int(origin[1]), int(gshape[0]), int(gshape[1]))
    return out.reshape(code.shape)
