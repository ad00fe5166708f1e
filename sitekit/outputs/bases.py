"""Write the hydro–wind–solar bases (:func:`sitekit.science.bases.build_bases`): ``bases.csv``,
``bases_sites.csv``, ``bases_monthly.csv``, ``bases.gpkg`` (layers ``hydro_wind_solar_bases``
and ``bases_sites``), a monthly stacked chart per base (``bases/<id>.png``), ``bases.md``
(中文/English) and ``bases_map.html``; ``bases_site_profiles.csv`` (typical days of the catchment
sites) and ``hydro_profiles.csv`` (every GEM plant's class and monthly generation); and the
bases' section of the run's ``report.html``, layers of its ``map.html`` (both self-contained and
offline; a second hosting step replaces what the first added) and columns of its grid-point
tables. Every file is written atomically. The hosting step that sizes the bases and calls these
is :func:`sitekit.engine.bases.run_bases`."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from sitekit.io.atomic import atomic_path
from sitekit.outputs.export import write_csv as _csv  # the one CSV writer
from sitekit.science.bases import Dispatch

#: markers around what the hosting step adds to report.html / map.html
BEGIN, END = "<!-- sitekit:bases -->", "<!-- /sitekit:bases -->"


MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def monthly_table(runs: dict[str, Dispatch]) -> pd.DataFrame:
    """Per base and month: hydro, PV and wind delivered, curtailed [GWh], line capacity [GWh]."""
    rows = []
    for bid, d in runs.items():
        gen = d.pv + d.wind
        with np.errstate(invalid="ignore", divide="ignore"):
            share_pv = np.where(gen > 0, d.pv / gen, 0.0)
        pv_in = d.monthly_gwh(d.pv - d.curtailed * share_pv)
        w_in = d.monthly_gwh(d.wind - d.curtailed * (1 - share_pv) * (gen > 0))
        for m in range(12):
            rows.append({"base_id": bid, "month": m + 1,
                         "hydro_gwh": d.monthly_gwh(d.hydro)[m], "pv_gwh": pv_in[m],
                         "wind_gwh": w_in[m], "curtailed_gwh": d.monthly_gwh(d.curtailed)[m],
                         "line_gwh": d.line_mw * 24 * [31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
                                                       30, 31][m] / 1000.0})  # fmt: skip
    return pd.DataFrame(rows)


def _chart(target: Path, row: pd.Series, month: pd.DataFrame, provenance: dict | None = None
           ) -> Path:  # fmt: skip
    from matplotlib.figure import Figure

    from sitekit.outputs.tags import png_text

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    x = np.arange(12)
    bottom = np.zeros(12)
    for col, colour, label in (("hydro_gwh", "#2c7fb8", "hydro"), ("pv_gwh", "#fdae61", "PV"),
                               ("wind_gwh", "#1a9641", "wind"),
                               ("curtailed_gwh", "#d7191c", "curtailed")):  # fmt: skip
        v = month[col].to_numpy(float)
        ax.bar(x, v, bottom=bottom, color=colour, label=label,
               hatch="//" if col == "curtailed_gwh" else None)  # fmt: skip
        bottom += v
    ax.step(np.r_[x - 0.5, 11.5], np.r_[month["line_gwh"], month["line_gwh"].iloc[-1]],
            where="post", color="k", lw=1, label="line capacity")  # fmt: skip
    ax.set_xticks(x, MONTHS)
    ax.set_ylabel("energy per month [GWh]")
    name = row["hydro_plant"] if str(row["hydro_plant"]).isascii() else row["base_id"]
    ax.set_title(f"{row['base_id']} {name}: {row['pv_mw']:,.0f} MW PV + {row['wind_mw']:,.0f} MW "
                 f"wind on a {row['line_mw']:,.0f} MW line (modelled typical days)", fontsize=9)  # fmt: skip
    ax.legend(fontsize=8, ncol=5, loc="upper left")
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata=png_text("bases", provenance))
    return target


def bases_markdown(bases: pd.DataFrame, limit: float) -> str:
    """The report section, 中文/English."""
    lines = [
        "# Hydro–wind–solar bases / 水风光一体化基地",
        "",
        f"Per large hydro plant (GEM Global Hydropower Tracker, May 2023, CC BY 4.0): the PV and "
        f"wind MW its export line carries with ≤ {limit:.0%} of their energy curtailed, from "
        "modelled typical days (12 months × 24 h; LP solved with scipy/HiGHS). MODELLED: the wind "
        "and hydro monthly shapes are illustrative (status `unverified` in pipelines/bases.yaml).",
        f"每座大型水电站外送线路在风光弃电率 ≤ {limit:.0%} 时可汇集的光伏、风电装机（典型日模型，"
        "线性规划求解）。风电与水电月分布为示意数据（未核实），非实测。",
        "",
        "| base 基地 | hydro 水电站 | regulation 调节 | hydro MW | line MW | PV MW | wind MW "
        "| sites | added GWh/yr | curtailment 弃电率 | utilisation 利用率 before→after |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for _, r in bases.iterrows():
        lines.append(
            f"| {r['base_id']} | {r['hydro_plant_zh']} {r['hydro_plant']} | {r['regulation']} "
            f"| {r['hydro_mw']:,.0f} | {r['line_mw']:,.0f} | {r['pv_mw']:,.0f} "
            f"| {r['wind_mw']:,.0f} | {r['n_sites']} | {r['added_gwh']:,.0f} "
            f"| {r['curtailment']:.1%} | {r['utilisation_before']:.0%} → "
            f"{r['utilisation_after']:.0%} |"
        )
    empty = int((bases["n_sites"] == 0).sum()) if len(bases) else 0
    lines += [
        "",
        "Charts: `bases/<base_id>.png`. Sites bundled into a base are allocated to its line and are "
        "not counted at any grid point (hosting.csv). / 纳入基地的场址计入其外送线路，不再计入并网点容量。",
        "",
        "Notes / 说明:",
        f"- {empty} of {len(bases)} bases have no candidate site within the radius. A base's "
        "catchment holds every candidate site of the run (supply_curve.csv; a run without site "
        "centres there: its top-N lists only), each counted at its nearest base only. / "
        "基地汇集范围为本次运行的全部候选场址，每个场址只计入最近的一个基地。",
        "- Line = the plant's installed MW × `line_rating_factor` unless the plant table gives "
        "`line_mw`; the backbone behind it is not modelled. / 线路容量默认取电站装机。",
        "- Typical days average the weather out: curtailment on real days is higher. / "
        "典型日平均掉天气波动，实际弃电率更高。",
        "- `hydro_bases.csv` is the older static screening ratio (spare line = hydro MW × (1 − CF)); "
        "`bases.csv` supersedes it. / hydro_bases.csv 为旧的静态估算。",
    ]
    lines += comparison_markdown(bases)  # beside announced real bases (bases.yaml published)
    return "\n".join(lines) + "\n"


def write_bases(bases: gpd.GeoDataFrame, sites: pd.DataFrame, runs: dict[str, Dispatch],
                out_dir: str | Path, *, limit: float, site_shapes: gpd.GeoDataFrame | None = None,
                make_map: bool = True, grid=None,
                provenance: dict | None = None) -> dict[str, Path]:  # fmt: skip
    """Write the bases' files into ``out_dir`` (see module docstring); returns {name: path}.
    With the run's ``provenance`` (``run.json``) every table, layer, chart, page and the map say
    what they rest on (:mod:`sitekit.outputs.tags`)."""
    from sitekit.outputs.export import write_geopackage
    from sitekit.outputs.tags import banner

    prov = provenance

    out = Path(out_dir)
    (out / "bases").mkdir(parents=True, exist_ok=True)
    month = monthly_table(runs)
    files = {"csv": _csv(out / "bases.csv", bases, prov),
             "sites_csv": _csv(out / "bases_sites.csv", sites, prov),
             "monthly_csv": _csv(out / "bases_monthly.csv", month, prov)}  # fmt: skip
    layers = {"hydro_wind_solar_bases": bases}
    if site_shapes is not None and len(site_shapes):
        layers["bases_sites"] = site_shapes
    files["gpkg"] = write_geopackage(out / "bases.gpkg", layers, metadata=prov)
    for _, r in bases.iterrows():
        files[f"png_{r['base_id']}"] = _chart(out / "bases" / f"{r['base_id']}.png", r,
                                             month[month["base_id"] == r["base_id"]],
                                             prov)  # fmt: skip
    target = out / "bases.md"
    with atomic_path(target) as tmp:
        head, _, rest = bases_markdown(bases, limit).partition("\n")  # status under the title
        status = banner("bases", prov)
        text = f"{head}\n\n{status}\n{rest}" if status else f"{head}\n{rest}"
        Path(tmp).write_text(text, encoding="utf-8")
    files["md"] = target
    if make_map and grid is not None and len(bases):
        files["map_html"] = _map(out / "bases_map.html", bases, site_shapes, grid, prov)
    return files


def _map(target: Path, bases: gpd.GeoDataFrame, site_shapes, grid,
         provenance: dict | None = None) -> Path:  # fmt: skip
    from sitekit.outputs import render
    from sitekit.outputs.style import MapStyle, VectorStyle

    base = MapStyle()
    extra = {"hydro_wind_solar_bases": VectorStyle(name_en="Hydro–wind–solar bases",
                                                   name_zh="水风光一体化基地", color="#08519c",
                                                   weight=2.0, fill=True)}  # fmt: skip
    style = MapStyle(title_en="Hydro–wind–solar bases", title_zh="水风光一体化基地",
                     vectors={**base.vectors, **extra}, layer_control_collapsed=False)  # fmt: skip
    cols = ["base_id", "hydro_plant", "hydro_plant_zh", "hydro_mw", "line_mw", "pv_mw", "wind_mw",
            "curtailment", "utilisation_before", "utilisation_after", "geometry"]  # fmt: skip
    vectors = {"hydro_wind_solar_bases": bases[cols]}
    if site_shapes is not None and len(site_shapes):
        for tech in sorted(set(site_shapes["technology"])):
            vectors[f"{tech}_sites"] = site_shapes[site_shapes["technology"] == tech]
    return render.render_map(target, grid=grid, rasters={}, vectors=vectors, style=style,
                             provenance={**(provenance or {}),
                                         "title": "Hydro–wind–solar bases / 水风光一体化基地"})  # fmt: skip


def profile_table(profiles: dict) -> pd.DataFrame:
    """``{(base_id, technology, site_id): (12, 24)}`` as rows base_id, technology, site_id,
    month, h00…h23 [MW per MW installed, Beijing time]."""
    rows = []
    for (bid, tech, sid), arr in profiles.items():
        for m in range(12):
            rows.append({"base_id": bid, "technology": tech, "site_id": sid, "month": m + 1,
                         **{f"h{h:02d}": float(arr[m, h]) for h in range(24)}})  # fmt: skip
    cols = ["base_id", "technology", "site_id", "month", *(f"h{h:02d}" for h in range(24))]
    return pd.DataFrame(rows, columns=cols)


def write_profile_tables(out_dir: str | Path, hydro: pd.DataFrame, profiles: dict,
                         provenance: dict | None = None) -> dict[str, Path]:  # fmt: skip
    """``hydro_profiles.csv`` (every GEM plant's class and monthly generation, ``hydro``) and
    ``bases_site_profiles.csv`` (:func:`profile_table` of ``profiles``) in ``out_dir``."""
    out = Path(out_dir)
    return {"hydro_csv": _csv(out / "hydro_profiles.csv", hydro, provenance),
            "site_profiles_csv": _csv(out / "bases_site_profiles.csv", profile_table(profiles),
                                      provenance)}  # fmt: skip


# -- report.html and map.html of the run ------------------------------------------------------
def _replace_block(page: str, block: str, before: list[str]) -> str:
    """``page`` without an earlier :data:`BEGIN`…:data:`END` block and with ``block`` put before
    the first of ``before`` found (else at the end)."""
    page = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", "", page, flags=re.S)
    block = f"{BEGIN}\n{block}\n{END}\n"
    for mark in before:
        i = page.find(mark)
        if i >= 0:
            return page[:i] + block + page[i:]
    return page + block


def report_section(bases: pd.DataFrame, charts: dict[str, Path], *, limit: float,
                   source: str) -> str:  # fmt: skip
    """The bases' section of ``report.html`` (中文/English): the per-base table and each base's
    monthly stacked chart (the PNG files, inlined)."""
    from sitekit.outputs.report import esc

    head = ("Base 基地", "Hydro plant 水电站", "Regulation 调节", "Hydro [MW] 水电", "Line [MW] 线路",
            "PV [MW] 光伏", "Wind [MW] 风电", "Sites 场址数", "Added [GWh/yr] 新增电量",
            "Curtailment 弃电率", "Utilisation before→after 线路利用率")  # fmt: skip
    rows = []
    for _, r in bases.iterrows():
        cells = (r["base_id"], f"{r['hydro_plant_zh']} {r['hydro_plant']}", r["regulation"],
                 f"{r['hydro_mw']:,.0f}", f"{r['line_mw']:,.0f}", f"{r['pv_mw']:,.0f}",
                 f"{r['wind_mw']:,.0f}", f"{int(r['n_sites'])}", f"{r['added_gwh']:,.0f}",
                 f"{r['curtailment']:.1%}",
                 f"{r['utilisation_before']:.0%} → {r['utilisation_after']:.0%}")  # fmt: skip
        rows.append("<tr>" + "".join(f'<td class="t">{esc(c)}</td>' for c in cells) + "</tr>")
    table = ("<table><tr>" + "".join(f'<th class="t">{esc(h)}</th>' for h in head) + "</tr>"
             + "".join(rows) + "</table>")  # fmt: skip
    imgs = []
    for bid, png in charts.items():
        data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
        imgs.append(f'<div class="chart"><img alt="{esc(bid)}" style="max-width:100%" '
                    f'src="data:image/png;base64,{data}"></div>')  # fmt: skip
    with_sites = int((bases["n_sites"] > 0).sum()) if len(bases) else 0
    note = (f"Per large hydro plant (GEM Global Hydropower Tracker, May 2023, CC BY 4.0): the PV "
            f"and wind MW its export line carries with ≤ {limit:.0%} of their energy curtailed, "
            "from MODELLED typical days (12 months × 24 h, LP solved with scipy/HiGHS); wind and "
            f"hydro monthly shapes are illustrative. Catchment: {source}. {with_sites} of "
            f"{len(bases)} bases have candidate sites within reach. Bundled sites are allocated "
            "to the base's line and left out of the grid-point totals of hosting/hosting.csv; "
            "supply_curve.csv names each one's base (bundled_base) and grid_allocation.csv "
            "gives every point's MW allocated and remaining after the bases. Files: hosting/"
            "bases.csv, bases_sites.csv, bases_monthly.csv, bases.gpkg, bases.md.")  # fmt: skip
    note_zh = (f"每座大型水电站外送线路在风光弃电率 ≤ {limit:.0%} 时可汇集的光伏、风电装机（典型日模型，"
               "线性规划求解；风电与水电月分布为示意数据，非实测）。汇集范围：本次运行的全部候选场址。"
               "纳入基地的场址计入其外送线路，不再计入 hosting.csv 的并网点容量。")  # fmt: skip
    from sitekit.outputs.report import _h

    compare = [f"<li>{esc(line[2:])}</li>" for line in comparison_markdown(bases)[3:]]
    compare_html = (_h(3, "Beside announced bases (a sanity check, not a fit)", "与已公布基地对照")
                    + f"<ul>{''.join(compare)}</ul>") if compare else ""  # fmt: skip
    return "\n".join([
        _h(2, "Hydro–wind–solar bases", "水风光一体化基地", "bases"),
        f'<p class="note">{esc(note)}</p>', f'<p class="note">{esc(note_zh)}</p>', table,
        compare_html,
        _h(3, "Monthly energy per base (modelled typical days)", "各基地逐月电量（典型日模型）"),
        f'<div class="charts">{"".join(imgs)}</div>',
    ])  # fmt: skip


def add_to_report(report_html: Path, section: str) -> Path:
    """Put ``section`` into the run's report before its validation/recipes part (replacing an
    earlier bases section); written atomically."""
    from sitekit.io.atomic import write_text

    page = Path(report_html).read_text(encoding="utf-8")
    page = _replace_block(page, section, ['<h2 id="validation"', '<h2 id="recipes"', "</body>"])
    return write_text(report_html, page)


#: bilingual popup labels of the bases' map layers
MAP_FIELDS = {
    "base_id": ("基地编号", "Base ID", None), "hydro_plant": ("水电站", "Hydro plant", None),
    "hydro_plant_zh": ("水电站（中文）", "Hydro plant (Chinese)", None),
    "regulation": ("调节性能", "Regulation class", None),
    "hydro_mw": ("水电装机 [MW]", "Hydro [MW]", 0), "line_mw": ("外送线路 [MW]", "Line [MW]", 0),
    "pv_mw": ("光伏 [MW]", "PV [MW]", 0), "wind_mw": ("风电 [MW]", "Wind [MW]", 0),
    "n_sites": ("场址数", "Sites", 0), "added_gwh": ("新增电量 [GWh/yr]", "Added [GWh/yr]", 0),
    "curtailment": ("弃电率", "Curtailment [0–1]", 3),
    "utilisation_before": ("线路利用率（前）", "Line utilisation before [0–1]", 2),
    "utilisation_after": ("线路利用率（后）", "Line utilisation after [0–1]", 2),
    "site_id": ("场址编号", "Site ID", None), "technology": ("技术", "Technology", None),
    "capacity_mw": ("装机容量 [MW]", "Capacity [MW]", 1),
    "lcoe_cny_per_kwh": ("总度电成本 [元/kWh]", "Total LCOE [CNY/kWh]", 3),
    "in_top_n": ("前N名场址", "In top-N list", None),
}  # fmt: skip


def map_block(bases: gpd.GeoDataFrame, site_points: gpd.GeoDataFrame | None,
              page: str) -> str:  # fmt: skip
    """A ``<script>`` adding the bases (points at the plants) and their bundled sites to the
    run's map (``window.sitekit.map``) and its layer control, with bilingual popups."""
    from jinja2.utils import htmlsafe_json_dumps

    from sitekit.outputs import render
    from sitekit.outputs.style import FieldLabel, MapStyle, VectorStyle

    style = MapStyle(fields={k: FieldLabel(en=en, zh=zh, decimals=d)
                             for k, (zh, en, d) in MAP_FIELDS.items()})  # fmt: skip
    layers = [("hydro_wind_solar_bases", bases[[c for c in MAP_FIELDS if c in bases] + ["geometry"]],
               VectorStyle(name_en="Hydro–wind–solar bases", name_zh="水风光一体化基地",
                           color="#08519c", fill=True, fill_opacity=0.8, radius_px=9))]  # fmt: skip
    if site_points is not None and len(site_points):
        layers.append(("bases_sites", site_points,
                       VectorStyle(name_en="Sites bundled into a base (PV, wind)", name_zh="纳入基地的场址（光伏、风电）",
                                   color="#7b3294", fill=True, fill_opacity=0.7, radius_px=4,
                                   color_by="technology",
                                   categories={"pv": "#fdae61", "wind": "#1a9641"})))  # fmt: skip
    found = re.search(r"\b(layer_control_[0-9a-f]+)\s*=\s*L\.control\.layers", page)
    ctl = found.group(1) if found else None
    js = ["(function () {", "  var sk = window.sitekit; if (!sk) { return; }", "  var l;"]
    for key, gdf, vs in layers:
        title = render.esc(style.label(vs.name_en, vs.name_zh)) + (
            ' <span class="sk-modelled">(modelled / 模拟)</span>'
        )
        data, on_each = render._features(gdf, key, vs, style, 0.0, title)
        colours = list((vs.categories or {}).values()) or [vs.fill_color or vs.color]
        swatch = "".join(f'<i class="sk-sw" style="background:{c}"></i>' for c in colours)
        js += [f"  l = L.geoJson({htmlsafe_json_dumps(data)}, {{onEachFeature: {on_each.js_code},",
               f"    pointToLayer: function (f, ll) {{ return L.circleMarker(ll, "
               f"{{radius: {vs.radius_px}, pane: 'sk_points'}}); }}, pane: 'sk_points'}});",
               "  l.addTo(sk.map); sk.layers[" + htmlsafe_json_dumps(key) + "] = l;"]  # fmt: skip
        if ctl:
            js.append(f"  if (typeof {ctl} !== 'undefined') {{ {ctl}.addOverlay(l, "
                      f"{htmlsafe_json_dumps(swatch + title)}); }}")  # fmt: skip
    js.append("})();")
    return "<script>\n" + "\n".join(js) + "\n</script>"


