"""Hydrology on a DEM: depression filling, D8 flow routing, accumulation and dam sites.

Arrays in, arrays out (numpy, on a whole DEM: the unchunked search ``find_pairs_numpy`` and the
reference the tiled versions, :mod:`sitekit.science.tiledfill` and
:mod:`sitekit.science.tiledflow`, are tested against).

References
----------
Barnes, R., Lehman, C., Mulla, D. (2014). Priority-flood: An optimal depression-filling and
watershed-labeling algorithm for digital elevation models. Computers & Geosciences 62, 117–127.
Lu, B., Stocks, M., Blakers, A., Anderson, K. (2018). Geographic information system algorithms to
locate prospective sites for pumped hydro energy storage. Applied Energy 222, 300–312.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from scipy import ndimage

from sitekit.science.tiledfill import _NO_SPILL, _flood_tile

_D8 = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


# -- flow routing ----------------------------------------------------------------------------
def _settle_flats(pending, settled, zf, recv, shape) -> np.ndarray:
    """Breadth-first: give each pending pixel a settled equal-height neighbour as receiver.

    Works on the flat indices of ``shape``; returns the pixels left unsettled (closed flats).
    """
    ny, nx = shape
    # padded index space: a one-pixel frame that is never settled nor waiting
    w = nx + 2
    to_pad = (pending // nx + 1) * w + pending % nx + 1
    zp = np.full((ny + 2) * w, np.nan, zf.dtype)  # compared for equality only
    zp.reshape(ny + 2, w)[1:-1, 1:-1] = zf.reshape(shape)
    sp = np.zeros((ny + 2) * w, bool)
    sp.reshape(ny + 2, w)[1:-1, 1:-1] = settled.reshape(shape)
    waiting = np.zeros((ny + 2) * w, bool)
    waiting[to_pad] = True
    offs = [dr * w + dc for dr, dc in _D8]
    # stamps are positions in the next ring (≤ 8 entries per pixel before deduplication)
    stamp = np.full((ny + 2) * w, -1, np.int32 if 8 * (ny + 2) * w < 2**31 else np.int64)
    cand = to_pad
    while cand.size:
        choice = np.full(cand.size, -1, np.int64)
        zc = zp[cand]
        for off in offs:
            n = cand + off
            ok = (choice < 0) & sp[n] & (zp[n] == zc)
            choice[ok] = n[ok]
        got = choice >= 0
        src, dst = cand[got], choice[got]
        recv[(src // w - 1) * nx + src % w - 1] = (dst // w - 1) * nx + dst % w - 1
        sp[src] = True
        waiting[src] = False
        nxt = np.concatenate([src + off for off in offs])  # the next ring, deduplicated
        nxt = nxt[waiting[nxt]]
        stamp[nxt] = np.arange(nxt.size)
        cand = nxt[stamp[nxt] == np.arange(nxt.size)]
    left = np.flatnonzero(waiting)
    settled[:] = sp.reshape(ny + 2, w)[1:-1, 1:-1].ravel()
    return np.sort((left // w - 1) * nx + left % w - 1)


@numba.njit(cache=True, nogil=True)
def _receivers(
    kbest: np.ndarray, offs: np.ndarray, out: np.ndarray
) -> np.ndarray:  # pragma: no cover
    """``out[i] = i + offs[kbest[i]]``, −1 where ``kbest`` < 0 (no int64 per-pixel temporaries)."""
    for i in range(kbest.size):
        k = kbest[i]
        out[i] = i + offs[k] if k >= 0 else -1
    return out


@numba.njit(cache=True, nogil=True)
def _in_degree(recv: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """Number of pixels whose receiver is each pixel (int32)."""
    out = np.zeros(recv.size, np.int32)
    for v in recv:
        if v >= 0:
            out[v] += 1
    return out


def steepest_codes(zp: np.ndarray) -> np.ndarray:
    """D8 direction (int8 index into ``_D8``) of the steepest drop (drop / distance) from each
    interior pixel of ``zp``, an array padded by one pixel with +inf on holes and beyond the
    grid; −1 where no neighbour is lower. Ties go to the first direction in ``_D8`` order."""
    ny, nx = zp.shape[0] - 2, zp.shape[1] - 2
    zz = zp[1:-1, 1:-1]
    best = np.zeros((ny, nx), zz.dtype)
    kbest = np.full((ny, nx), -1, np.int8)
    with np.errstate(invalid="ignore"):
        for k, (dr, dc) in enumerate(_D8):
            drop = zz - zp[1 + dr : 1 + dr + ny, 1 + dc : 1 + dc + nx]
            drop /= math.hypot(dr, dc)
            better = drop > best
            best[better] = drop[better]
            kbest[better] = k
    return kbest


def flow_receivers(z: np.ndarray) -> np.ndarray:
    """D8 receiver (flat index, −1 for sinks and NaN) of every pixel of a square-pixel DEM.

    Steepest descent (drop / distance); flats drain to their nearest outlet (breadth-first, ties
    by neighbour order); a closed flat drains to its first pixel in row-major order.
    """
    ny, nx = z.shape
    valid = np.isfinite(z)
    kbest = steepest_codes(np.pad(np.where(valid, z, np.inf), 1, constant_values=np.inf))
    kbest[~valid] = -1
    offs = np.array([dr * nx + dc for dr, dc in _D8], np.int64)
    itype = np.int32 if z.size < 2**31 else np.int64
    recv = _receivers(kbest.ravel(), offs, np.empty(z.size, itype))
    zf = np.where(valid, z, np.inf).ravel()  # holes never equal a valid height
    pending = np.flatnonzero(valid.ravel() & (recv < 0))
    if pending.size:
        settled = recv >= 0
        pending = _settle_flats(pending, settled, zf, recv, z.shape)
        if pending.size:  # closed flats: one sink each (first pixel), the rest drains to it
            mask = np.zeros(z.size, bool)
            mask[pending] = True
            lab = ndimage.label(mask.reshape(z.shape), structure=np.ones((3, 3)))[0].ravel()
            _, first = np.unique(lab[pending], return_index=True)
            settled[pending[first]] = True
            rest = np.delete(pending, first)
            _settle_flats(rest, settled, zf, recv, z.shape)
    return recv


def flow_accumulation(recv: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Number of pixels draining through each pixel (itself included), topological order."""
    indeg = _in_degree(recv)
    acc = valid.astype(np.float64)
    front = np.flatnonzero((indeg == 0) & valid)
    while front.size:
        dst = recv[front]
        m = dst >= 0
        if not m.any():
            break
        u, inv = np.unique(dst[m], return_inverse=True)
        acc[u] += np.bincount(inv, weights=acc[front[m]])
        indeg[u] -= np.bincount(inv)
        front = u[indeg[u] == 0]
    return acc


