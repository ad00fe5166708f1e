"""Layer catalogues: validation with file/line/key errors, lazy opening, bad inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin

import sitekit.cli.layers  # noqa: F401,E402  (registers the verb)
from sitekit.catalog import Catalog
from sitekit.cli import cli, main  # noqa: F401
from sitekit.errors import CRSError, LayerError, RecipeError


def _edit(cat: Path, old: str, new: str) -> Path:
    cat.write_text(cat.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
    return cat


def test_tiny_catalog_opens_lazily(tiny_catalog: Path) -> None:
    cat = Catalog(tiny_catalog)
    grid = cat.grid(500)
    executed: list = []

    class Spy(dask.callbacks.Callback):
        def _start(self, dsk):
            executed.append(len(dsk))

    with Spy():
        layers = cat.open_all(grid)
    assert executed == []  # opening computes nothing
    dem = layers["dem"]
    assert isinstance(dem.data, dask.array.Array)
    assert dem.attrs["units"] == "m" and dem.dtype == np.float32
    assert len(layers["towns"]) == 2 and layers["towns"].crs == grid.crs
    z = dem.data.compute()
    lon, _ = grid.lonlat()
    expected = 2000.0 + 1000.0 * (lon.data.compute() - 100.9)
    inside = np.isfinite(z)
    assert inside.mean() > 0.95
    assert np.nanmax(np.abs(z - expected)[inside]) < 6.0  # bilinear of a linear ramp


def test_unknown_key_names_line_and_suggests(tiny_catalog: Path) -> None:
    _edit(tiny_catalog, "    units: m\n", "    unit: m\n")
    with pytest.raises(RecipeError) as exc:
        Catalog(tiny_catalog)
    msg = str(exc.value)
    assert (
        "catalog.yaml:16" in msg and "unknown key 'unit'" in msg and "did you mean 'units'" in msg
    )


def test_invalid_yaml_names_line(tiny_catalog: Path) -> None:
    _edit(tiny_catalog, "    role: terrain\n", "    role: [terrain\n")
    with pytest.raises(RecipeError, match=r"catalog.yaml:\d+: invalid YAML"):
        Catalog(tiny_catalog)


def test_python_tag_refused(tiny_catalog: Path) -> None:
    _edit(tiny_catalog, "name: tiny", "name: !!python/object/apply:os.system ['echo pwned']")
    with pytest.raises(RecipeError, match="catalog.yaml:1:.*remove the tag"):
        Catalog(tiny_catalog)


def test_missing_file(tiny_catalog: Path) -> None:
    (tiny_catalog.parent / "dem.tif").unlink()
    cat = Catalog(tiny_catalog)
    with pytest.raises(LayerError, match="layer 'dem'.*file not found"):
        cat.raster("dem", cat.grid(500))


def test_path_escaping_catalogue_refused(tiny_catalog: Path) -> None:
    _edit(tiny_catalog, "path: dem.tif", "path: ../../../etc/dem.tif")
    cat = Catalog(tiny_catalog)
    with pytest.raises(LayerError, match="leaves the catalogue folder"):
        cat.raster("dem", cat.grid(500))


def _write_raster(
    path: Path, arr: np.ndarray, crs="EPSG:4326", nodata=-9999.0, origin=(100.9, 30.6)
):
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=arr.shape[1],
        height=arr.shape[0],
        count=1,
        dtype="float32",
        crs=crs,
        transform=from_origin(*origin, 0.01, 0.01),
        nodata=nodata,
    ) as dst:
        dst.write(arr.astype("float32"), 1)


def test_raster_without_crs(tiny_catalog: Path) -> None:
    _write_raster(tiny_catalog.parent / "dem.tif", np.full((80, 80), 1000.0), crs=None)
    cat = Catalog(tiny_catalog)
    with pytest.raises(CRSError, match="no CRS; add `crs: EPSG:4326`"):
        cat.raster("dem", cat.grid(500))
    _edit(tiny_catalog, "    units: m\n", "    units: m\n    crs: EPSG:4326\n")
    cat = Catalog(tiny_catalog)
    assert float(cat.raster("dem", cat.grid(500)).mean().compute()) == pytest.approx(1000.0)


def test_raster_without_nodata(tiny_catalog: Path) -> None:
    _write_raster(tiny_catalog.parent / "dem.tif", np.full((80, 80), 1000.0), nodata=None)
    cat = Catalog(tiny_catalog)
    with pytest.raises(LayerError, match="declares no nodata"):
        cat.raster("dem", cat.grid(500))


def test_raster_outside_area(tiny_catalog: Path) -> None:
    _write_raster(tiny_catalog.parent / "dem.tif", np.full((80, 80), 1000.0), origin=(80.0, 20.0))
    cat = Catalog(tiny_catalog)
    with pytest.raises(LayerError, match="does not overlap the study area"):
        cat.raster("dem", cat.grid(500))


def test_corrupt_truncated_raster(tiny_catalog: Path) -> None:
    path = tiny_catalog.parent / "dem.tif"
    rng = np.random.default_rng(0)
    _write_raster(path, 1000 + rng.random((80, 80)) * 100)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    cat = Catalog(tiny_catalog)
    with pytest.raises(LayerError, match="layer 'dem'"):
        cat.raster("dem", cat.grid(500))


@pytest.mark.parametrize(
    "value,units,fragment",
    [(60000.0, "m", "implausible for units 'm'"), (300.0, "m/s", "km/h")],
)
def test_implausible_values(tiny_catalog: Path, value: float, units: str, fragment: str) -> None:
    _write_raster(tiny_catalog.parent / "dem.tif", np.full((80, 80), value))
    _edit(tiny_catalog, "    units: m\n", f"    units: {units}\n")
    cat = Catalog(tiny_catalog)
    with pytest.raises(LayerError, match=fragment):
        cat.raster("dem", cat.grid(500))


def test_all_nodata_raster(tiny_catalog: Path) -> None:
    _write_raster(tiny_catalog.parent / "dem.tif", np.full((80, 80), -9999.0))
    cat = Catalog(tiny_catalog)
    with pytest.raises(LayerError, match="only nodata"):
        cat.raster("dem", cat.grid(500))


def test_csv_lat_lon_swapped(tiny_catalog: Path) -> None:
    (tiny_catalog.parent / "towns.csv").write_text("name,lon,lat\nA,30.1,101.1\n")
    cat = Catalog(tiny_catalog)
    with pytest.raises(CRSError, match="swapped"):
        cat.vector("towns", cat.grid(500))


def test_layers_check_cli_ok_and_error(tiny_catalog: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["layers", "check", str(tiny_catalog), "--resolution", "1000"])
    assert res.exit_code == 0, res.output
    assert "3 layers ok" in res.output and "测试区" in res.output
    shutil.copy(tiny_catalog.parent / "area.gpkg", tiny_catalog.parent / "area_copy.gpkg")
    _write_raster(tiny_catalog.parent / "dem.tif", np.full((80, 80), 60000.0))
    res = runner.invoke(cli, ["layers", "check", str(tiny_catalog), "--resolution", "1000"])
    assert res.exit_code == 2
    assert "implausible" in res.output


def _dem_on(grid, path: Path, shift_px: tuple[float, float] = (0, 0), pad: int = 3) -> np.ndarray:
    """A DEM file on ``grid``'s pixels (plus ``pad`` px around), optionally shifted [px]."""
    rng = np.random.default_rng(7)
    h, w = grid.shape[0] + 2 * pad, grid.shape[1] + 2 * pad
    z = rng.uniform(500, 4000, (h, w)).astype(np.float32)
    z[0, 0] = -9999.0  # nodata
    t = grid.transform
    tr = from_origin(t.c - (pad - shift_px[1]) * t.a, t.f + (pad - shift_px[0]) * abs(t.e),
                     t.a, abs(t.e))  # fmt: skip
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype="float32",
                       crs=grid.crs.to_wkt(), transform=tr, nodata=-9999.0) as dst:  # fmt: skip
        dst.write(z, 1)
    return z


