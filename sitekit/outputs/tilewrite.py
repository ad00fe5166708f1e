"""GeoTIFF tiles compressed on the Dask workers; the client only assembles the file.

The client that writes a GeoTIFF block by block through GDAL also compresses every tile: one
process does all of the output encoding, however many workers computed the blocks, and a remote
scheduler ships every raw block to it. Here each worker encodes its finished block with GDAL (an
in-memory GTiff with the file's compression, predictor and tile size, so the bytes are exactly
what GDAL would store: :func:`encode_tiles`) and returns the compressed tiles. Two assemblers:

* :class:`CogAssembler` (the product: :func:`sitekit.outputs.export.write_cog`): a
  Cloud-Optimized GeoTIFF laid out as GDAL's COG driver lays it out (ghost area, every IFD and its
  values first, tile index arrays, then the tiles of the smallest overview first and the full
  resolution last, each tile with a 4-byte size leader and its last 4 bytes repeated). The IFDs'
  tags are copied from a small COG that GDAL writes with the same metadata
  (:func:`parse_tiff`); the overviews are computed on the workers by GDAL itself from each
  full-resolution block (:func:`block_overviews`), which equals GDAL's overviews of the whole
  raster when every overview halves the raster exactly (:func:`overview_sizes`).
* :class:`TileWriter` (the benchmark workload's ``--writer workers``): appends tiles to a plain
  tiled GeoTIFF that GDAL created empty (``SPARSE_OK=TRUE``) and at the end fills in the
  ``TileOffsets``/``TileByteCounts`` arrays (TIFF 6.0, section 15: tiles may lie anywhere in the
  file, in any order). Needs ``tifffile``.

Blocks must lie on the tile grid: every chunk edge except the last in each dimension is a
multiple of the tile size (:func:`aligned`).
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sitekit.errors import OutputError

#: TIFF tags 324 TileOffsets and 325 TileByteCounts (TIFF 6.0, section 15)
_TILE_OFFSETS, _TILE_BYTE_COUNTS = 324, 325


@dataclass(frozen=True)
class TileFormat:
    """How every tile of a single-band GeoTIFF is stored; the workers' encoder and the client's
    file must agree on it.

    dtype : NumPy dtype name of the band.
    tile : tile width = height [px] (multiple of 16).
    compress : GDAL ``COMPRESS`` (e.g. ``DEFLATE``, ``LZW``, ``ZSTD``, ``NONE``).
    predictor : GDAL ``PREDICTOR`` (1 none, 2 horizontal, 3 floating point).
    nodata : the band's nodata value (None: none).
    """

    dtype: str = "float32"
    tile: int = 512
    compress: str = "DEFLATE"
    predictor: int = 1
    nodata: float | int | None = None

    def creation_options(self) -> dict[str, Any]:
        """rasterio/GDAL GTiff creation options for this format (one band, pixel interleaved)."""
        if self.tile < 16 or self.tile % 16:
            raise OutputError(f"GeoTIFF tile size must be a multiple of 16 px, got {self.tile}")
        opts: dict[str, Any] = dict(
            driver="GTiff",
            count=1,
            dtype=self.dtype,
            tiled=True,
            blockxsize=self.tile,
            blockysize=self.tile,
            compress=self.compress,
            nodata=self.nodata,
            # fixed, so that GDAL_TIFF_ENDIANNESS on one side cannot make the bytes disagree
            endianness="LITTLE",
        )
        if self.predictor != 1:
            opts["predictor"] = self.predictor
        return opts


def aligned(chunks: tuple[tuple[int, ...], tuple[int, ...]], tile: int) -> bool:
    """True if every (row, column) chunk edge except the array's end is a multiple of ``tile``."""
    return all(all(c % tile == 0 for c in dim[:-1]) for dim in chunks)


