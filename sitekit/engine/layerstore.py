"""The run's layer store: every derived layer is computed once into a compressed Zarr (v3) store
on disk and read back lazily, block by block, by every later step (issue 27).

Worker memory is then bounded by the blocks in flight, not by the study area (``client.persist``
kept every layer, ~100–120 B/px, on the workers until the run ended). The store is a standard
format: ``xarray.open_zarr(path)`` or GDAL's Zarr driver (``gdalinfo ZARR:"…/layers.zarr":/slope``)
read it while the run goes on.

The store lives in the run's staging folder (sitekit's own, :mod:`sitekit.engine.staging`) and is
removed when the run ends, however it ends, before the staging folder becomes the output folder.
A run on an external ``--scheduler`` keeps its layers in the cluster's memory instead (its
workers may not see the client's disk).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

#: folder name of the store inside the staging folder
STORE_NAME = "layers.zarr"
#: the run's private layer cache beside it (a run without ``--cache-dir`` that stores its layers
#: still writes its shared intermediates to disk first: :func:`sitekit.engine.run._intermediates`)
SCRATCH_CACHE = "intermediates.cache"
#: Blosc/Zstd level 1 with byte shuffle: fast (compressing costs less than the write it saves)
COMPRESSION = {"cname": "zstd", "clevel": 1, "shuffle": "shuffle"}


#: grids of at least this many pixels [px] go through the store. Below it the persisted layers fit
#: in worker memory (~100 B/px: ≤ 4 GB) and the store's write and read back cost more than they
#: save: the 250 m demo (9.7 Mpx) took 134.7 s with the store against 119.8 s without (+12 %),
#: its peak over all processes 3.76 against 4.41 GiB (2 cores, one run each, 2026-12-06).
MIN_PX = 40_000_000


def worth_storing(grid_px: int) -> bool:
    """Whether a grid of ``grid_px`` pixels computes its layers into the store (:data:`MIN_PX`)."""
    return grid_px >= MIN_PX


@contextlib.contextmanager
def scratch_store(stage: Path, enabled: bool = True) -> Iterator[Path | None]:
    """Yield ``stage/layers.zarr`` (None when not ``enabled``) and remove it, and the private
    cache beside it (:data:`SCRATCH_CACHE`), on the way out.

    ``stage`` must be a folder sitekit owns (the run's staging folder): the store is never
    written into a user's folder."""
    if not enabled:
        yield None
        return
    path = Path(stage) / STORE_NAME
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(Path(stage) / SCRATCH_CACHE, ignore_errors=True)


def _regular(chunks: tuple[tuple[int, ...], ...]) -> bool:
    """True when every axis has equal blocks but a smaller last one (what Zarr stores)."""
    return all(len(c) <= 1 or (len(set(c[:-1])) == 1 and c[-1] <= c[0]) for c in chunks)


def _json_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """``attrs`` as JSON values (anything else as its ``str``)."""
    return json.loads(json.dumps(attrs, default=str, allow_nan=False, ensure_ascii=False,
                                 skipkeys=True)) if attrs else {}  # fmt: skip


def write(
    arrays: dict[str, Any],
    store: Path,
    attrs: dict[str, dict[str, Any]] | None = None,
    common: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Lazy writes (``da.to_zarr(compute=False)``: a dask array of store tasks by name) of each
    named dask array into ``store/<name>``, its Zarr chunks its dask blocks. Compute them
    together (in one call, or band by band with :func:`bands`), so shared intermediates are
    computed once. ``attrs[name]`` and ``common`` become each array's
    Zarr attributes (``common`` e.g. the grid's CRS as GDAL's ``_CRS``)."""
    import dask.array as da
    import zarr
    from zarr.codecs import BloscCodec

    root = zarr.open_group(str(store), mode="a", zarr_format=3)
    del root  # the group's zarr.json: xarray and GDAL open the store as one dataset
    writes = {}
    for name, arr in arrays.items():
        data = arr if _regular(arr.chunks) else arr.rechunk(tuple(map(max, arr.chunks)))
        meta = {**_json_attrs((attrs or {}).get(name, {})), **_json_attrs(common or {})}
        writes[name] = da.to_zarr(
            data,
            str(store),
            component=name,
            compute=False,
            compressors=BloscCodec(**COMPRESSION),
            attributes=meta,
            dimension_names=("y", "x")[-data.ndim :] if data.ndim <= 2 else None,
        )
    return writes


#: pixels of each band of rows the layers are written in (:func:`bands`): ~64 Mpx, two block
#: rows at 30 m over the study area
BAND_PX = 1 << 26


def _done(_block: Any, ndim: int) -> np.ndarray:
    """One value per written block (a store task may return None): what a band's compute
    gathers, nothing of the layer."""
    return np.zeros((1,) * ndim, bool)


def bands(writes: dict[str, Any], band_px: int = BAND_PX) -> list[tuple[int, int, list[Any]]]:
    """The lazy writes of :func:`write` split into bands of whole block rows:
    ``(first row, end row, collections)``, each collection computing the blocks of one layer
    whose first row lies in the band (so every block is written once).

    Computed band after band, no block waits in memory for a band dask schedules later: in one
    graph of every layer's write the 120 m run held ~1 GB of whole layers (the cached slope,
    its normalised criterion, masks) for writes waiting on others, ~24 B/px: 13.9 GiB at 30 m.
    Layers sharing a computed step still compute it once per band. ``band_px``: pixels per
    band (at least one block row)."""
    two_d = {k: w for k, w in writes.items() if w.ndim == 2}
    if not two_d:
        return [(0, 0, list(writes.values()))] if writes else []
    ny = max(w.shape[0] for w in two_d.values())
    nx = max(w.shape[1] for w in two_d.values())
    step = max(max(w.chunks[0][0] for w in two_d.values()), band_px // max(nx, 1))
    out = []
    for r0 in range(0, ny, step):
        r1 = min(ny, r0 + step)
        part = [] if r0 else [w for w in writes.values() if w.ndim != 2]
        for w in two_d.values():
            starts = np.cumsum((0, *w.chunks[0]))[:-1]
            rows = np.flatnonzero((starts >= r0) & (starts < r1))
            if rows.size:
                band = w.blocks[int(rows[0]) : int(rows[-1]) + 1]
                part.append(band.map_blocks(_done, ndim=2, dtype=bool,
                                            chunks=tuple((1,) * len(c) for c in band.chunks)))  # fmt: skip
        out.append((r0, r1, part))
    return out


def read(store: Path, like: dict[str, Any]) -> dict[str, Any]:
    """Each array of ``store`` named in ``like``, as a lazy dask array with the blocks of
    ``like[name]`` (read from disk block by block when computed)."""
    import dask.array as da

    return {
        name: da.from_zarr(str(store), component=name, chunks=arr.chunks)
        for name, arr in like.items()
    }


class WindowReader:
    """One window of an array of the store, read on a worker (picklable: the store's path).

    ``reader(name, (r0, r1, c0, c1))`` → the numpy array of rows r0:r1, columns c0:c1. A task
    that reads its own window this way holds no chunk between tasks: the pumped-storage search
    windows, each reading 3 × 3 chunks of five arrays, had dask read shared chunks far ahead of
    the windows that needed them (at 30 m the search held ~5 GiB of chunks at its peak)."""

    def __init__(self, store: Path) -> None:
        self.store = str(store)

    def __call__(self, name: str, win: tuple[int, int, int, int]) -> np.ndarray:
        import zarr

        r0, r1, c0, c1 = win
        return zarr.open_array(self.store, path=name, mode="r")[r0:r1, c0:c1]


class Stage:
    """A builder's ``stage(arrays, label)`` (:func:`sitekit.engine.cluster.persist`): computes
    the named dask arrays into the store now (``write_now(collections, label)``) and returns
    them read back lazily; :attr:`window_reader` reads windows of them on the workers."""

    def __init__(self, store: Path, write_now: Any, common: dict[str, Any] | None = None) -> None:
        self.store, self._write_now, self._common = store, write_now, common

    def __call__(self, parts: dict[str, Any], what: str) -> dict[str, Any]:
        self._write_now(list(write(parts, self.store, None, self._common).values()), what)
        return read(self.store, parts)

    @property
    def window_reader(self) -> WindowReader:
        return WindowReader(self.store)


def size_bytes(store: Path) -> int:
    """Bytes the store's files take (0 when it is not there)."""
    p = Path(store)
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.exists() else 0
