"""Inputs that used to give silently wrong results, escape the catalogue folder or hang (issue 20).

Each case ends in a clear message (exit 2 on the command line) or, for scale/offset and VRT
members, in the right numbers.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin

from sitekit.cli import cli, register
from sitekit.engine.run import RunOptions, check_cluster_options
from sitekit.errors import InputError, LayerError, RecipeError, SitekitWarning
from sitekit.io.catalog import Catalog
from sitekit.specs.recipe import load_recipe

register()
REPO = Path(__file__).resolve().parents[1]
TINY_WIND = REPO / "tests" / "badinput" / "recipes" / "tiny_wind.yaml"
TINY_PS = REPO / "tests" / "badinput" / "recipes" / "tiny_ps.yaml"


def _dem(path: Path, z: np.ndarray, west: float = 100.9, **profile) -> None:
    with rasterio.open(
        path, "w", driver="GTiff", width=z.shape[1], height=z.shape[0], count=1,
        dtype=z.dtype, crs="EPSG:4326", transform=from_origin(west, 30.6, 0.01, 0.01),
        nodata=-9999, **profile,
    ) as dst:  # fmt: skip
        dst.write(z, 1)


def _tiny_dem(catalog: Path) -> np.ndarray:
    with rasterio.open(catalog.parent / "dem.tif") as src:
        return src.read(1)


def _mean_on_grid(catalog: Path) -> float:
    cat = Catalog(catalog)
    grid = cat.grid(2000.0)
    return float(np.nanmean(cat.raster("dem", grid).values))


# ------------------------------------------------------------------------------ scale/offset
def test_geotiff_scale_and_offset_are_applied(tiny_catalog: Path) -> None:
    before = _mean_on_grid(tiny_catalog)
    raw = _tiny_dem(tiny_catalog)
    _dem(tiny_catalog.parent / "dem.tif", ((raw + 1000.0) * 2.0).astype("float32"))
    with rasterio.open(tiny_catalog.parent / "dem.tif", "r+") as dst:
        dst.scales, dst.offsets = (0.5,), (-1000.0,)  # value = raw × 0.5 − 1000
    assert _mean_on_grid(tiny_catalog) == pytest.approx(before, abs=0.05)


# ------------------------------------------------------------------------------ coverage
def test_a_raster_covering_half_the_study_area_is_an_error(tiny_catalog: Path) -> None:
    raw = _tiny_dem(tiny_catalog)
    _dem(tiny_catalog.parent / "dem.tif", raw[:, :40].copy())  # 100.9–101.3 °E of 101–101.5
    with pytest.raises(LayerError, match=r"only .*% of the study area.*allow_gaps"):
        _mean_on_grid(tiny_catalog)
    text = tiny_catalog.read_text().replace(
        "    units: m\n", "    units: m\n    allow_gaps: true\n"
    )
    tiny_catalog.write_text(text)
    with pytest.warns(SitekitWarning, match="no data on .*% of the study area"):
        _mean_on_grid(tiny_catalog)


# ------------------------------------------------------------------------------ VRTs, sidecars
VRT = """<VRTDataset rasterXSize="80" rasterYSize="80">
  <SRS>EPSG:4326</SRS>
  <GeoTransform>100.9, 0.01, 0, 30.6, 0, -0.01</GeoTransform>
  <VRTRasterBand dataType="Float32" band="1">
    <NoDataValue>-9999</NoDataValue>
    <SimpleSource>
      <SourceFilename relativeToVRT="{rel}">{src}</SourceFilename>
      <SourceBand>1</SourceBand>
    </SimpleSource>
  </VRTRasterBand>