def add_to_map(map_html: Path, bases: gpd.GeoDataFrame,
               site_points: gpd.GeoDataFrame | None) -> Path:  # fmt: skip
    """Add the bases' layers to the run's map (after its own scripts, replacing an earlier
    bases block); written atomically; the page stays offline."""
    from sitekit.errors import OutputError
    from sitekit.io.atomic import write_text
    from sitekit.outputs.static import external_references

    page = Path(map_html).read_text(encoding="utf-8")
    page = _replace_block(page, map_block(bases, site_points, page), ["</html>"])
    if external_references(page) and not external_references(
            Path(map_html).read_text(encoding="utf-8")):  # fmt: skip
        raise OutputError(f"{map_html}: the bases layers would load from the network")
    return write_text(map_html, page)


def update_run_pages(run_dir: Path, out_dir: Path, bases: gpd.GeoDataFrame,
                     site_points: gpd.GeoDataFrame | None, charts: dict[str, Path], *,
                     limit: float, source: str) -> list[Path]:  # fmt: skip
    """Add the bases to ``run_dir``'s report.html and map.html when ``out_dir`` lies inside the
    run folder (the default ``RUN/hosting`` and the demo; results written elsewhere leave the run
    folder untouched). Returns the pages changed."""
    from sitekit.engine.logs import LOGGER

    run_dir, out_dir = Path(run_dir).resolve(), Path(out_dir).resolve()
    if not out_dir.is_relative_to(run_dir):
        LOGGER.info(f"bases not added to {run_dir}/report.html and map.html: --out is outside it")
        return []
    done = []
    rep, mp = run_dir / "report.html", run_dir / "map.html"
    if rep.is_file():
        done.append(add_to_report(rep, report_section(bases, charts, limit=limit, source=source)))
    if mp.is_file() and len(bases):
        done.append(add_to_map(mp, bases, site_points))
    return done