# -- depression filling -----------------------------------------------------------------------
def fill_depressions(z: np.ndarray) -> np.ndarray:
    """Depression-filled DEM [m] (``z``'s dtype; NaN holes and the border drain, 8-connected).

    Each pixel is raised to the lowest level at which water could leave it: the minimum over
    all 8-connected paths to the border or to a NaN pixel of the highest elevation on the path.
    This is Soille's fillhole (morphological reconstruction by erosion from the border), computed
    by Priority-Flood, which gives the same surface (bit-identical, tested) in O(N log N), with
    ~5 B/px instead of the reconstruction's ~84 B/px and in half its time (4 Mpx DEM).

    References
    ----------
    Barnes, R., Lehman, C., Mulla, D. (2014). Priority-flood: An optimal depression-filling and
    watershed-labeling algorithm for digital elevation models. Computers & Geosciences 62,
    117–127. https://doi.org/10.1016/j.cageo.2013.04.024
    Soille, P. (2004). Morphological Image Analysis, 2nd ed., Springer, §8.2 (fillhole by
    reconstruction); the ANU search routes flow on a filled DEM too (Lu et al. 2018).
    """
    if not np.isfinite(z).any():
        return z.copy()
    # the whole array as one tile of the tiled fill: its border is the outlet, no spill levels
    return _flood_tile(np.ascontiguousarray(z), False, _NO_SPILL)[0]


def dam_sites(
    z: np.ndarray, contour_interval_m: float, min_catchment_px: int, *, filled: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Filled DEM, D8 receivers and dam-site (pour-point) mask of a whole DEM.

    Global, not chunked (a depression or a flat may span any number of chunks);
    :func:`sitekit.science.tiledflow.dam_sites_tiled` gives the same chunk by chunk.

    Parameters
    ----------
    z : ndarray (rows, cols)
        Elevation [m], NaN for nodata.
    contour_interval_m : float
        Dam sites where the flow crosses a multiple of this [m] (ANU: 10 m).
    min_catchment_px : int
        Catchment that makes a stream [pixels] (ANU: 10 ha).
    filled : bool
        ``z`` is already depression-filled (e.g. by
        :func:`sitekit.science.tiledfill.fill_depressions_tiled`, chunk by chunk): not filled again.

    Returns
    -------
    (filled [m] float32, receivers (int32 below 2³¹ pixels) as flat indices with −1 for none,
    pour-point mask bool), all of ``z``'s shape. Pour points: stream pixels whose flow crosses
    a multiple of ``contour_interval_m`` to the next pixel.

    References
    ----------
    ANU RE100 ``PHES_Searching``, ``src/screening.cpp`` (``find_pour_points``); Lu et al. (2018),
    Applied Energy 222, 300–312.
    """
    z32 = np.asarray(z, dtype=np.float32)
    zf2 = z32 if filled else fill_depressions(z32)
    zf = zf2.ravel()
    valid = np.isfinite(zf)
    recv = flow_receivers(zf2)
    acc = flow_accumulation(recv, valid)
    cross = np.zeros(zf.size, bool)
    ci = contour_interval_m
    step = 1 << 22  # slices bound the temporaries (~20 B per pixel of a slice)
    for i0 in range(0, zf.size, step):
        r, z0 = recv[i0 : i0 + step], zf[i0 : i0 + step]
        has = r >= 0
        cross[i0 : i0 + step][has] = np.floor(z0[has] / ci) * ci > zf[r[has]]
    pp = valid & cross & (acc >= min_catchment_px)
    return zf2, recv.reshape(zf2.shape), pp.reshape(zf2.shape)
