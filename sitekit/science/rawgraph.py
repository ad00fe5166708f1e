"""Task graphs written out as layers that name the chunks they read.

Passing a dask array into ``dask.delayed`` optimises that array's graph once per call: every
call gets its own fused copy of the upstream tasks, so a chunk read by ten window tasks is
computed ten times, and building the calls costs O(calls × graph). Tiled algorithms here instead
write their tasks as a graph layer whose tasks take chunk keys (``(name, i, j)``) directly, with
the layer's dependencies declared, so each chunk is computed once and shared, and building the
graph is linear in the number of tasks.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
from dask.highlevelgraph import HighLevelGraph


def graph(collections: list[da.Array], new: dict[str, tuple[dict, set[str]]]) -> HighLevelGraph:
    """The graphs of ``collections`` plus ``new`` layers: name → (tasks, names of the layers
    the tasks reference). Tasks are tuples ``(callable, *args)``; non-key arguments that are
    themselves tuples (e.g. an ``Affine``) belong in a :func:`functools.partial`."""
    layers: dict[str, Any] = {}
    deps: dict[str, set[str]] = {}
    for c in collections:
        g = c.__dask_graph__()  # a dask array's graph is a HighLevelGraph
        layers.update(g.layers)
        deps.update(g.dependencies)
    for name, (tasks, on) in new.items():
        layers[name] = tasks
        deps[name] = set(on)
    return HighLevelGraph(layers, deps)


def layer_of(a: Any) -> set[str]:
    """The layer names a collection's own keys live in."""
    return set(a.__dask_layers__())


def blocks_in(a: da.Array, win: tuple[int, int, int, int]) -> list[tuple[tuple, int, int]]:
    """The chunk keys of ``a`` that meet the window (r0, r1, c0, c1), each with the global
    row and column of its first pixel."""
    r0, r1, c0, c1 = win
    rb = np.cumsum((0, *a.chunks[0]))
    cb = np.cumsum((0, *a.chunks[1]))
    out = []
    for i in range(len(a.chunks[0])):
        if rb[i + 1] <= r0 or rb[i] >= r1:
            continue
        for j in range(len(a.chunks[1])):
            if cb[j + 1] <= c0 or cb[j] >= c1:
                continue
            out.append(((a.name, i, j), int(rb[i]), int(cb[j])))
    return out


def assemble(win: tuple[int, int, int, int], origins: list, *blocks: np.ndarray) -> np.ndarray:
    """Task side: the window (r0, r1, c0, c1) cut from its chunks (global first pixels in
    ``origins``); only the window is allocated."""
    r0, r1, c0, c1 = win
    out = None
    for (br, bc), b in zip(origins, blocks, strict=True):
        b = np.asarray(b)
        if out is None:
            out = np.empty((r1 - r0, c1 - c0), b.dtype)
        a0, a1 = max(r0, br), min(r1, br + b.shape[0])
        e0, e1 = max(c0, bc), min(c1, bc + b.shape[1])
        out[a0 - r0 : a1 - r0, e0 - c0 : e1 - c0] = b[a0 - br : a1 - br, e0 - bc : e1 - bc]
    if out is None:
        raise ValueError(f"no chunk meets the window {win}")
    return out


def window_task(a: da.Array, win: tuple[int, int, int, int]) -> tuple:
    """A task (to nest in another task's arguments) that cuts window ``win`` from ``a``."""
    parts = blocks_in(a, win)
    return (assemble, win, [(r, c) for _, r, c in parts], *[k for k, _, _ in parts])
