"""report.html: self-contained, escaped, bilingual, with the charts and top-20 tables."""

from __future__ import annotations

import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from sitekit.outputs.report import TOP_N, render_report
from sitekit.outputs.static import external_references
from sitekit.testing import synthetic_results

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def results() -> dict:
    r = synthetic_results()
    pv = r["vectors"]["pv_sites"]
    # 25 PV sites (more than the top 20), two prefectures, one with a Chinese name
    many = pd.concat([pv] * 9, ignore_index=True).iloc[:25].copy()
    many["rank"] = np.arange(1, 26)
    many["site_id"] = [XSS] + [f"PV-{i:04d}" for i in range(2, 26)]
    many["prefecture"] = ["凉山州"] * 12 + ["Jia"] * 13
    many["lcoe_cny_per_kwh"] = np.linspace(0.2, 0.5, 25)
    r["sites"] = {"pv": gpd.GeoDataFrame(many, crs=pv.crs), "wind": r["vectors"]["wind_sites"]}
    pairs = r["vectors"]["ps_pairs"]
    r["pairs"] = gpd.GeoDataFrame(
        pd.concat([pairs] * 3, ignore_index=True).assign(
            cost_class=["A", "B", "C"], storage_gwh=[6.5, 4.0, 2.0], prefecture=["Jia", "Yi", "Yi"]
        ),
        crs=pairs.crs,
    )
    return r


@pytest.fixture(scope="module")
def page(results: dict, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("report") / "report.html"
    r = results
    path = render_report(
        out,
        summary=r["summary"],
        sites=r["sites"],
        ps_pairs=r["pairs"],
        recipes=r["recipes"],
        provenance=r["provenance"],
    )
    assert path == out
    return out.read_text(encoding="utf-8")


def test_report_is_self_contained(page: str) -> None:
    assert external_references(page) == []
    assert not re.search(r"<(script|link|img|iframe)\b", page)
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page


def test_report_escapes_everything(page: str) -> None:
    assert XSS not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<b>not bold</b>" not in page and "&lt;b&gt;not bold&lt;/b&gt;" in page


def test_report_has_the_charts(page: str) -> None:
    svgs = re.findall(r"<svg\b.*?</svg>", page, flags=re.S)
    assert len(svgs) == 4  # MW by technology, GWh by technology, LCOE supply curves, PSH classes
    assert not any("<?xml" in s or "<metadata>" in s for s in svgs)
    text = " ".join(re.findall(r"<text[^>]*>([^<]*)</text>", page))
    assert "凉山州" in text  # Chinese kept as SVG text: the browser renders it with its fonts
    assert "LCOE [CNY/kWh]" in text and "class A" in text and "top-N sites [MW]" in text


def test_report_tables_and_headings(page: str, results: dict) -> None:
    for heading in [
        "Summary by prefecture",
        "各市州汇总",
        "LCOE supply curves",
        "Top 20 PV sites",
        "光伏前20名场址",
        "Top 20 Wind sites",
        "Top 20 pumped-storage pairs",
        "Recipes used",
        "Data provenance",
        "数据来源",
    ]:
        assert heading in page, heading
    section = page.split('id="top-pv"')[1].split("<h2")[0]
    assert section.count("<tr>") == TOP_N + 1  # header + 20 rows, not all 25
    assert "PV-0020" in section and "PV-0021" not in section
    assert "装机容量 [MW]" in section and "LCOE [CNY/kWh]" in section
    ps = page.split('id="top-ps"')[1].split("<h2")[0]
    assert ps.index("6.5") < ps.index("4.0")  # by energy, largest first


def test_report_labels_demo_terrain_and_modelled(page: str) -> None:
    assert "Demo terrain — bring SRTM/Copernicus DEM for siting decisions" in page
    assert "modelled / 模拟" in page and "pv_yield" in page
    assert "modelled (reference wind speed)" in page


def test_report_with_little_data(tmp_path: Path) -> None:
    empty = pd.DataFrame(
        columns=[
            "prefecture",
            "technology",
            "eligible_km2",
            "potential_mw",
            "energy_gwh",
            "n_sites",
        ]
    )
    one = gpd.GeoDataFrame(
        {"site_id": ["S1"], "rank": [1]}, geometry=[shapely.Point(0, 0)], crs=4326
    )
    out = render_report(
        tmp_path / "r.html",
        summary=empty,
        sites={"pv": one},
        ps_pairs=None,
        recipes={},
        provenance={},
    )
    html = out.read_text(encoding="utf-8")
    assert "no summary rows" in html and "S1" in html and "<svg" not in html
    assert "Demo terrain" not in html


def test_report_and_map_share_one_font_stack() -> None:
    """Chinese text falls back to the same CJK fonts in report.html as in map.html."""
    from sitekit.outputs import render, report

    assert f"body{{font:14px/1.45 {render.FONT_STACK};" in report._CSS
