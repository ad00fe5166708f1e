"""GeoPackage (styles + metadata), COG, CSV/XLSX writers and `sitekit export` re-export."""

from __future__ import annotations

import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import dask.array as da
import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pyproj
import pytest
import rasterio
import shapely

from sitekit.errors import CRSError, InputError, OutputError
from sitekit.grid import DEFAULT_CRS
from sitekit.outputs import export
from sitekit.outputs.export import (
    default_qml,
    read_metadata,
    read_styles,
    reexport,
    write_cog,
    write_geopackage,
    write_table,
)
from sitekit.testing import small_grid, synthetic_results

XSS = "<img src=x onerror=alert(1)>"
PROVENANCE = {"title": "测试 run", "demo_terrain": True, "recipe": {"weights": [0.6, 0.4]}}


@pytest.fixture(scope="module")
def results() -> dict:
    return synthetic_results()


@pytest.fixture(scope="module")
def gpkg(results: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gpkg") / "sitekit.gpkg"
    return write_geopackage(
        out,
        results["vectors"],
        metadata=PROVENANCE,
        layer_metadata={"pv_sites": {"recipe": "pipelines/pv.yaml"}},
    )


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- GeoPackage ----------------------------------------------------------------------------------
def test_geopackage_round_trip(gpkg: Path, results: dict) -> None:
    layers = dict(pyogrio.list_layers(gpkg))
    vectors = results["vectors"]
    assert set(layers) == set(vectors) | {"layer_styles"}
    assert layers["pv_sites"] == "Polygon" and layers["grid_points"] == "Point"
    assert layers["ps_pairs"] == "LineString" and layers["layer_styles"] is None
    for name, gdf in vectors.items():
        back = pyogrio.read_dataframe(gpkg, layer=name)
        assert pyproj.CRS(back.crs) == DEFAULT_CRS
        assert list(back.columns) == list(gdf.columns[gdf.columns != "geometry"]) + ["geometry"]
        assert len(back) == len(gdf)
        assert shapely.equals_exact(back.geometry.values, gdf.geometry.values, 1e-6).all()
    pv = pyogrio.read_dataframe(gpkg, layer="pv_sites")
    assert pv["site_id"].iloc[0] == XSS  # stored verbatim: data, not HTML
    np.testing.assert_allclose(pv["lcoe_cny_per_kwh"], vectors["pv_sites"]["lcoe_cny_per_kwh"])
    with sqlite3.connect(gpkg) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        assert con.execute("PRAGMA application_id").fetchone() == (0x47504B47,)  # "GPKG"


def test_layer_styles_follow_the_qgis_convention(gpkg: Path, results: dict) -> None:
    styles = pyogrio.read_dataframe(gpkg, layer="layer_styles", read_geometry=False)
    assert {
        "f_table_catalog",
        "f_table_schema",
        "f_table_name",
        "f_geometry_column",
        "styleName",
        "styleQML",
        "styleSLD",
        "useAsDefault",
        "description",
        "owner",
        "ui",
        "update_time",
    } <= set(styles.columns)
    assert sorted(styles["f_table_name"]) == sorted(results["vectors"])
    assert (styles["f_table_schema"] == "").all() and (styles["f_geometry_column"] == "geom").all()
    assert styles["useAsDefault"].all()
    with sqlite3.connect(gpkg) as con:  # registered as an attributes table, as QGIS does it
        kind = con.execute("SELECT data_type FROM gpkg_contents WHERE table_name='layer_styles'")
        assert kind.fetchone() == ("attributes",)
    qml = read_styles(gpkg)
    renderer = {k: ET.fromstring(v.split("\n", 1)[1]).find("renderer-v2") for k, v in qml.items()}
    assert renderer["pv_sites"].get("type") == "graduatedSymbol"
    assert renderer["pv_sites"].get("attr") == "rank"
    assert len(renderer["pv_sites"].findall("ranges/range")) == 4
    assert renderer["ps_pairs"].get("type") == "categorizedSymbol"
    assert renderer["ps_pairs"].get("attr") == "cost_class"
    assert renderer["prefectures"].get("type") == "singleSymbol"
    root = ET.fromstring(qml["prefectures"].split("\n", 1)[1])
    assert root.get("labelsEnabled") == "1"
    assert "name_zh" in root.find("labeling/settings/text-style").get("fieldName")
    kinds = {k: r.find("symbols/symbol").get("type") for k, r in renderer.items()}
    assert kinds["grid_points"] == "marker" and kinds["grid_lines"] == "line"
    assert kinds["pv_sites"] == "fill"
    assert root.findtext("layerGeometryType") == "2"


def test_metadata_extension(gpkg: Path) -> None:
    md = read_metadata(gpkg)
    assert md["geopackage"] == PROVENANCE
    assert md["tables"]["pv_sites"]["recipe"] == "pipelines/pv.yaml"
    assert (
        md["tables"]["pv_sites"]["title"]
        == "光伏场址（各市州前N名） / PV sites (top N per prefecture)"
    )
    assert {"modelled", "illustrative", "data_status"} <= set(md["tables"]["pv_sites"])
    with sqlite3.connect(gpkg) as con:
        rows = con.execute("SELECT md_scope, md_standard_uri, mime_type FROM gpkg_metadata")
        assert set(rows.fetchall()) == {("dataset", export.METADATA_URI, "application/json")}
        ext = con.execute(
            "SELECT table_name FROM gpkg_extensions WHERE extension_name='gpkg_metadata'"
        ).fetchall()
        assert sorted(ext) == [("gpkg_metadata",), ("gpkg_metadata_reference",)]
        refs = con.execute("SELECT reference_scope, table_name FROM gpkg_metadata_reference")
        refs = refs.fetchall()  # the whole file, then each layer (title and data status)
        assert ("geopackage", None) in refs and ("table", "pv_sites") in refs
        assert len(refs) == 1 + len(md["tables"])


def test_geopackage_in_cgcs2000(results: dict, tmp_path: Path) -> None:
    layers = {k: results["vectors"][k] for k in ("pv_sites", "grid_points")}
    out = write_geopackage(tmp_path / "x.gpkg", layers, crs="EPSG:4490")
    for name, gdf in layers.items():
        back = pyogrio.read_dataframe(out, layer=name)
        assert back.crs.to_epsg() == 4490
        expect = gdf.to_crs(4490)
        assert shapely.equals_exact(back.geometry.values, expect.geometry.values, 1e-9).all()
    assert read_metadata(out) == {"geopackage": None, "tables": {}}


def test_geopackage_is_atomic(results: dict, tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "sitekit.gpkg"
    write_geopackage(target, {"pv_sites": results["vectors"]["pv_sites"]})
    before = target.read_bytes()
    real, calls = pyogrio.write_dataframe, []

    def failing(*args, **kwargs):
        calls.append(kwargs.get("layer"))
        if len(calls) == 2:
            raise RuntimeError("disk full (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(export.pyogrio, "write_dataframe", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        write_geopackage(
            target, {"a": results["vectors"]["pv_sites"], "b": results["vectors"]["wind_sites"]}
        )
    assert calls == ["a", "b"]
    assert target.read_bytes() == before
    assert _files(tmp_path) == ["sitekit.gpkg"]  # no temp file, no -journal/-wal left


def test_geopackage_input_errors(results: dict, tmp_path: Path) -> None:
    nocrs = gpd.GeoDataFrame({"a": [1]}, geometry=[shapely.Point(0, 0)])
    with pytest.raises(CRSError, match="'x' has no CRS"):
        write_geopackage(tmp_path / "a.gpkg", {"x": nocrs})
    with pytest.raises(InputError, match="reserved"):
        write_geopackage(tmp_path / "a.gpkg", {"layer_styles": results["vectors"]["pv_sites"]})
    with pytest.raises(CRSError, match="unknown CRS"):
        write_geopackage(tmp_path / "a.gpkg", results["vectors"], crs="EPSG:999999")
    assert _files(tmp_path) == []


def test_default_qml_escapes_category_values() -> None:
    gdf = gpd.GeoDataFrame({"cost_class": ['A"<x>']}, geometry=[shapely.Point(0, 0)], crs=4326)
    from sitekit.outputs.style import MapStyle, VectorStyle

    vs = VectorStyle(name_en="p", color_by="cost_class", categories={'A"<x>': "#ff0000"})
    style = MapStyle(vectors={"p": vs})
    root = ET.fromstring(default_qml("p", gdf, style).split("\n", 1)[1])
    assert root.find("renderer-v2/categories/category").get("value") == 'A"<x>'


# -- COG -------------------------------------------------------------------------------------------
def _lazy(grid, z: np.ndarray, name: str, **attrs) -> object:
    return grid.wrap(da.from_array(z, chunks=grid.dask_chunks), name, **attrs)


def test_cog_is_valid_and_round_trips(tmp_path: Path) -> None:
    grid = small_grid((300, 260), 100.0, chunks=70)
    z = np.random.default_rng(1).random(grid.shape).astype(np.float32) * 1000
    z[10:20, 30:40] = np.nan
    arr = _lazy(
        grid,
        z,
        "pv_yield",
        units="kWh/kWp/yr",
        long_name="PV yield",
        modelled="yes",
        method="pvlib clear-sky × clearness",
    )
    out = write_cog(tmp_path / "pv_yield.tif", arr, blocksize=128)
    with rasterio.open(out) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.profile["tiled"] and src.block_shapes == [(128, 128)]
        assert src.compression.name.lower() == "deflate"
        assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3"  # floating-point predictor
        assert src.overviews(1) == [2, 4]  # 300 px → 150 → 75 ≤ one 128 px tile
        assert np.isnan(src.nodata) and src.dtypes == ("float32",)
        assert src.transform == grid.transform and pyproj.CRS(src.crs.to_wkt()) == grid.crs
        tags = src.tags()
        assert tags["units"] == "kWh/kWp/yr" and tags["modelled"] == "yes"
        assert tags["method"].startswith("pvlib") and src.descriptions == ("PV yield",)
        assert src.units == ("kWh/kWp/yr",)
        np.testing.assert_array_equal(src.read(1), z)  # NaN positions included
    assert _files(tmp_path) == ["pv_yield.tif"]


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.uint32])
def test_cog_integer_masks(tmp_path: Path, dtype) -> None:
    grid = small_grid((50, 40), 100.0, chunks=16)
    z = (np.arange(2000).reshape(50, 40) * 2654435761 % 2**32).astype(np.uint64)
    z = (z % 2).astype(bool) if dtype is bool else z.astype(dtype)
    out = write_cog(tmp_path / "m.tif", _lazy(grid, z, "mask"), blocksize=128)
    with rasterio.open(out) as src:
        assert src.dtypes[0] == ("uint8" if dtype is bool else np.dtype(dtype).name)
        assert src.nodata is None and src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        np.testing.assert_array_equal(src.read(1), z.astype(src.dtypes[0]))


