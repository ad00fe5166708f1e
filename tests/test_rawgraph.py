"""Window tasks that name their chunks: each chunk computed once, windows cut exactly."""

from __future__ import annotations

import functools

import dask
import dask.array as da
import numpy as np
from dask.delayed import Delayed

from sitekit.science import rawgraph, tiledfill
from sitekit.science.pumped_storage import PumpedStorageParams, find_pairs
from sitekit.testing import mountain_terrain, small_grid


def test_windows_are_cut_exactly_and_share_their_chunks() -> None:
    calls = []

    def source(b):
        calls.append(b.shape)
        return b

    x = np.arange(130.0).reshape(10, 13)
    y = da.from_array(x, chunks=(4, 5)).map_blocks(source, meta=np.empty((0, 0)))
    wins = [(0, 5, 0, 5), (3, 9, 2, 13), (9, 10, 12, 13), (0, 10, 0, 13)]
    tasks = {("w", t): (functools.partial(np.multiply, 1.0), rawgraph.window_task(y, w))
             for t, w in enumerate(wins)}  # fmt: skip
    tasks["all"] = (list, [("w", t) for t in range(len(wins))])
    g = rawgraph.graph([y], {"w": (tasks, rawgraph.layer_of(y))})
    got = Delayed("all", g, layer="w").compute(scheduler="sync")
    for (r0, r1, c0, c1), a in zip(wins, got, strict=True):
        assert np.array_equal(a, x[r0:r1, c0:c1])
    assert len(calls) == 3 * 3  # every chunk once, although the windows overlap


def test_the_search_fills_each_chunk_once(monkeypatch) -> None:
    """The windows read the filled DEM's chunks; none is filled again per window."""
    n = []
    orig = tiledfill._fill_tile

    def counted(z, spill):
        n.append(1)
        return orig(z, spill)

    monkeypatch.setattr(tiledfill, "_fill_tile", counted)
    grid = small_grid((120, 120), 100.0, chunks=30)
    dem = mountain_terrain(grid, relief_m=1200.0, wavelength_m=2500.0, seed=3)
    lazy = find_pairs(dem, da.zeros(grid.shape, bool, chunks=30), grid, PumpedStorageParams())
    with dask.config.set(scheduler="sync"):
        lazy.compute()
    assert len(n) == 16  # 4 x 4 chunks, each filled once
