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
    assert "catalog.yaml:16" in msg and "unknown key 'unit'" in msg and "did you mean 'units'" in msg


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


def _write_raster(path: Path, arr: np.ndarray, crs="EPSG:4326", nodata=-9999.0, origin=(100.9, 30.6)):
    with rasterio.open(
        path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1,
        dtype="float32", crs=crs, transform=from_origin(*origin, 0.01, 0.01), nodata=nodata,
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
