"""What GIS staff and analysts see (issue 26): logs that behave, bilingual attributes, styled
rasters, honest tags, standard files."""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pyogrio
import pytest
import rasterio
from click.testing import CliRunner

from sitekit.cli import cli, register
from sitekit.engine import logs
from sitekit.outputs import tags
from sitekit.outputs.export import read_metadata, read_styles
from sitekit.outputs.labels import field_info

register()


# -- logs and progress -------------------------------------------------------------------------
class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_progress_into_a_file_is_a_line_per_interval_not_a_redraw_per_poll() -> None:
    """60 s of 0.2 s polls (300 updates) into a non-terminal give ≤ 8 lines, none with \\r."""
    clock, out = _Clock(), io.StringIO()
    bar = logs.ProgressLines("computing layers", stream=out, tty=False, clock=clock)
    for i in range(300):
        clock.t = i * 0.2
        bar.update(i, 300)
    bar.finish(300, 300)
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert 6 <= len(lines) <= 8, lines
    assert lines[-1].startswith("sitekit: computing layers: done (300/300 tasks")


def test_progress_lines_thin_out_on_long_runs() -> None:
    """An hour of polls gives ~50 lines (every 10 s, then every tenth of the elapsed time)."""
    clock, out = _Clock(), io.StringIO()
    bar = logs.ProgressLines("computing layers", stream=out, tty=False, clock=clock)
    for i in range(18000):
        clock.t = i * 0.2
        bar.update(i, 18000)
    lines = out.getvalue().splitlines()
    assert 30 <= len(lines) <= 60, len(lines)
    assert lines[1].endswith("10 s)") and lines[2].endswith("20 s)")


def test_progress_on_a_terminal_redraws_one_bar_in_place() -> None:
    clock, out = _Clock(), io.StringIO()
    bar = logs.ProgressLines("computing layers", stream=out, tty=True, clock=clock)
    for i in range(50):
        clock.t = i * 0.2
        bar.update(i, 50)
    bar.finish(50, 50)
    text = out.getvalue()
    assert text.count("\r") >= 25 and text.count("\n") == 1
    assert "100%" in text.splitlines()[-1]


def test_progress_is_silent_when_quiet() -> None:
    logs.configure(quiet=True, stream=io.StringIO())
    try:
        assert logs.quiet()
        logs.progress(["not-a-future"], "x")  # returns at once: never touches the scheduler
    finally:
        logs.configure()


def test_log_messages_go_through_logging_to_stderr_with_levels() -> None:
    err = io.StringIO()
    logs.configure(verbose=0, stream=err)
    logs.LOGGER.info("hello")
    logs.LOGGER.debug("hidden")
    logs.LOGGER.warning("careful")
    assert err.getvalue().splitlines() == ["sitekit: hello", "sitekit: warning: careful"]
    err2 = io.StringIO()
    logs.configure(verbose=1, stream=err2)
    logging.getLogger("sitekit.engine.run").debug("shown")
    assert "sitekit: debug: [sitekit.engine.run] shown" in err2.getvalue()
    logs.configure()


@pytest.mark.parametrize(
    ("args", "quiet", "verbose"),
    [
        (["-q", "layers", "check"], True, 0),
        (["layers", "check", "-q"], True, 0),
        (["layers", "check", "--quiet"], True, 0),
        (["-v", "layers", "check"], False, 1),
        (["layers", "check", "-v"], False, 1),
        (["layers", "check"], False, 0),
    ],
)
def test_quiet_and_verbose_work_before_and_after_the_verb(
    args: list[str], quiet: bool, verbose: int, tiny_catalog: Path
) -> None:
    at = args.index("check") + 1
    argv = [*args[:at], str(tiny_catalog), "--format", "json", *args[at:]]
    res = CliRunner().invoke(cli, argv)
    assert res.exit_code == 0, res.output
    level = logs.LOGGER.level
    assert level == logs.verbosity_level(verbose, quiet)
    logs.configure()


def test_every_verb_accepts_quiet_and_verbose() -> None:
    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from walk(sub, [*path, name])
        else:
            yield path, cmd

    verbs = list(walk(cli, []))
    assert len(verbs) >= 6
    for path, cmd in verbs:
        opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
        assert {"-q", "--quiet", "-v", "--verbose"} <= opts, path