def test_raster_on_the_grid_is_read_without_warping(tmp_path: Path) -> None:
    from sitekit import io
    from sitekit.catalog import LayerSpec
    from sitekit.testing import small_grid

    grid = small_grid((40, 50), 1000.0, (0.0, 0.0), chunks=16)
    spec = LayerSpec(id="dem", kind="raster", path="dem.tif", role="terrain", units="m",
                     resampling="bilinear")  # fmt: skip
    z = _dem_on(grid, tmp_path / "dem.tif")
    aligned = io.open_raster(tmp_path / "dem.tif", spec, grid, "dem")
    assert "read-aligned" in aligned.data.name or any(
        "read-aligned" in str(k) for k in aligned.data.__dask_graph__()
    )
    np.testing.assert_array_equal(aligned.values, z[3:-3, 3:-3])
    # the same file half a pixel off the grid goes through the warper (and differs)
    _dem_on(grid, tmp_path / "off.tif", shift_px=(0.5, 0.5))
    spec_off = spec.model_copy(update={"path": "off.tif"})
    warped = io.open_raster(tmp_path / "off.tif", spec_off, grid, "dem")
    assert not any("read-aligned" in str(k) for k in warped.data.__dask_graph__())
    # a grid reaching past the file: NaN outside it; the file's nodata pixel is NaN too
    part = small_grid((66, 50), 1000.0, (-3000.0, -23_000.0), chunks=16)  # top = file's top
    partial = io.open_raster(tmp_path / "dem.tif", spec, part, "dem").values
    assert np.isnan(partial[46:]).all() and np.isfinite(partial[:46].ravel()[1:]).all()
    assert np.isnan(partial[0, 0])
    np.testing.assert_array_equal(partial[:46].ravel()[1:], z[:, :50].ravel()[1:])
