"""Terrain derivatives: exact answers on planes and cones, chunk safety, gdaldem agreement."""

from __future__ import annotations

import shutil
import subprocess

import dask
import numpy as np
import pyproj
import pytest
import rasterio
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from sitekit import testing
from sitekit.errors import CRSError, LayerError
from sitekit.science import terrain


def _angle_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs((a - b + 180.0) % 360.0 - 180.0)


# -- planes and cones --------------------------------------------------------------------------
@pytest.mark.parametrize(("slope_deg", "aspect_deg"), [(10, 135), (25, 0), (5, 270), (40, 80)])
def test_plane_gives_exact_slope_and_aspect(slope_deg, aspect_deg):
    # 2 km pixels and z0 = 0 keep float32 rounding of z far below the 1e-4° tolerance
    grid = testing.small_grid((12, 16), 2000.0, chunks=5)
    dem = testing.plane(grid, slope_deg, aspect_deg, z0_m=0.0)
    s = terrain.slope(dem).values
    a = terrain.aspect(dem).values
    # every pixel, edges included (linear extrapolation keeps a plane a plane)
    assert_allclose(s, slope_deg, atol=1e-4)
    assert _angle_diff(a, aspect_deg).max() < 1e-4


def test_outputs_are_float32_dataarrays_with_units_on_the_dem_grid():
    dem = testing.plane(testing.small_grid((16, 16), 100.0, chunks=8), 10, 135)
    for fn, units in [(terrain.slope, "degree"), (terrain.aspect, "degree"), (terrain.tri, "m")]:
        out = fn(dem)
        assert out.dtype == np.float32
        assert out.attrs["units"] == units
        assert out.rio.crs == dem.rio.crs
        assert_array_equal(out.x, dem.x)
        assert_array_equal(out.y, dem.y)
        assert isinstance(out.data, dask.array.Array)


def test_cone_slope_is_atan_height_over_radius_away_from_apex_and_base():
    g = testing.small_grid((81, 81), 50.0, chunks=20)
    height, radius = 1000.0, 1500.0
    dem = testing.cone(g, height_m=height, radius_m=radius)
    s = terrain.slope(dem).values
    a = terrain.aspect(dem).values
    xx, yy = np.meshgrid(g.x - g.x.mean(), g.y - g.y.mean())
    r = np.hypot(xx, yy)
    ring = (r > 250) & (r < radius - 110)  # 3×3 window entirely on the cone's flank
    assert ring.sum() > 1500
    err = np.abs(s - np.degrees(np.arctan(height / radius)))
    # Horn is second-order: on the curved contours of a cone the error falls as (cell / r)²
    assert np.all(err[ring] <= 8.0 * (50.0 / r[ring]) ** 2)
    assert err[ring & (r > 1000)].max() < 0.02
    # the flank faces away from the apex
    away = np.mod(np.degrees(np.arctan2(xx, yy)), 360.0)
    assert _angle_diff(a[ring], away[ring]).max() < 0.5
    # the flat base around the cone: slope 0, aspect NaN (flat)
    base = r > radius + 200
    assert np.all(s[base] == 0) and np.all(np.isnan(a[base]))


def test_hillshade_values_on_known_planes():
    g = testing.small_grid((12, 12), 100.0)
    flat = terrain.hillshade(testing.plane(g, 0, 0), azimuth=315, altitude=45).values
    assert_allclose(flat, 255 * np.sin(np.radians(45)), rtol=1e-6)
    # a plane facing the sun, tilted 90° − altitude, is lit perpendicularly → 255
    facing = terrain.hillshade(testing.plane(g, 45, 315), azimuth=315, altitude=45).values
    assert_allclose(facing, 255.0, rtol=1e-5)
    # facing away and steeper than the sun is high → self-shadow → 0
    away = terrain.hillshade(testing.plane(g, 60, 135), azimuth=315, altitude=20).values
    assert np.all(away == 0)


