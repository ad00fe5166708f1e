"""``report.html``: one self-contained page for a reader who would rather look than read.

Charts are inline SVG drawn by matplotlib with text kept as text (``svg.fonttype: none``), so the
browser renders Chinese names with its own fonts and matplotlib needs no CJK font. Every string
from data, recipes or provenance is HTML-escaped (matplotlib escapes SVG text itself).
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from sitekit.io.atomic import write_text
from sitekit.outputs.render import FONT_STACK
from sitekit.outputs.style import MapStyle

TOP_N = 20
SITE_COLUMNS = [
    "rank",
    "site_id",
    "prefecture",
    "county",
    "capacity_mw",
    "energy_gwh",
    "capacity_factor",
    "lcoe_cny_per_kwh",
    "grid_distance_km",
    "grid_point_name",
    "area_km2",
    "mean_score",
]
PAIR_COLUMNS = [  # pumped storage: storage per cycle, never annual generation
    "pair_id",
    "prefecture",
    "storage_gwh",
    "power_mw",
    "storage_hours",
    "head_m",
    "dam_height_m",
    "mean_depth_m",
    "separation_km",
    "grid_distance_km",
    "cost_class",
    "uses_existing_reservoir",
    "lower_name",
]
TECH = {"pv": ("PV", "光伏"), "wind": ("Wind", "风电"), "ps": ("Pumped storage", "抽水蓄能")}
MODELLED = "modelled / 模拟"
DEMO_NOTE = (
    "Demo terrain — bring SRTM/Copernicus DEM for siting decisions. "
    "演示地形 — 选址决策请使用 SRTM/Copernicus DEM。"
)

_CSS = """
body{font:14px/1.45 FONT_STACK;margin:0 auto;
 max-width:1150px;padding:0 18px 40px;color:#222}
h1{font-size:24px;margin:18px 0 4px}h2{font-size:19px;border-bottom:2px solid #ccc;
 padding-bottom:3px;margin-top:30px}h3{font-size:15px;margin:16px 0 6px}
.zh{color:#555;font-weight:normal}.banner{background:#b30000;color:#fff;font-weight:bold;
 padding:8px 12px;border-radius:4px;margin:10px 0}
.modelled{color:#b35806;font-weight:bold}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0 12px}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}th{background:#f3f3f3}
td.t,th.t{text-align:left}pre{background:#f7f7f7;border:1px solid #ddd;padding:8px;overflow:auto;
 font-size:12px}.charts{display:flex;flex-wrap:wrap;gap:14px}.chart{flex:1 1 520px}
.chart svg{width:100%;height:auto}.single{max-width:640px}.note{color:#666;font-size:12px}
""".replace("FONT_STACK", FONT_STACK)


def _status_note(key: str, prov: Mapping[str, Any]) -> str:
    """The data status of a table (modelled / illustrative inputs, :func:`sitekit.outputs.tags.status`)."""
    from sitekit.outputs import tags

    if not prov.get("modelled") and not prov.get("inputs"):
        return ""
    return f'<p class="note modelled">{esc(tags.status(key, prov))}</p>'


def esc(value: Any) -> str:
    """HTML-escape any value (quotes included)."""
    return html.escape(str(value), quote=True)


def _h(level: int, en: str, zh: str, anchor: str = "") -> str:
    ident = f' id="{esc(anchor)}"' if anchor else ""
    return f'<h{level}{ident}>{esc(en)} <span class="zh">{esc(zh)}</span></h{level}>'


def _svg(fig: Any) -> str:
    """Inline SVG of a matplotlib Figure, text kept as text (no XML prolog, no metadata)."""
    import matplotlib

    buf = io.StringIO()
    with (
        matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "sitekit"}),
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    return re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)


def _figure(width: float = 6.4, height: float = 3.6):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots()


def _grouped_bars(summary: pd.DataFrame, column: str, ylabel: str) -> str:
    pivot = summary.pivot_table(
        index="prefecture", columns="technology", values=column, aggfunc="sum", fill_value=0.0
    )
    fig, ax = _figure()
    n = max(len(pivot.columns), 1)
    x = np.arange(len(pivot.index))
    width = 0.8 / n
    for i, tech in enumerate(pivot.columns):
        ax.bar(
            x + (i - (n - 1) / 2) * width,
            pivot[tech].to_numpy(),
            width,
            label=TECH.get(str(tech), (str(tech),))[0],
        )
    ax.set_xticks(x, [str(p) for p in pivot.index], rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(frameon=False)
    return _svg(fig)


def _supply_curves(sites: Mapping[str, gpd.GeoDataFrame]) -> str | None:
    usable = {
        t: s
        for t, s in sites.items()
        if s is not None and len(s) and {"lcoe_cny_per_kwh", "energy_gwh"} <= set(s.columns)
    }
    if not usable:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8 * len(usable), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(usable), squeeze=False)[0])
    for ax, (tech, s) in zip(axes, usable.items(), strict=True):
        groups = s.groupby("prefecture") if "prefecture" in s else [("all", s)]
        for pref, g in groups:
            g = g.sort_values("lcoe_cny_per_kwh")
            x = np.concatenate([[0.0], np.cumsum(g["energy_gwh"].to_numpy(float))])
            y = g["lcoe_cny_per_kwh"].to_numpy(float)
            ax.stairs(y, x, baseline=None, label=str(pref), linewidth=1.8)
        ax.set_title(TECH.get(tech, (tech,))[0])
        ax.set_xlabel("cumulative energy [GWh/yr]")
        ax.set_ylabel("LCOE [CNY/kWh]")
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=8)
    return _svg(fig)


def _ps_by_class(pairs: gpd.GeoDataFrame | None, style: MapStyle) -> str | None:
    if pairs is None or not len(pairs) or not {"storage_gwh", "cost_class"} <= set(pairs.columns):
        return None
    df = pd.DataFrame(pairs.drop(columns=pairs.geometry.name, errors="ignore"))
    if "prefecture" not in df:
        df["prefecture"] = "all"
    pivot = df.pivot_table(
        index="prefecture",
        columns="cost_class",
        values="storage_gwh",
        aggfunc="sum",
        fill_value=0.0,
    )
    fig, ax = _figure()
    from matplotlib.patches import Patch

    ps = style.vectors.get("ps_pairs")
    classes = (ps.categories if ps else None) or {}
    bottom = np.zeros(len(pivot.index))
    handles = []
    for i, cls in enumerate(pivot.columns):
        v = pivot[cls].to_numpy(float)
        colour = classes.get(str(cls), f"C{i}")
        ax.bar([str(p) for p in pivot.index], v, bottom=bottom, color=colour)
        handles.append(Patch(color=colour, label=f"class {cls}"))
        bottom += v
    ax.set_ylabel("storage per cycle [GWh]")
    ax.tick_params(axis="x", labelrotation=20)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(handles=handles, frameon=False)
    return _svg(fig)


def _fmt(v: Any, decimals: int | None) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return "–"
    if isinstance(v, bool | np.bool_):
        return "yes 是" if v else "no 否"
    if isinstance(v, int | np.integer):
        return f"{int(v):,}"
    if isinstance(v, float | np.floating):
        return f"{float(v):,.{decimals}f}" if decimals is not None else f"{float(v):,.4g}"
    return str(v)


def _table(df: pd.DataFrame, style: MapStyle, columns: list[str] | None = None) -> str:
    cols = [c for c in (columns or list(df.columns)) if c in df.columns and c != "geometry"]
    head = "".join(
        f'<th class="t">{esc(style.fields[c].en) if c in style.fields else esc(c)}'
        f"{'<br><span class=zh>' + esc(style.fields[c].zh) + '</span>' if c in style.fields and style.fields[c].zh else ''}</th>"  # noqa: E501
        for c in cols
    )
    body = []
    for row in df[cols].itertuples(index=False):
        cells = []
        for c, v in zip(cols, row, strict=True):
            text = esc(_fmt(v, style.fields[c].decimals if c in style.fields else None))
            numeric = isinstance(v, int | float | np.number) and not isinstance(v, bool)
            cells.append(f"<td>{text}</td>" if numeric else f'<td class="t">{text}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _top(df: gpd.GeoDataFrame, by: str, ascending: bool) -> pd.DataFrame:
    plain = pd.DataFrame(df.drop(columns=df.geometry.name, errors="ignore"))
    if by in plain:
        plain = plain.sort_values(by, ascending=ascending)
    return plain.head(TOP_N)


def _provenance(prov: Mapping[str, Any]) -> str:
    rows = []
    for k, v in prov.items():
        if k == "modelled" and isinstance(v, Mapping):
            text = ", ".join(f"{a}: {MODELLED if b is True else b}" for a, b in v.items() if b)
            rows.append(
                f'<tr><th class="t">{esc(k)}</th><td class="t modelled">{esc(text)}</td></tr>'
            )  # noqa: E501
            continue
        text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
        rows.append(f'<tr><th class="t">{esc(k)}</th><td class="t">{esc(text)}</td></tr>')
    return f"<table>{''.join(rows)}</table>"


def render_report(
    out_html: str | Path,
    *,
    summary: pd.DataFrame,
    sites: Mapping[str, gpd.GeoDataFrame],
    ps_pairs: gpd.GeoDataFrame | None,
    recipes: Mapping[str, str],
    provenance: Mapping[str, Any],
    style: MapStyle | None = None,
    potential: pd.DataFrame | None = None,
    supply: pd.DataFrame | None = None,
) -> Path:
    """Write the self-contained run report (HTML with inline SVG charts) and return its path.

    Parameters
    ----------
    out_html : target file (written atomically).
    summary : one row per (prefecture, technology): ``eligible_km2``, ``potential_mw``,
        ``energy_gwh``, ``n_sites``.
    sites : candidate sites per technology (``pv``, ``wind`` …), with the site attributes.
    ps_pairs : pumped-storage pairs (``storage_gwh`` per cycle, ``cost_class``, ``prefecture`` …)
        or None.
    recipes : recipe name → YAML text as used.
    provenance : ``title``, ``demo_terrain``, ``modelled`` {layer: bool or label}, sources …
    style : for bilingual column labels and number formats; None = default.
    potential : ``potential.csv`` rows (:mod:`sitekit.science.potential`): the technical potential over
        all eligible land, shown per prefecture; None = no such section.
    supply : ``supply_curve.csv`` rows (:mod:`sitekit.science.supply`): MW allocated to existing
        connection points / needing new transmission; None = no such table.
    """
    style = style or MapStyle()
    prov = dict(provenance or {})
    title = str(prov.get("title") or style.label(style.title_en, style.title_zh))
    parts = [
        f"<h1>{esc(title)}</h1>",
        f'<p class="note">report generated {esc(dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"))} by sitekit</p>',
    ]  # noqa: E501
    if prov.get("demo_terrain"):
        parts.append(f'<div class="banner">{esc(DEMO_NOTE)}</div>')
    modelled = {k: v for k, v in (prov.get("modelled") or {}).items() if v}
    if modelled:
        names = ", ".join(f"{k}" + ("" if v is True else f" ({v})") for k, v in modelled.items())
        parts.append(
            f'<p><span class="modelled">{esc(MODELLED)}</span>: {esc(names)} — computed '
            "by sitekit, not measured · 模型计算值，非实测</p>"
        )

    parts.append(_h(2, "Summary by prefecture", "各市州汇总", "summary"))
    if summary is not None and len(summary):
        parts.append(_table(summary, style))
        charts = [
            (
                "Capacity of the top-N sites [MW]",
                "前N名场址装机 [MW]",
                _grouped_bars(summary, "potential_mw", "top-N sites [MW]"),
            ),
            (
                "Annual energy of the top-N sites [GWh/yr]",
                "前N名场址年发电量 [GWh]",
                _grouped_bars(summary, "energy_gwh", "energy [GWh/yr]"),
            ),
        ]
        parts.append(
            '<div class="charts">'
            + "".join(f'<div class="chart">{_h(3, en, zh)}{svg}</div>' for en, zh, svg in charts)
            + "</div>"
        )  # noqa: E501
    else:
        parts.append('<p class="note">no summary rows · 无汇总数据</p>')

    from sitekit.science.supply import report_tables

    for i, (en, zh, table) in enumerate(report_tables(potential, supply)):
        parts.append(_h(2, en, zh, f"potential-{i}"))
        parts.append(_table(table, style))
    curves = _supply_curves(sites)
    if curves:
        en, zh = "LCOE supply curves of the top-N sites", "前N名场址平准化度电成本供给曲线"
        parts.append(_h(2, en, zh, "supply"))
        parts.append(f'<div class="chart">{curves}</div>')
    ps_chart = _ps_by_class(ps_pairs, style)
    if ps_chart:
        parts.append(
            _h(2, "Pumped-storage storage by class [GWh]", "抽水蓄能储能容量（按成本等级）", "ps")
        )  # noqa: E501
        parts.append(f'<div class="chart single">{ps_chart}</div>')

    for tech, df in sites.items():
        if df is None or not len(df):
            continue
        tech = tech.removesuffix("_sites")  # run.py passes the layer names (pv_sites, …)
        en, zh = TECH.get(tech, (tech.replace("_", " "), ""))
        parts.append(_h(2, f"Top {TOP_N} {en} sites", f"{zh}前{TOP_N}名场址", f"top-{tech}"))
        parts.append(_status_note(f"{tech}_sites", prov))
        parts.append(
            _table(
                _top(df, "rank", True),
                style,
                SITE_COLUMNS + [c for c in df.columns if c not in SITE_COLUMNS],
            )
        )
    if ps_pairs is not None and len(ps_pairs):
        parts.append(
            _h(2, f"Top {TOP_N} pumped-storage pairs", f"抽水蓄能前{TOP_N}名站点对", "top-ps")
        )  # noqa: E501
        parts.append(_table(_top(ps_pairs, "storage_gwh", False), style, PAIR_COLUMNS))

    parts.append(report_section(prov))  # rules applied / missing, check against built plants
    parts.append(_h(2, "Recipes used", "所用评价方案", "recipes"))
    for name, text in recipes.items():
        parts.append(f"<h3>{esc(name)}</h3><pre>{esc(text)}</pre>")
    parts.append(_h(2, "Data provenance", "数据来源", "provenance"))
    parts.append(_provenance(prov))

    page = (
        '<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )
    return write_text(out_html, page)


# -- rules and the check against built plants (provenance from engine.validation) ------------------------------------------------------------------------------------
def report_section(prov: dict[str, Any]) -> str:
    """HTML of the report section: rules applied / not applied, and the check against plants."""
    escape = html.escape
    rules_prov = prov.get("rules") or {}
    if not rules_prov:
        return ""
    out = ['<h2 id="rules">Siting rules applied · 所用选址规则</h2>']
    out.append(
        '<p class="note">"Eligible" means eligible under the rules applied. A rule whose layer is '
        "missing from the catalogue was NOT applied: add a layer that `provides` its role. "
        "「可开发」仅指在已应用规则下可开发。</p>"
    )
    for tech, info in rules_prov.items():
        share, share0 = info.get("eligible_share"), info.get("eligible_share_without_rules")
        out.append(
            f"<h3>{escape(tech)}</h3><p>eligible share of the study area: "
            f"{_pct(share0)} with the recipe's own constraints, {_pct(share)} with the rules too "
            f"(study area {info.get('study_area_km2', float('nan')):,.0f} km²; pixel majority)</p>"
        )
        rows = [
            "<tr><th>rule</th><th>status</th><th>layer</th><th>removed km²</th>"
            "<th>removed only by it km²</th><th>citation</th></tr>"
        ]
        for s in info.get("rules", []):
            status = {"layer_missing": "NOT applied: layer missing"}.get(s["status"], s["status"])
            rows.append(
                "<tr>"
                + "".join(
                    f"<td>{escape(str(v))}</td>"
                    for v in (
                        f"{s['id']} — {s['name_zh']} / {s['name_en']}",
                        status,
                        s.get("layer") or "—",
                        s.get("removed_km2", "—"),
                        s.get("removed_only_km2", "—"),
                        s.get("citation", ""),
                    )
                )
                + "</tr>"
            )
        out.append("<table>" + "".join(rows) + "</table>")
    val = prov.get("validation") or []
    if val:
        out.append('<h2 id="validation">Check against built plants · 与已建电站对照</h2>')
        out.append(
            '<p class="note">Operating plants only; the land a built plant occupies is not counted '
            "against it. Percentile: share of eligible pixels scoring ≤ the plant (50 = chance). "
            "AUC: score of built vs random eligible pixels (0.5 = no skill). CF is modelled, not "
            "measured. Positions of approximate GEM rows are uncertain by kilometres.</p>"
        )
        keys = list(val[0])
        head = "".join(f"<th>{escape(k)}</th>" for k in keys)
        body = "".join(
            "<tr>" + "".join(f"<td>{escape(str(r[k]))}</td>" for k in keys) + "</tr>" for r in val
        )
        out.append(f"<table><tr>{head}</tr>{body}</table>")
    for tech, info in (prov.get("existing_plants") or {}).items():
        if info.get("outside"):
            names = "; ".join(info["outside"])
            out.append(
                f"<p><b>{escape(tech)}: {len(info['outside'])} plant(s) outside the study area or "
                f"with impossible coordinates, not used</b> · 研究区外或坐标错误: {escape(names)}</p>"
            )
    return "".join(out)


def _pct(x: Any) -> str:
    return f"{100 * float(x):.1f} %" if x is not None and np.isfinite(float(x)) else "—"
