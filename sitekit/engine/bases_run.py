"""The hydro–wind–solar bases (:mod:`sitekit.science.bases`) around a run's output folder: which sites a
base may bundle (every candidate site of the run, from ``supply_curve.csv``), where the bundled
sites were counted before, and the bases' section of the run's ``report.html`` and layers of its
``map.html`` (both self-contained and offline; rewritten atomically, a second hosting step
replaces what the first added)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

#: where a base's catchment sites come from (:func:`candidate_sites`)
ALL_CANDIDATES = "all candidate sites of the run (supply_curve.csv)"
TOP_N_ONLY = "the run's top-N sites only (no supply_curve.csv with site centres)"
#: markers around what the hosting step adds to report.html / map.html
BEGIN, END = "<!-- sitekit:bases -->", "<!-- /sitekit:bases -->"


def candidate_sites(run_dir: Path | None, run) -> tuple[dict, str]:
    """The sites a base may bundle, per technology, in the run's grid CRS.

    Every candidate site of the run — ``supply_curve.csv`` (:mod:`sitekit.science.supply`), one row
    per site with its centre ``x_m``/``y_m`` [m, grid CRS] — as points with ``site_id``,
    ``capacity_mw`` [MW], ``energy_gwh`` [GWh/yr], ``lcoe_cny_per_kwh`` (= the supply curve's
    total LCOE incl. connection [CNY/kWh]), ``in_top_n`` and ``connection_point`` (the grid
    point the run allocated the site to, before any base). Without that file or its centre
    columns (older runs): the run's top-N site polygons (``run.sites``).

    Returns (sites by technology, :data:`ALL_CANDIDATES` or :data:`TOP_N_ONLY`)."""
    from shapely import points

    path = Path(run_dir) / "supply_curve.csv" if run_dir is not None else None
    if path is None or not path.is_file():
        return dict(run.sites), TOP_N_ONLY
    sc = pd.read_csv(path, encoding="utf-8-sig", dtype={"site_id": str})
    if not {"x_m", "y_m", "site_id", "technology"} <= set(sc.columns) or not len(sc):
        return dict(run.sites), TOP_N_ONLY
    sc = sc[np.isfinite(sc["x_m"].astype(float)) & np.isfinite(sc["y_m"].astype(float))]
    out = {}
    for tech, g in sc.groupby("technology", sort=True):
        df = pd.DataFrame({"site_id": g["site_id"].astype(str),
                           "capacity_mw": g["capacity_mw"].astype(float),
                           "energy_gwh": g["energy_gwh"].astype(float),
                           "lcoe_cny_per_kwh": g["total_lcoe_cny_per_kwh"].astype(float),
                           "in_top_n": g["in_top_n"].astype(str).str.lower() == "true",
                           "connection_point": g["connection_point"].fillna("").astype(str)})  # fmt: skip
        geom = points(g["x_m"].to_numpy(float), g["y_m"].to_numpy(float))
        out[str(tech)] = gpd.GeoDataFrame(df.reset_index(drop=True), geometry=geom,
                                          crs=run.grid.crs)  # fmt: skip
    return out, ALL_CANDIDATES


def with_pool_columns(sites: pd.DataFrame, pool: dict) -> pd.DataFrame:
    """``bases_sites`` rows with the pool's ``in_top_n`` and, as
    ``connection_point_without_base``, the grid point the run allocated the site to before the
    bases (``supply_curve.csv``), where the pool has them."""
    frames = [g for g in pool.values() if g is not None and len(g)]
    cols = [c for c in ("in_top_n", "connection_point") if frames and all(c in g for g in frames)]
    if not cols:
        return sites
    ref = pd.concat([pd.DataFrame(g[["site_id", *cols]]).assign(technology=t)
                     for t, g in pool.items() if g is not None and len(g)],
                    ignore_index=True)  # fmt: skip
    ref["site_id"] = ref["site_id"].astype(str)
    ref = ref.rename(columns={"connection_point": "connection_point_without_base"})
    return sites.merge(ref, on=["technology", "site_id"], how="left")


def bundled_points(bundled: pd.DataFrame, pool: dict, crs) -> gpd.GeoDataFrame | None:
    """The bundled sites as points at their centres (``crs``): site_id, technology, base_id,
    capacity_mw [MW], lcoe_cny_per_kwh [CNY/kWh], in_top_n (when known); None if none."""
    parts = []
    for tech, g in pool.items():
        if g is None or not len(g):
            continue
        b = bundled[bundled["technology"] == tech].set_index("site_id")["base_id"]
        mine = g[g["site_id"].astype(str).isin(b.index)]
        if not len(mine):
            continue
        cols = [c for c in ("site_id", "capacity_mw", "lcoe_cny_per_kwh", "in_top_n")
                if c in mine.columns]  # fmt: skip
        part = pd.DataFrame(mine[cols]).assign(technology=tech).reset_index(drop=True)
        part["site_id"] = part["site_id"].astype(str)
        part["base_id"] = [b[i] for i in part["site_id"]]
        geom = mine.geometry.to_crs(crs).representative_point().values
        parts.append(gpd.GeoDataFrame(part, geometry=geom, crs=crs))
    if not parts:
        return None
    return gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), geometry="geometry", crs=crs)


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