def test_tri_and_tpi_on_planes_and_a_peak():
    g = testing.small_grid((20, 20), 100.0, chunks=7)
    # a plane of gradient G: TRI = sqrt(Σ (G·d_i)²) over the 8 neighbours = G·100·sqrt(12)
    # for aspect 0 (rows change by G·100, diagonals too): 6 neighbours differ by ±G·100
    grad = np.tan(np.radians(20))
    tri = terrain.tri(testing.plane(g, 20, 0)).values
    assert_allclose(tri, grad * 100 * np.sqrt(6), rtol=1e-4)
    assert_allclose(terrain.tpi(testing.plane(g, 20, 0)).values[1:-1, 1:-1], 0, atol=1e-3)
    peak = testing.cone(g, height_m=500, radius_m=800)
    t = terrain.tpi(peak, radius_px=2).values
    cy, cx = np.unravel_index(np.nanargmax(peak.values), peak.shape)
    assert t[cy, cx] > 50 and np.nanargmax(t) == np.nanargmax(peak.values)


def _box_tpi_by_hand(z: np.ndarray, r: int) -> np.ndarray:
    """z − the mean of the valid cells of the (2r+1)² box around each cell, centre included."""
    ny, nx = z.shape
    out = np.full(z.shape, np.nan, np.float32)
    for i in range(ny):
        for j in range(nx):
            w = z[max(i - r, 0) : i + r + 1, max(j - r, 0) : j + r + 1].astype(np.float64)
            out[i, j] = np.float32(z[i, j] - np.nansum(w) / np.count_nonzero(~np.isnan(w)))
    return out


@pytest.mark.parametrize(("radius_m", "r"), [(90.0, 1), (200.0, 2), (300.0, 3), (10.0, 1)])
def test_box_tpi_by_hand_and_the_wind_models_tpi(radius_m, r):
    """The box TPI (radius in metres) is the wind model's exposure TPI: one implementation, the
    numbers of a brute-force box mean (float32 elevations sum exactly in float64, so to the bit),
    chunked or not."""
    from sitekit.science import wind

    g = testing.small_grid((23, 19), 90.0, chunks=1000)
    dem = testing.fractal_dem(g, relief_m=900, seed=5)
    dem[4, 7] = np.nan
    want = _box_tpi_by_hand(dem.values, r)
    box = terrain.tpi(dem, radius_m=radius_m, window="box")
    assert box.attrs["long_name"] == f"topographic position index (box radius {r} px)"
    assert_array_equal(box.values, want)
    assert_array_equal(terrain.tpi(dem, r, window="box").values, want)
    assert_array_equal(
        terrain.tpi(dem.chunk({"y": 5, "x": 4}), radius_m=radius_m, window="box").values, want
    )
    from_wind = wind._box_tpi(dem, radius_m)
    assert_array_equal(from_wind.values, want)
    assert from_wind.name == "tpi" and from_wind.attrs["radius_m"] == radius_m


# -- chunk safety ------------------------------------------------------------------------------
def test_chunked_equals_unchunked_bit_for_bit():
    g = testing.small_grid((20, 17), 90.0, chunks=1000)
    dem = testing.fractal_dem(g, relief_m=900, seed=3)
    dem[5, 6] = np.nan  # a hole next to a chunk border
    for fn in (terrain.slope, terrain.aspect, terrain.hillshade, terrain.tri):
        whole = fn(dem).values
        chunked = fn(dem.chunk({"y": 3, "x": 3}))
        assert chunked.data.numblocks == (7, 6)  # really chunked, 3×3 pixels a chunk
        assert_array_equal(chunked.values, whole)


@settings(max_examples=6, deadline=None)
@given(
    chunk_y=st.integers(3, 12),
    chunk_x=st.integers(3, 12),
    radius=st.integers(1, 3),
    seed=st.integers(0, 10_000),
)
def test_tpi_chunked_equals_unchunked_bit_for_bit(chunk_y, chunk_x, radius, seed):
    dem = testing.fractal_dem(testing.small_grid((20, 17), 90.0, chunks=1000), seed=seed)
    whole = terrain.tpi(dem, radius_px=radius).values
    chunked = terrain.tpi(dem.chunk({"y": chunk_y, "x": chunk_x}), radius_px=radius).values
    assert_array_equal(chunked, whole)