def mark_bundled_in_run(run_dir: Path, out_dir: Path, bundled: pd.DataFrame,
                        provenance: dict | None = None) -> list[Path]:  # fmt: skip
    """Carry the bundling into the run's own grid-point tables, so no site counts at two points:
    ``supply_curve.csv`` gets ``bundled_base`` (the base a site is bundled into, else empty) and
    ``grid_allocation.csv`` gets, per point, ``bundled_into_bases_mw`` (allocated sites that a
    base took), ``allocated_after_bases_mw`` and ``remaining_after_bases_mw``. Computed from the
    run's own columns each time, so running the hosting step again gives the same tables. Only
    when ``out_dir`` lies inside the run folder (as for the report and map). Returns the files
    rewritten."""
    from sitekit.outputs.export import write_table

    run_dir, out_dir = Path(run_dir).resolve(), Path(out_dir).resolve()
    sc_path, ga_path = run_dir / "supply_curve.csv", run_dir / "grid_allocation.csv"
    if not out_dir.is_relative_to(run_dir) or not sc_path.is_file():
        return []
    sc = pd.read_csv(sc_path, encoding="utf-8-sig", dtype={"site_id": str})
    base_of = {
        (str(t), str(i)): str(b)
        for t, i, b in zip(
            bundled["technology"], bundled["site_id"], bundled["base_id"], strict=True
        )  # fmt: skip
    }
    sc["bundled_base"] = [
        base_of.get((str(t), str(i)), "")
        for t, i in zip(sc["technology"], sc["site_id"], strict=True)
    ]
    done = [write_table(sc_path, sc.drop(columns=["data_status"], errors="ignore"),
                        provenance=provenance)]  # fmt: skip
    if ga_path.is_file():
        ga = pd.read_csv(ga_path, encoding="utf-8-sig")
        took = sc[(sc["bundled_base"] != "") & (sc["connection_status"] == "allocated")]
        mw = took.groupby("connection_point")["capacity_mw"].sum()
        ga["bundled_into_bases_mw"] = ga["name"].map(mw).fillna(0.0).round(3)
        ga["allocated_after_bases_mw"] = (ga["allocated_mw"] - ga["bundled_into_bases_mw"]).round(3)
        ga["remaining_after_bases_mw"] = (ga["capacity_mw"] - ga["allocated_after_bases_mw"]).round(
            3
        )
        done.append(write_table(ga_path, ga.drop(columns=["data_status"], errors="ignore"),
                                provenance=provenance))  # fmt: skip
    return done


