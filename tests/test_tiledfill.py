"""The tiled Priority-Flood equals the global fill bit for bit, whatever the tiling."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sitekit.science.tiledfill import fill_depressions_tiled

try:  # the global fill moves from pumped_storage to hydrology (issue 27's other half)
    from sitekit.science.hydrology import fill_depressions
except ImportError:  # pragma: no cover
    from sitekit.science.pumped_storage import fill_depressions


def tiled(z: np.ndarray, chunks) -> np.ndarray:
    """The tiled fill of ``z`` cut into ``chunks`` (dask spelling), computed in-process."""
    out = fill_depressions_tiled(da.from_array(z, chunks=chunks))
    assert isinstance(out, da.Array) and out.chunks == da.from_array(z, chunks=chunks).chunks
    return out.compute(scheduler="synchronous")


def check(z: np.ndarray, chunks) -> np.ndarray:
    """Assert tiled == global (NaN where the global fill has NaN) and return the fill."""
    want = fill_depressions(z)
    got = tiled(z, chunks)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    return want


def fractal(ny: int, nx: int, seed: int, beta: float = 2.4) -> np.ndarray:
    """Seeded spectral-synthesis terrain [m], float32, 0–500 m (Voss 1988)."""
    rng = np.random.default_rng(seed)
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(nx), np.fft.fftfreq(ny)))
    k[0, 0] = np.inf
    z = np.fft.ifft2(np.fft.fft2(rng.standard_normal((ny, nx))) * k ** (-beta / 2)).real
    return (500 * (z - z.min()) / (z.max() - z.min())).astype(np.float32)


def tiles_touched(mask: np.ndarray, tile: int) -> int:
    r, c = np.nonzero(mask)
    return len(set(zip(r // tile, c // tile, strict=True)))


def bowl(n: int, cy: float, cx: float, radius: float, depth: float) -> np.ndarray:
    """A tilted plane (draining to the top edge) with a round basin [m]."""
    y, x = np.mgrid[0:n, 0:n].astype(np.float64)
    z = 100.0 + 0.5 * y
    d = np.hypot(y - cy, x - cx)
    return (z - depth * np.clip(1 - d / radius, 0, None)).astype(np.float32)


def test_depression_spanning_many_tiles():
    z = bowl(40, 20.3, 19.6, 14.0, 30.0)
    filled = check(z, 10)
    raised = filled > z
    assert tiles_touched(raised, 10) >= 9  # the lake covers 9+ of the 16 tiles
    lake = filled[raised]
    assert np.all(lake == lake[0])  # one flat lake surface


def test_depression_touching_the_study_area_edge():
    z = bowl(30, 5.0, 28.0, 12.0, 40.0)  # a basin against the right border
    z[3:10, 25:29] = np.minimum(z[3:10, 25:29], 95.0)
    z[2, 24:30] = z[10, 24:30] = z[2:11, 24] = 120.0  # rim on three sides …
    z[2:11, 29] = 120.0  # … and on the study-area border, the fourth
    z[6, 29] = 110.0  # its lowest outlet: a border pixel at 110 m
    filled = check(z, ((7, 7, 7, 9), (8, 8, 13, 1)))  # a 1-px-wide tile on the border
    assert np.all(filled[3:10, 25:29] == 110.0)
    assert filled[6, 29] == 110.0


def test_nested_depressions():
    z = bowl(36, 18, 18, 15, 40.0)
    z[9:12, 9:12] -= 25  # two deeper pits inside the big basin, in other tiles
    z[22:25, 25:28] -= 10
    z[16:19, 16:19] = 80.0  # and an island whose top is under the outer spill level
    z[17, 17] = 70.0  # with a pit of its own
    filled = check(z, 7)
    assert np.all(filled[9:12, 9:12] == filled[23, 26]) and filled[17, 17] == filled[23, 26]
    assert tiles_touched(filled > z, 7) >= 9


def test_spill_through_a_tile_corner_diagonal():
    """Water leaves a pit only diagonally, across the meeting point of four tiles."""
    z = np.full((8, 8), 50.0, np.float32)
    z[1:4, 1:4] = 10.0  # pit in the top-left tile, walled
    z[4:7, 4:7] = 5.0  # a lower pit in the bottom-right tile
    z[4:7, 7] = 1.0  # which drains to the right edge at 1 m
    z[3, 3], z[4, 4] = 20.0, 5.0  # the only gap between them: the diagonal (3,3)–(4,4)
    filled = check(z, 4)
    assert np.all(filled[1:4, 1:4] == 20.0)


def test_nodata_holes_drain_and_stay_nan():
    z = fractal(45, 50, seed=3)
    z[10:14, 18:25] = np.nan  # a hole straddling a tile edge
    z[29, 29] = np.nan  # a one-pixel hole at a tile corner (tiles of 10: the 30th px)
    z[30, 30] = np.inf  # ±inf are holes too (NaN out), as in the global fill
    z[0:3, 40:50] = -np.inf
    for chunks in (10, 7, (45, (29, 1, 20))):
        filled = check(z, chunks)
    check(z[5:20, 15:30], 1)  # one-pixel tiles around the hole's edge
    assert np.isnan(filled[30, 30]) and np.isnan(filled[12, 20])


def test_closed_basin_inside_nodata_ring():
    z = np.full((12, 12), 100.0, np.float32)
    z[2:10, 2:10] = np.nan
    z[4:8, 4:8] = 50.0  # an island of valid pixels in a hole: every pixel drains
    z[5:7, 5:7] = 10.0
    check(z, 3)
    check(z, 5)


def test_flats_stay_flat():
    z = np.full((24, 24), 300.0, np.float32)
    z[3:21, 3:21] = 200.0  # a flat-floored pit (raised to 300: a flat lake)
    z[10:14, 0:24] = 250.0  # a flat valley to both borders …
    z[:, 12] = 250.0
    z[0, 12] = 240.0  # … and a lower flat outlet
    filled = check(z, 5)
    assert np.all(filled[3:10, 3:12] == 250.0)
    rng = np.random.default_rng(0)
    terraces = rng.integers(0, 4, (31, 29)).astype(np.float32)  # many ties
    for chunks in (2, 3, 4, 30):
        check(terraces, chunks)
    check(terraces[:12, :11], 1)


@pytest.mark.parametrize("tile", [1, 2, 3, 5, 8, 13, 32, 63, 64])
def test_fractal_terrain_any_tiling(tile):
    z = fractal(64, 65, seed=11)  # 65 columns: a 1-px-wide last tile for tiles of 2, 8, 32, 64
    if tile < 3:  # (thousands of one-pixel tasks: a smaller cut-out keeps the test quick)
        z = z[20:37, 30:45]
    check(z, tile)
    z = np.round(z / 25) * 25  # terraced: flats and ties everywhere
    check(z, tile)


def test_fractal_terrain_irregular_tiles():
    z = fractal(70, 61, seed=5)
    check(z, ((1, 30, 38, 1), (1, 1, 29, 29, 1)))
    check(z.astype(np.float64), ((35, 35), (60, 1)))


def test_all_nodata_unchanged_and_dataarray_and_laziness():
    for z in (np.full((6, 7), np.nan, np.float32), np.full((6, 7), np.inf, np.float32)):
        np.testing.assert_array_equal(tiled(z, 3), fill_depressions(z))
    z = fractal(20, 20, seed=2)
    arr = xr.DataArray(da.from_array(z, chunks=6), dims=("y", "x"), attrs={"units": "m"})
    with dask.config.set(scheduler="sync"):
        out = fill_depressions_tiled(arr)
        assert isinstance(out.data, da.Array) and out.attrs == {"units": "m"}
        np.testing.assert_array_equal(out.values, fill_depressions(z))

    calls = []

    def source(block):  # building the graph reads nothing
        calls.append(block.shape)
        return block

    src = da.from_array(z, chunks=5).map_blocks(source, meta=np.empty((0, 0), z.dtype))
    lazy = fill_depressions_tiled(src)
    assert not calls and isinstance(lazy, da.Array)


@st.composite
def dems_and_tilings(draw):
    ny, nx = draw(st.integers(1, 14)), draw(st.integers(1, 14))
    vals = draw(
        st.lists(
            st.one_of(
                st.integers(0, 6).map(float),
                st.sampled_from([np.nan, np.nan, np.inf, -np.inf]),
            ),
            min_size=ny * nx,
            max_size=ny * nx,
        )
    )
    nan_free = draw(st.booleans())
    z = np.array(vals, np.float32).reshape(ny, nx)
    if nan_free:
        z[~np.isfinite(z)] = 3.0

    def cuts(n: int) -> tuple[int, ...]:
        sizes, left = [], n
        while left:
            s = draw(st.integers(1, left))
            sizes.append(s)
            left -= s
        return tuple(sizes)

    return z, (cuts(ny), cuts(nx))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dems_and_tilings())
def test_property_tiled_equals_global(case):
    z, chunks = case
    check(z, chunks)
