"""Tiled GeoTIFFs whose tiles are compressed on the Dask workers ("direct tile writing").

The client that writes a GeoTIFF block by block through GDAL also compresses every tile: one
process does all of the output encoding, however many workers computed the blocks. Here each
worker encodes its finished block with GDAL (an in-memory GTiff with the file's compression,
predictor and tile size, so the bytes are exactly what GDAL would store) and returns the
compressed tiles; the client appends them to a GeoTIFF that GDAL created empty
(``SPARSE_OK=TRUE``: georeferencing, nodata and tags written, every tile offset 0) and, at the
end, fills in the ``TileOffsets``/``TileByteCounts`` arrays (TIFF 6.0, section 15: tiles may lie
anywhere in the file, in any order). The client does no pixel work, blocks cross the network
compressed when workers are remote, and the encoding scales with the workers.

Blocks must lie on the tile grid: every chunk edge except the last in each dimension is a
multiple of the tile size (:func:`aligned`).

Used by the benchmark workload only (``workload_sitekit.py --writer workers``); sitekit's own
GeoTIFF writer is :mod:`sitekit.outputs.export`. Needs ``tifffile`` (the ``bench`` extra).
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
