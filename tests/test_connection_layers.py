"""The connection layers of a run with PV and wind: one set of connection points per run, and
each technology's least-cost connection distance built with its own line settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from click.testing import CliRunner
from conftest import TINY_PV, add_ghi_layer, write_tiny_catalog

from sitekit.cli import cli, register
from sitekit.engine import rules
from sitekit.engine.pipeline import Pipeline
from sitekit.io.catalog import Catalog
from sitekit.specs.recipe import load_recipe

register()  # the CLI verbs
TINY_WIND = Path(__file__).parent / "badinput" / "recipes" / "tiny_wind.yaml"
#: both recipes' lines avoid their own town setbacks (PV 1,000 m, wind 1,500 m), dearly
#: (and both keep all their land, so PV's sites are those of a PV-only run)
SETS = ["--set", "grid.forbidden=[towns]", "--set", "grid.forbidden_cost=50"]
SHARED = "competition: {rule: shared}\n"


def _run(out: Path, catalog: Path, *recipes: Path) -> None:
    res = CliRunner().invoke(
        cli,
        ["-q", "run", *map(str, recipes), "--catalog", str(catalog), "--out", str(out),
         "--resolution", "1000", "--no-processes", "--workers", "1", "--no-map", "--no-cache",
         *SETS],
    )  # fmt: skip
    assert res.exit_code == 0, res.output + repr(res.exception)


def _read(tif: Path) -> np.ndarray:
    with rasterio.open(tif) as src:
        return src.read(1, masked=True).filled(np.nan)


def test_each_technology_connects_with_its_own_line_settings(tmp_path: Path) -> None:
    """Wind (first) and PV forbid their own town setbacks: the run keeps wind's distance as
    ``connection_distance`` and gives PV its own ``pv_connection_distance``, each equal to the
    layer built from that recipe alone; PV's sites carry the distances of a PV-only run. (Both
    used to get one layer: the memo ignored the forbidden constraint's settings and the last
    technology's layer replaced the first's.)"""
    catalog = add_ghi_layer(write_tiny_catalog(tmp_path / "tiny"))
    pv, wind = tmp_path / "tiny_pv.yaml", tmp_path / "tiny_wind.yaml"
    pv.write_text(TINY_PV + SHARED, encoding="utf-8")
    wind.write_text(TINY_WIND.read_text(encoding="utf-8") + SHARED, encoding="utf-8")
    both, alone = tmp_path / "both", tmp_path / "pv_alone"
    _run(both, catalog, wind, pv)
    _run(alone, catalog, pv)

    cat = Catalog(catalog)
    grid = cat.grid(1000)
    pipe = Pipeline(cat, grid)
    want = {}
    for t, path in (("wind", wind), ("pv", pv)):
        recipe, _ = load_recipe(path, [s for s in SETS if s != "--set"])
        g = pipe.technology(recipe)
        want[t] = pipe.connection_distance(recipe, rules.forbidden_mask(g)).values
    assert not np.allclose(want["pv"], want["wind"], equal_nan=True)  # the settings matter
    rasters = both / "rasters"
    np.testing.assert_allclose(_read(rasters / "connection_distance.tif"), want["wind"], 1e-6)
    np.testing.assert_allclose(_read(rasters / "pv_connection_distance.tif"), want["pv"], 1e-6)
    assert not (rasters / "wind_connection_distance.tif").exists()  # the run's layer is wind's
    assert (rasters / "pv_connection_distance.qml").is_file()  # QGIS style, as the others

    a, b = (pd.read_csv(f / "pv_sites.csv", comment="#") for f in (both, alone))
    assert len(a) > 0
    np.testing.assert_allclose(a["connection_distance_km"], b["connection_distance_km"], 1e-6)

    # `sitekit hosting` routes PV's sites over PV's own surface too
    for run in (both, alone):
        res = CliRunner().invoke(cli, ["hosting", "--run", str(run), "--catalog", str(catalog),
                                       "--no-bases"])  # fmt: skip
        assert res.exit_code == 0, res.output + repr(res.exception)
    a, b = (
        pd.read_csv(f / "hosting" / "supply_curves.csv", comment="#", encoding="utf-8-sig")
        .query("technology == 'pv'")
        .set_index("site_id")
        .sort_index()
        for f in (both, alone)
    )
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(a["connection_cost_km"], b["connection_cost_km"], 1e-9)


def test_pv_and_wind_connecting_to_different_points_is_refused(tmp_path: Path) -> None:
    """One run gathers both technologies' capacity at one set of connection points: a second
    ``grid.layer`` is refused before any work, naming the file, the line and the key."""
    catalog = add_ghi_layer(write_tiny_catalog(tmp_path / "tiny"))
    (catalog.parent / "subs.csv").write_text("name,lon,lat\nS,101.25,30.25\n")
    with open(catalog, "a", encoding="utf-8") as f:  # a second, valid set of points
        f.write(
            "  - {id: substations, kind: points-csv, path: subs.csv, role: grid,"
            " x: lon, y: lat, crs: 'EPSG:4326'}\n"
        )
    pv = tmp_path / "tiny_pv.yaml"
    pv.write_text(TINY_PV.replace("grid: {layer: towns,", "grid: {layer: substations,"))
    line = 1 + TINY_PV.splitlines().index("grid: {layer: towns, name_field: name}")
    args = ["-q", "run", str(TINY_WIND), str(pv), "--catalog", str(catalog),
            "--out", str(tmp_path / "out"), "--resolution", "1000", "--no-processes"]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code != 0
    text = res.output + str(res.exception)
    assert f"{pv}:{line}: grid.layer 'substations' is not the 'towns'" in text, text
    assert not (tmp_path / "out").exists()
    # the same points under another name column: refused too, at that key's line
    block = TINY_PV.replace("grid: {layer: towns, name_field: name}",
                            "grid:\n  layer: towns\n  name_field: label")  # fmt: skip
    pv.write_text(block)
    res = CliRunner().invoke(cli, [*args[:3], str(pv), *args[4:]])
    assert res.exit_code != 0
    text = res.output + str(res.exception)
    assert f"{pv}:{line + 2}: grid.name_field 'label' is not the 'name'" in text, text
