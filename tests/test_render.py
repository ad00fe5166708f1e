"""The results map: offline page, escaping, overviews, hillshade, legends, map style specs."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from sitekit.errors import LayerError, OutputError, RecipeError
from sitekit.outputs import render
from sitekit.outputs.render import _overview_hillshade, overview, render_map
from sitekit.outputs.static import external_references, offline_assets
from sitekit.outputs.style import MapStyle, load_style
from sitekit.testing import plane, small_grid, synthetic_results

REPO = Path(__file__).resolve().parents[1]
XSS_SITE = "<img src=x onerror=alert(1)>"
XSS_COUNTY = "<script>alert(2)</script>"


@pytest.fixture(scope="module")
def results() -> dict:
    return synthetic_results()


@pytest.fixture(scope="module")
def page(results: dict, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("map") / "map.html"
    r = results
    path = render_map(
        out,
        grid=r["grid"],
        rasters=r["rasters"],
        vectors=r["vectors"],
        style=MapStyle(),
        provenance=r["provenance"],
    )
    assert path == out
    return out.read_text(encoding="utf-8")


def _unjson(text: str) -> str:
    """Undo the \\uXXXX escaping that Jinja's tojson applies to data embedded in scripts."""
    return re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)


# -- the page ----------------------------------------------------------------------------------
def test_page_loads_nothing_from_the_network(page: str) -> None:
    assert external_references(page) == []
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"<link[^>]+href=", page)
    assert "sitekit-static:" not in page
    # the vendored libraries are really inside
    assert "Leaflet 1.9.4" in page and "L.Control.Measure" in page
    assert "L.Control.FullScreen" in page or "FullScreen" in page
    assert "data:image/png;base64," in page  # CSS icons and raster overlays inlined


def test_user_text_is_escaped(page: str) -> None:
    assert XSS_SITE not in page
    assert XSS_COUNTY not in page
    assert "onerror=alert(1)>" not in page
    text = _unjson(page)
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in text
    assert XSS_SITE not in text and XSS_COUNTY not in text


def test_jinja_syntax_in_data_is_text(results: dict, tmp_path: Path) -> None:
    """A value that looks like a Jinja template reaches the page as text (branca used to render
    each macro's output as a template a second time; sitekit.outputs.render._Verbatim keeps it)."""
    r = results
    sites = r["vectors"]["pv_sites"].copy()
    sites["county"] = "{{ 6 * 7 }}{% if true %}yes{% endif %}"
    out = render_map(
        tmp_path / "m.html",
        grid=r["grid"],
        rasters={},
        vectors={"pv_sites": sites},
        provenance=r["provenance"],
    )
    text = _unjson(out.read_text(encoding="utf-8"))
    assert "{{ 6 * 7 }}{% if true %}yes{% endif %}" in text
    assert render.branca.element.Element is not render._Verbatim  # restored after rendering


def test_layers_legends_banner_and_modelled_labels(page: str) -> None:
    text = _unjson(page)
    for name in [
        "Hillshade",
        "PV suitability",
        "PV specific yield",
        "Wind capacity factor",
        "Exclusion reasons",
        "Distance to grid",
        "Prefectures",
        "Counties",
        "PV sites",
        "Wind sites",
        "PSH reservoirs",
        "PSH pairs",
        "Grid connection points",
        "Grid lines",
        "光伏场址（各市州前N名） / PV sites (top N per prefecture)",
        "甲州 / Jia",
    ]:
        assert name in text, name
    assert "demo terrain — bring SRTM/Copernicus DEM for siting decisions" in page
    assert "modelled / 模拟" in text and "modelled (reference wind speed)" in text
    # legends: colour bar with units, exclusion reasons with their codes, rank classes
    assert "kWh/kWp/yr" in text and "linear-gradient" in text
    assert "ELEV — 高海拔 / High elevation" in text and "SETTLE" in text
    assert "排名 / Rank ≤ 10" in text and "成本等级 / Cost class = A" in text
    assert "rank ≤" not in text and "cost_class =" not in text  # no raw ids in legends
    for control in [
        "L.control.scale",
        "L.control.fullscreen",
        "L.Control.Measure",
        "L.control.layers",
    ]:
        assert control in page
    assert "window.sitekit" in page


