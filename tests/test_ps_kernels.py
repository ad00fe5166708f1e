"""The compiled walk and wall-edge kernels of the pumped-storage geometry equal the step-by-step
NumPy formulation they replaced (kept here as the reference), element for element and in order."""

from __future__ import annotations

import numpy as np
import pytest

from sitekit.science.hydrology import _D8
from sitekit.science.ps_geometry import _curves, _edges, _walk
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


def test_volume_curves_equal_bincount_bit_for_bit():
    rng = np.random.default_rng(5)
    npp, n = 300, 20000
    mc = rng.integers(0, npp, n)
    dz = rng.random(n) * 160.0
    heights = np.arange(10.0, 151.0, 10.0)
    vol, area = np.zeros((npp, heights.size)), np.zeros((npp, heights.size))
    _curves(mc, dz, heights, vol, area)
    for j, h in enumerate(heights):
        ref_v = np.bincount(mc, weights=np.maximum(h - dz, 0.0), minlength=npp)
        ref_a = np.bincount(mc, weights=dz < h, minlength=npp)
        assert np.array_equal(vol[:, j], ref_v) and np.array_equal(area[:, j], ref_a)