def test_nan_propagates_to_the_3x3_neighbourhood_only():
    g = testing.small_grid((15, 15), 100.0, chunks=4)
    dem = testing.plane(g, 10, 135).load()
    dem[7, 7] = np.nan
    s = terrain.slope(dem.chunk({"y": 4, "x": 4})).values
    assert np.isnan(s[6:9, 6:9]).all()
    assert np.isfinite(s).sum() == s.size - 9


def test_building_the_graph_computes_nothing():
    dem = testing.fractal_dem(testing.small_grid((32, 32), 90.0, chunks=8))

    def _refuse(*args, **kwargs):
        raise AssertionError("terrain computed while building the graph")

    with dask.config.set(scheduler=_refuse):
        outs = [terrain.slope(dem), terrain.aspect(dem), terrain.tpi(dem, 2), terrain.tri(dem)]
    assert all(isinstance(o.data, dask.array.Array) for o in outs)


# -- cell size ---------------------------------------------------------------------------------
def _geographic_plane(slope_deg: float, aspect_deg: float, lat0: float) -> xr.DataArray:
    """A plane defined in metres (local azimuthal equidistant) sampled on a 0.001° lon/lat grid."""
    lon = 101.0 + 0.001 * (np.arange(40) + 0.5)
    lat = lat0 + 0.001 * (np.arange(36)[::-1] + 0.5)
    lon2, lat2 = np.meshgrid(lon, lat)
    aeqd = pyproj.CRS.from_proj4(
        f"+proj=aeqd +lat_0={lat.mean()} +lon_0={lon.mean()} +ellps=GRS80 +units=m"
    )
    east, north = pyproj.Transformer.from_crs(4490, aeqd, always_xy=True).transform(lon2, lat2)
    a = np.radians(aspect_deg)
    z = 3000.0 - np.tan(np.radians(slope_deg)) * (east * np.sin(a) + north * np.cos(a))
    dem = xr.DataArray(z, dims=("y", "x"), coords={"y": lat, "x": lon}, name="dem")
    return dem.rio.write_crs("EPSG:4490").chunk({"y": 9, "x": 9})


@pytest.mark.parametrize("lat0", [26.5, 34.0])
def test_geographic_grid_uses_metric_spacing(lat0):
    dem = _geographic_plane(10.0, 135.0, lat0)
    s = terrain.slope(dem).values
    a = terrain.aspect(dem).values
    assert_allclose(s, 10.0, atol=2e-3)
    # grid north of the local plane and true north differ by the meridian convergence
    # (≤ 0.02° · sin φ across 0.04°), hence the aspect tolerance
    assert _angle_diff(a, 135.0).max() < 0.02
    # degrees taken as metres would give a near-vertical "slope"
    assert terrain.slope(dem.rio.write_crs("EPSG:4543", inplace=False)).values.min() > 89


def test_cell_size_from_geographic_coordinates_matches_the_ellipsoid():
    dem = _geographic_plane(5, 0, 30.0)
    dx, dy = terrain.cell_size_m(dem)
    geod = pyproj.Geod(ellps="GRS80")
    lat = dem.y.values
    _, _, ew = geod.inv(101.0, lat[10], 101.001, lat[10])
    _, _, ns = geod.inv(101.0, lat[10] - 0.0005, 101.0, lat[10] + 0.0005)
    assert_allclose(dx[10], ew, rtol=1e-6)
    assert_allclose(-dy[10], ns, rtol=1e-6)  # north-up rows: dy < 0


def test_projected_cell_size_uses_crs_units():
    g = testing.small_grid((8, 8), 100.0)
    dx, dy = terrain.cell_size_m(testing.plane(g, 5, 0))
    assert_allclose(dx, 100.0)
    assert_allclose(dy, -100.0)
    feet = testing.plane(g, 5, 0).rio.write_crs("EPSG:2229", inplace=False)  # US survey feet
    assert_allclose(terrain.cell_size_m(feet)[0], 100.0 * 1200 / 3937)


