"""The on-disk store of whole least-cost (MCP) searches: ``<cache_dir>/mcp/<digest>.npz``.

:func:`sitekit.science.proximity.least_cost_paths` searches from the connection targets over the
whole grid when given a store, and a later call on the same cost surface and targets (a re-run
with other sites or weights) only traces paths. The entry's name is the digest of the sitekit
sources (:func:`sitekit.engine.cache.code_digest`), the content of the cost and target rasters
and the pixel size [m]; it holds ``cum`` (cumulative cost [m]), ``traceback`` and ``offsets``.
Writes are atomic and best effort; a damaged entry is dropped and searched again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sitekit.engine.cache import array_digest, best_effort, code_digest, damaged, digest, touch
from sitekit.io.atomic import atomic_path

__all__ = ["McpStore", "mcp_store"]


class McpStore:
    """A :class:`sitekit.science.proximity.SearchStore` in ``cache_dir/mcp/``."""

    def __init__(self, cache_dir: str | Path) -> None:
        self.cache_dir = Path(cache_dir)
        self._last: tuple[tuple, Path] | None = None  # the key a get() just hashed, for put()

    def entry(self, key_parts: tuple) -> Path:
        """The file of ``key_parts`` = (cost, labels, res_m); hashed once per get/put pair."""
        if self._last is not None and self._last[0] is key_parts:
            return self._last[1]
        c_np, lab_np, res_m = key_parts
        entry = self.cache_dir / "mcp" / (
            digest("mcp", code_digest(), array_digest(c_np), array_digest(lab_np), res_m) + ".npz"
        )  # fmt: skip
        self._last = (key_parts, entry)
        return entry

    def get(self, key_parts: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(cum, traceback, offsets)`` saved under ``key_parts``, or None (none, or damaged:
        then dropped)."""
        entry = self.entry(key_parts)
        if not entry.is_file():
            return None
        touch(entry)
        try:  # a .npz is a zip: every member's CRC-32 is checked as it is read
            with np.load(entry) as z:
                out = z["cum"], z["traceback"], z["offsets"]
        except Exception as exc:  # noqa: BLE001 - any damage: drop it and recompute
            damaged(entry, f"{type(exc).__name__}: {exc}")
            return None
        self._last = None
        return out

    def put(self, key_parts: tuple, arrays: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """Save ``(cum, traceback, offsets)`` atomically; a read-only or full disk only warns."""
        entry = self.entry(key_parts)
        self._last = None
        cum, tb, offsets = arrays
        with best_effort(entry), atomic_path(entry) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, cum=cum, traceback=tb, offsets=offsets)


def mcp_store(cache_dir: str | Path | None) -> McpStore | None:
    """The store in ``cache_dir`` (a run's layer cache folder), or None without one."""
    return None if cache_dir is None else McpStore(cache_dir)
