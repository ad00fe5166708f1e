"""On-disk cache of intermediate layers (slope, yield, CF, distance, vector burns) and outputs.

A layer is keyed by a hash of the grid, the input files' contents and the parameters that made it;
its chunks are stored as compressed block files (:data:`BLOCK_SUFFIX`, one per dask block,
written by whichever worker computed the block, so it works on any Dask cluster that shares the
folder). A ``complete`` marker is written
only after a run finished and only when every block is there, so a killed run never leaves a
half-valid entry. A re-run that changes only weights or thresholds then reads slope, yield, CF,
distances and the rasterised vector layers back instead of recomputing them.

Two more kinds of entry serve such a re-run:

* **exported GeoTIFFs** (:meth:`LayerCache.write_cog`), keyed by a digest of the raster's *content*
  (every block hashed on the worker that holds it), its georeferencing, attributes and the export
  options: a raster the new weights did not change is copied instead of compressed again;
* **tables** (:meth:`LayerCache.load_frames` / :meth:`LayerCache.save_frames`, GeoPackage), e.g.
  the pumped-storage pairs, which depend on the DEM and their own recipe but not on PV/wind weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from sitekit.engine.cachedir import SUM_SUFFIX
from sitekit.errors import SitekitError
from sitekit.grid import Grid
from sitekit.io.provenance import file_sha256
from sitekit.science.blockops import block_digest

DEFAULT_DIR = Path(".sitekit-cache")


@lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 (first 20 hex) of the sitekit package's Python sources: every entry's key includes
    it, so a changed algorithm (a new release, a developer's edit) never reads older results."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:20]


@contextlib.contextmanager
def best_effort(entry: Path) -> Iterator[None]:
    """Write a cache entry inside this block; an ``OSError`` (read-only or full disk) becomes a
    warning and the run goes on without the entry."""
    try:
        yield
    except OSError as exc:
        from sitekit.errors import SitekitWarning

        warnings.warn(
            f"cache: could not write {entry} ({exc.strerror or exc}); the run goes on without it",
            SitekitWarning,
            stacklevel=3,
        )


def touch(*paths: Path) -> None:
    """Mark cache entries as used now (their mtime), for ``sitekit cache prune``'s
    least-recently-used order; a read-only cache is left as it is."""
    for p in paths:
        with contextlib.suppress(OSError):
            os.utime(p)


#: bump when :func:`sitekit.outputs.export.write_cog`'s output for the same array changes
COG_FORMAT = 1


def digest(*parts: Any) -> str:
    """sha256 (first 20 hex) of JSON-serialised parts."""
    text = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def array_digest(data: Any) -> str:
    """Content digest of a (dask) array: each block is hashed where it lives (on the workers,
    for persisted arrays) and only the 16-byte digests travel; equal values, dtype, shape and
    chunking give equal digests."""
    import dask

    if isinstance(data, da.Array):
        return _combine(data, dask.compute(*_block_tasks(data)))
    arr = np.asarray(data)
    h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(block_digest(arr))
    return h.hexdigest()


def _block_tasks(data: da.Array) -> list:
    import dask

    return [dask.delayed(block_digest, pure=True)(b) for b in data.to_delayed().ravel()]


def _combine(data: da.Array, parts: Any) -> str:
    h = hashlib.sha256(f"{data.dtype.str}{data.shape}{data.chunks}".encode())
    for part in parts:
        h.update(part)
    return h.hexdigest()


# ------------------------------------------------------------------------------ integrity


class CacheDamagedError(SitekitError, OSError):
    """A cache entry failed its checksum (or does not load): it must be dropped and recomputed.

    Raised on a worker while it reads a cached block; :func:`sitekit.engine.run.run_job` catches it,
    reports it, drops the entry and runs again without it."""

    def __init__(self, entry: str, detail: str) -> None:
        super().__init__(entry, detail)
        self.entry = entry
        self.detail = detail

    def __str__(self) -> str:
        return f"cache entry {self.entry} is damaged ({self.detail})"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sum_file(path: Path) -> str | None:
    try:
        return Path(str(path) + SUM_SUFFIX).read_text(encoding="ascii").strip()
    except OSError:
        return None


def _file_problem(path: Path, expected: str | None) -> str | None:
    """None when ``path``'s SHA-256 is ``expected``, else what is wrong."""
    if not expected:
        return "no checksum"
    try:
        got = file_sha256(path)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    return None if got == expected else "checksum mismatch"