def test_cog_computes_each_chunk_once(tmp_path: Path) -> None:
    grid = small_grid((64, 48), 100.0, chunks=16)
    seen: list[tuple[int, int]] = []

    def block(window):
        r0, r1, c0, c1 = window
        seen.append((r0, c0))
        return np.full((r1 - r0, c1 - c0), r0 + c0, np.float32)

    arr = grid.wrap(grid.map_blocks(block), "x")
    write_cog(tmp_path / "x.tif", arr, blocksize=128)
    assert sorted(seen) == sorted({(r, c) for r in range(0, 64, 16) for c in range(0, 48, 16)})


def test_cog_is_atomic(tmp_path: Path) -> None:
    grid = small_grid((64, 48), 100.0, chunks=16)
    target = tmp_path / "x.tif"
    write_cog(target, _lazy(grid, np.ones(grid.shape, np.float32), "x"), blocksize=128)
    before = target.read_bytes()

    def block(window):
        if window[0] >= 32:
            raise RuntimeError("worker lost (simulated)")
        return np.zeros((window[1] - window[0], window[3] - window[2]), np.float32)

    with pytest.raises(RuntimeError, match="simulated"):
        write_cog(target, grid.wrap(grid.map_blocks(block), "x"), blocksize=128)
    assert target.read_bytes() == before
    assert _files(tmp_path) == ["x.tif"]