def test_page_size_is_sane(page: str) -> None:
    size = len(page.encode("utf-8"))
    assert 250_000 < size < 2_000_000  # ≈ 290 kB of vendored JS/CSS + a small synthetic run


def test_popups_carry_every_attribute(page: str, results: dict) -> None:
    text = _unjson(page)
    for col in results["vectors"]["pv_sites"].columns.drop("geometry"):
        label = MapStyle().field_label(col)
        assert json.dumps(label, ensure_ascii=False)[1:-1] in text or label in text, col
    assert "Head [m]" in text and "Energy [GWh/yr]" in text


def test_online_tiles_is_the_only_network_exception(results: dict, tmp_path: Path) -> None:
    r = results
    out = render_map(
        tmp_path / "m.html",
        grid=r["grid"],
        rasters={},
        vectors={},
        style=MapStyle(),
        provenance={},
        online_tiles=True,
    )
    refs = external_references(out.read_text(encoding="utf-8"))
    assert refs and all("tile.openstreetmap.org" in u for u in refs)


def test_external_asset_fails_loudly(results: dict, tmp_path: Path, monkeypatch) -> None:
    import folium

    cdn = {"map": (folium.Map.default_js, folium.Map.default_css)}
    monkeypatch.setattr(render, "offline_assets", lambda k: cdn.get(k, offline_assets(k)))
    r = results
    with pytest.raises(OutputError, match="network"):
        render_map(tmp_path / "m.html", grid=r["grid"], rasters={}, vectors={}, provenance={})
    assert not list(tmp_path.iterdir())  # nothing written, no temp file left


def test_external_references_finds_loads_not_links() -> None:
    html = (
        '<script src="https://cdn.example/x.js"></script><link rel="stylesheet" '
        'href="//cdn.example/a.css"/><a href="https://leafletjs.com">Leaflet</a>'
        "<style>.a{background:url('http://x/y.png')}</style>"
        '<script>var ns = "http://www.w3.org/2000/svg";</script>'
    )
    assert external_references(html) == [
        "//cdn.example/a.css",
        "http://x/y.png",
        "https://cdn.example/x.js",
    ]


def test_missing_layers_are_skipped_and_hillshade_is_computed(tmp_path: Path) -> None:
    grid = small_grid((40, 50), 100.0)
    dem = plane(grid, 10.0, 135.0)
    out = render_map(
        tmp_path / "m.html", grid=grid, rasters={"elevation": dem}, vectors={}, provenance={}
    )
    text = _unjson(out.read_text(encoding="utf-8"))
    assert "Hillshade" in text and "Elevation" in text and "PV sites" not in text
    assert "demo terrain" not in text


def test_raster_not_on_grid_is_an_error(results: dict, tmp_path: Path) -> None:
    bad = xr.DataArray(np.zeros((5, 5), np.float32), dims=("y", "x"))
    with pytest.raises(LayerError, match="pv_score"):
        render_map(
            tmp_path / "m.html",
            grid=results["grid"],
            rasters={"pv_score": bad},
            vectors={},
            provenance={},
        )


def test_style_limits_layers_and_features(results: dict, tmp_path: Path) -> None:
    r = results
    base = MapStyle()
    vectors = dict(base.vectors)
    vectors["pv_sites"] = vectors["pv_sites"].model_copy(update={"max_features": 2})
    style = MapStyle(layers=["pv_score", "pv_sites"], vectors=vectors, language="en")
    out = render_map(
        tmp_path / "m.html",
        grid=r["grid"],
        rasters=r["rasters"],
        vectors=r["vectors"],
        style=style,
        provenance={},
    )
    text = _unjson(out.read_text(encoding="utf-8"))
    assert "(top 2 of 3)" in text
    assert "PV suitability" in text and "Wind sites" not in text and "Hillshade" not in text
    assert "光伏场址" not in text  # English only
    assert "PV-0003" not in text  # rank 3 dropped from the map


# -- overviews, hillshade, colours ---------------------------------------------------------------
def test_overview_block_mean_by_hand() -> None:
    z = np.array([[1, 3, 10, np.nan], [5, 7, 20, 30], [2, 2, 4, 4]], np.float32)
    a = xr.DataArray(z, dims=("y", "x"))
    small, f = overview(a, max_px=2)
    assert f == 2
    # blocks: [1,3,5,7] → 4; [10,nan,20,30] → 20; [2,2] → 2 (padded edge); [4,4] → 4
    np.testing.assert_allclose(small, [[4.0, 20.0], [2.0, 4.0]])


