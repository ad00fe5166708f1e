"""map.html and report.html in real headless Chromium with the network blocked.

Needs Debian's ``chromium`` at /usr/bin/chromium (``.ci/run`` installs it); the test fails — it
does not skip — when it is missing. Playwright drives it through its Python package only
(``playwright install`` is never needed: the system browser is used).
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest

from sitekit.outputs.render import render_map
from sitekit.outputs.report import render_report
from sitekit.testing import synthetic_results

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
XSS = "<img src=x onerror=alert(1)>"
LAYERS = [
    "Hillshade",
    "PV suitability",
    "PV specific yield",
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
]


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium); "
        "the browser test must run, not skip"
    )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    r = synthetic_results()
    out = tmp_path_factory.mktemp("browser")
    m = render_map(
        out / "map.html",
        grid=r["grid"],
        rasters=r["rasters"],
        vectors=r["vectors"],
        provenance=r["provenance"],
    )
    sites = {"pv": r["vectors"]["pv_sites"], "wind": r["vectors"]["wind_sites"]}
    rep = render_report(
        out / "report.html",
        summary=r["summary"],
        sites=sites,
        ps_pairs=r["vectors"]["ps_pairs"],
        recipes=r["recipes"],
        provenance=r["provenance"],
    )
    return {"map": m, "report": rep}


class Page:
    """A page with every non-file request aborted and console errors / dialogs recorded."""

    def __init__(self, browser, viewport=(1200, 850)):
        self.context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.blocked: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", self._dialog)
        self.page.route("**/*", self._route)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _route(self, route) -> None:
        url = route.request.url
        if url.startswith("file://"):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def close(self) -> None:
        self.context.close()


def test_map_works_offline(browser, files: dict[str, Path]) -> None:
    from PIL import Image

    p = Page(browser)
    try:
        page = p.page
        t0 = time.perf_counter()
        page.goto(files["map"].as_uri())
        page.wait_for_function("window.L && window.sitekit && window.sitekit.ready", timeout=20000)
        page.wait_for_selector(".leaflet-container .leaflet-overlay-pane path")
        print(f"Leaflet ready in {time.perf_counter() - t0:.2f} s")

        control = page.eval_on_selector(".leaflet-control-layers", "e => e.textContent")
        for name in LAYERS:
            assert name in control, name
        for sel in [
            ".leaflet-control-scale",
            ".leaflet-control-zoom-fullscreen",
            ".leaflet-control-measure",
            ".sk-banner",
            ".sk-legend",
        ]:
            assert page.locator(sel).count() >= 1, sel
        assert "demo terrain" in page.inner_text(".sk-banner")

        # click the rank-1 PV site (the one named like an XSS payload) at its centre
        # … once it is the element under that point: during the opening zoom animation
        # (slower on a loaded machine) Leaflet hides the paths and the click hits the map
        xy = page.wait_for_function(
            """() => { const s = window.sitekit, l = s.layers.pv_sites.getLayers()
                 .find(f => f.feature.properties._n.startsWith('&lt;img'));
               const p = s.map.latLngToContainerPoint(l.getBounds().getCenter());
               const r = s.map.getContainer().getBoundingClientRect();
               const x = r.left + p.x, y = r.top + p.y;
               return document.elementFromPoint(x, y) === l.getElement() && [x, y]; }""",
            timeout=10000,
        ).json_value()
        page.mouse.click(*xy)
        popup = page.wait_for_selector(".leaflet-popup-content", timeout=5000)
        text = popup.inner_text()
        assert XSS in text  # shown as text …
        assert popup.query_selector("img") is None  # … never as markup
        for label in ["Capacity [MW]", "LCOE [CNY/kWh]", "Grid point", "Rank"]:
            assert label in text, label
        page.wait_for_timeout(200)
        assert p.dialogs == []

        png = page.screenshot()
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)
        assert pixels.std() > 20, "screenshot looks blank"
        assert p.errors == [], p.errors
        assert p.blocked == [], p.blocked  # the page never even tried the network
    finally:
        p.close()


def test_layer_toggle_updates_the_legend(browser, files: dict[str, Path]) -> None:
    p = Page(browser)
    try:
        page = p.page
        page.goto(files["map"].as_uri())
        page.wait_for_function("window.sitekit && window.sitekit.ready", timeout=20000)
        assert "PV suitability" in page.inner_text(".sk-legend")
        assert "Wind suitability" not in page.inner_text(".sk-legend")
        page.evaluate("() => window.sitekit.map.addLayer(window.sitekit.layers.wind_score)")
        assert "Wind suitability" in page.inner_text(".sk-legend")
        assert p.errors == [] and p.blocked == []
    finally:
        p.close()


def test_report_opens_offline(browser, files: dict[str, Path]) -> None:
    p = Page(browser)
    try:
        page = p.page
        page.goto(files["report"].as_uri())
        assert page.locator("svg").count() == 4
        assert XSS in page.inner_text("body") and page.locator("table img").count() == 0
        assert p.errors == [] and p.blocked == [] and p.dialogs == []
    finally:
        p.close()
