"""Wind layers: shear, air density, density-corrected power curve, Weibull CF, modelled speed."""

from __future__ import annotations

import socket

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.special import gamma
from windpowerlib.power_output import power_curve as wpl_power_curve
from windpowerlib.power_output import power_curve_density_correction

from sitekit.errors import InputError
from sitekit.science import wind
from sitekit.testing import ridge_and_valley, small_grid

RHO_500 = wind.air_density(500.0)
RHO_4000 = wind.air_density(4000.0)


def raster(values, chunks=None, units="m s-1") -> xr.DataArray:
    a = np.atleast_2d(np.asarray(values, np.float32))
    data = da.from_array(a, chunks=chunks or a.shape)
    return xr.DataArray(data, dims=("y", "x"), attrs={"units": units} if units else {})


def direct_cf(mean_speed, density, curve, k=2.0, svenningsen=False):
    """CF by numerical integration of windpowerlib's power curve over the Weibull pdf."""
    v = np.linspace(0.0, 40.0, 200_001)
    pdf = stats.weibull_min(k, scale=mean_speed / gamma(1 + 1 / k)).pdf(v)
    ws, pw = curve.wind_speed_m_s, curve.power_w
    if svenningsen:  # windpowerlib's own correction (exponent 1/3 … 2/3)
        p = power_curve_density_correction(v, ws, pw, np.full_like(v, density))
    else:  # the IEC shift in wind speed, exponent 1/3, cut-out at the measured speed
        p = wpl_power_curve(v * (density / 1.225) ** (1 / 3), ws, pw) * (v <= ws[-1])
    return np.trapezoid(p * pdf, v) / curve.rated_power_w


@pytest.fixture(scope="module")
def curve():
    return wind.load_power_curve(wind.DEFAULT_TURBINE)


# -- air density ---------------------------------------------------------------------------
def test_air_density_standard_atmosphere():
    assert wind.air_density(0.0) == pytest.approx(1.225, abs=1e-3)
    assert wind.air_density(4000.0) == pytest.approx(0.82, abs=0.01)
    assert wind.air_density(500.0) == pytest.approx(1.167, abs=0.002)
    dem = raster([[0.0, 4000.0]], units="m")
    rho = wind.air_density(dem)
    assert isinstance(rho.data, da.Array) and rho.dtype == np.float32
    assert rho.attrs["units"] == "kg m-3"
    np.testing.assert_allclose(rho.values, [[1.225, 0.8191]], atol=5e-4)


def test_pressure_in_hpa_is_rejected():  # trap 3: units of pressure
    with pytest.raises(InputError, match="hPa"):
        wind.air_density(4000.0, pressure_sea_level_pa=1013.25)
    with pytest.raises(InputError, match="kPa"):
        wind.air_density(4000.0, pressure_sea_level_pa=101.325)
    with pytest.raises(InputError, match="°C"):
        wind.air_density(4000.0, temperature_sea_level_k=15.0)
    with pytest.raises(InputError, match="metres"):
        wind.air_density(raster([[4.0]], units="km"))
    assert wind.air_density(0.0, pressure_sea_level_pa=100_000.0) < 1.225


def test_density_in_wrong_units_is_rejected(curve):  # trap 3: units of density
    speed = raster([[6.0, 7.0]])
    with pytest.raises(InputError, match="g/m³"):
        wind.capacity_factor(speed, 1225.0, curve)  # g/m³
    hpa = raster([[1013.0, 1013.0]], units=None)  # a pressure passed as density, no units
    cf = wind.capacity_factor(speed, hpa, curve)  # lazy: no error yet
    with pytest.raises(InputError, match="air density"):
        cf.compute()
    with pytest.raises(InputError, match="kg m-3"):
        wind.capacity_factor(speed, raster([[101325.0, 101325.0]], units="Pa"), curve)
    with pytest.raises(InputError, match="km/h"):
        wind.capacity_factor(raster([[60.0, 70.0]]), 1.0, curve).compute()