def damaged(entry: Path, detail: str, also: tuple[Path, ...] = ()) -> None:
    """Report a damaged entry and drop it (with its checksum and ``also``), so it is recomputed."""
    from sitekit.errors import SitekitWarning

    warnings.warn(
        f"cache: {entry} is damaged ({detail}); dropped, recomputing it", SitekitWarning,
        stacklevel=2,
    )  # fmt: skip
    drop(entry, *also)


def drop(*paths: Path) -> None:
    """Remove cache entries (files with their checksum sidecars, or whole layer folders)."""
    from sitekit.engine.cachedir import remove_path

    for p in map(Path, paths):
        with contextlib.suppress(OSError):
            remove_path(p, "damaged")
            if not p.is_dir():
                remove_path(Path(str(p) + SUM_SUFFIX), "damaged")


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` as ``target`` (a new name, not yet there), or copy it where the
    file system cannot link (another device, no link support).

    A raster in the cache and its copy in an output folder are then one file on disk: at 90 m
    the cached GeoTIFFs took 1.6 GB beside the same 1.6 GB of outputs. Nothing sitekit writes
    is changed in place after it is written (outputs are replaced by renaming a new file over
    them), and a cache entry changed through the other name fails its checksum and is dropped.
    """
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def write_with_sum(entry: Path, source: Path) -> None:
    """Put ``source`` in the cache as ``entry`` (:func:`link_or_copy`) with its checksum
    sidecar (sidecar first, entry last: an entry is never visible without its sum)."""
    from sitekit.io.atomic import atomic_path, write_text

    write_text(Path(str(entry) + SUM_SUFFIX), file_sha256(source) + "\n")
    with atomic_path(entry) as tmp:
        link_or_copy(source, tmp)


#: file name suffix of a cached block: an ``.npy`` header, then the array's bytes compressed with
#: Blosc/Zstd (level 1, byte shuffle, as the run's layer store): a float32 layer takes ~2–5× less
#: disk than raw ``.npy``, a mask far less (30 m needs it: ~2.7 GB per raw float32 layer). The
#: format is sitekit's own (the cache is private); the run's layer store is the Zarr one
BLOCK_SUFFIX = ".npy.blosc"
_BLOCK_MAGIC = b"SKB1"


def _codec() -> Any:
    """The layer store's compression (:data:`sitekit.engine.layerstore.COMPRESSION`)."""
    from numcodecs import Blosc

    from sitekit.engine.layerstore import COMPRESSION

    shuffle = {"shuffle": Blosc.SHUFFLE, "bitshuffle": Blosc.BITSHUFFLE}.get(
        COMPRESSION["shuffle"], Blosc.NOSHUFFLE
    )
    return Blosc(cname=COMPRESSION["cname"], clevel=COMPRESSION["clevel"], shuffle=shuffle)


def encode_block(block: np.ndarray) -> bytes:
    """``block`` as bytes: a magic tag, its ``.npy`` header (dtype, shape) and its compressed
    contents (C order)."""
    block = np.ascontiguousarray(block)
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, np.lib.format.header_data_from_array_1_0(block))
    return _BLOCK_MAGIC + head.getvalue() + bytes(_codec().encode(block))


def decode_block(data: bytes) -> np.ndarray:
    """Inverse of :func:`encode_block`; raises ``ValueError`` on anything else."""
    if not data.startswith(_BLOCK_MAGIC):
        raise ValueError("not a sitekit block")
    buf = io.BytesIO(data[len(_BLOCK_MAGIC) :])
    np.lib.format.read_magic(buf)
    shape, fortran, dtype = np.lib.format.read_array_header_1_0(buf)
    if fortran or dtype.hasobject:
        raise ValueError("unexpected block layout")
    payload = memoryview(data)[len(_BLOCK_MAGIC) + buf.tell() :]
    # Blosc's own header: bytes 4–8 the data's size, 12–16 the compressed size (both uint32 LE);
    # decoding does not check a cut buffer against them
    nbytes, cbytes = (int.from_bytes(payload[a : a + 4], "little") for a in (4, 12))
    if len(payload) < 16 or cbytes != len(payload):
        raise ValueError(f"{len(payload)} bytes of compressed data, the header says {cbytes}")
    if nbytes != int(np.prod(shape)) * dtype.itemsize:
        raise ValueError(f"{nbytes} bytes of data for a {dtype}{shape} block")
    out = np.empty(shape, dtype)  # writeable, as np.load gave
    _codec().decode(payload, out=out)
    return out


def save_block(target: Path, block: np.ndarray) -> None:
    """Write one compressed block (:func:`encode_block`) and its SHA-256 sidecar, each
    atomically (runs on a worker)."""
    data = encode_block(block)
    target.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex  # unique per task/thread
    for path, payload in ((Path(str(target) + SUM_SUFFIX), (_sha256(data) + "\n").encode()),
                          (target, data)):  # fmt: skip
        tmp = path.with_name(f".{path.name}.{tag}")
        tmp.write_bytes(payload)
        os.replace(tmp, path)


def load_block(path: Path, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """Read one cached block, checking its SHA-256, shape and dtype (runs on a worker).

    Raises :class:`CacheDamagedError` naming the entry folder on any mismatch."""
    entry = str(path.parent)
    try:
        data = path.read_bytes()
        expected = _sum_file(path)
    except OSError as exc:
        raise CacheDamagedError(entry, f"{path.name} unreadable: {exc.strerror or exc}") from None
    if expected is None or _sha256(data) != expected:
        raise CacheDamagedError(entry, f"{path.name} fails its checksum")
    try:
        block = decode_block(data)
    except (ValueError, RuntimeError) as exc:
        raise CacheDamagedError(entry, f"{path.name} does not decode: {exc}") from None
    if block.shape != tuple(shape) or block.dtype != np.dtype(dtype):
        raise CacheDamagedError(entry, f"{path.name} holds {block.dtype}{block.shape}")
    return block


def _written(block: np.ndarray) -> np.ndarray:
    """A one-element stand-in for a saved block (:meth:`LayerCache.materialise`)."""
    return np.ones((1,) * block.ndim, bool)


class LayerCache:
    """Chunked cache of DataArrays on one grid (one compressed block file per dask block)."""

    def __init__(self, root: str | Path, grid: Grid, inputs_key: str) -> None:
        from sitekit.io.ownership import claim_cache

        self.root = Path(root).resolve()  # workers get absolute paths (a shared folder)
        # an untagged folder of other files is refused; the tag is written at commit()
        claim_cache(self.root, create=False)
        self.grid = grid
        self.inputs_key = inputs_key
        self.pending: list[tuple[Path, int]] = []  # (folder, number of blocks)
        self.hits: list[str] = []
        self.misses: list[str] = []
        self.rasters_copied: list[str] = []  # exported GeoTIFFs copied from the cache
        self.rasters_written: list[str] = []
        self._wrapped: dict[Path, da.Array] = {}  # one graph layer per entry (PV and wind share)
        #: entries whose every block this run wrote (:meth:`materialise`): read back like
        #: complete ones, but marked complete only by :meth:`commit`
        self.ready: set[Path] = set()
        self._digests: dict[str, str] = {}  # array_digest by dask key name (fixed content)

    def _dir(self, name: str, params: Any) -> Path:
        key = digest(code_digest(), self.grid.token, self.inputs_key, name, params)
        return self.root / f"{name}-{key}"

    def wrap(self, name: str, params: Any, layer: xr.DataArray) -> xr.DataArray:
        """Return the cached layer if complete, else ``layer`` with a side effect that saves it."""
        folder = self._dir(name, params)
        if folder in self._wrapped:
            return layer.copy(data=self._wrapped[folder])
        chunks = layer.data.chunks
        dtype = layer.dtype
        if folder in self.ready or (folder / "complete").exists():
            if folder not in self.ready:
                self.hits.append(name)
                touch(folder / "complete")

            def _load(block_info=None) -> np.ndarray:
                (r0, _), (c0, _) = block_info[None]["array-location"]
                return load_block(folder / f"r{r0}_c{c0}{BLOCK_SUFFIX}", block_info[None]["chunk-shape"],
                                  dtype)  # fmt: skip

            data = da.map_blocks(_load, dtype=dtype, chunks=chunks, name=f"cached-{folder.name}")
        else:
            # an incomplete entry (a killed run's, or one another run is writing now) is kept:
            # the same key gives the same blocks, each replaced atomically, so this run adds
            # or rewrites blocks beside the other's and commits when all are there
            if folder not in {f for f, _ in self.pending}:  # a graph rebuilt in the same run
                self.misses.append(name)
                self.pending.append((folder, int(np.prod(layer.data.numblocks))))

            def _save(block: np.ndarray, block_info=None) -> np.ndarray:
                (r0, _), (c0, _) = block_info[None]["array-location"]
                save_block(folder / f"r{r0}_c{c0}{BLOCK_SUFFIX}", block)
                return block

            data = layer.data.map_blocks(_save, dtype=dtype, name=f"cache-save-{folder.name}")
        self._wrapped[folder] = data
        return layer.copy(data=data)

    def saving(self, within: Any = ()) -> dict[Path, da.Array]:
        """The entries this graph saves (misses), as their saving arrays; with ``within`` (dask
        collections) only those the collections' graphs compute."""
        saves = {f: self._wrapped[f] for f, _ in self.pending
                 if f not in self.ready and f in self._wrapped}  # fmt: skip
        if within:
            names = set()
            for c in within:
                names.update(c.__dask_graph__().layers)
            saves = {f: a for f, a in saves.items() if a.name in names}
        return saves

    @staticmethod
    def first(saves: dict[Path, da.Array]) -> dict[Path, da.Array]:
        """The entries of ``saves`` (:meth:`saving`) that no other of them feeds: what can be
        written before the rest (elevation needs the study-area burn, slope the elevation …)."""
        names = {a.name for a in saves.values()}
        return {f: a for f, a in saves.items()
                if not (names - {a.name}) & set(a.__dask_graph__().layers)}  # fmt: skip

    def materialise(self, saves: dict[Path, da.Array], compute: Any) -> None:
        """Write every block of ``saves`` (:meth:`saving`) with ``compute`` (a list of dask
        collections -> their results, e.g. a progress-reporting ``client.compute``), keeping
        none of them in memory, then read those entries back from disk in graphs built after
        this (:attr:`ready`)."""
        compute([a.map_blocks(_written, dtype=bool, chunks=tuple((1,) * len(c) for c in a.chunks))
                 for a in saves.values()])  # fmt: skip
        self.ready.update(saves)
        # every entry's graph is built afresh: one memoised before would recompute the entries
        # now on disk (slope's saving graph read the DEM again instead of the stored elevation)
        self._wrapped.clear()

    def wrap_burn(self, layer: xr.DataArray) -> xr.DataArray:
        """:meth:`wrap` for a :meth:`sitekit.grid.Grid.rasterize` result, as ``burn_<name>``:
        keyed by its dask name, which names the burn's content (the burnt geometries' WKB, the
        burn options and the grid)."""
        return self.wrap(f"burn_{layer.name}", layer.data.name, layer)

    def commit(self) -> None:
        """Mark every layer saved whole during this run as complete (call after a successful
        run). A layer of which only some blocks were computed stays incomplete. The folder is
        tagged as sitekit's cache (``CACHEDIR.TAG``, :mod:`sitekit.io.ownership`)."""
        from sitekit.io.ownership import claim_cache

        if self.root.exists():
            claim_cache(self.root)
        for folder, nblocks in self.pending:
            if (
                folder.is_dir()
                and len(list(folder.glob(f"r*_c*{BLOCK_SUFFIX}"))) == nblocks
                and len(list(folder.glob(f"r*_c*{BLOCK_SUFFIX}{SUM_SUFFIX}"))) == nblocks
            ):
                (folder / "complete").write_text("ok\n")
        self.pending.clear()

    def content_digest(self, data: Any) -> str:
        """:func:`array_digest`, computed once per dask array of this run (a dask key names
        one fixed content)."""
        if not isinstance(data, da.Array):
            return array_digest(data)
        self.prefetch_digests([data])
        return self._digests[data.name]

    def prefetch_digests(self, datas: list[Any]) -> None:
        """Compute the :meth:`content_digest` of several dask arrays in one round trip to the
        cluster (one ``dask.compute`` instead of one per array)."""
        import dask

        todo = {d.name: d for d in datas if isinstance(d, da.Array) and d.name not in self._digests}
        if todo:
            (parts,) = dask.compute({name: _block_tasks(d) for name, d in todo.items()})
            for name, d in todo.items():
                self._digests[name] = _combine(d, parts[name])

    def memo_json(self, kind: str, parts: Any, build: Any) -> Any:
        """``build()``'s JSON-serialisable result, kept under ``kind/`` keyed by ``parts`` (which
        must name everything the result depends on, e.g. a :meth:`content_digest`)."""
        from sitekit.io.atomic import write_text

        entry = self.root / kind / f"{digest(kind, code_digest(), parts)}.json"
        if entry.is_file():
            touch(entry)
            try:
                held = json.loads(entry.read_text(encoding="utf-8"))
                text = json.dumps(held["value"], ensure_ascii=False, sort_keys=True)
                if _sha256(text.encode()) != held["sha256"]:
                    raise ValueError("checksum mismatch")
                return held["value"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                damaged(entry, str(exc))
        value = build()
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
        with best_effort(entry):
            held = {"sha256": _sha256(text.encode()), "value": value}
            write_text(entry, json.dumps(held, ensure_ascii=False))
        return value

    # -- exported rasters ------------------------------------------------------------------
    def write_cog(self, path: str | Path, layer: xr.DataArray, **kwargs: Any) -> bool:
        """:func:`sitekit.outputs.export.write_cog`, or a copy of the same GeoTIFF written by an earlier
        run. The entry is keyed by the layer's content (:func:`array_digest`), CRS, transform,
        attributes and ``kwargs``. Returns True when it was copied."""
        from sitekit.io.atomic import atomic_path
        from sitekit.outputs import export

        transform = tuple(export.raster_transform(layer))
        crs = layer.rio.crs
        key = digest(
            "cog",
            COG_FORMAT,
            code_digest(),
            self.content_digest(layer.data),
            crs.to_wkt() if crs is not None else None,
            transform,
            {k: str(v) for k, v in layer.attrs.items()},
            {k: str(v) for k, v in kwargs.items()},
        )
        entry = self.root / "rasters" / f"{key}.tif"
        name = Path(path).name
        if entry.is_file():
            touch(entry)
            problem = _file_problem(entry, _sum_file(entry))
            if problem is None:
                with atomic_path(path) as tmp:
                    link_or_copy(entry, tmp)
                self.rasters_copied.append(name)
                return True
            damaged(entry, problem)
        export.write_cog(path, layer, **kwargs)
        self.rasters_written.append(name)
        with best_effort(entry):
            write_with_sum(entry, Path(path))
        return False

    # -- tables ----------------------------------------------------------------------------
    def _frames_file(self, name: str, params: Any) -> Path:
        return self._dir(name, params).with_suffix(".gpkg")

    def load_frames(self, name: str, params: Any) -> dict[str, Any] | None:
        """The GeoDataFrames saved by :meth:`save_frames` under the same key, or None."""
        import geopandas as gpd
        import pandas as pd
        import pyogrio

        path = self._frames_file(name, params)
        meta_path = path.with_suffix(".json")
        if not (path.is_file() and meta_path.is_file()):
            self.misses.append(name)
            return None
        touch(path, meta_path)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            problem = _file_problem(path, meta["sha256"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problem = f"unreadable sidecar ({exc})"
        if problem is not None:
            damaged(path, problem, also=(meta_path,))
            self.misses.append(name)
            return None
        frames = {}
        for layer, info in meta["layers"].items():
            if info["empty"]:
                gdf = gpd.GeoDataFrame(
                    {c: pd.Series([], dtype=t) for c, t in info["dtypes"].items()},
                    geometry=gpd.GeoSeries([], crs=info["crs"]),
                )
            else:
                gdf = pyogrio.read_dataframe(path, layer=layer)
                gdf = gdf.astype(info["dtypes"])
                if gdf.geometry.name != info["geometry"]:
                    gdf = gdf.rename_geometry(info["geometry"])
            frames[layer] = gdf[info["columns"]]
        self.hits.append(name)
        return frames

    def save_frames(self, name: str, params: Any, frames: dict[str, Any]) -> None:
        """Save GeoDataFrames (one GeoPackage layer each, dtypes in a JSON sidecar); atomic.
        An unwritable cache folder is a warning, not an error."""
        path = self._frames_file(name, params)
        with best_effort(path):
            self._write_frames(path, frames)

    def _write_frames(self, path: Path, frames: dict[str, Any]) -> None:
        import pyogrio

        from sitekit.io.atomic import atomic_path, write_text

        meta: dict[str, Any] = {"layers": {}}
        with atomic_path(path) as part:
            tmp = part.with_name(part.name + ".gpkg")  # GDAL wants the .gpkg extension
            for layer, gdf in frames.items():
                geom = gdf.geometry.name
                meta["layers"][layer] = {
                    "columns": list(gdf.columns),
                    "geometry": geom,
                    "dtypes": {c: str(t) for c, t in gdf.dtypes.items() if c != geom},
                    "crs": gdf.crs.to_wkt() if gdf.crs is not None else None,
                    "empty": len(gdf) == 0,
                }
                if len(gdf):  # mixed Polygon/MultiPolygon stay as they are
                    pyogrio.write_dataframe(
                        gdf, tmp, layer=layer, driver="GPKG", promote_to_multi=False,
                        geometry_type="Unknown",
                    )  # fmt: skip
            if tmp.exists():
                tmp.replace(part)
            else:  # only empty frames: the sidecar holds all there is
                part.write_bytes(b"")
            meta["sha256"] = file_sha256(part)
        write_text(path.with_suffix(".json"), json.dumps(meta, ensure_ascii=False))
