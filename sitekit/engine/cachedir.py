"""What a cache folder holds, and pruning it by age or size (``sitekit cache info|prune``).

A folder made by :class:`sitekit.engine.cache.LayerCache` holds four kinds of entry:

* **layers**: ``<name>-<key>/`` folders of compressed blocks (``cache.BLOCK_SUFFIX``) and a ``complete`` marker (derived
  layers, vector burns, combined constraints);
* **tables**: ``<name>-<key>.gpkg`` with its ``.json`` dtype sidecar (the pumped-storage pairs);
* **memos**: one file per entry under a folder named for its kind (``rasters/`` exported
  GeoTIFFs, ``overlays/`` map overlays, ``mcp/`` least-cost searches);
* **temporaries**: hidden files a killed run left (a block or file being written).

Only a folder tagged by sitekit (``CACHEDIR.TAG``, :mod:`sitekit.io.ownership`) is pruned, and in it
only names of these four kinds: a file or folder a user put there is never listed or removed.

Every read of an entry sets its mtime (:func:`sitekit.engine.cache.touch`), so the newest mtime among an
entry's files is when a run last used it. Entries are removed whole, least recently used first.
Nothing used in the last ``keep_recent_s`` seconds is removed, so a prune does not pull an entry
from under a run that is reading it. Keys include a digest of sitekit's code, so an upgrade
leaves the older entries unused: they age out.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sitekit.io.ownership import MEMO_KINDS, require_cache

#: every cached block and file has a sidecar with the SHA-256 of its bytes, checked on each
#: read (:mod:`sitekit.engine.cache`); here because this module imports no dask
SUM_SUFFIX = ".sha256"

_LAYER = re.compile(r"^(?P<name>.+)-[0-9a-f]{20}$")
_TABLE = re.compile(r"^(?P<name>.+)-[0-9a-f]{20}\.(gpkg|json)$")
#: seconds: entries used more recently than this are kept (a run may be reading them)
KEEP_RECENT_S = 600.0


@dataclass(frozen=True)
class Entry:
    """One cache entry: its files or folder, kind, size [bytes] and last use [epoch s]."""

    paths: tuple[Path, ...]
    kind: str
    size: int
    last_used: float


def _tree(path: Path) -> tuple[int, float]:
    """(bytes, newest mtime) of a file or of every file below a folder."""
    if path.is_file():
        st = path.stat()
        return st.st_size, st.st_mtime
    size, newest = 0, path.stat().st_mtime
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(FileNotFoundError):  # a run's temporary, just renamed
                st = (Path(root) / f).stat()
                size += st.st_size
                newest = max(newest, st.st_mtime)
    return size, newest


def _entry(paths: list[Path], kind: str) -> Entry | None:
    size, newest = 0, 0.0
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            s, m = _tree(p)
            size, newest = size + s, max(newest, m)
    return Entry(tuple(paths), kind, size, newest) if newest else None


def entries(root: str | Path) -> list[Entry]:
    """Every entry of the cache folder ``root``, least recently used first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found: list[Entry | None] = []
    tables: dict[str, list[Path]] = {}
    for child in sorted(root.iterdir()):
        if child.is_symlink():  # never followed, never removed
            continue
        if child.name.startswith("."):
            found.append(_entry([child], "temporary"))
        elif child.is_dir() and _LAYER.match(child.name):
            found.append(_entry([child], "layer"))
        elif child.is_dir() and child.name in MEMO_KINDS:  # one entry per file (+ its sum)
            memos: dict[str, list[Path]] = {}
            for f in sorted(child.iterdir()):
                if f.is_symlink():
                    continue
                if f.name.startswith("."):
                    found.append(_entry([f], "temporary"))
                else:
                    memos.setdefault(f.name.removesuffix(SUM_SUFFIX), []).append(f)
            found += [_entry(paths, child.name) for paths in memos.values()]
        elif child.is_file() and _TABLE.match(child.name):
            tables.setdefault(child.with_suffix("").name, []).append(child)
        # anything else (CACHEDIR.TAG, a file a user put here) is not an entry: never removed
    found += [_entry(paths, "table") for paths in tables.values()]
    return sorted((e for e in found if e is not None), key=lambda e: (e.last_used, e.paths))


def prune(
    root: str | Path,
    *,
    older_than_days: float | None = None,
    max_bytes: int | None = None,
    keep_recent_s: float = KEEP_RECENT_S,
    dry_run: bool = False,
    now: float | None = None,
) -> list[Entry]:
    """Remove the entries last used more than ``older_than_days`` ago, then the least recently
    used ones until the folder holds at most ``max_bytes``. Returns the entries removed (or
    that would be, with ``dry_run``). Entries used in the last ``keep_recent_s`` seconds stay."""
    if older_than_days is None and max_bytes is None:
        raise ValueError("give older_than_days, max_bytes or both")
    require_cache(Path(root))  # only a folder sitekit tagged as its cache
    now = time.time() if now is None else now
    listed = entries(root)
    doomed: list[Entry] = []
    kept: list[Entry] = []
    for e in listed:
        old = older_than_days is not None and e.last_used < now - older_than_days * 86400.0
        (doomed if old and e.last_used < now - keep_recent_s else kept).append(e)
    if max_bytes is not None:
        total = sum(e.size for e in kept)
        for e in list(kept):  # least recently used first
            if total <= max_bytes or e.last_used >= now - keep_recent_s:
                break
            kept.remove(e)
            doomed.append(e)
            total -= e.size
    if not dry_run:
        for e in doomed:
            _remove(e)
    return doomed


def _remove(entry: Entry) -> None:
    """Delete an entry (its files, or its folder: see :func:`remove_path`)."""
    for p in entry.paths:
        remove_path(p)


def remove_path(path: Path, why: str = "pruned") -> None:
    """Delete a cache file, or a layer folder renamed first (``.<why>-<uuid>``) so that no run
    sees it half deleted; a path already gone is fine."""
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir():
            gone = path.with_name(f".{why}-{uuid.uuid4().hex}")
            path.rename(gone)
            shutil.rmtree(gone, ignore_errors=True)
        else:
            path.unlink()


def summary(listed: list[Entry]) -> dict[str, tuple[int, int]]:
    """{kind: (entries, bytes)}."""
    out: dict[str, tuple[int, int]] = {}
    for e in listed:
        n, b = out.get(e.kind, (0, 0))
        out[e.kind] = (n + 1, b + e.size)
    return out