# -- power curve ---------------------------------------------------------------------------------
def test_default_turbine_loads_offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    wind.load_power_curve.cache_clear()
    pc = wind.load_power_curve()
    assert pc.turbine_type == "E-141/4200"
    assert pc.nominal_power_w == 4.2e6 and pc.rotor_diameter_m == 141.0
    assert 129.0 in pc.hub_heights_m
    assert pc.power_w.max() == 4.2e6 and pc.cut_out_m_s == 25.0
    assert np.all(np.diff(pc.wind_speed_m_s) > 0)


def test_unknown_turbine_names_close_matches():
    with pytest.raises(InputError, match="E-141/4200"):
        wind.load_power_curve("E-141/420")
    with pytest.raises(InputError, match="no power curve"):
        wind.load_power_curve("Goldwind GW155/4500")


def test_density_correction_sign(curve):  # trap 1: thinner air → less power
    v = np.linspace(0.5, 30.0, 600)
    std = wind.density_corrected_power(v, curve, 1.225)
    thin = wind.density_corrected_power(v, curve, RHO_4000)
    np.testing.assert_array_equal(std, np.where(v <= 25.0, np.interp(v, *curve[:2]), 0.0))
    assert np.all(thin <= std)
    partial = (std > 0) & (std < curve.nominal_power_w)  # between cut-in and rated
    assert np.all(thin[partial] < std[partial])
    # hand calc: at rho = 1.225*0.875**3 the site curve at 8 m/s is the standard curve at 7 m/s
    rho = 1.225 * 0.875**3
    assert wind.density_corrected_power(8.0, curve, rho) == pytest.approx(1_471_000.0)
    assert np.interp(7.0, *curve[:2]) == 1_471_000.0  # E-141/4200 table: 1471 kW at 7 m/s


def test_density_correction_shifts_speed_not_power(curve):  # trap 2: rated power still reached
    s = (RHO_4000 / 1.225) ** (1 / 3)
    ws = curve.wind_speed_m_s[curve.wind_speed_m_s / s <= 25.0]
    # the site curve is the standard one moved to higher speeds: P_site(V/s) = P_std(V)
    np.testing.assert_allclose(
        wind.density_corrected_power(ws / s, curve, RHO_4000),
        np.interp(ws, *curve[:2]),
        rtol=1e-12,
    )
    high = wind.density_corrected_power(np.array([17.0, 20.0, 25.0]), curve, RHO_4000)
    np.testing.assert_array_equal(high, 4.2e6)  # not 4.2 MW × 0.82/1.225 = 2.81 MW
    assert wind.density_corrected_power(25.5, curve, RHO_4000) == 0.0  # cut-out stays at 25 m/s
    cf_windy = wind.capacity_factor(raster([[11.0]]), RHO_4000, curve, k=4.0).values
    assert cf_windy > 0.6  # power-scaling would cap CF at 0.82/1.225 = 0.67


# -- capacity factor -------------------------------------------------------------------------
@pytest.mark.parametrize("density", [RHO_500, RHO_4000])
@pytest.mark.parametrize("mean_speed", [4.0, 6.0, 8.0, 10.0])
def test_cf_equals_windpowerlib_weibull_integration(curve, density, mean_speed):
    cf = float(wind.capacity_factor(raster([[mean_speed]]), density, curve, k=2.0).values[0, 0])
    ref = direct_cf(mean_speed, density, curve)
    assert cf == pytest.approx(ref, rel=0.01)
    assert cf == pytest.approx(ref, abs=2e-4)  # in practice far inside 1 %


def test_cf_at_4000_m_clearly_below_500_m(curve):
    dem = raster([[500.0, 4000.0]], units="m")
    cf = wind.capacity_factor(raster([[6.0, 6.0]]), wind.air_density(dem), curve).values[0]
    np.testing.assert_allclose(cf, [0.2985, 0.2335], atol=5e-4)
    assert cf[1] < 0.8 * cf[0]  # 22 % less at 4000 m for the same 6 m/s mean
    # windpowerlib's Svenningsen correction is harsher in thin air (documented: 4 % lower CF)
    sv = direct_cf(6.0, RHO_4000, curve, svenningsen=True)
    assert sv < cf[1] and sv == pytest.approx(0.225, abs=2e-3)
    assert direct_cf(6.0, RHO_500, curve, svenningsen=True) == pytest.approx(cf[0], rel=0.01)


