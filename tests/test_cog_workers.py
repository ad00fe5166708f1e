"""COGs written from the workers (issue 27, item 4): the workers compress every tile and compute
the overviews from the full-resolution blocks; the client only lays out the file. The result must
equal what GDAL's COG driver makes from the same array (the ``client`` writer): same bytes, so the
same pixels, overviews, tags, compression and layout."""

from __future__ import annotations

import dask
import dask.array as darr
import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr
from rasterio.transform import from_origin

from sitekit.errors import OutputError
from sitekit.outputs.export import write_cog
from sitekit.outputs.tilewrite import CogAssembler, overview_sizes, parse_tiff

CRS = "EPSG:32648"


def _layer(values: np.ndarray, chunks: int | tuple, **attrs: str) -> xr.DataArray:
    arr = xr.DataArray(darr.from_array(values, chunks=chunks), dims=("y", "x"), name="r")
    arr.attrs.update(attrs)
    return arr.rio.write_crs(CRS).rio.write_transform(from_origin(500_000, 3_300_000, 250, 250))


def _float(shape=(1040, 784)) -> np.ndarray:
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.normal(size=shape), axis=1).astype(np.float32)  # compressible, smooth
    x[rng.random(shape) < 0.1] = np.nan
    x[:300, :200] = np.nan  # whole tiles and overview pixels at nodata
    return x


def _classes(shape=(1040, 784)) -> np.ndarray:
    rng = np.random.default_rng(2)
    x = (rng.random(shape) < 0.4).astype(np.uint8)
    x[:, :60] = 255  # outside the study area
    return x


def _flags(shape=(1040, 784)) -> np.ndarray:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 128, shape).astype(np.uint32)
    x[rng.random(shape) < 0.2] = 0xFFFFFFFF
    return x


def _pair(tmp_path, layer: xr.DataArray, **kw):
    w = write_cog(tmp_path / "workers.tif", layer, writer="workers", **kw)
    c = write_cog(tmp_path / "client.tif", layer, writer="client", **kw)
    return w, c


def _levels(path) -> list[np.ndarray]:
    with rasterio.open(path) as src:
        n = len(src.overviews(1))
        out = [src.read(1)]
    for k in range(n):
        with rasterio.open(path, overview_level=k) as src:
            out.append(src.read(1))
    return out


