"""The compiled kernels of the pumped-storage geometry (flow-path walk, wall edges, volume curves,
non-maximum suppression, centroids) equal the NumPy formulation they replaced (kept here as the
reference), element for element and in order."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from sitekit.science import pumped_storage_cost as psc
from sitekit.science.hydrology import _D8
from sitekit.science.ps_geometry import _candidates, _edges, _walk
from sitekit.science.pumped_storage import PumpedStorageParams, hydrology
from sitekit.testing import mountain_terrain, small_grid


def _walk_reference(zf, recv, pp, h, k_max):
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


def _edges_reference(zf, shape, mq, mc, zpp, hmax, npp):
    ny, nx = shape
    keys = np.sort(mq * npp + mc)

    def member(n, c):
        k = n * npp + c
        return keys[np.minimum(np.searchsorted(keys, k), keys.size - 1)] == k

    r, col = np.divmod(mq, nx)
    inner = (r > 0) & (r < ny - 1) & (col > 0) & (col < nx - 1)
    mq, mc = mq[inner], mc[inner]
    lv = zpp[mc] + hmax
    out = [[], [], [], []]
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
        for o, v in zip(out, (mc[w], n[w], base, top), strict=True):
            o.append(v[keep])
    return tuple(np.concatenate(a) for a in out)


@pytest.mark.parametrize(
    ("seed", "res", "holes"), [(1, 90.0, False), (2, 100.0, True), (3, 250.0, True)]
)
def test_walk_and_edges_equal_the_numpy_reference(seed, res, holes):
    grid = small_grid((160, 140), res)
    z = mountain_terrain(grid, relief_m=1500.0, wavelength_m=3000.0, seed=seed).values
    if holes:
        z[40:48, 60:75] = np.nan
    p = PumpedStorageParams()
    zf2, recv, ppm = hydrology(z, res, p)
    zf = np.asarray(zf2, np.float64).ravel()
    recv = recv.ravel().astype(np.int64)
    pp = np.flatnonzero(ppm)
    assert pp.size > 20
    k_max = p.steps(res)[0]
    hmax = float(p.dam_heights_m[-1])
    got = _walk(zf, recv, pp, hmax, k_max)
    ref = _walk_reference(zf, recv, pp, hmax, k_max)
    assert got[0].size > 1000
    for a, b in zip(got, ref, strict=True):
        assert np.array_equal(a, b)
    zpp = zf[pp]
    e_got = _edges(zf, zf2.shape, *ref, zpp, hmax, pp.size)
    e_ref = _edges_reference(zf, zf2.shape, *ref, zpp, hmax, pp.size)
    assert e_ref[0].size > 100
    for a, b in zip(e_got, e_ref, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def _candidates_reference(zo, zf2, recv, ppmask, exclusion, res, p, offset=(0, 0)):
    """The NumPy candidates step (members as int64 with their heights held, bincount sums)."""
    ny, nx = zo.shape
    zf = np.asarray(zf2, np.float64).ravel()
    heights = np.asarray(p.dam_heights_m, np.float64)
    hmax, a_px, k_max = float(heights[-1]), res * res, p.steps(res)[0]
    pp = np.flatnonzero(ppmask)
    npp, zpp = pp.size, zf[pp]
    mq, mc = _walk_reference(zf, recv, pp, hmax, k_max)
    dz = zf[mq] - zpp[mc]
    inv = ~np.isfinite(zf2)
    edge = ndimage.binary_dilation(inv, np.ones((3, 3), bool)) | inv
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True
    bad_px = (edge | np.asarray(exclusion, bool)).ravel()
    bad_h = np.full(npp, np.inf)
    b = bad_px[mq]
    np.minimum.at(bad_h, mc[b], dz[b])
    ec, en, eb, et = _edges_reference(zf, (ny, nx), mq, mc, zpp, hmax, npp)
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
    cols_ = {"pp": pp[keep], "level_m": zpp[keep]}
    cols_ |= {f"v{j}": vol[keep, j] for j in range(m)}
    cols_ |= {f"a{j}": area[keep, j] * a_px for j in range(m)}
    cols_ |= {f"w{j}": dam[keep, j] for j in range(m)}
    cols_ |= {"best_height_m": hbest[keep], "water_rock": wr_best[keep], "n_px": n_px[keep]}
    cols_ |= {"row": rbar, "col": cbar, "cand": keep}
    sel = ok[mc]
    return cols_, mq[sel], mc[sel], dz[sel]


@pytest.mark.parametrize(("seed", "res", "offset"), [(4, 90.0, (0, 0)), (5, 100.0, (37, 1200))])
def test_candidates_equal_the_numpy_reference_bit_for_bit(seed, res, offset):
    """Table and members of the candidates step, compiled (int32 members, heights recomputed,
    counting sort, suppression and centroids in kernels) against the NumPy formulation."""
    grid = small_grid((150, 170), res)
    z = mountain_terrain(grid, relief_m=1500.0, wavelength_m=3000.0, seed=seed).values
    z[30:36, 100:110] = np.nan
    excl = np.zeros(z.shape, bool)
    excl[90:120, 20:60] = True
    p = PumpedStorageParams()
    zf2, recv, ppm = hydrology(z, res, p)
    args = (z, zf2, recv.ravel().astype(np.int64), ppm, excl, res, p, offset)
    table, *members = _candidates(*args)
    ref, *ref_members = _candidates_reference(*args)
    assert len(table) > 5 and list(table.columns) == list(ref)
    for k, v in ref.items():
        assert np.array_equal(table[k].to_numpy(), v, equal_nan=True), k
    for a, b in zip(members, ref_members, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
