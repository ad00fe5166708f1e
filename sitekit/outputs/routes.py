"""Route report files: the CSV tables, the elevation/slope profile plot, the bilingual summary
and the offline map of a :class:`sitekit.science.routes.RouteReport` (and its least-cost
suggestion). Every file is written atomically; every name from a user file is escaped; with the
run's provenance each file carries its data status (:mod:`sitekit.outputs.tags`). Tables go
through the one CSV writer, :func:`sitekit.outputs.export.write_csv` (UTF-8 with BOM, formula
guard); the map through :func:`sitekit.outputs.render.render_map`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from sitekit.grid import Grid
from sitekit.io.atomic import atomic_path, write_text
from sitekit.outputs import tags
from sitekit.outputs.export import write_csv
from sitekit.outputs.style import MapStyle, VectorStyle
from sitekit.science.routes import MODELLED, RouteReport, SuggestedRoute


def _md(value: Any) -> str:
    """Text for a Markdown table cell: HTML-escaped (names may hold markup), pipes escaped."""
    return html.escape(str(value), quote=True).replace("|", "\\|").replace("\n", " ")


def _cost_text(value: float) -> str:
    return f"{value:.1f}" if math.isfinite(value) else "impassable / 不可通行"


def _table(df: pd.DataFrame, cols: dict[str, str], fmt: dict[str, str] | None = None) -> str:
    fmt = fmt or {}
    head = "| " + " | ".join(cols.values()) + " |\n|" + "---|" * len(cols) + "\n"
    body = "".join(
        "| "
        + " | ".join(_md(format(r[c], fmt.get(c, "")) if c in fmt else r[c]) for c in cols)
        + " |\n"
        for _, r in df.iterrows()
    )
    return head + (body or "| " + " | ".join(["–"] * len(cols)) + " |\n")


def _profile_png(report: RouteReport, target: Path, provenance: dict | None = None) -> Path:
    from matplotlib.figure import Figure

    p = report.profile
    fig = Figure(figsize=(10, 6), layout="constrained")
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    ax1.plot(p["distance_km"], p["elevation_m"], color="#5b3a1e", lw=1.2)
    ax1.axhline(report.elevation_threshold_m, color="#b30000", ls="--", lw=0.8,
                label=f"{report.elevation_threshold_m:g} m")  # fmt: skip
    colours = ["#e7298a", "#1b9e77", "#7570b3", "#d95f02", "#66a61e", "#e6ab02"]
    codes = list(dict.fromkeys(report.crossings["code"]))
    for i, code in enumerate(codes):
        for j, (_, c) in enumerate(report.crossings[report.crossings["code"] == code].iterrows()):
            for ax in (ax1, ax2):
                ax.axvspan(c["entry_km"], c["exit_km"], color=colours[i % len(colours)], alpha=0.25,
                           label=str(code) if (ax is ax1 and j == 0) else None)  # fmt: skip
    ax1.set_ylabel("elevation [m]")
    ax1.legend(loc="best", fontsize=8)
    ax2.plot(p["distance_km"], p["slope_deg"], color="#444444", lw=0.9)
    ax2.axhline(report.slope_threshold_deg, color="#b30000", ls="--", lw=0.8)
    ax2.set_ylabel("slope [°]")
    ax2.set_xlabel("distance along the route [km]")
    title = report.name if all(ord(c) < 0x2E80 for c in report.name) else "route"  # no CJK font
    if report.elevation is not None and report.elevation.attrs.get("modelled") in MODELLED:
        title += ", modelled demo terrain"
    ax1.set_title(f"Elevation and slope profile — {title} ({report.length_km:.1f} km)")
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=120, metadata=tags.png_text("route_profile", provenance))
    return Path(target)


def route_summary_markdown(
    report: RouteReport, suggestion: SuggestedRoute | None = None, provenance: dict | None = None
) -> str:
    """The bilingual Markdown summary of a route report (every name HTML-escaped); with the
    run's ``provenance`` a data-status line follows the heading (:func:`sitekit.outputs.tags.banner`)."""
    p, r = report.profile, report
    e, s = p["elevation_m"], p["slope_deg"]
    status = tags.banner("route_summary", provenance)
    lines = [f"# Route report / 线路评估报告: {_md(r.name)}", "", *([status, ""] if status else []),
             f"- Length / 线路长度: **{r.length_km:.1f} km**",
             f"- Corridor / 汇集走廊: ±{r.corridor_km:g} km", ""]  # fmt: skip
    lines += ["## Terrain / 地形", "", "| Measure / 指标 | Value / 数值 |", "|---|---|",
              f"| Max elevation / 最高海拔 [m] | {np.nanmax(e):.0f} |" if e.notna().any() else
              "| Max elevation / 最高海拔 [m] | – |",
              f"| Share above {r.elevation_threshold_m:g} m / 海拔 {r.elevation_threshold_m:g} m "
              f"以上占比 | {100 * r.share_above_elevation:.1f} % |",
              f"| Share on slopes > {r.slope_threshold_deg:g}° / 坡度 > {r.slope_threshold_deg:g}° "
              f"占比 | {100 * r.share_steep:.1f} % |",
              f"| Mean slope / 平均坡度 [°] | {np.nanmean(s):.1f} |" if s.notna().any() else
              "| Mean slope / 平均坡度 [°] | – |", ""]  # fmt: skip
    lines += ["## Hard constraints crossed / 穿越的刚性约束", "",
              _table(r.constraints, {"code": "Code / 代码", "name_en": "Constraint",
                                     "name_zh": "约束", "length_km": "Inside / 穿越长度 [km]",
                                     "share_pct": "Share / 占比 [%]",
                                     "n_crossings": "Crossings / 穿越次数"},
                     {"length_km": ".2f", "share_pct": ".1f"}),
              "### Crossings / 穿越明细", "",
              _table(r.crossings, {"code": "Code / 代码", "crossing": "#", "features":
                                   "Features / 图斑", "entry_km": "Entry / 进入 [km]",
                                   "exit_km": "Exit / 离开 [km]", "length_km": "Length / 长度 [km]",
                                   "entry_lon": "Entry lon", "entry_lat": "Entry lat",
                                   "exit_lon": "Exit lon", "exit_lat": "Exit lat"},
                     {"entry_km": ".2f", "exit_km": ".2f", "length_km": ".2f",
                      "entry_lon": ".4f", "entry_lat": ".4f", "exit_lon": ".4f",
                      "exit_lat": ".4f"})]  # fmt: skip
    lines += [f"## Candidate capacity within ±{r.corridor_km:g} km / 走廊内候选装机", "",
              _table(r.capacity, {"technology": "Technology / 技术", "rank_class":
                                  "Rank class / 排名区间", "n_sites": "Sites / 场址数",
                                  "capacity_mw": "Capacity / 装机 [MW]",
                                  "energy_gwh": "Energy / 年发电量 [GWh]"},
                     {"capacity_mw": ",.0f", "energy_gwh": ",.0f"}),
              "## Sites the route could collect / 可汇集的场址", "",
              "Best 30 by rank per technology; all in `route_sites.csv`. / 每类前30个，完整列表见 "
              "`route_sites.csv`。", "",
              _table(r.sites.groupby("technology").head(30) if len(r.sites) else r.sites,
                     {"technology": "Technology / 技术", "rank": "Rank / 排名",
                      "site_id": "Site / 场址", "capacity_mw": "MW",
                      "distance_km": "To line / 距线路 [km]",
                      "route_km": "At route km / 线路里程 [km]"},
                     {"capacity_mw": ",.0f", "distance_km": ".1f", "route_km": ".1f"})]  # fmt: skip
    if suggestion is not None:
        sg = suggestion
        lines += ["## Least-cost suggestion / 最小成本路径建议", "",
                  f"- Method / 方法: {_md(sg.method)}",
                  f"- Length / 长度: {sg.length_km:.1f} km; straight line / 直线: "
                  f"{sg.straight_km:.1f} km (ratio / 比值 {sg.length_ratio:.2f})",
                  f"- Cost / 成本: {sg.cost_km:.1f} km-equivalent / 等效公里; straight line / "
                  f"直线: {_cost_text(sg.straight_cost_km)}",
                  f"- Forbidden-zone km crossed / 穿越禁止通行区长度: "
                  f"{sg.crossings['length_km'].sum():.2f} km "
                  f"in {len(sg.crossings)} crossing(s) / 次", ""]  # fmt: skip
    lines += ["## Notes / 说明", "", "- Crossings: stretches of the line inside a constraint "
              "(polygon geometry, or quarter-pixel sampling of a raster mask). / 穿越：线路位于约束范围内"
              "的连续段。", "- Profile sampled bilinearly every "
              f"{float(p['distance_km'].diff().median() * 1000) if len(p) > 1 else 0:.0f} m. / "
              "剖面按固定间距双线性采样。"]  # fmt: skip
    lines += [f"- {_md(n)}" for n in r.notes]
    return "\n".join(lines) + "\n"