@settings(max_examples=40, deadline=None)
@given(
    speed=st.lists(st.floats(0.0, 30.0), min_size=1, max_size=8),
    density=st.floats(0.5, 1.4),
    k=st.floats(1.2, 4.0),
    turbine=st.sampled_from([wind.DEFAULT_TURBINE, "V164/8000", "N131/3000"]),
)
def test_cf_between_0_and_1(speed, density, k, turbine):  # trap 4
    cf = wind.capacity_factor(raster([speed]), density, turbine, k=k).values
    assert np.all((cf >= 0.0) & (cf <= 1.0))


@settings(max_examples=30, deadline=None)
@given(
    speed=st.lists(st.floats(0.0, 13.0), min_size=2, max_size=10),
    density=st.floats(0.5, 1.4),
    k=st.floats(1.2, 4.0),
)
def test_cf_monotonic_in_speed_and_density(speed, density, k):
    v = np.sort(np.asarray(speed, np.float32))
    cf = wind.capacity_factor(raster([v]), density, k=k).values[0]
    assert np.all(np.diff(cf) >= 0.0)
    denser = wind.capacity_factor(raster([v]), min(density + 0.1, 1.6), k=k).values[0]
    assert np.all(denser >= cf)


def test_cf_weibull_k_raster_matches_scalar(curve):
    rng = np.random.default_rng(1)
    v = rng.uniform(0.0, 20.0, (12, 12))
    rho = rng.uniform(0.6, 1.3, (12, 12))
    cf_raster_k = wind.capacity_factor(raster(v), raster(rho, units="kg m-3"), curve,
                                       raster(np.full((12, 12), 2.0), units="1"))  # fmt: skip
    cf_scalar_k = wind.capacity_factor(raster(v), raster(rho, units="kg m-3"), curve, 2.0)
    np.testing.assert_allclose(cf_raster_k.values, cf_scalar_k.values, atol=1e-3)
    k = raster(rng.uniform(1.2, 4.0, (12, 12)), units="1")
    got = wind.capacity_factor(raster(v), raster(rho, units="kg m-3"), curve, k).values
    ks = k.values
    for i, j in [(0, 0), (3, 7), (11, 5)]:
        assert got[i, j] == pytest.approx(direct_cf(v[i, j], rho[i, j], curve, ks[i, j]), abs=1e-3)


def test_cf_nan_and_attrs(curve):
    cf = wind.capacity_factor(raster([[np.nan, 7.0]]), raster([[1.0, np.nan]], units="kg m-3"))
    assert np.isnan(cf.values).all()
    cf = wind.capacity_factor(raster([[7.0]]), 1.0, curve)
    assert cf.dtype == np.float32 and isinstance(cf.data, da.Array)
    assert cf.attrs["units"] == "1" and "IEC 61400-12-1" in cf.attrs["method"]
    with pytest.raises(InputError, match="same grid"):
        shifted = raster([[1.0]], units="kg m-3").assign_coords(x=[5.0])
        wind.capacity_factor(raster([[7.0]]).assign_coords(x=[0.0]), shifted)