def comparison_rows(bases: pd.DataFrame) -> list[dict]:
    """Bases with an announced real counterpart (``published_*`` columns,
    :func:`sitekit.science.bases.published`): modelled vs announced PV and wind MW [MW] and PV+wind
    energy [GWh/yr] with the ratio modelled / announced [-]."""
    if "published_what" not in bases.columns:
        return []
    rows = []
    for _, r in bases[bases["published_what"].fillna("").astype(str) != ""].iterrows():
        ann = float(r["published_pv_mw"]) + float(r["published_wind_mw"])
        mod = float(r["pv_mw"]) + float(r["wind_mw"])
        rows.append({"base_id": r["base_id"], "plant": f"{r['hydro_plant_zh']} {r['hydro_plant']}",
                     "model_pv_mw": float(r["pv_mw"]), "model_wind_mw": float(r["wind_mw"]),
                     "model_gwh": float(r["generated_gwh"]), "model_curtailment": r["curtailment"],
                     "pub_pv_mw": float(r["published_pv_mw"]),
                     "pub_wind_mw": float(r["published_wind_mw"]),
                     "pub_gwh": float(r["published_gwh"]), "ratio_mw": mod / ann if ann else np.nan,
                     "what": str(r["published_what"]), "source": str(r["published_source"])})  # fmt: skip
    return rows


