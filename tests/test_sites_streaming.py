"""Streaming site labelling (:mod:`sitekit.science.labelling`) against the whole-array reference
(:func:`sitekit.science.sites.label_sites`): the same ids in the same order, bit for bit, for sites
that span several strips, touch only diagonally, touch the grid edge or are split on the lattice;
and :func:`~sitekit.science.sites.extract_sites` equal to its whole-array result, table and
outline vertices."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sitekit.science.sites as sites_mod
from sitekit.grid import shapes
from sitekit.science.labelling import StreamLabels
from sitekit.science.sites import label_sites

PA = 0.01  # km² per pixel (100 m)


def _edges(ny: int, rows) -> list[int]:
    """Strip edges: every ``rows`` rows, or the given inner edges."""
    inner = range(rows, ny, rows) if isinstance(rows, int) else rows
    return [0, *sorted(r for r in set(inner) if 0 < r < ny), ny]


def _stream(
    cand: np.ndarray, max_area: float, rows, keep: int = 0
) -> tuple[np.ndarray, int, StreamLabels]:
    """Labels of ``cand`` built strip by strip (strips given back in reverse order)."""
    e = _edges(cand.shape[0], rows)
    sl = StreamLabels(cand.shape, PA, max_area, keep_bytes=keep)
    for r0, r1 in zip(e[:-1], e[1:], strict=True):
        sl.add(cand[r0:r1].copy(), r0)
    n = sl.finish()
    out = np.zeros(cand.shape, np.int32)
    for r0, r1 in reversed(list(zip(e[:-1], e[1:], strict=True))):
        out[r0:r1] = sl.labels(cand[r0:r1].copy(), r0)
    return out, n, sl


def _check(cand: np.ndarray, max_area: float, rows) -> tuple[int, StreamLabels]:
    """Streaming labels, count and per-site sums equal the whole-array ones exactly."""
    want, n = label_sites(cand, PA, max_area)
    got, m, sl = _stream(cand, max_area, rows)
    assert m == n
    np.testing.assert_array_equal(got, want)
    kept, m, kept_sl = _stream(cand, max_area, rows, keep=4 * cand.size)  # pass 1's labels kept
    assert kept_sl.kept is not None and m == n
    np.testing.assert_array_equal(kept, want)
    w = np.random.default_rng(1).random(cand.shape)
    assert np.array_equal(np.bincount(got.ravel(), w.ravel()), np.bincount(want.ravel(), w.ravel()))
    if n:  # first and last row of every site
        rr = np.nonzero(want)[0]
        top, bot = np.full(n + 1, cand.shape[0]), np.full(n + 1, -1)
        np.minimum.at(top, want[want > 0], rr)
        np.maximum.at(bot, want[want > 0], rr)
        assert np.array_equal(sl.top[1:], top[1:]) and np.array_equal(sl.bottom[1:], bot[1:])
    return n, sl


def _spiral(n: int = 41) -> np.ndarray:
    """A one-pixel-wide square spiral (one site that enters every strip several times)."""
    m = np.zeros((n, n), bool)
    r, c, dr, dc, length = n // 2, n // 2, 0, 1, 1
    while True:
        for _ in range(2):
            for _ in range(length):
                if not (0 <= r < n and 0 <= c < n):
                    return m
                m[r, c] = True
                r, c = r + 2 * dr, c + 2 * dc  # every other pixel: gaps between the turns
                if 0 <= r - dr < n and 0 <= c - dc < n:
                    m[r - dr, c - dc] = True
            dr, dc = dc, -dr
        length += 1


@pytest.mark.parametrize("rows", [1, 2, 3, 5, 7, 40])
def test_spiral_over_many_strips(rows) -> None:
    cand = _spiral()
    n, sl = _check(cand, 100.0, rows)
    assert n == 1 and (rows > 5 or sl.total > 5)  # many pieces merged into one site


@pytest.mark.parametrize("rows", [1, 4, 6, 9])
def test_u_joined_only_in_the_last_strip(rows) -> None:
    """Two arms that meet in the last row: their numbering is decided by the last strip."""
    cand = np.zeros((30, 20), bool)
    cand[:, 2] = cand[5:, 15] = True  # the right arm starts lower: two pieces until the end
    cand[-1, 2:16] = True
    cand[3:8, 8:11] = True  # a site between the arms, first pixel after the left arm's
    n, sl = _check(cand, 100.0, rows)
    assert n == 2 and sl.total > 2


@pytest.mark.parametrize("rows", [1, 2, 3])
def test_diagonal_only_contacts(rows) -> None:
    """8-connectivity across strip edges: staircases down-right and down-left, and a
    checkerboard (one site) next to pixels that touch nothing."""
    cand = np.zeros((24, 24), bool)
    i = np.arange(10)
    cand[i, i] = True
    cand[i, 23 - i] = True
    cand[12:20, 2:10] = (np.add.outer(np.arange(8), np.arange(8)) % 2) == 0
    cand[14, 14] = cand[16, 16] = cand[18, 14] = True
    n, sl = _check(cand, 100.0, rows)
    assert n == 6 and sl.total > 6  # 2 staircases, the checkerboard, 3 lone pixels


@pytest.mark.parametrize("rows", [1, 3, 8])
def test_sites_on_the_grid_edges(rows) -> None:
    cand = np.zeros((16, 12), bool)
    cand[0, :] = True  # top row
    cand[:, -1] = True  # right column: the same site
    cand[-1, :5] = True  # bottom row
    cand[5:9, 0] = True  # left column
    n, sl = _check(cand, 100.0, rows)
    assert n == 3


@pytest.mark.parametrize(
    ("rows", "max_area"),
    [(1, 0.36), (5, 0.36), (7, 0.36), ([6, 12, 18], 0.36), (4, 0.04), (3, 0.01), (2, 0.005)],
)
def test_site_larger_than_the_cut_is_split_like_the_whole_array(rows, max_area) -> None:
    """A plateau over several strips (edges on and off the 6-px lattice rows), with a hole and a
    diagonal-only link across a lattice corner; a small site keeps its shape across the lattice."""
    cand = np.zeros((31, 29), bool)
    cand[2:27, 1:25] = True
    cand[10:14, 8:20] = False  # a hole: pieces of one cell that meet only around it
    cand[27, 25] = True  # diagonal to the plateau's corner, across a lattice column and row
    cand[28:30, 5:8] = True  # small, on its own
    n, sl = _check(cand, max_area, rows)
    assert n > 10


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ny=st.integers(1, 48),
    nx=st.integers(1, 48),
    density=st.floats(0.1, 0.9),
    seed=st.integers(0, 2**31 - 1),
    rows=st.one_of(st.integers(1, 50), st.lists(st.integers(1, 47), max_size=8)),
    max_area=st.sampled_from([0.005, 0.04, 0.09, 0.5, 1.44, 1e6]),
)
def test_random_masks_at_any_tiling(ny, nx, density, seed, rows, max_area) -> None:
    cand = np.random.default_rng(seed).random((ny, nx)) < density
    _check(cand, max_area, rows)


def test_strips_must_be_those_of_pass_one() -> None:
    cand = np.ones((10, 10), bool)
    sl = StreamLabels(cand.shape, PA, 100.0)
    with pytest.raises(RuntimeError, match="finish"):
        sl.labels(cand, 0)
    with pytest.raises(ValueError, match="consecutive"):
        sl.add(cand[5:], 5)
    sl.add(cand[:5], 0)
    sl.add(cand[5:], 5)
    sl.finish()
    with pytest.raises(ValueError, match="not a unit"):
        sl.labels(cand[:3], 0)
    with pytest.raises(ValueError, match="differ"):
        sl.labels(np.zeros((5, 10), bool), 0)


# --- extract_sites: streaming against the whole-array path ---------------------------------


class _WholeLabels:
    """The former extract_sites labelling: the whole mask, then :func:`label_sites`."""

    def __init__(self, shape, pa, max_area, keep_bytes=0) -> None:
        self.mask, self.pa, self.max_area = np.zeros(shape, bool), pa, max_area

    def add(self, mask, r0) -> None:
        self.mask[r0 : r0 + mask.shape[0]] = mask

    def finish(self) -> int:
        self.lab, n = label_sites(self.mask, self.pa, self.max_area)
        self.top = self.bottom = None
        return n

    def labels(self, mask, r0):
        return self.lab[r0 : r0 + mask.shape[0]]


def _whole_polygons(strips, wanted, top, bottom, transform):
    """The former ``_polygons``: one polygonize call over the whole label raster."""
    labels = np.concatenate([lab for _, lab in strips])
    parts: dict[int, list] = {}
    mask = np.isin(labels, wanted)
    for geom, value in shapes(labels, mask=mask, transform=transform, connectivity=8):
        parts.setdefault(int(value), []).append(shapely.geometry.shape(geom))
    return {k: shapely.union_all(p) for k, p in parts.items()}


@pytest.mark.parametrize("max_area", [0.5, 0.05])
def test_extract_sites_equals_the_whole_array_result(monkeypatch, max_area) -> None:
    """Tables (exactly: per-site sums, means and majorities) and outlines (the same vertices)
    of the streaming path with 5-row strips, NumPy and dask layers, pass 1's labels kept or
    not, equal the whole-array ones."""
    import dask.array as da
    import pandas as pd
    from test_sites import ECON, _rough

    from sitekit.science.sites import SiteRules, extract_sites

    grid, score, energy, dist, zone, incl = _rough(80, seed=3)
    near = (np.arange(score.size).reshape(score.shape) % 3).astype(np.int32)

    def run(lazy=False):
        f = (lambda a: da.from_array(a, chunks=(11, 30))) if lazy else (lambda a: a)
        return extract_sites(
            grid, score=f(score), inclusion=f(incl), energy_kwh_per_kw=f(energy),
            grid_distance_km=f(dist), connection_distance_km=f(dist * 1.3),
            nearest_point=f(near), point_names=["P0", "P1", "P2"], prefecture_id=f(zone),
            prefecture_names=["A", "B", "C"], county_id=f(zone), county_names=["a", "b", "c"],
            rules=SiteRules(0.35, 0.02, max_area, 40.0, max_sites=30), economics=ECON,
            candidates=True,
        )  # fmt: skip

    with monkeypatch.context() as m:
        m.setattr(sites_mod, "StreamLabels", _WholeLabels)
        m.setattr(sites_mod, "polygons", _whole_polygons)
        m.setattr(sites_mod, "STRIP_ROWS", 10_000)
        want, want_lab, want_all = run()
    assert len(want) > 20 and len(want_all) > len(want)
    monkeypatch.setattr(sites_mod, "STRIP_ROWS", 5)
    for lazy, budget in ((False, 2**20), (True, 2**20), (False, 1), (True, 1)):
        # budget 1: one strip per round trip, and every strip labelled again in passes 2 and 3
        monkeypatch.setattr(sites_mod, "READ_BUDGET_BYTES", budget)
        got, lab, every = run(lazy)
        np.testing.assert_array_equal(lab, want_lab)
        pd.testing.assert_frame_equal(every, want_all, check_exact=True)
        pd.testing.assert_frame_equal(
            got.drop(columns="geometry"), want.drop(columns="geometry"), check_exact=True
        )
        assert list(shapely.to_wkb(got.geometry.values)) == list(
            shapely.to_wkb(want.geometry.values)
        )
    none = extract_sites(
        grid, score=score, inclusion=incl, energy_kwh_per_kw=energy, grid_distance_km=dist,
        connection_distance_km=dist, nearest_point=near, point_names=["P0", "P1", "P2"],
        prefecture_id=zone, prefecture_names=["A", "B", "C"], county_id=zone,
        county_names=["a", "b", "c"], rules=SiteRules(0.35, 0.02, max_area, 40.0),
        economics=ECON, return_labels=False,
    )  # fmt: skip
    assert none[1] is None and len(none[0]) > 20


def test_peak_memory_is_a_strip_not_the_grid() -> None:
    """Traced peak of labelling a 2000 × 1000 mask of patches (30 m pixels, 50 km² sites) in
    100-row strips: a fraction of the whole-array labelling's (int32 labels alone are 8 MB)."""
    rng = np.random.default_rng(0)
    coarse = np.kron(rng.random((126, 64)), np.ones((16, 16)))[:2000, :1000]
    cand = coarse + 0.3 * rng.random((2000, 1000)) > 0.75  # patches with ragged edges

    def stream(cand: np.ndarray, rows: int) -> None:
        sl = StreamLabels(cand.shape, 0.0009, 50.0)
        for r0 in range(0, cand.shape[0], rows):
            sl.add(cand[r0 : r0 + rows], r0)
        sl.finish()
        for r0 in range(0, cand.shape[0], rows):
            sl.labels(cand[r0 : r0 + rows], r0)

    def peak(fn) -> int:
        stream(cand[:8, :8], 4)  # numba kernels loaded before tracing
        label_sites(cand[:8, :8], 0.0009, 50.0)
        tracemalloc.start()
        fn()
        p = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return p

    whole = peak(lambda: label_sites(cand, 0.0009, 50.0))
    streamed = peak(lambda: stream(cand, 100))
    assert whole > 8_000_000 and streamed < whole / 4
