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

import numpy as np
import pandas as pd
from scipy import ndimage

from sitekit.science import pumped_storage_cost as psc
from sitekit.science.hydrology import _D8

if TYPE_CHECKING:
    from sitekit.science.pumped_storage import PumpedStorageParams


# -- reservoir geometry ----------------------------------------------------------------------
def _walk(zf, recv, pp, h, k_max):
    """(member pixel, candidate) pairs: pixels whose flow path meets a pour point within H."""
    cid = np.full(zf.size, -1, np.int64)
    cid[pp] = np.arange(pp.size)
    q = np.flatnonzero(np.isfinite(zf))
    cur, zq = q.copy(), zf[q]
    mq, mc = [], []
    for step in range(k_max + 1):
        c = cid[cur]
        hit = c >= 0
        mq.append(q[hit])
        mc.append(c[hit])
        nxt = recv[cur]
        keep = nxt >= 0
        if step == k_max:
            break
        keep[keep] = (zq[keep] - zf[nxt[keep]]) < h
        q, cur, zq = q[keep], nxt[keep], zq[keep]
        if not q.size:
            break
    return np.concatenate(mq), np.concatenate(mc)


def _edges(zf, shape, mq, mc, zpp, hmax, npp):
    """Wall edges of every candidate at its highest dam: (candidate, outside pixel, base, top).

    A wall stands on a 4-neighbour edge from a member to a non-member pixel below the water level
    when the dam height H > base = max(z_f of both) − z₀ (height H − base, one pixel long, as
    the ANU search); a diagonal edge is a leak only while both shared neighbours are dry
    (H ≤ top = min(z_f of them) − z₀). ``top`` is inf for 4-neighbour edges.
    """
    ny, nx = shape
    keys = np.sort(mq * npp + mc)

    def member(n, c):
        k = n * npp + c
        return keys[np.minimum(np.searchsorted(keys, k), keys.size - 1)] == k

    # a member on the window border floods an edge (bad) pixel: heights above it are not
    # allowed anyway, so its walls do not matter
    r, col = np.divmod(mq, nx)
    inner = (r > 0) & (r < ny - 1) & (col > 0) & (col < nx - 1)
    mq, mc = mq[inner], mc[inner]
    lv = zpp[mc] + hmax
    out_c, out_n, out_b, out_t = [], [], [], []
    for dr, dc in _D8:
        n = mq + dr * nx + dc
        w = np.flatnonzero(zf[n] < lv)
        w = w[~member(n[w], mc[w])]
        z0 = zpp[mc[w]]
        base = np.maximum(zf[mq[w]], zf[n[w]]) - z0
        top = np.full(w.size, np.inf)
        if dr and dc:
            for off in (dr * nx, dc):
                top = np.minimum(top, zf[mq[w] + off] - z0)
        keep = base < top
        out_c.append(mc[w][keep])
        out_n.append(n[w][keep])
        out_b.append(base[keep])
        out_t.append(top[keep])
    return tuple(np.concatenate(a) for a in (out_c, out_n, out_b, out_t))


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
    return _candidates(np.asarray(z, dtype=np.float64), zf, recv.ravel(), pp, exclusion, res, p)


def _candidates(zo, zf2, recv, ppmask, exclusion, res, p, offset=(0, 0)):
    """Candidates of one window from its DEM, filled DEM, local receivers and dam sites.

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
    dz = zf[mq] - zpp[mc]  # height above the dam site on the pit-filled DEM, in [0, hmax)
    inv = ~np.isfinite(zf2)
    edge = ndimage.binary_dilation(inv, np.ones((3, 3), bool)) | inv
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True
    bad_px = (edge | np.asarray(exclusion, bool)).ravel()
    # the highest allowed dam: flooding a bad pixel needs H > its dz, walling one H > base
    bad_h = np.full(npp, np.inf)
    b = bad_px[mq]
    np.minimum.at(bad_h, mc[b], dz[b])
    ec, en, eb, et = _edges(zf, (ny, nx), mq, mc, zpp, hmax, npp)
    b = bad_px[en]
    np.minimum.at(bad_h, ec[b], eb[b])
    m = heights.size
    vol, area, dam = (np.zeros((npp, m)) for _ in range(3))
    for j, h in enumerate(heights):
        vol[:, j] = np.bincount(mc, weights=np.maximum(h - dz, 0.0), minlength=npp) * a_px
        area[:, j] = np.bincount(mc, weights=dz < h, minlength=npp)
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
    sel = ok[mc] & (dz < hbest[mc])
    sq, sc = mq[sel], mc[sel]
    cand = np.flatnonzero(ok)
    vbest = vol[np.arange(npp), jbest]
    rank = np.zeros(npp, np.int64)
    rank[cand[np.lexsort((pp[cand], -vbest[cand], -wr_best[cand]))]] = np.arange(cand.size)
    best = np.full(zf.size, npp, np.int64)
    np.minimum.at(best, sq, rank[sc])
    ok &= np.bincount(sc, weights=best[sq] != rank[sc], minlength=npp) == 0
    keep = np.flatnonzero(ok)
    sel = ok[sc]
    sq, sc = sq[sel], sc[sel]
    n_px = np.bincount(sc, minlength=npp)
    rows, cols = np.divmod(sq, nx)
    with np.errstate(invalid="ignore", divide="ignore"):
        rbar = np.bincount(sc, weights=rows + offset[0], minlength=npp)[keep] / n_px[keep]
        cbar = np.bincount(sc, weights=cols + offset[1], minlength=npp)[keep] / n_px[keep]
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
    return table, mq[sel], mc[sel], dz[sel]