def test_cog_warped_to_cgcs2000(tmp_path: Path) -> None:
    grid = small_grid((40, 40), 250.0, chunks=20)
    arr = _lazy(grid, np.full(grid.shape, 7.0, np.float32), "x", units="m")
    out = write_cog(tmp_path / "x.tif", arr, crs="EPSG:4490", blocksize=128)
    with rasterio.open(out) as src:
        assert src.crs.to_epsg() == 4490
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert abs(src.transform.a) < 0.01  # degrees now
        v = src.read(1)
        assert np.nanmin(v) == 7.0 and np.nanmax(v) == 7.0
    with pytest.raises(OutputError, match="tile size"):
        write_cog(tmp_path / "y.tif", arr, blocksize=100)


# -- tables ----------------------------------------------------------------------------------------
def test_csv_round_trip_with_bom(results: dict, tmp_path: Path) -> None:
    sites = results["vectors"]["pv_sites"].copy()
    sites.loc[1, "county"] = '=HYPERLINK("http://x")'
    sites.loc[2, "county"] = "盐源县"
    out = write_table(tmp_path / "pv.csv", sites)
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel opens Chinese correctly
    back = pd.read_csv(out, encoding="utf-8-sig")
    assert "geometry" not in back and {"lon_deg", "lat_deg"} <= set(back.columns)
    assert back["site_id"].iloc[0] == XSS and back["county"].iloc[2] == "盐源县"
    assert back["county"].iloc[1] == '\'=HYPERLINK("http://x")'  # made inert
    np.testing.assert_allclose(back["capacity_mw"], sites["capacity_mw"])
    pts = sites.geometry.representative_point().to_crs(4326)
    np.testing.assert_allclose(back["lon_deg"], pts.x, atol=1e-6)
    np.testing.assert_allclose(back["lat_deg"], pts.y, atol=1e-6)