# -- shear ---------------------------------------------------------------------------------------
def test_hub_height_speed_hand_calc():
    v = wind.hub_height_speed(raster([[5.0, 8.0]]), 10.0, 100.0)  # alpha = 1/7
    np.testing.assert_allclose(v.values, [[5.0 * 10 ** (1 / 7), 8.0 * 10 ** (1 / 7)]], rtol=1e-6)
    assert v.values[0, 0] == pytest.approx(6.9474, abs=1e-4)
    alpha = raster([[0.0, 0.3]], units="1")
    v = wind.hub_height_speed(raster([[5.0, 5.0]]), 50.0, 150.0, alpha)
    np.testing.assert_allclose(v.values, [[5.0, 5.0 * 3**0.3]], rtol=1e-6)
    assert v.dtype == np.float32 and v.attrs["units"] == "m s-1" and v.attrs["height_m"] == 150
    with pytest.raises(InputError):
        wind.hub_height_speed(raster([[5.0]]), 0.0, 100.0)
    with pytest.raises(InputError, match="m s-1"):
        wind.hub_height_speed(raster([[18.0]], units="km/h"), 10.0, 100.0)
    with pytest.raises(InputError, match="same grid"):  # alpha on other pixels: no silent crop
        speed = raster([[5.0, 5.0]]).assign_coords(x=[0.0, 1.0])
        wind.hub_height_speed(speed, 50.0, 150.0, alpha.assign_coords(x=[1.0, 2.0]))


# -- modelled speed ---------------------------------------------------------------------------------
def test_modelled_speed_ridge_above_valley():
    grid = small_grid((24, 61), resolution_m=100.0, chunks=64)
    dem = ridge_and_valley(grid, base_m=1000.0, amplitude_m=200.0, wavelength_m=4000.0)
    v = wind.modelled_reference_speed(dem, tpi_radius_m=500.0)
    assert v.attrs["modelled"] == "yes" and v.attrs["units"] == "m s-1"
    got = v.values
    # hand calc: the 11-px box mean of A·cos(kx) at a crest is A·D, so TPI = ±A(1 − D)
    d = np.mean(np.cos(2 * np.pi * np.arange(-5, 6) * 100.0 / 4000.0))
    tpi = 200.0 * (1 - d)
    crest, valley = got[:, 30], got[:, 10]
    np.testing.assert_allclose(crest, 5.5 * (1 + 1.6 * tpi / 500.0), rtol=1e-5)
    np.testing.assert_allclose(valley, 5.5 * (1 - 1.6 * tpi / 500.0), rtol=1e-5)
    assert crest.min() > valley.max() + 0.5


def test_modelled_speed_elevation_term_and_limits():
    grid = small_grid((8, 8), resolution_m=250.0)
    flat = lambda z: grid.wrap(da.full(grid.shape, z, chunks=4, dtype=np.float32), "dem", "m")  # noqa: E731
    assert np.allclose(wind.modelled_reference_speed(flat(1000.0)).values, 5.5)
    assert np.allclose(wind.modelled_reference_speed(flat(3500.0)).values, 6.5)
    assert np.allclose(wind.modelled_reference_speed(flat(6000.0)).values, 7.0)  # capped 4500 m
    tpi = grid.wrap(da.full(grid.shape, 5000.0, chunks=4, dtype=np.float32), "tpi", "m")
    assert np.allclose(wind.modelled_reference_speed(flat(6000.0), tpi).values, 11.2)  # +60 %
    v = wind.modelled_reference_speed(flat(6000.0), tpi, base_speed_m_s=9.0)
    assert np.allclose(v.values, 12.0)  # clipped to the plausible range


def test_chunked_equals_unchunked():
    grid = small_grid((40, 61), resolution_m=100.0, chunks=64)
    dem = ridge_and_valley(grid, base_m=2500.0, amplitude_m=600.0, wavelength_m=3000.0)
    dem = dem.where(~((dem.y == dem.y[3]) & (dem.x == dem.x[7])))  # a nodata hole
    small = dem.chunk({"y": 7, "x": 9})
    assert small.data.numblocks == (6, 7) and dem.data.numblocks == (1, 1)

    def chain(z):
        v = wind.modelled_reference_speed(z, tpi_radius_m=800.0)
        hub = wind.hub_height_speed(v, 100.0, 129.0)
        return v, wind.capacity_factor(hub, wind.air_density(z + 129.0))

    for a, b in zip(chain(dem), chain(small), strict=True):
        np.testing.assert_array_equal(a.values, b.values)
    assert np.isnan(chain(small)[1].values[3, 7])
