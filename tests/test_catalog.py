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
from sitekit.cli import cli, main  # noqa: F401
from sitekit.errors import CRSError, LayerError, RecipeError, SitekitWarning
from sitekit.io.catalog import Catalog


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
    from sitekit.io import layers as io
    from sitekit.io.catalog import LayerSpec
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
    gaps = spec.model_copy(update={"allow_gaps": True})  # partial cover is an error otherwise
    with pytest.warns(SitekitWarning, match="allow_gaps"):
        partial = io.open_raster(tmp_path / "dem.tif", gaps, part, "dem").values
    assert np.isnan(partial[46:]).all() and np.isfinite(partial[:46].ravel()[1:]).all()
    assert np.isnan(partial[0, 0])
    np.testing.assert_array_equal(partial[:46].ravel()[1:], z[:, :50].ravel()[1:])


@pytest.mark.parametrize(
    ("dtype", "nodata"),
    [("float32", -9999.0), ("int16", -32768.0), ("uint16", 0.0), ("int32", -1.0)],
)
def test_aligned_reader_direct_path_equals_general_path(
    tmp_path: Path, dtype: str, nodata: float
) -> None:
    """Windows inside the file are decoded straight into float32 (exact types only); the values
    (nodata → NaN included) equal the general path's, and edge windows still pad with NaN."""
    from sitekit.io.layers import _aligned_reader

    rng = np.random.default_rng(7)
    info = np.iinfo(dtype) if dtype != "float32" else None
    lo, hi = (info.min, info.max) if info else (-500.0, 9000.0)
    z = rng.uniform(max(lo, -30000), min(hi, 60000), (37, 45)).astype(dtype)
    z[rng.random(z.shape) < 0.1] = nodata
    path = tmp_path / f"{dtype}.tif"
    with rasterio.open(path, "w", driver="GTiff", width=45, height=37, count=1, dtype=dtype,
                       tiled=True, blockxsize=16, blockysize=16, nodata=nodata) as dst:  # fmt: skip
        dst.write(z, 1)
    args = (str(path), 1, nodata, z.shape, (2, 3))
    direct, general = _aligned_reader(*args, dtype), _aligned_reader(*args, "")
    for window in [(0, 20, 0, 30), (5, 34, 1, 42), (30, 40, 35, 50), (-4, 3, -5, 2)]:
        a, b = direct(window), general(window)
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    ref = np.where(z == nodata, np.nan, z.astype(np.float32))
    np.testing.assert_array_equal(direct((0, 20, 0, 30)), ref[2:22, 3:33])


def _tiled_dem(path: Path, grid, z: np.ndarray) -> None:
    """``z`` on ``grid``'s pixels as a tiled (16²) float32 file, nodata −9999."""
    t = grid.transform
    with rasterio.open(path, "w", driver="GTiff", width=z.shape[1], height=z.shape[0], count=1,
                       dtype="float32", crs=grid.crs.to_wkt(), tiled=True, blockxsize=16,
                       blockysize=16, transform=t, nodata=-9999.0) as dst:  # fmt: skip
        dst.write(z.astype(np.float32), 1)