</VRTDataset>
"""


def _point_dem_at_vrt(catalog: Path, src: str, rel: int = 1) -> None:
    (catalog.parent / "mosaic.vrt").write_text(VRT.format(src=src, rel=rel))
    catalog.write_text(catalog.read_text().replace("path: dem.tif", "path: mosaic.vrt"))


@pytest.mark.parametrize(
    "src,rel,match",
    [
        ("../outside/dem.tif", 1, "outside the catalogue folder"),
        ("/etc/hostname", 0, "outside the catalogue folder"),
        ("/vsicurl/http://127.0.0.1:9/dem.tif", 0, "network or GDAL virtual path"),
        ("https://example.invalid/dem.tif", 0, "network or GDAL virtual path"),
    ],
)
def test_a_vrt_cannot_read_outside_the_catalogue_or_the_network(
    tiny_catalog: Path, src: str, rel: int, match: str
) -> None:
    outside = tiny_catalog.parent.parent / "outside"
    outside.mkdir(exist_ok=True)
    shutil.copy(tiny_catalog.parent / "dem.tif", outside / "dem.tif")
    _point_dem_at_vrt(tiny_catalog, src, rel)
    cat = Catalog(tiny_catalog)
    with pytest.raises(LayerError, match=match):
        cat.file(cat.layer("dem"))
    res = CliRunner().invoke(cli, ["layers", "check", str(tiny_catalog)])
    assert res.exit_code != 0 or match.split()[0] in res.output


def test_vrt_members_and_sidecars_are_part_of_the_layer(tiny_catalog: Path) -> None:
    (tiny_catalog.parent / "tiles").mkdir()
    shutil.move(tiny_catalog.parent / "dem.tif", tiny_catalog.parent / "tiles" / "dem.tif")
    (tiny_catalog.parent / "tiles" / "dem.tif.aux.xml").write_text("<PAMDataset/>")
    _point_dem_at_vrt(tiny_catalog, "tiles/dem.tif")
    cat = Catalog(tiny_catalog)
    names = [p.name for p in cat.files(cat.layer("dem"))]
    assert names == ["mosaic.vrt", "dem.tif", "dem.tif.aux.xml"]
    assert _mean_on_grid(tiny_catalog) > 0  # and it reads


def test_new_tiles_behind_a_vrt_or_a_new_sidecar_change_the_cache_key(tiny_catalog: Path) -> None:
    (tiny_catalog.parent / "tiles").mkdir()
    shutil.move(tiny_catalog.parent / "dem.tif", tiny_catalog.parent / "tiles" / "dem.tif")
    _point_dem_at_vrt(tiny_catalog, "tiles/dem.tif")
    key = Catalog(tiny_catalog).content_key()
    raw = _tiny_dem_at(tiny_catalog.parent / "tiles" / "dem.tif")
    _dem(tiny_catalog.parent / "tiles" / "dem.tif", raw + 5.0)  # the VRT file is unchanged
    assert Catalog(tiny_catalog).content_key()["dem"] != key["dem"]

    import geopandas as gpd

    area = gpd.read_file(tiny_catalog.parent / "area.gpkg")
    area.to_file(tiny_catalog.parent / "area.shp")
    tiny_catalog.write_text(tiny_catalog.read_text().replace("area.gpkg", "area.shp"))
    cat = Catalog(tiny_catalog)
    assert {".shp", ".shx", ".dbf", ".prj"} <= {p.suffix for p in cat.files(cat.layer("area"))}
    before = cat.content_key()["area"]
    prj = tiny_catalog.parent / "area.prj"
    prj.write_text(prj.read_text().replace("WGS_1984", "WGS_1984 "))
    assert Catalog(tiny_catalog).content_key()["area"] != before


def _tiny_dem_at(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def test_a_pipe_as_a_layer_path_is_refused_without_hanging(tiny_catalog: Path) -> None:
    (tiny_catalog.parent / "dem.tif").unlink()
    os.mkfifo(tiny_catalog.parent / "dem.tif")
    cat = Catalog(tiny_catalog)
    t0 = time.monotonic()
    with pytest.raises(LayerError, match="not a regular file"):
        cat.file(cat.layer("dem"))
    assert time.monotonic() - t0 < 5


# ------------------------------------------------------------------------------ YAML, values
def test_a_yaml_alias_bomb_is_refused_before_any_walk(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n" + TINY_WIND.read_text())
    t0 = time.monotonic()
    with pytest.raises(RecipeError, match=r"bomb.yaml:1: .*aliases.*expand"):
        load_recipe(bomb)
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize(
    "override", ["criteria.0.weight=1e309", "criteria.0.weight=.nan", "criteria.0.weight=-.inf"]
)
def test_non_finite_numbers_are_refused(override: str) -> None:
    with pytest.raises(RecipeError, match="finite number"):
        load_recipe(REPO / "pipelines" / "pv.yaml", [override])


# ------------------------------------------------------------------------------ recipes, options
def _wind_recipe(tmp_path: Path, name: str, threshold: float) -> Path:
    text = TINY_WIND.read_text()
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace("name_en:", f"# {name}\nname_en:", 1))
    return path


def test_two_recipes_of_one_technology_write_two_sets(tiny_catalog: Path, tmp_path: Path) -> None:
    """The second recipe's sites, layers and rasters land in OUT/<recipe name>/, complete, and
    never overwrite the first's (the run used to write both into the same names)."""
    second = tmp_path / "strict_wind.yaml"
    second.write_text(TINY_WIND.read_text())
    out = tmp_path / "out"
    res = CliRunner().invoke(
        cli,
        ["-q", "run", str(TINY_WIND), str(second), "--catalog", str(tiny_catalog),
         "--out", str(out), "--resolution", "1000", "--no-processes", "--workers", "1",
         "--no-map", "--no-cache",
         "--set", "sites.score_threshold=0.2"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output + repr(res.exception)
    for folder in (out, out / "strict_wind"):
        assert (folder / "wind_sites.csv").is_file(), folder
        assert (folder / "summary.csv").is_file() and (folder / "rasters").is_dir()
    runs = [json.loads((f / "run.json").read_text()) for f in (out, out / "strict_wind")]
    assert [sorted(r["recipes"]) for r in runs] == [["tiny_wind.yaml"], ["strict_wind.yaml"]]


def test_two_pumped_storage_recipes_write_two_sets(tiny_catalog: Path, tmp_path: Path) -> None:
    copy = tmp_path / "tiny_ps_2.yaml"
    copy.write_text(TINY_PS.read_text())
    bad = tmp_path / "broken_ps.yaml"
    bad.write_text(TINY_PS.read_text() + "\nnot_a_key: 1\n")
    base = ["-q", "run", str(TINY_PS), "--catalog", str(tiny_catalog), "--resolution", "1000",
            "--no-processes", "--workers", "1", "--no-map", "--no-cache"]  # fmt: skip
    res = CliRunner().invoke(cli, [*base, str(bad), "--out", str(tmp_path / "bad")])
    assert res.exit_code == 2 and "not_a_key" in res.output  # a second recipe is validated too
    assert not (tmp_path / "bad").exists()
    res = CliRunner().invoke(cli, [*base, str(copy), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert (tmp_path / "out" / "ps_pairs.csv").is_file()
    assert (tmp_path / "out" / "tiny_ps_2" / "ps_pairs.csv").is_file()


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"workers": 0}, "--workers 0"),
        ({"workers": 100_000}, "--workers 100000"),
        ({"threads_per_worker": -1}, "--threads-per-worker -1"),
        ({"memory_limit": "1KB"}, "below 256 MiB"),
        ({"memory_limit": "lots"}, "give a size"),
        ({"memory_limit": "100TB"}, "more than this machine"),
    ],
)
def test_impossible_cluster_options_are_refused(tmp_path: Path, kw: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        check_cluster_options(RunOptions(catalog=tmp_path, out=tmp_path, **kw))


@pytest.mark.parametrize("res", ["0.01", "0", "nan"])
def test_an_absurd_resolution_is_refused_before_the_grid_is_made(
    tiny_catalog: Path, tmp_path: Path, res: str
) -> None:
    t0 = time.monotonic()
    result = CliRunner().invoke(
        cli, ["run", str(TINY_WIND), "--catalog", str(tiny_catalog), "--out",
              str(tmp_path / "out"), "--resolution", res],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert ("GiB of memory" in result.output) or ("positive number" in result.output)
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "out").exists()


def test_a_silent_scheduler_is_an_error_not_a_hang() -> None:
    import socket
    import threading

    from sitekit.engine.run import check_scheduler

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    held: list[socket.socket] = []

    def accept() -> None:  # accepts and never answers
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    t0 = time.monotonic()
    try:
        with pytest.raises(InputError, match="no answer within 2 s"):
            check_scheduler(f"tcp://127.0.0.1:{server.getsockname()[1]}", timeout_s=2.0)
    finally:
        server.close()
    assert time.monotonic() - t0 < 10
    with pytest.raises(InputError):
        check_scheduler("tcp://127.0.0.1:1", timeout_s=2.0)


def test_allow_gaps_reports_the_gap_and_excludes_it_from_eligible_area(
    tiny_catalog: Path, tmp_path: Path
) -> None:
    """A DEM covering 60 % of the study area (101.0–101.3 of 101.0–101.5 °E): with allow_gaps
    the run goes on, run.json says 60 %, and the eligible area is within the covered part."""
    raw = _tiny_dem(tiny_catalog)
    _dem(tiny_catalog.parent / "dem.tif", raw[:, :40].copy())
    tiny_catalog.write_text(
        tiny_catalog.read_text().replace("    units: m\n", "    units: m\n    allow_gaps: true\n")
    )
    out = tmp_path / "out"
    with pytest.warns(SitekitWarning, match="40.7% of the study area"):
        res = CliRunner().invoke(
            cli,
            ["-q", "run", str(TINY_WIND), "--catalog", str(tiny_catalog), "--out", str(out),
             "--resolution", "1000", "--no-processes", "--workers", "1", "--no-map",
             "--no-cache"],
        )  # fmt: skip
    assert res.exit_code == 0, res.output + repr(res.exception)
    run = json.loads((out / "run.json").read_text())
    assert run["inputs"]["dem"]["study_area_coverage_pct"] == pytest.approx(60.0, abs=3.0)
    import pandas as pd

    summary = pd.read_csv(out / "summary.csv", encoding="utf-8-sig")
    col = [c for c in summary.columns if c.startswith("eligible_km2")][0]
    area_km2 = 0.5 * 111.32 * np.cos(np.radians(30.25)) * 0.5 * 110.85  # 0.5° × 0.5° box
    assert 0 < summary[col].sum() <= 0.62 * area_km2
