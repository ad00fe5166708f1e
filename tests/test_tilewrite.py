"""Direct tile writing: worker-encoded tiles appended to a GDAL-created GeoTIFF read back exactly."""

from __future__ import annotations

import random

import dask
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from sitekit.errors import OutputError
from sitekit.io.atomic import atomic_path
from sitekit.outputs.tilewrite import TileFormat, TileWriter, aligned, encode_tiles

TRANSFORM = from_origin(500_000.0, 3_300_000.0, 30.0, 30.0)
CRS = "EPSG:32648"


def _blocks(shape: tuple[int, int], step: int) -> list[tuple[int, int]]:
    out = [(r, c) for r in range(0, shape[0], step) for c in range(0, shape[1], step)]
    random.Random(7).shuffle(out)  # out of order, as blocks finish on a cluster
    return out


def _write(path, arr: np.ndarray, fmt: TileFormat, step: int, tags=None) -> None:
    with TileWriter(
        path, fmt, width=arr.shape[1], height=arr.shape[0], crs=CRS, transform=TRANSFORM, tags=tags
    ) as w:
        for r, c in _blocks(arr.shape, step):
            block = arr[r : r + step, c : c + step]
            w.write(r, c, block.shape, encode_tiles(block, fmt))


@pytest.mark.parametrize(
    ("dtype", "compress", "predictor"),
    [
        ("float32", "DEFLATE", 1),
        ("float32", "DEFLATE", 3),
        ("uint8", "LZW", 2),
        ("int16", "NONE", 1),
    ],
)
def test_round_trip_equals_array_and_gdal(tmp_path, dtype, compress, predictor):
    rng = np.random.default_rng(3)
    arr = (rng.random((700, 650)) * 200).astype(dtype)  # edges end inside a tile
    nodata = float("nan") if dtype == "float32" else 255 if dtype == "uint8" else -9999
    if dtype == "float32":
        arr[100:300, 50:400] = np.nan
    fmt = TileFormat(dtype, 128, compress, predictor, nodata)
    _write(tmp_path / "t.tif", arr, fmt, 256, tags={"units": "1", "modelled": "yes"})
    ref = tmp_path / "ref.tif"
    with rasterio.open(
        ref, "w", width=650, height=700, crs=CRS, transform=TRANSFORM, **fmt.creation_options()
    ) as dst:
        dst.write(arr, 1)
    with rasterio.open(tmp_path / "t.tif") as got, rasterio.open(ref) as want:
        back = got.read(1)
        assert np.array_equal(back, arr, equal_nan=True)
        assert np.array_equal(back, want.read(1), equal_nan=True)
        assert got.crs == want.crs and got.transform == want.transform
        assert got.block_shapes == [(128, 128)]
        assert got.compression == want.compression
        structure = got.tags(ns="IMAGE_STRUCTURE")
        assert structure.get("PREDICTOR", "1") == str(predictor)
        assert structure == want.tags(ns="IMAGE_STRUCTURE")
        assert (np.isnan(got.nodata) and np.isnan(nodata)) or got.nodata == nodata
        assert got.tags()["modelled"] == "yes"
        assert got.checksum(1) == want.checksum(1)


def test_unwritten_tile_reads_as_nodata(tmp_path):
    arr = np.ones((256, 256), np.float32)
    fmt = TileFormat("float32", 128, "DEFLATE", 1, float("nan"))
    with TileWriter(
        tmp_path / "s.tif", fmt, width=256, height=256, crs=CRS, transform=TRANSFORM
    ) as w:
        w.write(0, 0, (128, 256), encode_tiles(arr[:128], fmt))  # lower half never written
    with rasterio.open(tmp_path / "s.tif") as src:
        back = src.read(1)
    assert (back[:128] == 1).all() and np.isnan(back[128:]).all()


def test_misaligned_or_wrong_blocks_are_refused(tmp_path):
    fmt = TileFormat("uint8", 128, "DEFLATE", 1, None)
    block = np.zeros((128, 128), np.uint8)
    with TileWriter(
        tmp_path / "m.tif", fmt, width=300, height=300, crs=CRS, transform=TRANSFORM
    ) as w:
        with pytest.raises(OutputError, match="not on the 128 px grid"):
            w.write(64, 0, block.shape, encode_tiles(block, fmt))
        with pytest.raises(OutputError, match="ends inside a tile"):
            w.write(0, 0, (100, 128), encode_tiles(block[:100], fmt))
        with pytest.raises(OutputError, match="tiles for a"):
            w.write(0, 0, (256, 128), encode_tiles(block, fmt))
        with pytest.raises(OutputError, match="outside the 300×300 px raster"):
            w.write(0, 256, (128, 256), encode_tiles(np.zeros((128, 256), np.uint8), fmt))
        with pytest.raises(OutputError, match="outside"):
            w.write(-128, -128, block.shape, encode_tiles(block, fmt))
        w.write(0, 0, block.shape, encode_tiles(block, fmt))
        with pytest.raises(OutputError, match="already written"):
            w.write(0, 0, block.shape, encode_tiles(block, fmt))
        w.write(256, 256, (44, 44), encode_tiles(block[:44, :44], fmt))  # the corner block
    with pytest.raises(OutputError, match="multiple of 16"):
        TileFormat(tile=100).creation_options()