def test_overview_nearest_takes_block_centres() -> None:
    z = np.arange(36, dtype=np.uint32).reshape(6, 6)
    small, f = overview(xr.DataArray(z, dims=("y", "x")), max_px=2, how="nearest")
    assert f == 3
    np.testing.assert_array_equal(small, [[7, 10], [25, 28]])


@settings(max_examples=15, deadline=None)
@given(
    ny=st.integers(1, 60),
    nx=st.integers(1, 60),
    max_px=st.integers(1, 25),
    chunk=st.integers(5, 17),
)
def test_overview_size_and_chunk_independence(ny: int, nx: int, max_px: int, chunk: int) -> None:
    z = np.random.default_rng(ny * 100 + nx).random((ny, nx)).astype(np.float32)
    lazy = xr.DataArray(da.from_array(z, chunks=chunk), dims=("y", "x"))
    small, f = overview(lazy, max_px=max_px)
    eager, _ = overview(xr.DataArray(z, dims=("y", "x")), max_px=max_px)
    assert max(small.shape) <= max_px
    assert f == 1 or max(ny, nx) > max_px * (f - 1)  # the smallest factor that fits
    assert small.shape == (math.ceil(ny / f), math.ceil(nx / f))
    np.testing.assert_allclose(small, eager, rtol=1e-6)


def test_hillshade_by_hand() -> None:
    grid = small_grid((9, 9), 100.0)
    flat = plane(grid, 0.0, 0.0).values
    lit = _overview_hillshade(flat, grid, 1)
    # flat ground under a sun 45° high: 255·cos(45°)
    np.testing.assert_allclose(lit, 255 * math.cos(math.radians(45)), rtol=1e-5)
    facing = _overview_hillshade(plane(grid, 45.0, 315.0).values, grid, 1)  # faces the NW sun
    away = _overview_hillshade(plane(grid, 45.0, 135.0).values, grid, 1)
    np.testing.assert_allclose(facing, 255.0, rtol=1e-4)  # edges extrapolated: a plane is exact
    np.testing.assert_allclose(away, 0.0, atol=1e-3)


def test_map_hillshade_is_the_terrain_hillshade() -> None:
    """The map shades an elevation overview with :func:`sitekit.science.terrain.hillshade` (one
    implementation): at full resolution the very numbers of the DEM's hillshade; an overview
    with reduction factor f is shaded with f × the pixel size."""
    from sitekit.science import terrain
    from sitekit.testing import cone

    grid = small_grid((40, 50), 100.0)
    dem = cone(grid, 800.0, 1500.0)
    np.testing.assert_array_equal(
        _overview_hillshade(dem.values, grid, 1), terrain.hillshade(dem).values
    )
    coarse = small_grid((20, 25), 200.0)
    small, f = overview(dem, max_px=25)
    assert f == 2
    np.testing.assert_array_equal(
        _overview_hillshade(small, grid, f),
        terrain.hillshade(coarse.wrap(small.astype(np.float32), "elevation", "m")).values,
    )


def test_exclusion_colours_follow_the_legend_order() -> None:
    legend = [(2, "B", "b", "乙"), (0, "A", "a", "甲")]
    values = np.array([[0, 1, 4, 5, 8]], np.uint32)  # none, A, B, A+B, unknown bit 3
    rs = MapStyle().rasters["exclusion_reasons"]
    idx, colours, html = render._exclusions(values, legend, "Exclusions", rs)
    np.testing.assert_array_equal(idx, [[0, 2, 1, 1, 3]])  # first listed reason wins
    assert len(colours) == 3 and "other" in html and "B — 乙 / b" in html


def test_continuous_colours_and_nan_transparent() -> None:
    rs = MapStyle().rasters["pv_score"]
    idx, colours, html = render._continuous(np.array([[0.0, 0.5, 1.0, np.nan]]), rs, "t")
    assert idx[0, 3] == 0 and idx[0, 0] == 1 and idx[0, 2] == 254
    assert len(colours) == 254 and "linear-gradient" in html
    stepped = MapStyle().rasters["grid_distance"]
    idx, colours, html = render._continuous(np.array([[1.0, 7.0, 500.0]]), stepped, "d")
    np.testing.assert_array_equal(idx, [[1, 2, 6]])
    assert len(colours) == 6 and "≥ 100" in html


