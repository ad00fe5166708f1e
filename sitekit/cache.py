"""On-disk cache of intermediate layers (slope, yield, CF, distance, constraints).

A layer is keyed by a hash of the grid, the input files' contents and the parameters that made it;
its chunks are stored as ``.npy`` files (one per dask block, written by whichever worker computed
the block, so it works on any Dask cluster that shares the folder). A ``complete`` marker is written
only after a run finished, so a killed run never leaves a half-valid entry. A re-run that changes
only weights or thresholds then reads slope, yield, CF and distances back instead of recomputing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from sitekit.grid import Grid

DEFAULT_DIR = Path(".sitekit-cache")


def digest(*parts: Any) -> str:
    """sha256 (first 20 hex) of JSON-serialised parts."""
    text = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class LayerCache:
    """Chunked ``.npy`` cache of DataArrays on one grid."""

    def __init__(self, root: str | Path, grid: Grid, inputs_key: str) -> None:
        self.root = Path(root)
        self.grid = grid
        self.inputs_key = inputs_key
        self.pending: list[Path] = []
        self.hits: list[str] = []
        self.misses: list[str] = []

    def _dir(self, name: str, params: Any) -> Path:
        return self.root / f"{name}-{digest(self.grid.token, self.inputs_key, name, params)}"

    def wrap(self, name: str, params: Any, layer: xr.DataArray) -> xr.DataArray:
        """Return the cached layer if complete, else ``layer`` with a side effect that saves it."""
        folder = self._dir(name, params)
        chunks = layer.data.chunks
        dtype = layer.dtype
        if (folder / "complete").exists():
            self.hits.append(name)

            def _load(block_info=None) -> np.ndarray:
                (r0, _), (c0, _) = block_info[None]["array-location"]
                return np.load(folder / f"r{r0}_c{c0}.npy")

            data = da.map_blocks(_load, dtype=dtype, chunks=chunks, name=f"cached-{folder.name}")
        else:
            self.misses.append(name)
            if folder.exists():  # an incomplete entry of a killed run
                shutil.rmtree(folder, ignore_errors=True)
            self.pending.append(folder)

            def _save(block: np.ndarray, block_info=None) -> np.ndarray:
                (r0, _), (c0, _) = block_info[None]["array-location"]
                folder.mkdir(parents=True, exist_ok=True)
                target = folder / f"r{r0}_c{c0}.npy"
                tmp = folder / f".r{r0}_c{c0}.{uuid.uuid4().hex}.npy"  # unique per task/thread
                np.save(tmp, block)
                os.replace(tmp, target)
                return block

            data = layer.data.map_blocks(_save, dtype=dtype, name=f"cache-save-{folder.name}")
        out = layer.copy(data=data)
        return out

    def commit(self) -> None:
        """Mark every layer saved during this run as complete (call after a successful run)."""
        for folder in self.pending:
            if folder.is_dir():
                (folder / "complete").write_text("ok\n")
        self.pending.clear()
