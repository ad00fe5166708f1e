"""Tiled D8 routing, flats, accumulation and dam sites equal the whole-array hydrology."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

from sitekit.science import hydrology as hy
from sitekit.science.tiledflow import (
    HOLE,
    SINK,
    dam_sites_tiled,
    flow_routing_tiled,
    receivers_from_codes,
)


def _global(zf: np.ndarray, ci: float = 10.0, thr: int = 5):
    recv = hy.flow_receivers(zf)
    acc = hy.flow_accumulation(recv, np.isfinite(zf).ravel()).reshape(zf.shape)
    pp = hy.dam_sites(zf, ci, thr, filled=True)[2]
    return recv.reshape(zf.shape), acc, pp


def _tiled(zf: np.ndarray, chunks, ci: float = 10.0, thr: int = 5):
    d = da.from_array(zf, chunks=chunks)
    with dask.config.set(scheduler="sync"):
        code, acc = dask.compute(*flow_routing_tiled(d))
        code2, pp = dask.compute(*dam_sites_tiled(d, ci, thr))
    assert np.array_equal(code, code2)
    return receivers_from_codes(code, (0, 0), zf.shape), acc, pp, code


def _assert_equal(zf: np.ndarray, chunks, ci: float = 10.0, thr: int = 5) -> np.ndarray:
    recv, acc, pp = _global(zf, ci, thr)
    recv2, acc2, pp2, code = _tiled(zf, chunks, ci, thr)
    bad = np.argwhere(recv2 != recv)
    assert bad.size == 0, f"receivers differ at {bad[:5].tolist()}"
    assert np.array_equal(acc2, acc), np.argwhere(acc2 != acc)[:5].tolist()
    assert np.array_equal(pp2, pp)
    return code


@pytest.mark.parametrize("seed", range(24))
def test_random_terraced_dems_equal_the_global_routing(seed: int) -> None:
    """Terraced noise (flats everywhere, many spanning chunks), holes, chunks down to 1 px."""
    rng = np.random.default_rng(seed)
    ny, nx = (int(v) for v in rng.integers(5, 60, 2))
    z = rng.integers(0, 6, (ny, nx)).astype(np.float32) * 5
    if seed % 3 == 0:
        z[rng.random((ny, nx)) < 0.05] = np.nan
    chunks = (int(rng.integers(1, 12)), int(rng.integers(1, 12)))
    _assert_equal(hy.fill_depressions(z), chunks)


def test_a_lake_spanning_many_chunks_drains_to_its_outlet() -> None:
    """A filled lake 5×4 chunks large whose only outlet is at its far right end."""
    y, x = np.mgrid[0:60, 0:70]
    z = (100.0 + 0.5 * y + 0.3 * x).astype(np.float32)
    z[10:50, 5:60] = 50.0  # lake floor, flat
    z[30, 60:] = np.linspace(49, 40, 10)  # the outlet channel to the right border
    zf = hy.fill_depressions(z)
    code = _assert_equal(zf, (10, 12))
    # every lake pixel drains (no sink inside the lake), by the breadth-first rule
    assert (code[10:50, 5:60] >= 0).all()
    recv, acc, _ = _global(zf)
    assert acc[30, 69] >= 40 * 55  # the whole lake passes the outlet


def test_a_closed_flat_over_every_chunk_has_one_sink_at_its_first_pixel() -> None:
    z = np.full((23, 31), 7.0, np.float32)
    code = _assert_equal(z, (5, 4))
    assert np.flatnonzero(code.ravel() == SINK).tolist() == [0]
    _, acc, _ = _global(z)
    assert acc.ravel()[0] == z.size


def test_flats_touching_the_grid_edge_and_holes() -> None:
    rng = np.random.default_rng(7)
    z = np.round(rng.normal(0, 2, (40, 40))).astype(np.float32)
    z[:, :6] = -5.0  # a flat strip along the left edge (its edge pixels are sinks)
    z[15:20, 15:25] = np.nan
    code = _assert_equal(hy.fill_depressions(z), (7, 9))
    assert (code[15:20, 15:25] == HOLE).all()


def test_a_river_that_leaves_a_chunk_and_comes_back() -> None:
    """A U-shaped channel: flow leaves the first chunk, crosses the next and re-enters."""
    z = np.full((12, 12), 100.0, np.float32)
    path = [(1, c) for c in range(1, 10)] + [(r, 9) for r in range(2, 10)]
    path += [(9, c) for c in range(8, -1, -1)]
    for i, (r, c) in enumerate(path):
        z[r, c] = 90.0 - 0.1 * i
    code = _assert_equal(z, (6, 6))
    _, acc, _ = _global(z)
    assert acc[9, 0] >= len(path)
    assert code[1, 5] == 4  # east, along the channel


def test_dam_sites_use_the_receivers_height_across_a_chunk_edge() -> None:
    """A slope crossing a contour exactly at a chunk edge: the pour point needs the halo."""
    y, x = np.mgrid[0:20, 0:20]
    z = (200.0 - 2.0 * x - 0.01 * y).astype(np.float32)  # contours every 5 columns (10 m)
    _assert_equal(z, (20, 5), ci=10.0, thr=2)
    _, _, pp = _global(z, 10.0, 2)
    assert pp.any()


def test_receivers_from_codes_known_answer() -> None:
    code = np.array([[4, 6, SINK], [HOLE, 0, 3]], np.int8)
    got = receivers_from_codes(code, (10, 20), (100, 50))
    base = 10 * 50 + 20
    assert got.tolist() == [[base + 1, base + 51, -1], [-1, base, base + 51]]


def test_graph_grows_linearly_with_the_chunks() -> None:
    """Per chunk a fixed number of tasks (the graph is written out, not culled per call)."""
    sizes = []
    for n in (8, 16):
        d = da.zeros((n * 8, n * 8), chunks=8, dtype=np.float32)
        code, pp = dam_sites_tiled(d, 10.0, 5)
        sizes.append(len(dict(code.__dask_graph__())) / n**2)
    assert sizes[1] == pytest.approx(sizes[0], rel=0.15)
