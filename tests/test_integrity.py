"""A damaged cache never reaches the outputs (issue 20).

* a cached block with one flipped bit, a truncated block and a block of another shape fail their
  check on read (:class:`CacheDamagedError`);
* a re-run over a cache with a flipped bit in a layer block and zero-byte / truncated exported
  GeoTIFFs reports each, drops it, recomputes it, and writes exactly the first run's rasters and
  tables;
* damaged tables and JSON memos are misses, not answers.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from click.testing import CliRunner

from sitekit.cli import cli, register
from sitekit.engine.cache import CacheDamagedError, LayerCache, load_block, save_block
from sitekit.errors import SitekitWarning
from sitekit.testing import small_grid

register()
TINY_WIND = Path(__file__).parent / "badinput" / "recipes" / "tiny_wind.yaml"


def _flip_bit(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) - 3 if at is None else at
    data[i] ^= 0x40
    path.write_bytes(bytes(data))


def test_a_flipped_bit_a_truncation_or_a_wrong_shape_fails_the_block_check(tmp_path: Path) -> None:
    block = np.arange(12, dtype=np.float32).reshape(3, 4)
    target = tmp_path / "e" / "r0_c0.npy.blosc"
    save_block(target, block)
    np.testing.assert_array_equal(load_block(target, (3, 4), np.float32), block)
    with pytest.raises(CacheDamagedError, match="holds"):
        load_block(target, (4, 3), np.float32)
    _flip_bit(target)
    with pytest.raises(CacheDamagedError, match="checksum") as info:
        load_block(target, (3, 4), np.float32)
    assert info.value.entry == str(target.parent)
    save_block(target, block)
    target.write_bytes(target.read_bytes()[:40])
    with pytest.raises(CacheDamagedError):
        load_block(target, (3, 4), np.float32)


def test_blocks_are_stored_compressed_and_a_bad_payload_is_damage(tmp_path: Path) -> None:
    """Cached blocks round-trip bit for bit (every dtype a layer has), take far less disk than
    the raw array where the layer is smooth or empty, and a payload that passes its checksum but
    does not decode to the header's shape is reported as damage, not returned."""
    import hashlib

    from sitekit.engine.cache import BLOCK_SUFFIX, SUM_SUFFIX, encode_block

    rng = np.random.default_rng(0)
    blocks = {
        "f4": np.where(rng.random((256, 300)) < 0.3, np.nan, rng.random((256, 300))).astype("f4"),
        "u1": (rng.random((64, 64)) < 0.5).astype(np.uint8),
        "b": rng.random((5, 7)) < 0.5,
        "i8": rng.integers(-5, 5, (9, 3)),
    }
    for name, block in blocks.items():
        target = tmp_path / name / f"r0_c0{BLOCK_SUFFIX}"
        save_block(target, block)
        got = load_block(target, block.shape, block.dtype)
        assert got.dtype == block.dtype and got.flags.writeable
        np.testing.assert_array_equal(got, block)
    empty = np.full((1024, 1024), np.nan, np.float32)  # outside the study area
    assert len(encode_block(empty)) < empty.nbytes / 100
    target = tmp_path / "bad" / f"r0_c0{BLOCK_SUFFIX}"
    save_block(target, np.zeros((4, 4), np.float32))
    good = encode_block(np.arange(16, dtype=np.float32).reshape(4, 4))
    wrong = good[: len(good) - 20]  # header intact, payload cut
    short = good.replace(b"(4, 4)", b"(4, 5)")  # the header claims more than the payload has
    for payload in (wrong, short):
        target.write_bytes(payload)
        Path(str(target) + SUM_SUFFIX).write_text(hashlib.sha256(payload).hexdigest() + "\n")
        with pytest.raises(CacheDamagedError, match="decode|holds"):
            load_block(target, (4, 4), np.float32)


def test_damaged_tables_and_memos_are_misses(tmp_path: Path) -> None:
    grid = small_grid((8, 8), 100.0)
    cache = LayerCache(tmp_path, grid, "k")
    frames = {"t": gpd.GeoDataFrame({"v": [1.5]}, geometry=[shapely.Point(1, 2)], crs=grid.crs)}
    cache.save_frames("ps", 1, frames)
    assert cache.load_frames("ps", 1) is not None
    gpkg = cache._frames_file("ps", 1)
    _flip_bit(gpkg, at=200)
    with pytest.warns(SitekitWarning, match="damaged"):
        assert cache.load_frames("ps", 1) is None
    assert not gpkg.exists()  # dropped: the next save writes it afresh

    assert cache.memo_json("overlays", [1], lambda: {"a": 1}) == {"a": 1}
    (memo,) = (tmp_path / "overlays").glob("*.json")
    memo.write_text(memo.read_text().replace('"a": 1', '"a": 7'))
    with pytest.warns(SitekitWarning, match="damaged"):
        assert cache.memo_json("overlays", [1], lambda: {"a": 2}) == {"a": 2}


def _run(catalog: Path, out: Path, cache: Path) -> None:
    res = CliRunner().invoke(
        cli,
        ["-q", "run", str(TINY_WIND), "--catalog", str(catalog), "--out", str(out), "--force",
         "--cache-dir", str(cache), "--resolution", "1000", "--no-processes", "--workers", "1",
         "--no-map"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output + repr(res.exception)


def _rasters(out: Path) -> dict[str, str]:
    found = {}
    for tif in sorted((out / "rasters").glob("*.tif")):
        with rasterio.open(tif) as src:
            found[tif.name] = hashlib.sha256(src.read().tobytes()).hexdigest()
    return found


def test_a_rerun_over_a_damaged_cache_recomputes_and_matches(
    tiny_catalog: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    _run(tiny_catalog, tmp_path / "first", cache)
    first = _rasters(tmp_path / "first")
    summary = (tmp_path / "first" / "summary.csv").read_bytes()
    assert len(first) >= 5

    (slope,) = [p for p in cache.iterdir() if p.name.startswith("slope-")]
    _flip_bit(sorted(slope.glob("r*_c*.npy.blosc"))[0])
    cached = sorted((cache / "rasters").glob("*.tif"))
    cached[0].write_bytes(b"")  # zero bytes
    cached[1].write_bytes(cached[1].read_bytes()[:100])  # truncated

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _run(tiny_catalog, tmp_path / "second", cache)
    said = " ".join(str(w.message) for w in caught)
    assert "slope-" in said and said.count("damaged") >= 3, said
    assert _rasters(tmp_path / "second") == first
    assert (tmp_path / "second" / "summary.csv").read_bytes() == summary