def test_layers_check_formats(tiny_catalog: Path) -> None:
    res = CliRunner().invoke(cli, ["layers", "check", str(tiny_catalog), "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["layer"] for r in rows] == ["area", "dem", "towns"]
    assert "3 layers ok" in res.stderr and "3 layers ok" not in res.stdout
    res = CliRunner().invoke(cli, ["layers", "check", str(tiny_catalog), "--format", "csv"])
    lines = res.stdout.splitlines()
    assert lines[0].startswith("layer,name,kind,crs") and len(lines) == 4


def _demo_to_files(out: Path, *extra: str, before: tuple[str, ...] = ()) -> tuple[str, str]:
    """Run ``sitekit [before] demo … [extra]`` (5 km) with stdout and stderr into files."""
    so, se = out.parent / "stdout.txt", out.parent / "stderr.txt"
    with so.open("w") as fo, se.open("w") as fe:
        rc = subprocess.call(
            [sys.executable, "-c", "from sitekit.cli import main; main()", *before, "demo",
             "--resolution", "5000", "--out", str(out), "--no-cache", "--workers", "1", *extra],
            stdout=fo, stderr=fe,
        )  # fmt: skip
    assert rc == 0, se.read_text()
    return so.read_text(encoding="utf-8"), se.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def demo_logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    out = tmp_path_factory.mktemp("ux") / "out"
    stdout, stderr = _demo_to_files(out)
    return out, stdout, stderr


def test_demo_log_into_files_is_short_and_progress_is_on_stderr(demo_logs) -> None:
    out, stdout, stderr = demo_logs
    text = stdout + stderr
    assert "\r" not in text  # no bar redraws in a file
    progress = [ln for ln in stderr.splitlines() if "computing layers" in ln]
    assert 1 <= len(progress) < 100
    assert "computing layers" not in stdout
    assert len(text.splitlines()) < 100
    assert f"results in {out.resolve()}" in stderr


@pytest.mark.parametrize("argv", [["-q", "demo"], ["demo", "-q"], ["demo", "--quiet"]])
def test_demo_takes_quiet_before_and_after_the_verb(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, bool] = {}

    def run_job(recipes: list[Path], opts: object) -> None:
        seen["quiet"] = logs.quiet() and getattr(opts, "quiet", False)

    monkeypatch.setattr("sitekit.engine.run.run_job", run_job)
    try:
        res = CliRunner().invoke(cli, [*argv, "--out", str(tmp_path / "out")])
        assert res.exit_code == 0, res.output
        assert seen == {"quiet": True} and res.stdout == ""
    finally:
        logs.configure()


def test_quiet_demo_prints_nothing_but_warnings(tmp_path: Path) -> None:
    """``sitekit -q demo``: nothing on stdout (route and hosting included), no sitekit message on
    stderr but warnings (a library's own warnings may appear), no progress, and the grid
    planners' outputs still written."""
    out = tmp_path / "out"
    stdout, stderr = _demo_to_files(out, "--no-map", before=("-q",))
    assert stdout == ""
    lines = stderr.splitlines()
    chatter = [ln for ln in lines if ln.startswith("sitekit: ") and "warning: " not in ln]
    assert chatter == [] and "computing layers" not in stderr, lines
    assert (out / "route" / "route_summary.md").is_file()
    assert (out / "hosting" / "hosting.csv").is_file()


# -- walking every output of the demo ------------------------------------------------------------
CJK = re.compile(r"[\u4e00-\u9fff]")
#: tables from catalogue data or the constraint polygons only: tagged, but not MODELLED
NOT_MODELLED = ("existing_plants_", "route_crossings")


def _run_provenance(out: Path) -> dict:
    return json.loads((out / "run.json").read_text(encoding="utf-8"))


def test_every_raster_has_a_style_and_honest_tags(demo_logs) -> None:
    out = demo_logs[0]
    tifs = sorted((out / "rasters").glob("*.tif"))
    assert len(tifs) >= 18
    for tif in tifs:
        qml = tif.with_suffix(".qml")
        assert qml.is_file(), qml.name
        root = ET.fromstring(qml.read_text(encoding="utf-8").split("\n", 1)[1])
        renderer = root.find("pipe/rasterrenderer")
        assert renderer is not None and renderer.get("type"), tif.name
        with rasterio.open(tif) as src:
            t = src.tags()
            nodata = src.nodata
            rat = src.dtypes[0] in ("uint8", "uint32")
        assert t["modelled"] in ("yes", "no") and t["illustrative"] in ("yes", "no"), tif.name
        assert t["data_status"], tif.name
        if tif.stem in ("grid_distance",):
            assert t["modelled"] == "no"  # from catalogue lines/points only
        else:  # everything else rests on demo terrain or the modelled resource
            assert t["modelled"] == "yes", tif.name
        if "score" in tif.stem or "lcoe" in tif.stem or "eligible" in tif.stem:
            assert t["illustrative"] == "yes"  # the illustrative no-build zones decide them
        if rat:  # class and flag rasters: nodata outside, meanings in the file, attribute table
            assert nodata is not None and t["flag_meanings"], tif.name
            assert renderer.get("type") == "paletted"
            aux = tif.with_name(tif.name + ".aux.xml").read_text(encoding="utf-8")
            assert "GDALRasterAttributeTable" in aux and CJK.search(aux)
    with rasterio.open(out / "rasters" / "exclusion_reasons.tif") as src:
        data = src.read(1)
        t = src.tags()
    assert (data == tags.REASONS_NODATA).any() and (data == 0).any()  # outside ≠ allowed
    assert "nobuild" in t["flag_meanings"] and "禁建区" in t["flag_names"]
    with rasterio.open(out / "rasters" / "wind_cf.tif") as src:
        method = src.tags()["method"]
    assert "no wake" not in method and "net of 12 % losses" in method


def _check_geopackage(gpkg: Path, prov: dict) -> dict[str, tuple[str, str]]:
    """Every layer of ``gpkg``: GeoPackage 1.2, a bilingual title, the run's data status (in
    ``gpkg_contents`` and the layer metadata), a QGIS style with a Chinese alias of every field.
    Returns {layer: (title, status)}."""
    with sqlite3.connect(gpkg) as con:
        assert con.execute("PRAGMA user_version").fetchone() == (10200,), gpkg.name
        contents = {
            t: (i, d)
            for t, i, d in con.execute(
                "SELECT table_name, identifier, description FROM gpkg_contents"
            )
        }
    styles = read_styles(gpkg)
    md = read_metadata(gpkg)["tables"]
    layers = [n for n in pyogrio.list_layers(gpkg)[:, 0] if n != "layer_styles"]
    assert layers, gpkg.name
    for name in layers:
        title, status = contents[name]
        assert CJK.search(title) and " / " in title, (gpkg.name, name, title)
        assert status == tags.status(name, prov), (gpkg.name, name)
        assert md[name]["data_status"] == status, (gpkg.name, name)
        assert md[name]["modelled"] in ("yes", "no"), (gpkg.name, name)
        root = ET.fromstring(styles[name].split("\n", 1)[1])
        aliases = {a.get("field"): a.get("name") for a in root.findall("aliases/alias")}
        fields = list(pyogrio.read_info(gpkg, layer=name)["fields"])
        unnamed = [f for f in fields if not field_info(f, name)]
        assert not unnamed, (gpkg.name, name, unnamed)  # every field has 中文/English names
        assert all(CJK.search(aliases.get(f, "")) for f in fields), (
            name,
            set(fields) - set(aliases),
        )
    return contents


def test_every_geopackage_layer_has_a_title_aliases_tags_and_chinese_names(demo_logs) -> None:
    out = demo_logs[0]
    prov = _run_provenance(out)
    gpkgs = sorted(out.rglob("*.gpkg"))
    rel = {g.relative_to(out).as_posix() for g in gpkgs}
    assert {"sitekit.gpkg", "hosting/hosting.gpkg", "hosting/bases.gpkg"} <= rel, rel
    for other in gpkgs:  # hosting, hydro bases, hydro–wind–solar bases
        _check_geopackage(other, prov)
    gpkg = out / "sitekit.gpkg"
    contents = _check_geopackage(gpkg, prov)
    md = read_metadata(gpkg)["tables"]
    layers = [n for n in pyogrio.list_layers(gpkg)[:, 0] if n != "layer_styles"]
    assert {"pv_sites", "wind_sites", "counties", "constraint_nobuild"} <= set(layers)
    hosting = read_metadata(out / "hosting" / "hosting.gpkg")["tables"]["hosting_points"]
    assert hosting["modelled"] == "yes" and hosting["illustrative"] == "yes"
    assert "Illustrative" in contents["constraint_nobuild"][0]
    assert md["constraint_nobuild"]["illustrative"] == "yes"
    assert md["pv_sites"]["modelled"] == "yes" and md["counties"]["modelled"] == "no"
    sites = pyogrio.read_dataframe(gpkg, layer="pv_sites", read_geometry=False)
    assert sites["prefecture_zh"].map(lambda v: bool(CJK.search(str(v)))).all()
    assert sites["county_zh"].str.endswith(("县", "市", "区")).all()
    assert sites["adcode"].astype(str).str.fullmatch(r"51\d{4}").all()
    counties = pyogrio.read_dataframe(gpkg, layer="counties", read_geometry=False)
    joined = sites.merge(counties, on="adcode", suffixes=("", "_c"))
    assert len(joined) == len(sites) and (joined["county_zh"] == joined["name_zh"]).all()


def test_ogrinfo_opens_the_geopackage_without_a_warning(demo_logs) -> None:
    ogrinfo = shutil.which("ogrinfo")
    assert ogrinfo, "gdal-bin is needed (make system-deps / apt-get install -y gdal-bin)"
    for gpkg in sorted(demo_logs[0].rglob("*.gpkg")):
        res = subprocess.run([ogrinfo, "-so", "-al", str(gpkg)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        assert "warning" not in (res.stdout + res.stderr).lower(), (gpkg.name, res.stderr)


def test_every_table_says_whether_it_rests_on_modelled_inputs(demo_logs) -> None:
    from openpyxl import load_workbook

    out = demo_logs[0]
    prov = _run_provenance(out)
    csvs = sorted(out.rglob("*.csv"))
    rel = {c.relative_to(out).as_posix() for c in csvs}
    assert {"hosting/hosting.csv", "hosting/supply_curves.csv", "hosting/bases.csv",
            "route/route_profile.csv", "route/route_crossings.csv", "validation.csv",
            "validation_plants.csv", "existing_plants_wind.csv"} <= rel, rel  # fmt: skip
    for csv in csvs:
        df = pd.read_csv(csv, encoding="utf-8-sig")
        name = csv.relative_to(out).as_posix()
        assert "data_status" in df.columns, name
        assert (df["data_status"] == tags.status(csv.stem, prov)).all(), name
        if csv.stem.startswith(NOT_MODELLED):
            continue
        assert df["data_status"].str.contains("MODELLED").all(), name
    crossing = tags.status("route_crossings", prov)
    assert "ILLUSTRATIVE" in crossing and "MODELLED" not in crossing
    assert "catalogue data" in tags.status("existing_plants_wind", prov)
    assert "MODELLED from hydro generation" in tags.status("hydro_profiles", prov)
    for xlsx in sorted(out.glob("*.xlsx")):
        wb = load_workbook(xlsx)
        ws = wb.worksheets[0]
        assert ws.freeze_panes == "A3" and ws.auto_filter.ref, xlsx.name
        assert all(CJK.search(str(c.value)) for c in ws[1]), [c.value for c in ws[1]]
        notes = " ".join(
            str(c) for r in wb["notes 说明"].iter_rows(values_only=True) for c in r if c
        )
        assert "demo terrain" in notes and "Illustrative no-build zones" in notes
        assert "licence" in notes.lower() and "MW" in notes


def test_map_and_report_show_no_raw_ids_and_say_what_is_modelled(demo_logs) -> None:
    out = demo_logs[0]
    page = re.sub(
        r"\\u([0-9a-fA-F]{4})",
        lambda m: chr(int(m.group(1), 16)),
        (out / "map.html").read_text(encoding="utf-8"),
    )
    # what people see: not the JS registry of layers and legends, keyed by layer id
    visible = re.sub(r'"[a-z_]+": geo_json_[0-9a-f]+|\["[a-z_]+", ', "", page)
    for raw in (
        "constraint_nobuild",
        "existing_wind_plants",
        "voltage_kv ≤",
        "rank ≤",
        "cost_class =",
    ):
        assert raw not in visible, raw
    for m in re.finditer(r"var p = feature.properties, K = (\[.*?\]), T", page):
        raw = [k for k in json.loads(m.group(1)) if not CJK.search(k)]
        assert raw == [], raw  # every popup field has a Chinese / English label
    assert "示意禁建区 / Illustrative no-build zones" in page
    assert "modelled / 模拟" in page and "illustrative / 示意" in page
    assert "Noto Sans CJK SC" in page and "Microsoft YaHei" in page and "PingFang SC" in page
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "pv_sites sites" not in report and "Top 20 PV sites" in report
    assert "MODELLED from" in report and "PingFang SC" in report


def test_charts_pages_and_maps_of_route_and_hosting_say_what_they_rest_on(demo_logs) -> None:
    """PNG text chunks carry the tags; Markdown pages open with a data-status line; the route
    and bases maps show the run's modelled/illustrative marks and the demo-terrain banner."""
    from PIL import Image

    out = demo_logs[0]
    prov = _run_provenance(out)
    pngs = sorted(p for d in ("route", "hosting") for p in (out / d).rglob("*.png"))
    assert {"route_profile.png", "supply_curves.png"} <= {p.name for p in pngs}
    for png in pngs:
        with Image.open(png) as im:
            info = dict(im.text)
        key = "bases" if png.parent.name == "bases" else png.stem  # bases/<base id>.png
        assert info.get("data_status") == tags.status(key, prov), png.name
        assert info["modelled"] == "yes" and info["Description"], png.name
    pages = sorted(out.rglob("*.md"))
    assert {"route_summary.md", "bases.md"} <= {p.name for p in pages}
    for md in pages:
        lines = md.read_text(encoding="utf-8").splitlines()
        status = [ln for ln in lines[:4] if ln.startswith("> **数据状态 / Data status:**")]
        assert status and "MODELLED from demo terrain" in status[0], md.name
    for html in ("route/route_map.html", "hosting/bases_map.html"):
        page = re.sub(
            r"\\u([0-9a-fA-F]{4})",
            lambda m: chr(int(m.group(1), 16)),
            (out / html).read_text(encoding="utf-8"),
        )
        assert "modelled / 模拟" in page and "sk-banner" in page, html
        assert "illustrative / 示意" in page, html


def test_a_route_suggestion_from_a_run_folder_carries_its_data_status(
    demo_logs, tmp_path: Path
) -> None:
    """``sitekit route --from/--to`` on the demo's folder: the GeoJSON suggestion and every
    table say what they rest on (run.json), the summary opens with the status line."""
    out = demo_logs[0]
    prov = _run_provenance(out)
    dest = tmp_path / "sug"
    res = CliRunner().invoke(
        cli,
        ["route", "--run", str(out), "--from", "101.0,29.0", "--to", "101.6,28.6",
         "--out", str(dest), "--no-map", "-q"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert res.stdout == ""
    sug = pyogrio.read_dataframe(dest / "route_suggestion.geojson", read_geometry=False)
    assert (sug["data_status"] == tags.status("suggested_route", prov)).all()
    assert "MODELLED from demo terrain" in sug["data_status"].iloc[0]
    for csv in dest.glob("*.csv"):
        df = pd.read_csv(csv, encoding="utf-8-sig")
        assert (df["data_status"] == tags.status(csv.stem, prov)).all(), csv.name
    summary = (dest / "route_summary.md").read_text(encoding="utf-8")
    assert "> **数据状态 / Data status:** MODELLED" in summary
    logs.configure()


def test_illustrative_constraint_layers_start_hidden() -> None:
    from sitekit.outputs.render import _auto_vector_style

    prov = {"inputs": {"nobuild": {"name_en": "No-build zones", "name_zh": "禁建区",
                                   "illustrative": True}, "redline": {"name_en": "Redline"}}}  # fmt: skip
    vs = _auto_vector_style("constraint_nobuild", prov)
    assert not vs.show and "(illustrative)" in vs.name_en and "示意" in vs.name_zh
    assert _auto_vector_style("constraint_redline", prov).show


def test_sites_prints_csv_and_json(demo_logs) -> None:
    out = demo_logs[0]
    res = CliRunner().invoke(cli, ["sites", str(out), "--top", "3", "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["rank"] for r in rows] == [1, 2, 3] and CJK.search(rows[0]["county_zh"])
    res = CliRunner().invoke(cli, ["sites", str(out), "--top", "3", "--format", "csv", "-q"])
    assert res.exit_code == 0 and res.stdout.splitlines()[0].startswith("rank,site_id,")
    assert len(res.stdout.splitlines()) == 4


def test_summary_capacity_of_the_top_n_sites_is_not_named_a_technical_potential() -> None:
    # summary.csv's potential_mw sums the listed (top-N) sites; "technical potential" is
    # potential.csv's name for all eligible land (README: three numbers, three names)
    zh, en, unit = field_info("potential_mw")
    assert "技术可开发量" not in zh and "potential" not in en.lower(), (zh, en)
    assert "前N名" in zh and "top-N" in en and unit == "MW"
    assert "技术可开发量" in field_info("pv_technical_potential_mw")[0]
