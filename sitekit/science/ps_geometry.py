"""Reservoir geometry a dam can make: pit-filled terrain, dam-height curves, walls, W/R.

For a dam site at filled elevation z₀ and each dam height H the reservoir is every pixel draining
through the site whose pit-filled elevation lies below FSL = z₀ + H; V(H) = Σ (FSL − z_f)·a, so a
closed pit counts only from its spill level up (dead storage below it). Walls and water-to-rock
ratio as the ANU search (see :mod:`sitekit.science.pumped_storage`).

References
----------
Stocks, M. et al. (2021). A global atlas of pumped hydro systems. Joule 5(1), 270–284.
ANU RE100 ``PHES_Searching`` ``src/screening.cpp`` (``model_greenfield_reservoir``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba
import numpy as np
import pandas as pd
from scipy import ndimage

from sitekit.science import pumped_storage_cost as psc
from sitekit.science.hydrology import _D8

if TYPE_CHECKING:
    from sitekit.science.pumped_storage import PumpedStorageParams


# -- reservoir geometry ----------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _walk_kernel(zf, recv, cid, h, k_max, counts, out_q, out_c, fill):  # pragma: no cover
    """Walk every valid pixel down its flow path (≤ ``k_max`` steps, while it is < ``h`` above
    the path); pass 1 (``fill`` False) counts hits per step, pass 2 writes them step-major."""
    pos = np.zeros(k_max + 2, np.int64)
    if fill:
        for s in range(k_max + 1):
            pos[s + 1] = pos[s] + counts[s]
    for q in range(zf.size):
        zq = zf[q]
        if not np.isfinite(zq):
            continue
        cur = q
        for step in range(k_max + 1):
            c = cid[cur]
            if c >= 0:
                if fill:
                    out_q[pos[step]] = q
                    out_c[pos[step]] = c
                    pos[step] += 1
                else:
                    counts[step] += 1
            nxt = recv[cur]
            if nxt < 0 or step == k_max or not zq - zf[nxt] < h:
                break
            cur = nxt


def _walk(zf, recv, pp, h, k_max):
    """(member pixel, candidate) pairs (int32): pixels whose flow path meets a pour point
    within H.

    Ordered by the step at which the path meets the pour point, then by pixel (the order of
    the step-by-step walk this replaces, so every later sum adds in the same order).
    """
    if zf.size >= 2**31:
        raise ValueError(f"a search window of {zf.size} pixels is too large (< 2**31)")
    cid = np.full(zf.size, -1, np.int32)  # a window's pixels and dam sites number < 2³¹
    cid[pp] = np.arange(pp.size)
    zf = np.ascontiguousarray(zf, np.float64)
    recv = np.ascontiguousarray(recv, np.int64)
    counts = np.zeros(k_max + 1, np.int64)
    empty = np.empty(0, np.int32)
    _walk_kernel(zf, recv, cid, float(h), int(k_max), counts, empty, empty, False)
    mq = np.empty(int(counts.sum()), np.int32)  # 8 B per membership, not 16
    mc = np.empty_like(mq)
    _walk_kernel(zf, recv, cid, float(h), int(k_max), counts, mq, mc, True)
    return mq, mc


@numba.njit(cache=True, nogil=True)
def _edges_kernel(
    zf, nx, ny, mq, order, start, zpp, hmax, offs, diag, n_out, key, oc, on, ob, ot, fill
):
    """Pass 1 counts the wall edges (``n_out[0]``), pass 2 writes them with their position in
    the reference order (``key``: direction, then member index), candidate, outside pixel,
    base and top.

    Candidate by candidate (``order[start[c]:start[c+1]]`` are c's members): its member pixels
    are stamped in a pixel array, then those off the window border test their eight neighbours
    against the stamp (no search, no per-member temporaries)."""
    stamp = np.full(zf.size, -1, np.int32)  # candidate numbers (a window has < 2³¹)
    m = mq.size
    j = 0
    for c in range(start.size - 1):
        for t in range(start[c], start[c + 1]):
            stamp[mq[order[t]]] = c
        z0 = zpp[c]
        for t in range(start[c], start[c + 1]):
            i = order[t]
            q = mq[i]
            r = q // nx
            col = q - r * nx
            if r == 0 or r == ny - 1 or col == 0 or col == nx - 1:
                continue  # on the window border: floods an edge (bad) pixel anyway
            for d in range(8):
                n = q + offs[d]
                if stamp[n] == c or not zf[n] < z0 + hmax:
                    continue
                base = max(zf[q], zf[n]) - z0
                top = np.inf
                if diag[d, 0] != 0:  # np.minimum: a NaN (hole) neighbour makes top NaN
                    for e in range(2):
                        v = zf[q + diag[d, e]] - z0
                        if not np.isnan(top) and (np.isnan(v) or v < top):
                            top = v
                if not base < top:
                    continue
                if fill:
                    key[j] = d * m + i
                    oc[j] = c
                    on[j] = n
                    ob[j] = base
                    ot[j] = top
                j += 1
    n_out[0] = j


@numba.njit(cache=True, nogil=True)
def _group_kernel(mc, start, order):  # pragma: no cover - numba
    """Counting sort of member indices by candidate: ``order[start[c]:start[c+1]]`` are c's
    members in index order (``np.argsort(mc, kind="stable")`` in 4 B per member, not 8 + the
    sort's temporaries)."""
    for i in range(mc.size):
        start[mc[i] + 1] += 1
    for c in range(start.size - 1):
        start[c + 1] += start[c]
    pos = start[:-1].copy()
    for i in range(mc.size):
        c = mc[i]
        order[pos[c]] = i
        pos[c] += 1


@numba.njit(cache=True, nogil=True)
def _member_sums(mq, mc, zf, zpp, bad_px, heights, bad_h, vol, area):  # pragma: no cover
    """Per member (height dz = z_f − z₀ above its dam site, computed here, not stored): the
    lowest dz of a bad member into ``bad_h[c]``, and (H − dz) and 1 into ``vol[c, j]`` and
    ``area[c, j]`` for every dam height H = ``heights[j]`` above dz — the sums of
    ``np.bincount``, bit for bit, in member order."""
    for i in range(mq.size):
        q = mq[i]
        c = mc[i]
        d = zf[q] - zpp[c]
        if bad_px[q] and d < bad_h[c]:
            bad_h[c] = d
        for j in range(heights.size):
            h = heights[j]
            if d < h:
                vol[c, j] += h - d
                area[c, j] += 1.0


@numba.njit(cache=True, nogil=True)
def _suppress(mq, mc, zf, zpp, ok, hbest, rank, best, lost):  # pragma: no cover - numba
    """Non-maximum suppression at the best heights: ``best[q]`` is the best rank flooding
    pixel q; a candidate that shares a pixel with a better-ranked one is ``lost``."""
    for i in range(mq.size):
        c = mc[i]
        if ok[c] and zf[mq[i]] - zpp[c] < hbest[c] and rank[c] < best[mq[i]]:
            best[mq[i]] = rank[c]
    for i in range(mq.size):
        c = mc[i]
        if ok[c] and zf[mq[i]] - zpp[c] < hbest[c] and best[mq[i]] != rank[c]:
            lost[c] = True


@numba.njit(cache=True, nogil=True)
def _centroids(mq, mc, zf, zpp, ok, hbest, nx, r_off, c_off, n, rsum, csum):  # pragma: no cover
    """Pixel count and row/column sums [px] of each kept candidate at its best height, in member
    order (the sums of ``np.bincount``, bit for bit)."""
    for i in range(mq.size):
        c = mc[i]
        if ok[c] and zf[mq[i]] - zpp[c] < hbest[c]:
            r = mq[i] // nx
            n[c] += 1
            rsum[c] += r + r_off
            csum[c] += mq[i] - r * nx + c_off


def _edges(zf, shape, mq, mc, zpp, hmax, npp):
    """Wall edges of every candidate at its highest dam: (candidate, outside pixel, base, top).

    A wall stands on a 4-neighbour edge from a member to a non-member pixel below the water level
    when the dam height H > base = max(z_f of both) − z₀ (height H − base, one pixel long, as
    the ANU search); a diagonal edge is a leak only while both shared neighbours are dry
    (H ≤ top = min(z_f of them) − z₀). ``top`` is inf for 4-neighbour edges. A member on the
    window border floods an edge (bad) pixel, so heights above it are not allowed anyway and
    its walls are not listed. Ordered by direction (``_D8``), then by member.
    """
    ny, nx = shape
    # each candidate's members: order[start[c]:start[c+1]] (stable: by member index)
    start = np.zeros(npp + 1, np.int64)
    order = np.empty(mc.size, np.int32)
    _group_kernel(np.ascontiguousarray(mc), start, order)
    offs = np.array([dr * nx + dc for dr, dc in _D8], np.int64)
    diag = np.array([(dr * nx, dc) if dr and dc else (0, 0) for dr, dc in _D8], np.int64)
    zf = np.ascontiguousarray(zf, np.float64)
    zpp = np.ascontiguousarray(zpp, np.float64)
    mq = np.ascontiguousarray(mq)
    n_out = np.zeros(1, np.int64)
    args = (zf, nx, ny, mq, order, start, zpp, float(hmax), offs, diag, n_out)
    ei, ef = np.empty(0, np.int64), np.empty(0)
    _edges_kernel(*args, ei, ei, ei, ef, ef, False)
    e = int(n_out[0])
    key, oc, on = (np.empty(e, np.int64) for _ in range(3))
    ob, ot = np.empty(e), np.empty(e)
    _edges_kernel(*args, key, oc, on, ob, ot, True)
    del order
    idx = np.argsort(key, kind="stable")
    del key
    return tuple(a[idx] for a in (oc, on, ob, ot))


def reservoir_candidates(z, exclusion, res: float, params: PumpedStorageParams | None = None):
    """New reservoir candidates on a DEM (eager numpy core of the search).

    Parameters
    ----------
    z : ndarray (rows, cols)
        Elevation [m], NaN for nodata, square pixels of ``res`` m.
    exclusion : ndarray of bool
        True where nothing may be built.
    res : float
        Pixel size [m].
    params : PumpedStorageParams, optional

    Returns
    -------
    (table, member_px, member_cand, member_depth) : DataFrame with one row per kept candidate —
    ``pp`` (pour point flat index), ``level_m`` (dam-site elevation z₀ [m]), per dam height j of
    ``dam_heights_m`` the volume ``v{j}`` [m³] (NaN where an excluded pixel would be flooded or
    walled), flooded pixels ``a{j}`` and wall volume ``w{j}`` [m³], ``best_height_m`` (best
    W/R), ``water_rock`` there, ``n_px``, mean ``row``/``col`` at the best height, ``cand`` —
    and the members at the highest dam: flat pixel index, candidate, height above z₀ [m].

    References
    ----------
    Stocks et al. (2021); Lu et al. (2018); ANU PHES_Searching ``screening.cpp``.
    """
    from sitekit.science.pumped_storage import PumpedStorageParams, hydrology

    p = params or PumpedStorageParams()
    zf, recv, pp = hydrology(z, res, p)
    return _candidates(np.asarray(z), zf, recv.ravel(), pp, exclusion, res, p)


def _candidates(zo, zf2, recv, ppmask, exclusion, res, p, offset=(0, 0)):
    """Candidates of one window from its DEM (read for its shape), filled DEM, local receivers
    and dam sites.

    Mean ``row``/``col`` are in the coordinates of the window origin ``offset`` (rows, cols).
    """
    ny, nx = zo.shape
    zf = np.asarray(zf2, np.float64).ravel()
    heights = np.asarray(p.dam_heights_m, np.float64)
    hmax = float(heights[-1])
    a_px = res * res
    k_max = p.steps(res)[0]
    pp = np.flatnonzero(ppmask)
    npp = pp.size
    zpp = zf[pp]
    mq, mc = _walk(zf, recv, pp, hmax, k_max)
    # the members' heights above their dam sites, dz = z_f − z₀ in [0, hmax), are recomputed
    # in each kernel rather than held (8 B per membership; a 90 m window has ~3.4 per pixel)
    inv = ~np.isfinite(zf2)
    edge = ndimage.binary_dilation(inv, np.ones((3, 3), bool)) | inv
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True
    bad_px = (edge | np.asarray(exclusion, bool)).ravel()
    del edge, inv
    m = heights.size
    vol, area, dam = (np.zeros((npp, m)) for _ in range(3))
    # the highest allowed dam: flooding a bad pixel needs H > its dz, walling one H > base
    bad_h = np.full(npp, np.inf)
    _member_sums(mq, mc, zf, zpp, bad_px, heights, bad_h, vol, area)  # Σ (H − dz)⁺, Σ [dz < H]
    ec, en, eb, et = _edges(zf, (ny, nx), mq, mc, zpp, hmax, npp)
    b = bad_px[en]
    np.minimum.at(bad_h, ec[b], eb[b])
    vol *= a_px
    for j, h in enumerate(heights):
        on = (eb < h) & (h <= et)
        wv = psc.dam_wall_volume_m3(
            h - eb[on], res, p.dam_crest_width_m, p.dam_batter, p.freeboard_m
        )
        dam[:, j] = np.bincount(ec[on], weights=wv, minlength=npp)
    allowed = heights[None, :] <= bad_h[:, None]
    vol[~allowed] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        wr = np.where(dam > 0, vol / dam, np.inf)
    wr[~allowed] = -np.inf
    jbest = np.argmax(wr, axis=1)
    wr_best = wr[np.arange(npp), jbest]
    vmax = np.nanmax(np.where(allowed, vol, -np.inf), axis=1, initial=-np.inf)
    ok = allowed[:, 0] & (vmax >= p.min_volume_m3()) & (wr_best >= p.min_water_rock)
    hbest = heights[jbest]
    # non-maximum suppression at the best heights: drop a candidate overlapping a better one
    cand = np.flatnonzero(ok)
    vbest = vol[np.arange(npp), jbest]
    rank = np.zeros(npp, np.int64)
    rank[cand[np.lexsort((pp[cand], -vbest[cand], -wr_best[cand]))]] = np.arange(cand.size)
    best = np.full(zf.size, npp, np.int64)
    lost = np.zeros(npp, bool)
    _suppress(mq, mc, zf, zpp, ok, hbest, rank, best, lost)
    del best
    ok &= ~lost
    keep = np.flatnonzero(ok)
    n_px = np.zeros(npp, np.int64)
    rsum, csum = np.zeros(npp), np.zeros(npp)
    _centroids(mq, mc, zf, zpp, ok, hbest, nx, int(offset[0]), int(offset[1]), n_px, rsum, csum)
    with np.errstate(invalid="ignore", divide="ignore"):
        rbar = rsum[keep] / n_px[keep]
        cbar = csum[keep] / n_px[keep]
    table = pd.DataFrame(
        {
            "pp": pp[keep], "level_m": zpp[keep],
            **{f"v{j}": vol[keep, j] for j in range(m)},
            **{f"a{j}": area[keep, j] * a_px for j in range(m)},
            **{f"w{j}": dam[keep, j] for j in range(m)},
            "best_height_m": hbest[keep], "water_rock": wr_best[keep], "n_px": n_px[keep],
            "row": rbar, "col": cbar, "cand": keep,
        }
    )  # fmt: skip
    sel = ok[mc]
    mq, mc = mq[sel].astype(np.int64), mc[sel].astype(np.int64)
    return table, mq, mc, zf[mq] - zpp[mc]