def _route_map(
    report: RouteReport,
    target: Path,
    suggestion: SuggestedRoute | None,
    map_cache: Callable[[Grid], Any] | None = None,
    provenance: dict | None = None,
) -> Path:
    from sitekit.outputs import render

    grid = report.grid
    corridor = report.route.geometry.iloc[0].buffer(report.corridor_km * 1000.0)
    (c0, c1), (r1, r0) = ~grid.transform * (
        np.array(corridor.bounds[0::2]),
        np.array(corridor.bounds[1::2]),
    )
    ny, nx = grid.shape
    r0, c0 = max(0, math.floor(r0)), max(0, math.floor(c0))
    r1, c1 = min(ny, math.ceil(r1)), min(nx, math.ceil(c1))
    win = grid.window(r0, c0, r1 - r0, c1 - c0)
    rasters = {}
    if report.elevation is not None and r1 > r0 and c1 > c0:
        rasters["elevation"] = report.elevation.isel(y=slice(r0, r1), x=slice(c0, c1))
    base = MapStyle()
    extra = {
        "corridor": VectorStyle(name_en="Corridor", name_zh="汇集走廊", color="#e7298a",
                                weight=1.0, dash_array="2 4", fill=False),
        "route_crossings": VectorStyle(name_en="Constraint crossings", name_zh="约束穿越段",
                                       color="#d7191c", weight=6.0, fill=False),
        "suggested_route": VectorStyle(name_en="Least-cost suggestion", name_zh="最小成本路径",
                                       color="#1a9641", weight=3.0, fill=False),
    }  # fmt: skip
    style = MapStyle(title_en=f"Route {report.name}", title_zh="线路评估",
                     vectors={**base.vectors, **extra}, layer_control_collapsed=False)  # fmt: skip
    vectors: dict[str, gpd.GeoDataFrame] = {
        "corridor": gpd.GeoDataFrame({"name": [f"±{report.corridor_km:g} km"]},
                                     geometry=[corridor], crs=grid.crs),
    }  # fmt: skip
    for tech in sorted(set(report.sites["technology"])):
        vectors[f"{tech}_sites"] = report.sites[report.sites["technology"] == tech]
    vectors["routes"] = report.route
    if suggestion is not None:
        vectors["suggested_route"] = suggestion.to_geodataframe()
    if len(report.crossings):
        vectors["route_crossings"] = report.crossings[["code", "name_en", "name_zh", "crossing",
                                                       "features", "entry_km", "exit_km",
                                                       "length_km", "geometry"]]  # fmt: skip
    prov = {**(provenance or {}), "title": f"{report.name} — route report / 线路评估"}
    if report.elevation is not None and report.elevation.attrs.get("modelled") in MODELLED:
        prov["demo_terrain"] = True
    # overlays are keyed by their pixels' content: a re-run on the same terrain reuses them
    cache = map_cache(win) if map_cache is not None else None
    return render.render_map(target, grid=win, rasters=rasters, vectors=vectors, style=style,
                             provenance=prov, cache=cache)  # fmt: skip