def encode_tiles(block: np.ndarray, fmt: TileFormat) -> list[bytes]:
    """The compressed tiles of one 2-D block, row-major, as GDAL's GTiff driver stores them.

    Runs on a worker. Edge tiles of a block narrower than a tile are padded by GDAL as at the
    edge of any GeoTIFF. GDAL encodes on the calling thread (``NUM_THREADS=1``): the worker's
    thread is the unit of parallelism.
    """
    import warnings

    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.io import MemoryFile

    block = np.asarray(block)
    if block.ndim != 2:
        raise ValueError(f"encode_tiles needs a 2-D block, got shape {block.shape}")
    if not np.can_cast(block.dtype, fmt.dtype, casting="same_kind"):
        raise ValueError(f"encode_tiles: cannot store {block.dtype} values as {fmt.dtype}")
    h, w = block.shape
    nty, ntx = math.ceil(h / fmt.tile), math.ceil(w / fmt.tile)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile() as mem:
            opts = fmt.creation_options()
            with mem.open(width=w, height=h, num_threads=1, **opts) as dst:
                dst.write(block.astype(fmt.dtype, copy=False), 1)
            with mem.open() as src:
                spans = [
                    (
                        src.get_tag_item(f"BLOCK_OFFSET_{tx}_{ty}", "TIFF", bidx=1),
                        src.get_tag_item(f"BLOCK_SIZE_{tx}_{ty}", "TIFF", bidx=1),
                    )
                    for ty in range(nty)
                    for tx in range(ntx)
                ]
            buf = mem.getbuffer()
            return [bytes(buf[int(o) : int(o) + int(n)]) if o and n else b"" for o, n in spans]


class TileWriter:
    """Append worker-encoded blocks to a tiled single-band GeoTIFF (client side).

    Parameters
    ----------
    path : the ``.tif`` to create (wrap it in :func:`sitekit.io.atomic.atomic_path` for atomicity).
    fmt : the tile format the workers encoded with.
    width, height : raster size [px].
    crs, transform : georeferencing (anything rasterio accepts).
    tags : GDAL metadata items written with the file.

    Use as a context manager; :meth:`write` each block's :func:`encode_tiles` output with its
    upper-left pixel; leaving the block without an error writes the tile index, leaving it with
    an error deletes the file. A tile never written stays sparse (read back as nodata, or 0
    without one); a tile written twice is an error.
    """

    def __init__(
        self,
        path: str | Path,
        fmt: TileFormat,
        *,
        width: int,
        height: int,
        crs: Any,
        transform: Any,
        tags: dict[str, Any] | None = None,
    ) -> None:
        import rasterio
        import tifffile

        self.path, self.fmt = Path(path), fmt
        self.width, self.height = int(width), int(height)
        self.ntx = math.ceil(self.width / fmt.tile)
        self.nty = math.ceil(self.height / fmt.tile)
        opts = fmt.creation_options()
        with rasterio.open(
            self.path, "w", width=self.width, height=self.height, crs=crs,
            transform=transform, sparse_ok=True, bigtiff="IF_SAFER", **opts,
        ) as dst:  # fmt: skip
            if tags:
                dst.update_tags(**{k: str(v) for k, v in tags.items()})
        with tifffile.TiffFile(self.path) as tif:
            self._bigtiff = tif.is_bigtiff
            self._order = tif.byteorder
            page = tif.pages.first
            # the IFD entry of each tag: libtiff picks the index types itself (SHORT for an
            # all-zero TileByteCounts, LONG beside LONG8 offsets in a BigTIFF)
            self._entry = {}
            for code in (_TILE_OFFSETS, _TILE_BYTE_COUNTS):
                tag = page.tags[code]
                if tag.count != self.ntx * self.nty:
                    raise OutputError(
                        f"{self.path}: GDAL wrote {tag.count} tile entries, expected "
                        f"{self.ntx * self.nty}"
                    )
                self._entry[code] = tag.offset
        self._offsets = np.zeros(self.ntx * self.nty, np.uint64)
        self._counts = np.zeros(self.ntx * self.nty, np.uint64)
        self._written = np.zeros(self.ntx * self.nty, bool)
        self._limit = np.iinfo(np.uint64 if self._bigtiff else np.uint32).max
        self._file = open(self.path, "r+b")  # noqa: SIM115 (closed in close())
        self._file.seek(0, os.SEEK_END)

    def write(self, row0: int, col0: int, shape: tuple[int, int], tiles: list[bytes]) -> None:
        """Append the encoded tiles of the block whose upper-left pixel is (``row0``, ``col0``)
        and whose shape is ``shape`` [px]."""
        t = self.fmt.tile
        h, w = shape
        if row0 % t or col0 % t:
            raise OutputError(f"{self.path}: block at ({row0}, {col0}) is not on the {t} px grid")
        if row0 < 0 or col0 < 0 or row0 + h > self.height or col0 + w > self.width:
            raise OutputError(
                f"{self.path}: block {shape} at ({row0}, {col0}) is outside the "
                f"{self.height}×{self.width} px raster"
            )
        if (h % t and row0 + h != self.height) or (w % t and col0 + w != self.width):
            raise OutputError(f"{self.path}: block {shape} at ({row0}, {col0}) ends inside a tile")
        nty, ntx = math.ceil(h / t), math.ceil(w / t)
        if len(tiles) != nty * ntx:
            raise OutputError(f"{self.path}: {len(tiles)} tiles for a {nty}×{ntx}-tile block")
        ty, tx = np.divmod(np.arange(len(tiles)), ntx)
        index = (row0 // t + ty) * self.ntx + (col0 // t + tx)
        if self._written[index].any():
            raise OutputError(f"{self.path}: the block at ({row0}, {col0}) was already written")
        sizes = np.fromiter((len(b) for b in tiles), np.uint64, len(tiles))
        pos = self._file.tell()
        if pos + int(sizes.sum()) + 16 * self._offsets.size > self._limit:
            raise OutputError(
                f"{self.path}: over 4 GiB of tiles in a classic TIFF; the raster needs a BigTIFF"
            )
        self._file.write(b"".join(tiles))
        starts = pos + np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.uint64)
        self._offsets[index] = np.where(sizes > 0, starts, 0)
        self._counts[index] = sizes
        self._written[index] = True

    def close(self) -> None:
        """Write the tile index into the file and close it."""
        if self._file.closed:
            return
        try:
            # new LONG (LONG8 in a BigTIFF) arrays at the end of the file, and each IFD entry
            # re-pointed at its array (TIFF 6.0 section 2: type, count, value or offset)
            order, big = self._order, self._bigtiff
            kind = np.dtype(order + ("u8" if big else "u4"))
            self._file.seek(0, os.SEEK_END)
            for code, values in ((_TILE_OFFSETS, self._offsets), (_TILE_BYTE_COUNTS, self._counts)):
                data = values.astype(kind).tobytes()
                if len(data) > kind.itemsize:  # not inline
                    if self._file.tell() % 2:
                        self._file.write(b"\0")  # word boundary
                    where = self._file.tell()
                    self._file.write(data)
                    data = np.array(where, kind).tobytes()
                entry = self._entry[code]
                self._file.seek(entry + 2)
                self._file.write(np.array(16 if big else 4, order + "u2").tobytes())
                self._file.seek(entry + (12 if big else 8))
                self._file.write(data)
                self._file.seek(0, os.SEEK_END)
        finally:
            self._file.close()

    def __enter__(self) -> TileWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
            return
        # without its tile index the file would open as a valid, all-nodata raster: remove it
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