def test_error_midway_leaves_no_output(tmp_path):
    target = tmp_path / "out.tif"
    fmt = TileFormat("float32", 128, "DEFLATE", 1, float("nan"))
    block = np.zeros((128, 128), np.float32)
    geo = dict(width=256, height=256, crs=CRS, transform=TRANSFORM)
    with pytest.raises(RuntimeError), atomic_path(target) as tmp, TileWriter(tmp, fmt, **geo) as w:
        w.write(0, 0, block.shape, encode_tiles(block, fmt))
        raise RuntimeError("worker lost")
    assert not target.exists() and not list(tmp_path.iterdir())


def test_error_midway_removes_the_unindexed_file(tmp_path):
    """Without its tile index the file would read as a valid all-nodata raster."""
    fmt = TileFormat("float32", 128, "DEFLATE", 1, float("nan"))
    geo = dict(width=256, height=256, crs=CRS, transform=TRANSFORM)
    with pytest.raises(RuntimeError), TileWriter(tmp_path / "x.tif", fmt, **geo) as w:
        w.write(0, 0, (128, 128), encode_tiles(np.ones((128, 128), np.float32), fmt))
        raise RuntimeError("worker lost")
    assert not (tmp_path / "x.tif").exists()


def test_single_tile_and_byte_order(tmp_path):
    """One tile: the index values sit inline in the IFD. A big-endian GDAL default on either side
    cannot make the workers' bytes and the file disagree: both are little-endian."""
    arr = np.arange(100 * 90, dtype=np.int16).reshape(100, 90)
    fmt = TileFormat("int16", 128, "DEFLATE", 2, -9999)
    geo = dict(width=90, height=100, crs=CRS, transform=TRANSFORM)
    with rasterio.Env(GDAL_TIFF_ENDIANNESS="BIG"):  # the client's GDAL only
        w = TileWriter(tmp_path / "one.tif", fmt, **geo)
    with w:
        w.write(0, 0, arr.shape, encode_tiles(arr, fmt))
    with open(tmp_path / "one.tif", "rb") as f:
        assert f.read(2) == b"II"
    with rasterio.open(tmp_path / "one.tif") as src:
        assert np.array_equal(src.read(1), arr)


def test_unsafe_cast_is_refused():
    with pytest.raises(ValueError, match="cannot store float64 values as uint8"):
        encode_tiles(np.zeros((16, 16)), TileFormat("uint8", 16, "NONE"))


def test_aligned():
    assert aligned(((512, 512, 100), (1024, 7)), 512)
    assert not aligned(((500, 512), (512,)), 512)
    assert aligned(((300,), (300,)), 512)  # one chunk: its end is the array's end


def test_encoding_on_dask_workers(tmp_path):
    """Blocks encoded in dask tasks (threads) and appended in completion order."""
    import dask.array as da

    arr = np.arange(600 * 520, dtype=np.float32).reshape(600, 520) / 7.0
    lazy = da.from_array(arr, chunks=256)
    fmt = TileFormat("float32", 128, "DEFLATE", 3, float("nan"))
    blocks = lazy.to_delayed()
    encode = dask.delayed(encode_tiles, pure=True)
    keys = [(i, j) for i in range(blocks.shape[0]) for j in range(blocks.shape[1])]
    (tiles,) = dask.compute([encode(blocks[i, j], fmt) for i, j in keys], scheduler="threads")
    row0, col0 = np.cumsum((0, *lazy.chunks[0])), np.cumsum((0, *lazy.chunks[1]))
    with TileWriter(
        tmp_path / "d.tif", fmt, width=520, height=600, crs=CRS, transform=TRANSFORM
    ) as w:
        for (i, j), t in zip(keys[::-1], tiles[::-1], strict=True):
            shape = (int(row0[i + 1] - row0[i]), int(col0[j + 1] - col0[j]))
            w.write(int(row0[i]), int(col0[j]), shape, t)
    with rasterio.open(tmp_path / "d.tif") as src:
        assert np.array_equal(src.read(1), arr)


def test_bigtiff_index(tmp_path):
    """A raster GDAL makes a BigTIFF (> 4 GiB uncompressed) gets a LONG8 tile index."""
    fmt = TileFormat("float32", 512, "DEFLATE", 1, float("nan"))
    block = np.full((1024, 1024), 3.5, np.float32)
    geo = dict(width=40_000, height=40_000, crs=CRS, transform=TRANSFORM)
    with TileWriter(tmp_path / "b.tif", fmt, **geo) as w:
        w.write(1024, 2048, block.shape, encode_tiles(block, fmt))
    with open(tmp_path / "b.tif", "rb") as f:
        assert f.read(4) == b"II+\x00"  # BigTIFF, little-endian
    with rasterio.open(tmp_path / "b.tif") as src:
        x = src.read(1, window=((1000, 2100), (2000, 3100)))
    assert np.isnan(x[:24]).all() and (x[24:1048, 48:1072] == 3.5).all()