# -- style specs -----------------------------------------------------------------------------------
def test_default_yaml_is_the_builtin_style() -> None:
    assert load_style(REPO / "maps" / "default.yaml") == MapStyle()


def test_built_wind_farms_layer_style_title_colours_and_labelled_popups(
    results: dict, tmp_path: Path
) -> None:
    """The GEM wind farms (``existing_wind_plants``) get the style's bilingual title, a colour
    per status with a labelled legend, and popups whose first fields are name, phase, status
    and start year, labelled from sitekit's vocabulary (sitekit.outputs.labels)."""
    import geopandas as gpd
    import shapely

    from sitekit.engine.rules import standard_plants

    r = results
    gem = gpd.GeoDataFrame(  # two rows as the GEM Wind Power Tracker spells its columns
        {"Project Name": ["Sichuan Butuo Bu'er wind farm", "Sichuan Butuo Haibo wind farm"],
         "Phase Name": [None, "Phase II"], "Status": ["operating", "construction"],
         "Capacity (MW)": [50.0, 65.0], "Start year": [2016, None]},
        geometry=[shapely.Point(0, 0), shapely.Point(2000, 1000)], crs=r["grid"].crs,
    )  # fmt: skip
    plants = standard_plants(gem).assign(eligible=[True, False], score_percentile=[81.5, 12.0])
    style = MapStyle()
    out = render_map(tmp_path / "m.html", grid=r["grid"], rasters={},
                     vectors={"existing_wind_plants": plants}, style=style,
                     provenance={})  # fmt: skip
    text = _unjson(out.read_text(encoding="utf-8"))
    vs = style.vectors["existing_wind_plants"]
    assert f"{vs.name_zh} / {vs.name_en}" in text and "GEM" in vs.name_en and "风电场" in vs.name_zh
    assert "状态 / Status = operating" in text and "状态 / Status = construction" in text
    assert vs.categories["operating"] in text and vs.categories["construction"] in text
    for label in (
        "状态 / Status",
        "投运年份 / Start year",
        "期次 / Phase",
        "名称 / Name",
        "装机容量 [MW] / Capacity [MW]",
        "得分百分位 [%] / Score percentile [%]",
    ):
        assert label in text, label
    assert '"operating", "2016"' in text  # a year: no decimals, no thousands separator
    assert vs.popup_fields[:4] == ["name", "phase", "status", "start_year"]


def test_built_wind_farms_are_credited_on_the_map(results: dict, tmp_path: Path) -> None:
    """The GEM tracker is CC BY 4.0: the run's provenance carries its credit line (from the
    catalogue entry, sitekit.engine.validation.plant_attribution) and the map's info box shows it."""
    import html

    from sitekit.engine.validation import plant_attribution
    from sitekit.io.catalog import Catalog

    spec = Catalog(REPO / "layers" / "sichuan-west" / "catalog.yaml").layer("wind_farms_gem")
    credit = plant_attribution(spec)
    assert "Global Energy Monitor" in credit and "Global Wind Power Tracker" in credit
    assert "CC BY 4.0" in credit
    r = results
    out = render_map(tmp_path / "m.html", grid=r["grid"], rasters={}, vectors={},
                     style=MapStyle(), provenance={"attribution": credit})  # fmt: skip
    assert credit in html.unescape(_unjson(out.read_text(encoding="utf-8")))