CASES = {
    # name: (values, chunks, write_cog kwargs, attrs); 1040 × 784 px is no multiple of 128 px
    "float32_nan": (_float, 256, {}, {"units": "m", "long_name": "elevation"}),
    "uint8_classes": (
        _classes,
        512,
        {"nodata": 255},
        {"_colormap": "0:#bdbdbd,1:#1a9850,255:#00000000", "long_name": "eligible"},
    ),
    "uint32_flags": (
        _flags,
        (384, 256),  # not on the tile grid: rechunked on the workers
        {"nodata": 0xFFFFFFFF},
        {"flag_masks": "1,2,4", "flag_meanings": "a b c", "units": "1"},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_file_as_gdal(tmp_path, case):
    make, chunks, kw, attrs = CASES[case]
    values = make()
    w, c = _pair(tmp_path, _layer(values, chunks, **attrs), blocksize=128, **kw)
    got, want = _levels(w), _levels(c)
    assert [a.shape for a in got] == [(1040, 784), (520, 392), (260, 196), (130, 98), (65, 49)]
    assert np.array_equal(got[0], values, equal_nan=True)
    # the overviews computed block by block on the workers equal GDAL's of the whole raster
    for a, b in zip(got, want, strict=True):
        assert np.array_equal(a, b, equal_nan=True)
    with rasterio.open(w) as x, rasterio.open(c) as y:
        assert x.profile == y.profile or (np.isnan(x.nodata) and {**x.profile, "nodata": 0} == {
            **y.profile, "nodata": 0})  # fmt: skip
        assert x.tags() == y.tags() and x.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert x.descriptions == y.descriptions and x.units == y.units
        if case == "uint8_classes":
            assert x.colormap(1) == y.colormap(1)
    assert w.read_bytes() == c.read_bytes()


def test_full_size_tiles_and_default_blocksize(tmp_path):
    values = _float((2048, 1536))
    w, c = _pair(tmp_path, _layer(values, 1024, units="1"))
    with rasterio.open(w) as src:
        assert src.block_shapes == [(512, 512)] and src.overviews(1) == [2, 4]
    assert w.read_bytes() == c.read_bytes()


def test_smaller_than_one_tile(tmp_path):
    w, c = _pair(tmp_path, _layer(_float((100, 90)), 64), blocksize=128)
    with rasterio.open(w) as src:
        assert src.overviews(1) == [] and np.array_equal(
            src.read(1), _float((100, 90)), equal_nan=True
        )
    assert w.read_bytes() == c.read_bytes()


def test_valid_cog_layout(tmp_path):
    """IFDs and their values first; the tiles of the smallest overview first, each level in
    row-major order, the full resolution last; GDAL's 4-byte leader and trailer around each."""
    layer = _layer(_flags(), 256, units="1")
    path = write_cog(tmp_path / "f.tif", layer, writer="workers", blocksize=128, nodata=0xFFFFFFFF)
    raw = path.read_bytes()
    ghost, ifds = parse_tiff(raw)
    assert (
        ghost.startswith(b"GDAL_STRUCTURAL_METADATA_SIZE=") and b"LAYOUT=IFDS_BEFORE_DATA" in ghost
    )
    sizes = overview_sizes(784, 1040, 128)
    assert len(ifds) == len(sizes)
    spans = []
    for entries, (w, h) in zip(ifds, sizes, strict=True):
        tags = {code: (kind, count, value) for code, kind, count, value, _ in entries}
        assert int.from_bytes(tags[256][2], "little") == w
        assert int.from_bytes(tags[257][2], "little") == h
        offsets = np.frombuffer(tags[324][2], "<u4").astype(np.int64)
        counts = np.frombuffer(tags[325][2], "<u4").astype(np.int64)
        assert len(offsets) == -(-w // 128) * -(-h // 128)
        assert (np.diff(offsets) > 0).all()  # row-major
        for o, n in zip(offsets, counts, strict=True):
            assert int.from_bytes(raw[o - 4 : o], "little") == n  # leader: the size
            assert raw[o + n : o + n + 4] == raw[o + n - 4 : o + n]  # trailer: last 4 bytes
        spans.append((offsets.min(), (offsets + counts).max()))
        header_end = max(at + len(v) for *_, v, at in entries if at >= 0)
        assert header_end < offsets.min()
    # each overview's tiles lie before the next larger level's
    for small, large in zip(spans[:0:-1], spans[-2::-1], strict=True):
        assert small[1] < large[0]
    with rasterio.open(path) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"


def test_client_gets_compressed_tiles_only(tmp_path, monkeypatch):
    """What the workers hand back to the client is tile bytes, never a pixel array."""
    seen: list = []
    real = dask.compute

    def spy(*args, **kw):
        out = real(*args, **kw)
        seen.append(out)
        return out

    monkeypatch.setattr(dask, "compute", spy)
    write_cog(tmp_path / "x.tif", _layer(_float(), 256), writer="workers", blocksize=128)
    leaves: list = []

    def walk(x):
        if isinstance(x, list | tuple):
            for v in x:
                walk(v)
        else:
            leaves.append(x)

    walk(seen)
    assert seen and leaves and all(isinstance(v, bytes) for v in leaves)


def test_on_a_distributed_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.Client(
        processes=False, n_workers=2, threads_per_worker=1, dashboard_address=None
    ):
        layer = _layer(_classes(), 256, long_name="eligible")
        layer = layer.copy(data=layer.data.persist())
        w, c = _pair(tmp_path, layer, blocksize=128, nodata=255)
    assert w.read_bytes() == c.read_bytes()


@pytest.mark.parametrize(
    ("values", "kw", "why"),
    [
        (_float((1001, 777)), {}, "does not halve exactly"),  # an overview rounds up
        (_float(), {"crs": "EPSG:4490"}, "reprojected"),
    ],
)
def test_fallback_to_the_client_writer(tmp_path, values, kw, why):
    layer = _layer(values, 256)
    with pytest.raises(OutputError, match=why):
        write_cog(tmp_path / "w.tif", layer, writer="workers", blocksize=128, **kw)
    assert not list(tmp_path.iterdir())
    auto = write_cog(tmp_path / "a.tif", layer, blocksize=128, **kw)  # auto: GDAL's COG driver
    client = write_cog(tmp_path / "c.tif", layer, writer="client", blocksize=128, **kw)
    assert auto.read_bytes() == client.read_bytes()


def test_numpy_array_falls_back(tmp_path):
    layer = _layer(_float(), 256)
    layer = layer.copy(data=np.asarray(layer.data))
    with pytest.raises(OutputError, match="not a Dask array"):
        write_cog(tmp_path / "w.tif", layer, writer="workers", blocksize=128)
    assert write_cog(tmp_path / "a.tif", layer, blocksize=128).exists()


def test_failure_mid_write_leaves_no_file(tmp_path):
    values = _float()
    target = tmp_path / "out.tif"
    target.write_bytes(b"previous")

    def block(x, block_info=None):
        if block_info[0]["chunk-location"] == (3, 2):
            raise RuntimeError("worker lost")
        return x

    lazy = _layer(values, 256).copy()
    lazy.data = lazy.data.map_blocks(block, dtype=np.float32)
    with pytest.raises(RuntimeError, match="worker lost"):
        write_cog(target, lazy, writer="workers", blocksize=128)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]


def test_assembler_refuses_tiles_out_of_order(tmp_path):
    template = write_cog(tmp_path / "t.tif", _layer(_float((256, 256)), 128), blocksize=128)
    sizes = overview_sizes(256, 256, 128)
    raw = template.read_bytes()
    with (
        pytest.raises(OutputError, match="level 0 while level 1 is due"),
        CogAssembler(tmp_path / "a.tif", raw, sizes, 128) as cog,
    ):
        cog.write(0, [b"abcd"])
    assert not (tmp_path / "a.tif").exists()
    with (
        pytest.raises(OutputError, match="closed before every tile"),
        CogAssembler(tmp_path / "b.tif", raw, sizes, 128) as cog,
    ):
        cog.write(1, [b"abcd"])
    assert not (tmp_path / "b.tif").exists()