def comparison_markdown(bases: pd.DataFrame) -> list[str]:
    """bases.md lines: each modelled base beside its announced real counterpart (中文/English)."""
    rows = comparison_rows(bases)
    if not rows:
        return []
    out = [
        "",
        "## Beside announced bases / 与已公布基地对照 (a sanity check, not a fit / 仅作核对，非拟合)",
        "",
    ]
    for c in rows:
        out.append(
            f"- {c['base_id']} {c['plant']}: modelled {c['model_pv_mw']:,.0f} MW PV + "
            f"{c['model_wind_mw']:,.0f} MW wind, {c['model_gwh']:,.0f} GWh/yr generated, "
            f"{c['model_curtailment']:.1%} curtailed; announced {c['pub_pv_mw']:,.0f} MW PV + "
            f"{c['pub_wind_mw']:,.0f} MW wind, {c['pub_gwh']:,.0f} GWh/yr — {c['what']} "
            f"(model / announced MW = {c['ratio_mw']:.2f}). Source: {c['source']}. / "
            f"模型 {c['model_pv_mw'] + c['model_wind_mw']:,.0f} MW，已公布 "
            f"{c['pub_pv_mw'] + c['pub_wind_mw']:,.0f} MW。"
        )
    out.append(
        "- The model's catchment holds only the run's candidate sites on its (demo) terrain and "
        "its line is the plant's installed MW; an announced project is one phase of a plan. / "
        "模型汇集范围仅含本次运行的候选场址，线路取电站装机；已公布项目仅为规划的一期。"
    )
    return out