def write_route_report(
    report: RouteReport, out_dir: str | Path, *, suggestion: SuggestedRoute | None = None,
    make_map: bool = True, map_cache: Callable[[Grid], Any] | None = None,
    provenance: dict | None = None,
) -> dict[str, Path]:  # fmt: skip
    """Write a route report: ``route_profile.csv``/``.png``, ``route_summary.md``,
    ``route_crossings.csv``, ``route_sites.csv``, ``route_capacity.csv`` and ``route_map.html``
    (self-contained, offline; every name escaped), plus ``route_suggestion.geojson`` when a
    suggestion is given. Every file is written atomically. ``map_cache`` gives the map window's
    overlay cache (``window grid → LayerCache``; :func:`sitekit.engine.routes.write_route_report`
    keeps them in the run's layer cache). With the run's ``provenance`` (``run.json``) every
    table, the PNG, the summary and the map say what they rest on (:mod:`sitekit.outputs.tags`).
    Returns {name: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prov = provenance
    files = {
        "profile_csv": write_csv(out / "route_profile.csv", report.profile, prov),
        "crossings_csv": write_csv(out / "route_crossings.csv", report.crossings, prov),
        "sites_csv": write_csv(out / "route_sites.csv", report.sites, prov),
        "capacity_csv": write_csv(out / "route_capacity.csv", report.capacity, prov),
        "profile_png": _profile_png(report, out / "route_profile.png", prov),
        "summary_md": write_text(
            out / "route_summary.md", route_summary_markdown(report, suggestion, prov)
        ),  # fmt: skip
    }
    if suggestion is not None:
        target = out / "route_suggestion.geojson"
        with atomic_path(target) as tmp:
            gdf = suggestion.to_geodataframe().to_crs(4326)
            for col in ("cost_km", "straight_cost_km"):  # GeoJSON has no inf: null = impassable
                gdf[col] = gdf[col].astype(object).where(np.isfinite(gdf[col].astype(float)), None)
            if prov is not None:  # the run's data status as a property (sitekit.outputs.tags)
                gdf["data_status"] = tags.status("suggested_route", prov)
            gdf.to_file(tmp, driver="GeoJSON", engine="pyogrio")
        files["suggestion_geojson"] = target
    if make_map:
        files["map_html"] = _route_map(report, out / "route_map.html", suggestion, map_cache,
                                       prov)  # fmt: skip
    return files