def test_xlsx_round_trip(results: dict, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    sites = results["vectors"]["pv_sites"].copy()
    sites.loc[1, "county"] = "=1+1"
    out = write_table(tmp_path / "pv.xlsx", sites, sheet_name="pv_sites")
    back = pd.read_excel(out, engine="openpyxl", header=1)  # row 1: 中文 / English labels
    assert list(back.columns[:3]) == ["site_id", "prefecture", "county"]
    assert back["site_id"].iloc[0] == XSS and back["county"].iloc[1] == "=1+1"
    np.testing.assert_allclose(back["energy_gwh"], sites["energy_gwh"])
    ws = load_workbook(out)["pv_sites"]
    assert ws["C4"].value == "=1+1" and ws["C4"].data_type == "s"  # text, not a formula
    assert _files(tmp_path) == ["pv.xlsx"]


RUN_PROV = {
    "modelled": {"terrain": "demo terrain — refined", "solar": "modelled (pvlib)", "wind": "real"},
    "inputs": {
        "nobuild": {
            "name_en": "No-build zones",
            "illustrative": True,
            "source": "x",
            "licence": "y",
        },
        "towns": {"name_en": "Towns", "source": "GeoNames", "licence": "CC BY 4.0"},
    },
    "exclusion_legend": [[0, "nobuild", "No-build zones", "禁建区"]],
}


def test_geopackage_is_version_1_2_with_titles_and_field_aliases(
    results: dict, tmp_path: Path
) -> None:
    out = write_geopackage(tmp_path / "a.gpkg", results["vectors"], metadata=RUN_PROV)
    with sqlite3.connect(out) as con:
        assert con.execute("PRAGMA user_version").fetchone() == (10200,)  # GeoPackage 1.2.0
        rows = dict(
            (t, (i, d))
            for t, i, d in con.execute(
                "SELECT table_name, identifier, description FROM gpkg_contents"
            )
        )
    assert rows["pv_sites"][0] == "光伏场址（各市州前N名） / PV sites (top N per prefecture)"
    assert rows["pv_sites"][1].startswith("MODELLED from solar resource: modelled (pvlib)")
    assert "demo terrain (modelled relief)" in rows["pv_sites"][1]
    assert "ILLUSTRATIVE inputs: No-build zones" in rows["pv_sites"][1]
    assert "MODELLED" not in rows["prefectures"][1]
    root = ET.fromstring(read_styles(out)["pv_sites"].split("\n", 1)[1])
    aliases = {a.get("field"): a.get("name") for a in root.findall("aliases/alias")}
    assert aliases["capacity_mw"] == "装机容量 (MW)"
    assert aliases["lcoe_cny_per_kwh"] == "平准化度电成本 (元/kWh)"
    assert "Fields" in root.get("styleCategories")


def test_xlsx_has_labels_filter_frozen_header_and_notes(results: dict, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    sites = results["vectors"]["pv_sites"]
    out = write_table(tmp_path / "pv_sites.xlsx", sites, provenance=RUN_PROV)
    wb = load_workbook(out)
    ws = wb["pv_sites"]
    header = [c.value for c in ws[1]]
    names = [c.value for c in ws[2]]
    assert names[0] == "site_id" and names[-1] == "data_status"
    assert header[names.index("capacity_mw")] == "装机容量 / Capacity (MW)"
    assert ws.freeze_panes == "A3" and ws.auto_filter.ref.startswith("A2:")
    assert ws.max_row == len(sites) + 2
    assert ws.cell(3, len(names)).value.startswith("MODELLED from solar resource")
    notes = [[c for c in r if c is not None] for r in wb["notes 说明"].iter_rows(values_only=True)]
    flat = " ".join(str(c) for r in notes for c in r)
    assert "demo terrain" in flat and "No-build zones" in flat and "CC BY 4.0" in flat
    assert ["capacity_mw", "装机容量", "Capacity", "MW"] in notes
    csv = write_table(tmp_path / "pv_sites.csv", sites, provenance=RUN_PROV)
    back = pd.read_csv(csv, encoding="utf-8-sig")
    assert back["data_status"].str.startswith("MODELLED").all()


def test_cog_keeps_flags_nodata_and_colour_table(tmp_path: Path) -> None:
    from sitekit.outputs import tags

    grid = small_grid((40, 40), 250.0, chunks=20)
    reasons = np.zeros(grid.shape, np.uint32)
    reasons[:10] = 1
    inside = np.ones(grid.shape, np.float32)
    inside[:, :5] = 0  # outside the study area
    arr = _lazy(grid, reasons, "pv_exclusion_reasons", units="1")
    arr.attrs.update(flag_masks=[1], flag_meanings="nobuild")
    out = tags.for_file("pv_exclusion_reasons", arr, RUN_PROV, arr.attrs, inside)
    path = write_cog(tmp_path / "r.tif", out, blocksize=128)
    with rasterio.open(path) as src:
        t = src.tags()
        data = src.read(1)
        assert src.nodata == tags.REASONS_NODATA
    assert t["flag_masks"] == "1" and t["flag_meanings"] == "nobuild"
    assert t["flag_names"] == "nobuild=禁建区 / No-build zones" and t["illustrative"] == "yes"
    assert (data[:, :5] == tags.REASONS_NODATA).all() and (data[:10, 5:] == 1).all()
    assert (data[10:, 5:] == 0).all()  # allowed inside ≠ outside
    elig = _lazy(grid, (reasons == 0).astype(np.uint8), "pv_eligible", units="1")
    path = write_cog(tmp_path / "e.tif", tags.for_file("pv_eligible", elig, RUN_PROV, {}, inside))
    with rasterio.open(path) as src:
        assert src.nodata == 255 and src.colormap(1)[1][:3] == (26, 152, 80)
        assert src.read(1)[0, 0] == 255 and src.tags()["flag_meanings"] == "not_eligible eligible"


def test_wind_cf_method_tag_states_the_losses() -> None:
    from types import SimpleNamespace

    from sitekit.outputs import tags

    recipe = SimpleNamespace(technology="wind", wind=SimpleNamespace(losses_pct=12.0))
    m = tags.honest_method(
        "wind_cf", "power curve X, Weibull k=2, no wake/availability losses", [recipe]
    )
    assert "no wake" not in m and "net of 12 % losses" in m


def test_table_format_is_checked(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="csv or .xlsx"):
        write_table(tmp_path / "x.txt", pd.DataFrame({"a": [1]}))


# -- re-export -------------------------------------------------------------------------------------
def test_reexport(results: dict, gpkg: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "sitekit.gpkg").write_bytes(gpkg.read_bytes())
    grid = small_grid((40, 40), 250.0, chunks=20)
    write_cog(
        run / "rasters" / "pv_score.tif",
        _lazy(grid, np.full(grid.shape, 0.5, np.float32), "pv_score", units="1"),
        blocksize=128,
    )
    [g] = reexport(run, "gpkg", crs="EPSG:4490")
    assert g == run / "export" / "sitekit.gpkg"
    assert pyogrio.read_dataframe(g, layer="pv_sites").crs.to_epsg() == 4490
    assert read_styles(g) == read_styles(gpkg)  # QGIS styles carried over
    assert read_metadata(g)["geopackage"] == {**PROVENANCE, "reexported_crs": "EPSG:4490"}
    [t] = reexport(run, "cog", crs="EPSG:4490", out=tmp_path / "cogs")
    with rasterio.open(t) as src:
        assert src.crs.to_epsg() == 4490 and src.tags()["units"] == "1"
    csvs = reexport(run, "csv")
    assert {p.name for p in csvs} == {f"{k}.csv" for k in results["vectors"]} - {
        "prefectures.csv",
        "counties.csv",
    }
    assert len(reexport(run, "xlsx")) == len(csvs)
    with pytest.raises(InputError, match="unknown export format"):
        reexport(run, "shp")
    with pytest.raises(InputError, match="no sitekit.gpkg"):
        reexport(tmp_path / "cogs", "csv")


def test_csv_float_format_and_data_status_of_grid_planner_tables(tmp_path: Path) -> None:
    """The one table writer serves route/hosting/bases too: floats rounded as asked, the run's
    data status per table (route profile: terrain only; crossings: constraints only)."""
    from sitekit.outputs import tags

    df = pd.DataFrame({"distance_km": [0.123456789, 1.0], "elevation_m": [3012.3456789, 2999.5]})
    out = write_table(tmp_path / "route_profile.csv", df, provenance=RUN_PROV, float_format="%.6g")
    text = out.read_text(encoding="utf-8-sig").splitlines()
    assert text[1].startswith("0.123457,3012.35,")
    status = pd.read_csv(out, encoding="utf-8-sig")["data_status"].iloc[0]
    assert status == tags.status("route_profile", RUN_PROV)
    assert "demo terrain" in status and "solar" not in status and "ILLUSTRATIVE" not in status
    crossing = tags.status("route_crossings", RUN_PROV)
    assert crossing.startswith("ILLUSTRATIVE inputs: No-build zones") and "MODELLED" not in crossing
    assert "hydro generation" in tags.status("hydro_profiles", RUN_PROV)
    bases = tags.status("bases", RUN_PROV)
    assert "hydro generation" in bases and "demo terrain" in bases
    assert tags.banner("bases", RUN_PROV) == f"> **数据状态 / Data status:** {bases}"
    assert tags.banner("bases", None) == "" and tags.png_text("bases", None) == {}
    assert tags.png_text("route_profile", RUN_PROV)["Description"] == status


def test_run_folder_provenance_is_empty_without_run_json(tmp_path: Path) -> None:
    import json

    from sitekit.io.results import read_provenance

    assert read_provenance(tmp_path) == {}
    (tmp_path / "run.json").write_text(json.dumps({"demo_terrain": True}), encoding="utf-8")
    assert read_provenance(tmp_path) == {"demo_terrain": True}