def test_errors_name_the_problem():
    g = testing.small_grid((8, 8), 100.0)
    dem = testing.plane(g, 5, 0)
    no_crs = xr.DataArray(dem.values, dims=("y", "x"), coords={"y": dem.y, "x": dem.x})
    with pytest.raises(CRSError, match="no CRS"):
        terrain.slope(no_crs)
    irregular = dem.assign_coords(x=dem.x.values**1.01)
    with pytest.raises(LayerError, match="irregular x"):
        terrain.slope(irregular)
    with pytest.raises(LayerError, match="radius_px"):
        terrain.tpi(dem, radius_px=0)
    with pytest.raises(LayerError, match="window"):
        terrain.tpi(dem, window="ring")


# -- agreement with gdaldem --------------------------------------------------------------------
def _gdaldem(tmp_path, dem: xr.DataArray, *args: str) -> np.ndarray:
    exe = shutil.which("gdaldem")
    assert exe is not None, (
        "gdaldem not found: install Debian's gdal-bin (apt-get install gdal-bin)"
    )
    src = tmp_path / "dem.tif"
    if not src.exists():
        dem.astype(np.float32).rio.to_raster(src)
    dst = tmp_path / f"{args[0]}.tif"
    subprocess.run([exe, args[0], str(src), str(dst), *args[1:], "-q"], check=True)
    with rasterio.open(dst) as ds:
        out = ds.read(1, masked=True).astype(np.float64)
    return out.filled(np.nan)


def test_agrees_with_gdaldem_horn_on_a_real_looking_dem(tmp_path):
    g = testing.small_grid((96, 110), 90.0, origin=(12_000.0, -4_000.0), chunks=25)
    dem = testing.fractal_dem(g, relief_m=1500.0, seed=42)
    inner = (slice(1, -1), slice(1, -1))

    ours_s = terrain.slope(dem).values
    gdal_s = _gdaldem(tmp_path, dem, "slope", "-compute_edges")
    assert np.nanmax(ours_s) > 30  # steep enough to be a real test
    assert np.abs(ours_s - gdal_s)[inner].max() < 0.01
    # edge pixels too (both extrapolate linearly); at the 4 corners gdaldem 3.6 uses another stencil
    diff = np.abs(ours_s - gdal_s)
    assert max(diff[[0, -1], 1:-1].max(), diff[1:-1, [0, -1]].max()) < 0.01

    ours_a = terrain.aspect(dem).values
    gdal_a = _gdaldem(tmp_path, dem, "aspect", "-compute_edges")
    sloped = (ours_s > 0.5)[inner]
    assert sloped.mean() > 0.95
    assert _angle_diff(ours_a[inner], gdal_a[inner])[sloped].max() < 0.01

    ours_t = terrain.tri(dem).values
    gdal_t = _gdaldem(tmp_path, dem, "TRI", "-alg", "Riley", "-compute_edges")
    assert_allclose(ours_t[inner], gdal_t[inner], rtol=1e-4, atol=1e-3)

    ours_p = terrain.tpi(dem).values
    gdal_p = _gdaldem(tmp_path, dem, "TPI")
    assert_allclose(ours_p[inner], gdal_p[inner], atol=1e-3)

    ours_h = terrain.hillshade(dem).values
    gdal_h = _gdaldem(tmp_path, dem, "hillshade", "-compute_edges")
    assert np.abs(ours_h - gdal_h)[inner].max() <= 1.5  # gdaldem writes 1 + 254·cos i as bytes


def test_south_up_rows_give_the_same_slope_and_aspect():
    dem = testing.plane(testing.small_grid((12, 16), 2000.0, chunks=5), 15, 200, z0_m=0.0)
    flipped = dem.isel(y=slice(None, None, -1))  # rows run south to north
    assert_allclose(terrain.slope(flipped).values, 15.0, atol=1e-4)
    assert _angle_diff(terrain.aspect(flipped).values, 200.0).max() < 1e-3