# -- Cloud-Optimized GeoTIFF ------------------------------------------------------------------
#: bytes per value of each TIFF field type (TIFF 6.0 section 2; 16 = LONG8 of BigTIFF)
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8}
_SHORT, _LONG = 3, 4
_WIDTH, _LENGTH, _TILE_WIDTH, _TILE_LENGTH = 256, 257, 322, 323


def overview_sizes(width: int, height: int, tile: int) -> list[tuple[int, int]]:
    """(width, height) of the full resolution and of each overview GDAL's COG driver makes: each
    level halves the previous one (rounding up) until both sides fit in one tile."""
    sizes = [(int(width), int(height))]
    while max(sizes[-1]) > tile:
        w, h = sizes[-1]
        sizes.append(((w + 1) // 2, (h + 1) // 2))
    return sizes


def exact_overviews(width: int, height: int, tile: int) -> bool:
    """True when every overview level is an exact halving (both sides divisible by 2^levels):
    then each overview pixel comes from a whole 2×2 (4×4, …) group of full-resolution pixels,
    so overviews computed block by block equal GDAL's overviews of the whole raster."""
    levels = len(overview_sizes(width, height, tile)) - 1
    return width % 2**levels == 0 and height % 2**levels == 0


def block_overviews(
    block: np.ndarray, levels: int, resampling: str, nodata: float | int | None, dtype: str
) -> list[np.ndarray]:
    """The ``levels`` overviews (factors 2, 4, …) of one full-resolution block, computed by GDAL
    as its COG driver computes them (``GTIFFBuildOverviews``: an external overview of a GTiff,
    nodata honoured). Runs on a worker; the block's sides must be divisible by 2^levels."""
    import warnings

    import rasterio
    from rasterio.enums import Resampling
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.io import MemoryFile

    block = np.asarray(block).astype(dtype, copy=False)
    h, w = block.shape
    if h % 2**levels or w % 2**levels:
        raise ValueError(f"block_overviews: a {h}×{w} block cannot be halved {levels} times")
    if levels == 0:
        return []
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        # the MemoryFile's /vsimem/ folder (with the .ovr beside the .tif) goes when it closes
        with MemoryFile() as mem:
            with mem.open(driver="GTiff", width=w, height=h, count=1, dtype=dtype,
                          nodata=nodata) as dst:  # fmt: skip
                dst.write(block, 1)
            with (
                rasterio.Env(TIFF_USE_OVR=True, GDAL_NUM_THREADS=1),
                rasterio.open(mem.name, "r+") as dst,
            ):
                dst.build_overviews(
                    [2**k for k in range(1, levels + 1)], Resampling[resampling.lower()]
                )
            for k in range(levels):
                with rasterio.open(mem.name, overview_level=k) as src:
                    out.append(src.read(1))
    return out


def parse_tiff(raw: bytes) -> tuple[bytes, list[list[tuple[int, int, int, bytes, int]]]]:
    """The ghost area and the IFDs of a little-endian classic TIFF: per IFD a list of entries
    ``(code, type, count, value bytes, file offset of an out-of-line value or -1)``."""
    if raw[:4] != b"II*\0":
        raise OutputError("parse_tiff: not a little-endian classic TIFF")
    first = int.from_bytes(raw[4:8], "little")
    ifds, pos = [], first
    while pos:
        n = int.from_bytes(raw[pos : pos + 2], "little")
        entries = []
        for i in range(n):
            e = raw[pos + 2 + 12 * i : pos + 14 + 12 * i]
            code, kind = int.from_bytes(e[0:2], "little"), int.from_bytes(e[2:4], "little")
            count = int.from_bytes(e[4:8], "little")
            size = _TYPE_SIZE[kind] * count
            if size <= 4:
                entries.append((code, kind, count, e[8 : 8 + size], -1))
            else:
                at = int.from_bytes(e[8:12], "little")
                entries.append((code, kind, count, raw[at : at + size], at))
        ifds.append(entries)
        pos = int.from_bytes(raw[pos + 2 + 12 * n : pos + 6 + 12 * n], "little")
    return raw[8:first], ifds


class CogAssembler:
    """Write a Cloud-Optimized GeoTIFF from tiles compressed elsewhere (client side).

    Parameters
    ----------
    path : the ``.tif`` to create (wrap it in :func:`sitekit.io.atomic.atomic_path`).
    template : a COG that GDAL wrote with the same band type, metadata and compression and at
        least one overview (any size and tile size); its ghost area and tags are copied (sizes,
        tile size and tile index replaced).
    sizes : (width, height) of the full resolution and of each overview (:func:`overview_sizes`).
    tile : tile size [px].

    Tiles go in with :meth:`write` in the file's order: every tile of the smallest overview
    first, row by row, up to the full resolution; :meth:`close` writes the tile index. The file
    is classic TIFF (under 4 GiB).
    """

    def __init__(
        self, path: str | Path, template: bytes, sizes: list[tuple[int, int]], tile: int
    ) -> None:
        ghost, ifds = parse_tiff(template)
        if len(sizes) > 1 and len(ifds) < 2:
            raise OutputError("CogAssembler: the template COG has no overview")
        self.path, self.tile = Path(path), int(tile)
        self.ntiles = [math.ceil(w / tile) * math.ceil(h / tile) for w, h in sizes]
        self._offsets = [np.zeros(n, np.uint32) for n in self.ntiles]
        self._counts = [np.zeros(n, np.uint32) for n in self.ntiles]
        # IFDs: full resolution first, then each overview (GDAL's order); the file's tiles: the
        # smallest overview first
        self._order = [(lvl, 0) for lvl in range(len(sizes) - 1, -1, -1)]
        self._cursor = 0
        out = bytearray(b"II*\0" + (8 + len(ghost)).to_bytes(4, "little") + ghost)
        self._index_at: list[tuple[int, int]] = []  # (offsets entry, counts entry) per level
        arrays: list[tuple[int, int]] = []  # where each IFD's two index entries point
        for lvl, (w, h) in enumerate(sizes):
            entries = []
            for code, kind, count, value, at in ifds[min(lvl, 1)]:
                if code in (_WIDTH, _LENGTH, _TILE_WIDTH, _TILE_LENGTH):
                    v = {_WIDTH: w, _LENGTH: h}.get(code, self.tile)
                    kind = _SHORT if v <= 0xFFFF else _LONG
                    value, count = v.to_bytes(_TYPE_SIZE[kind], "little"), 1
                elif code in (_TILE_OFFSETS, _TILE_BYTE_COUNTS):
                    kind, count, value = _LONG, self.ntiles[lvl], b""
                entries.append((code, kind, count, value, at))
            entries.sort(key=lambda e: e[0])
            if len(out) % 2:
                out += b"\0"
            start = len(out)
            if lvl:  # the previous IFD's next-IFD offset
                out[self._next_at : self._next_at + 4] = start.to_bytes(4, "little")
            out += len(entries).to_bytes(2, "little") + bytes(12 * len(entries) + 4)
            self._next_at = len(out) - 4
            # out-of-line values after the IFD, word-aligned, in the template's order
            placed = {}
            for code, _kind, _count, value, _at in sorted(
                (e for e in entries if len(e[3]) > 4 and e[0] not in (324, 325)),
                key=lambda e: e[4],
            ):
                if len(out) % 2:
                    out += b"\0"
                placed[code] = len(out)
                out += value
            index = [0, 0]
            for i, (code, kind, count, value, _) in enumerate(entries):
                e = start + 2 + 12 * i
                out[e : e + 8] = (
                    code.to_bytes(2, "little") + kind.to_bytes(2, "little")
                ) + count.to_bytes(4, "little")
                if code in (_TILE_OFFSETS, _TILE_BYTE_COUNTS):
                    index[code == _TILE_BYTE_COUNTS] = e + 8
                elif code in placed:
                    out[e + 8 : e + 12] = placed[code].to_bytes(4, "little")
                else:
                    out[e + 8 : e + 8 + len(value)] = value
            arrays.append((index[0], index[1]))
        # the tile index arrays of every IFD after all IFDs (inline when one tile)
        self._arrays = []
        for lvl, (off_entry, cnt_entry) in enumerate(arrays):
            n = self.ntiles[lvl]
            if n == 1:
                self._arrays.append((off_entry, cnt_entry))
                continue
            out[off_entry : off_entry + 4] = len(out).to_bytes(4, "little")
            self._arrays.append((len(out), 0))
            out += bytes(4 * n)
            out[cnt_entry : cnt_entry + 4] = len(out).to_bytes(4, "little")
            self._arrays[-1] = (self._arrays[-1][0], len(out))
            out += bytes(4 * n)
        self._file = open(self.path, "wb")  # noqa: SIM115 (closed in close())
        self._file.write(out)
        self._pos = len(out)
        self._level = len(sizes) - 1
        self._next = 0

    def write(self, level: int, tiles: list[bytes]) -> None:
        """Append the next tiles (row-major) of ``level`` (0 = full resolution); levels go from
        the smallest overview to the full resolution, each complete before the next."""
        if level != self._level:
            raise OutputError(
                f"{self.path}: tiles of level {level} while level {self._level} is due"
            )
        if self._next + len(tiles) > self.ntiles[level]:
            raise OutputError(f"{self.path}: more tiles than level {level} has")
        chunks = []
        for i, data in enumerate(tiles, start=self._next):
            n = len(data)
            if n == 0:
                raise OutputError(f"{self.path}: tile {i} of level {level} is empty")
            if self._pos + n + 8 > 0xFFFFFFFF:
                raise OutputError(f"{self.path}: over 4 GiB; the raster needs a BigTIFF")
            # GDAL's ghost area promises a 4-byte size before and the last 4 bytes after it
            chunks += [n.to_bytes(4, "little"), data, data[-4:]]
            self._offsets[level][i] = self._pos + 4
            self._counts[level][i] = n
            self._pos += n + 8
        self._file.write(b"".join(chunks))
        self._next += len(tiles)
        if self._next == self.ntiles[level] and level > 0:
            self._level, self._next = level - 1, 0

    def close(self) -> None:
        """Write the tile index into the file and close it."""
        if self._file.closed:
            return
        try:
            if self._level != 0 or self._next != self.ntiles[0]:
                raise OutputError(f"{self.path}: closed before every tile was written")
            for lvl, (off_at, cnt_at) in enumerate(self._arrays):
                for where, values in ((off_at, self._offsets[lvl]), (cnt_at, self._counts[lvl])):
                    self._file.seek(where)
                    self._file.write(values.astype("<u4").tobytes())
        finally:
            self._file.close()

    def __enter__(self) -> CogAssembler:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            if exc_type is None:
                self.close()
                return
        except BaseException:
            exc_type = True
            raise
        finally:
            if exc_type is not None:  # a file without its tile index is no raster: remove it
                with contextlib.suppress(OSError):
                    self._file.close()
                with contextlib.suppress(OSError):
                    self.path.unlink()