def test_sampled_overview_reads_a_tile_lattice_inside_the_study_area(tmp_path: Path) -> None:
    """The quick validation decodes ≤ SAMPLE_TILES tiles, all inside the study area's footprint,
    and agrees with the full overview on every cell it samples."""
    import shapely

    from sitekit.io import layers as io
    from sitekit.io.catalog import LayerSpec
    from sitekit.testing import small_grid

    grid = small_grid((512, 512), 100.0, (0.0, 0.0), chunks=128)  # 32 × 32 tiles of 16 px
    z = np.random.default_rng(3).uniform(200, 5000, (512, 512))
    z[::7, ::5] = -9999.0
    _tiled_dem(tmp_path / "dem.tif", grid, z)
    spec = LayerSpec(id="dem", kind="raster", path="dem.tif", role="terrain", units="m")
    info = io.raster_info(tmp_path / "dem.tif", spec, "dem")
    area = shapely.box(10_000.0, 20_000.0, 30_000.0, 45_000.0)  # cols 100–300, rows 62–312
    win = io._footprint(info, grid, area)
    assert win == (62, 312, 100, 300)
    ov, sampled, share = io._sampled_overview(
        tmp_path / "dem.tif", spec, info, "dem", win, size=256
    )
    full = io._overview(tmp_path / "dem.tif", spec, info, "dem", size=256)
    assert ov.shape == full.shape == sampled.shape == (256, 256)
    np.testing.assert_array_equal(ov[sampled], full[sampled])
    assert np.isnan(ov[~sampled]).all()
    rows, cols = np.nonzero(sampled)  # cells of 2 px
    tiles = {(r * 2 // 16, c * 2 // 16) for r, c in zip(rows, cols, strict=True)}
    assert 0 < len(tiles) <= io.SAMPLE_TILES
    assert share == pytest.approx(len(tiles) / (17 * 13))  # footprint: 17 × 13 tiles
    # a footprint one tile row high and 32 long: evenly spaced tiles, never none, ≤ the budget
    _, s_row, _ = io._sampled_overview(
        tmp_path / "dem.tif", spec, info, "dem", (100, 110, 0, 512), size=256, max_tiles=8
    )
    row_tiles = {(r * 2 // 16, c * 2 // 16) for r, c in zip(*np.nonzero(s_row), strict=True)}
    assert {a for a, _ in row_tiles} == {6} and len(row_tiles) == 8
    assert all(62 // 16 <= a <= 311 // 16 and 100 // 16 <= b <= 299 // 16 for a, b in tiles)
    # the whole file as study area: still a lattice, not every tile
    win_all = io._footprint(info, grid, shapely.box(*grid.bounds))
    assert win_all == (0, 512, 0, 512)
    _, s_all, _ = io._sampled_overview(tmp_path / "dem.tif", spec, info, "dem", win_all, size=256)
    n = len({(r * 2 // 16, c * 2 // 16) for r, c in zip(*np.nonzero(s_all), strict=True)})
    assert n <= io.SAMPLE_TILES < 32 * 32
    # a sample of most of the file's tiles: none (the full overview is as cheap)
    path = tmp_path / "dem.tif"
    assert io._sampled_overview(path, spec, info, "dem", win_all, max_tiles=1024) is None
    # but a small study area's footprint is read alone even when every tile of it is needed
    _, s_win, share_all = io._sampled_overview(path, spec, info, "dem", win, max_tiles=1024)
    assert share_all == 1.0
    assert s_win.sum() == 272 * 208  # tiles over rows 62–312, cols 100–300: rows 48–320, 96–304


def test_open_raster_falls_back_to_the_full_overview_when_the_sample_sees_no_data(
    tmp_path: Path,
) -> None:
    """Data only between the sampled tiles: the sample sees none, the full overview finds the
    data, and the raster is accepted; implausible values the sample sees are an error; a raster
    with no data in the study area is still refused."""
    from sitekit.errors import LayerError
    from sitekit.io import layers as io
    from sitekit.io.catalog import LayerSpec
    from sitekit.testing import small_grid

    grid = small_grid((512, 512), 100.0, (0.0, 0.0), chunks=128)
    # allow_gaps: data on 10 % of the area is the point here (the coverage rule is tested in io)
    spec = LayerSpec(
        id="dem", kind="raster", path="dem.tif", role="terrain", units="m", allow_gaps=True
    )
    info0 = {"shape": (512, 512)}
    z = np.full((512, 512), 1500.0)
    _tiled_dem(tmp_path / "dem.tif", grid, z)
    info = io.raster_info(tmp_path / "dem.tif", spec, "dem")
    assert info["shape"] == info0["shape"]
    _, sampled, _ = io._sampled_overview(tmp_path / "dem.tif", spec, info, "dem", (0, 512, 0, 512))
    # data on 10 % of the rows, none of them sampled
    rows_sampled = np.flatnonzero(sampled.any(axis=1)) * (512 // sampled.shape[0])
    hole = np.ones(512, bool)
    for r in rows_sampled:
        hole[(r // 16) * 16 : (r // 16 + 1) * 16] = False
    data_rows = np.flatnonzero(hole)[:52]
    z = np.full((512, 512), -9999.0)
    z[data_rows] = 1500.0
    _tiled_dem(tmp_path / "dem.tif", grid, z)
    quick = io._sampled_overview(tmp_path / "dem.tif", spec, info, "dem", (0, 512, 0, 512))
    assert not np.isfinite(quick[0]).any()
    with pytest.warns(SitekitWarning, match="allow_gaps"):  # accepted via the full overview
        out = io.open_raster(tmp_path / "dem.tif", spec, grid, "dem")
    assert np.isfinite(out.values).mean() == pytest.approx(52 / 512)
    # implausible values inside a sampled tile
    z = np.full((512, 512), 1500.0)
    z[rows_sampled[0]] = 60_000.0
    _tiled_dem(tmp_path / "dem.tif", grid, z)
    with pytest.raises(LayerError, match="implausible"):
        io.open_raster(tmp_path / "dem.tif", spec, grid, "dem")
    # no data at all
    _tiled_dem(tmp_path / "dem.tif", grid, np.full((512, 512), -9999.0))
    with pytest.raises(LayerError, match="only nodata"):
        io.open_raster(tmp_path / "dem.tif", spec, grid, "dem")


# -- categorical (class-code) rasters ------------------------------------------------------------
LANDCOVER_ENTRY = """
  - id: landcover
    kind: raster
    path: worldcover.tif
    role: other
    units: class
    categorical: true
    provides: [land_cover_worldcover]
"""


def _worldcover_on_grid_blocks(folder: Path, grid, blocks: dict[int, list[tuple[int, int]]]):
    """A WorldCover-coded GeoTIFF in EPSG:4326 at 0.0005° (≈ 50 m, unlike the 1000 m Albers grid):
    class 30 (grassland) everywhere, and for each listed grid pixel (row, col) the inner 60 % of
    that pixel, reprojected to lon/lat, burnt with the given class. Nearest resampling at the
    grid's pixel centres must then see exactly those pixels (no centre lies within 200 m of a
    burnt edge, ≫ the 50 m source pixel)."""
    import shapely
    from pyproj import Transformer
    from rasterio.features import rasterize as burn

    to_ll = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    res = 0.0005
    west, north = 100.9, 30.6
    nx = ny = int(0.7 / res)
    shapes = []
    for code, cells in blocks.items():
        for r, c in cells:
            x0 = grid.bounds[0] + c * grid.resolution_m
            y1 = grid.bounds[3] - r * grid.resolution_m
            d = 0.2 * grid.resolution_m
            box = shapely.segmentize(
                shapely.box(x0 + d, y1 - grid.resolution_m + d, x0 + grid.resolution_m - d, y1 - d),
                50.0,
            )
            shapes.append((shapely.transform(box, lambda xy: np.c_[to_ll.transform(*xy.T)]), code))
    arr = burn(
        shapes,
        out_shape=(ny, nx),
        transform=from_origin(west, north, res, res),
        fill=30,
        dtype="uint8",
    )
    with rasterio.open(
        folder / "worldcover.tif", "w", driver="GTiff", width=nx, height=ny, count=1,
        dtype="uint8", crs="EPSG:4326", transform=from_origin(west, north, res, res), nodata=0,
    ) as dst:  # fmt: skip
        dst.write(arr, 1)


def test_worldcover_classes_from_other_crs_exclude_hand_counted_pixels(tiny_catalog: Path) -> None:
    from sitekit.science.constraints import ClassRaster, evaluate

    grid = Catalog(tiny_catalog).grid(1000.0, chunks=16)
    r0, c0 = grid.shape[0] // 2 - 2, grid.shape[1] // 2 - 2
    cropland = [(r0 + i, c0 + j) for i in range(3) for j in range(4)]  # 3 × 4 = 12 px
    water = [(r0 + 5, c0), (r0 + 5, c0 + 1)]  # 2 px
    trees = [(r0 - 3, c0)]  # 1 px, not excluded
    _worldcover_on_grid_blocks(tiny_catalog.parent, grid, {40: cropland, 80: water, 10: trees})
    tiny_catalog.write_text(tiny_catalog.read_text() + LANDCOVER_ENTRY)
    cat = Catalog(tiny_catalog)
    lc = cat.raster("landcover", grid)
    excl = ClassRaster("wc", "WorldCover cropland + water", "耕地+水体", layer=lc, classes=(40, 80))
    mask = evaluate([excl], grid).masks["wc"].values
    assert mask.sum() == 12 + 2  # counted by hand above
    expected = np.zeros(grid.shape, bool)
    for r, c in cropland + water:
        expected[r, c] = True
    assert (mask == expected).all()
    # include mode: only grassland (30) stays; cropland, water and the tree pixel go
    keep = ClassRaster("wc", "grass only", "仅草地", layer=lc, classes=(30,), mode="include")
    assert evaluate([keep], grid).masks["wc"].values.sum() == 12 + 2 + 1
    # the class codes survive resampling untouched (nearest): no code that is not in the file
    assert set(np.unique(lc.values[np.isfinite(lc.values)])) <= {10.0, 30.0, 40.0, 80.0}


def test_bilinear_categorical_refused(tiny_catalog: Path) -> None:
    tiny_catalog.write_text(tiny_catalog.read_text() + LANDCOVER_ENTRY)
    _write_raster(tiny_catalog.parent / "worldcover.tif", np.full((80, 80), 30.0))
    cat = Catalog(tiny_catalog)
    grid = cat.grid(1000.0)
    with pytest.raises(LayerError, match="categorical.*bilinear.*nearest or mode"):
        cat.raster("landcover", grid, resampling="bilinear")
    # in the catalogue itself: the file, line and key are named
    tiny_catalog.write_text(
        tiny_catalog.read_text().replace(
            "categorical: true", "categorical: true\n    resampling: bilinear"
        )
    )
    with pytest.raises(RecipeError, match=r"catalog.yaml:\d+.*use `resampling: nearest`"):
        Catalog(tiny_catalog)


def test_any_catalogue_raster_as_threshold_class_rule_and_criterion(tiny_catalog: Path) -> None:
    """A catalogue raster (not a derived layer) works as (a) a class rule, (b) a threshold and
    (c) a scoring criterion, through the same recipe keys as the derived layers."""
    from sitekit.engine.pipeline import Pipeline
    from sitekit.science import scoring
    from sitekit.science.constraints import evaluate
    from sitekit.specs.recipe import ClassesC, Criterion, ThresholdC, load_recipe

    grid = Catalog(tiny_catalog).grid(1000.0, chunks=16)
    r0, c0 = grid.shape[0] // 2 - 2, grid.shape[1] // 2 - 2
    cropland = [(r0 + i, c0 + j) for i in range(3) for j in range(4)]
    water = [(r0 + 5, c0), (r0 + 5, c0 + 1)]
    _worldcover_on_grid_blocks(tiny_catalog.parent, grid, {40: cropland, 80: water})
    tiny_catalog.write_text(tiny_catalog.read_text() + LANDCOVER_ENTRY)
    pipe = Pipeline(Catalog(tiny_catalog), grid)
    base, _ = load_recipe(Path(__file__).resolve().parents[1] / "pipelines" / "pv.yaml")
    recipe = base.model_copy(
        update={
            "rules": [],
            "constraints": [
                ClassesC(kind="classes", id="crop", layer="landcover", exclude_classes=[40]),
                ThresholdC(kind="threshold", id="wet", layer="landcover", op=">=", value=80),
            ],
        }
    )
    res = evaluate(pipe.constraint_objects(recipe), grid)
    assert res.masks["crop"].values.sum() == 12
    assert res.masks["wet"].values.sum() == 2
    crit = Criterion(
        id="lc", layer="landcover", membership={"kind": "step", "threshold": 35, "above": False},
        weight=1.0,
    )  # fmt: skip
    x = pipe.derived(crit.layer, recipe)
    m = scoring.membership(x, "step", threshold=35, above=False).values
    # grassland (30) everywhere scores 1; the 14 burnt pixels score 0
    assert np.nansum(m == 0) == 14
    # a class rule on a continuous raster is refused
    bad = recipe.model_copy(
        update={"constraints": [ClassesC(kind="classes", id="x", layer="dem", exclude_classes=[1])]}
    )
    with pytest.raises(LayerError, match="not `categorical: true`"):
        pipe.constraint_objects(bad)
    with pytest.raises(RecipeError, match="unknown layer 'nope'"):
        pipe.derived("nope", recipe)


def test_land_cover_cost_term_of_the_connection_surface(tiny_catalog: Path) -> None:
    from sitekit.engine.pipeline import Pipeline
    from sitekit.engine.rules import cost_penalty
    from sitekit.specs.recipe import CostTerm, load_recipe

    grid = Catalog(tiny_catalog).grid(1000.0, chunks=16)
    r0, c0 = grid.shape[0] // 2 - 2, grid.shape[1] // 2 - 2
    cropland = [(r0 + i, c0 + j) for i in range(3) for j in range(4)]
    _worldcover_on_grid_blocks(tiny_catalog.parent, grid, {40: cropland})
    tiny_catalog.write_text(tiny_catalog.read_text() + LANDCOVER_ENTRY)
    pipe = Pipeline(Catalog(tiny_catalog), grid)
    recipe, _ = load_recipe(Path(__file__).resolve().parents[1] / "pipelines" / "pv.yaml")
    terms = [CostTerm(layer="landcover", classes={40: 5.0})]
    pen = cost_penalty(terms, pipe, recipe).values
    assert (pen == 5.0).sum() == 12 and np.isin(pen, (1.0, 5.0)).all()
    # a threshold term on the DEM (2000 m + 1000 m per degree east): × 3 above 2300 m
    dem = pipe.derived("dem", recipe).values
    both = cost_penalty([*terms, CostTerm(layer="dem", above=2300.0, multiplier=3.0)], pipe, recipe)
    expect = np.where(pen == 5.0, 5.0, 1.0) * np.where(dem > 2300.0, 3.0, 1.0)
    assert np.allclose(both.values, expect)
    with pytest.raises(LayerError, match="not `categorical: true`"):
        cost_penalty([CostTerm(layer="dem", classes={1: 2.0})], pipe, recipe)


def test_crossing_cost_of_a_rule_lengthens_the_connection(tiny_catalog: Path) -> None:
    """A per-rule crossing cost makes the least-cost connection dearer exactly where the line
    must cross that rule's mask, and leaves pixels that need not cross it unchanged."""
    from types import SimpleNamespace

    from sitekit.engine import rules
    from sitekit.engine.pipeline import Pipeline
    from sitekit.specs.recipe import ThresholdC, load_recipe

    grid = Catalog(tiny_catalog).grid(1000.0, chunks=16)
    pipe = Pipeline(Catalog(tiny_catalog), grid)
    base, _ = load_recipe(Path(__file__).resolve().parents[1] / "pipelines" / "pv.yaml")
    band = ThresholdC(kind="threshold", id="band", layer="dem", op=">", value=2300.0)
    grid_cfg = base.grid.model_copy(update={"layer": "towns", "forbidden": []})
    plain = base.model_copy(update={"rules": [], "constraints": [band], "grid": grid_cfg})
    dear = plain.model_copy(
        update={"grid": grid_cfg.model_copy(update={"crossing_costs": {"band": 10.0}})}
    )
    masks = {"band": pipe.constraints(plain).masks["band"]}
    d0 = pipe.connection_distance(plain, None).values
    g1 = SimpleNamespace(recipe=dear, constraints=SimpleNamespace(masks=masks))
    d1 = pipe.connection_distance(dear, None, rules.crossing_penalty(g1)).values
    inside = np.isfinite(d0)
    assert (d1[inside] >= d0[inside] - 1e-4).all()  # a penalty never shortens a path
    assert (d1[inside] > d0[inside] * 1.5).any()  # pixels in the band cost ≥ 10 × per metre
    # town A (101.1 °E, DEM 2200 m) sits west of the band: pixels around it are unchanged
    low = pipe.derived("dem", plain).values < 2250.0
    assert np.allclose(d1[inside & low & (d0 < 3.0)], d0[inside & low & (d0 < 3.0)], atol=1e-3)