def test_style_file_lists_only_changes(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(
        "language: en\nrasters:\n  pv_yield:\n    name_en: Yield\n    colormap: magma\n",
        encoding="utf-8",
    )
    s = load_style(f)
    assert s.rasters["pv_yield"].colormap == "magma" and s.rasters["pv_yield"].name_zh == ""
    assert s.rasters["wind_cf"] == MapStyle().rasters["wind_cf"]  # untouched default kept
    assert s.label("Sites", "场址") == "Sites"


@pytest.mark.parametrize(
    "text, where",
    [
        ("vectors:\n  pv_sites:\n    name_en: PV\n    colour: red\n", ":4: unknown key 'colour'"),
        ("rasters:\n  x:\n    name_en: X\n    colormap: nosuch\n", ":4: rasters.x.colormap"),
        (
            "vectors:\n  v:\n    name_en: V\n    color_by: rank\n    breaks: [1, 2]\n"
            "    colors: ['#000000']\n",
            ":2: vectors.v",
        ),
        ("overlay_max_px: 10\n", ":1: overlay_max_px"),
        ("language: fr\n", ":1: language"),
    ],
)
def test_style_errors_name_file_line_key(tmp_path: Path, text: str, where: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(RecipeError) as err:
        load_style(f)
    assert str(f) + where in str(err.value)


def test_overlay_pixels_land_where_they_belong() -> None:
    """A marked overview pixel, warped to Web Mercator, sits at its own lon/lat (± 1 pixel)."""
    from sitekit.grid import transformer

    grid = small_grid((90, 120), 500.0, origin=(150_000.0, -300_000.0))
    f = 3
    idx = np.zeros((30, 40), np.uint8)
    idx[7, 29] = 1
    merc, bounds = render._to_mercator(idx, grid, f)
    rows, cols = np.nonzero(merc)
    (s, w), (n, e) = bounds
    # Web Mercator rows are linear in y = ln(tan(π/4 + φ/2)), columns linear in longitude
    y = np.log(np.tan(np.pi / 4 + np.radians([s, n]) / 2))
    yc = y[1] - (rows.mean() + 0.5) / merc.shape[0] * (y[1] - y[0])
    lat = np.degrees(2 * np.arctan(np.exp(yc)) - np.pi / 2)
    lon = w + (cols.mean() + 0.5) / merc.shape[1] * (e - w)
    x = grid.transform.c + (29 + 0.5) * f * grid.resolution_m
    yy = grid.transform.f - (7 + 0.5) * f * grid.resolution_m
    lon0, lat0 = transformer(grid.crs, 4326).transform(x, yy)
    step = f * grid.resolution_m / 111_000  # one overview pixel in degrees (roughly)
    assert abs(lon - lon0) < step and abs(lat - lat0) < step


def test_overlays_are_reused_from_a_layer_cache(
    results: dict, page: str, tmp_path: Path, monkeypatch
) -> None:
    """With a cache, each raster overlay is kept by content + style: a second page with the
    same rasters makes no overview, and its images equal the uncached page's."""
    from sitekit.engine.cache import LayerCache

    r = results
    images = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")
    cache = LayerCache(tmp_path / "cache", r["grid"], "inputs")
    args = dict(
        grid=r["grid"], rasters=r["rasters"], vectors=r["vectors"], style=MapStyle(),
        provenance=r["provenance"],
    )  # fmt: skip
    first = render_map(tmp_path / "a.html", cache=cache, **args).read_text(encoding="utf-8")
    assert images.findall(first) == images.findall(page)
    kept = len(list((tmp_path / "cache" / "overlays").glob("*.json")))
    assert kept >= 3
    monkeypatch.setattr(render, "overview", lambda *a, **k: pytest.fail("overview recomputed"))
    again = LayerCache(tmp_path / "cache", r["grid"], "inputs")
    second = render_map(tmp_path / "b.html", cache=again, **args).read_text(encoding="utf-8")
    assert images.findall(second) == images.findall(page)
    # a changed raster is a new overlay
    monkeypatch.undo()
    changed = dict(r["rasters"])
    key = next(k for k in changed if k not in ("exclusion_reasons", "elevation"))  # not shaded
    changed[key] = changed[key] * 0.5
    render_map(tmp_path / "c.html", cache=again, **{**args, "rasters": changed})
    assert len(list((tmp_path / "cache" / "overlays").glob("*.json"))) == kept + 1


def test_the_builtin_style_is_written_once() -> None:
    """maps/default.yaml is the one copy of the defaults: MapStyle declares none of its own, and
    a style that lists only its changes keeps the file's other entries."""
    from sitekit.outputs.style import default_style

    assert all(f.is_required() for f in MapStyle.model_fields.values())
    assert MapStyle() == default_style() and default_style() is default_style()
    mine = MapStyle(language="en", vectors={"pv_sites": {"name_en": "Mine"}})
    assert mine.vectors["pv_sites"].name_en == "Mine" and mine.vectors["pv_sites"].colors is None
    assert mine.vectors["prefectures"] == default_style().vectors["prefectures"]
    assert mine.title_en == default_style().title_en
