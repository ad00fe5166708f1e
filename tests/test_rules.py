"""Siting rules as cited data: the catalogue validates, recipes name rules, runs report them."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from sitekit.engine import rules
from sitekit.errors import RecipeError
from sitekit.outputs.render import banner_text
from sitekit.specs import rules as rule_specs
from sitekit.specs.recipe import load_recipe

PIPES = Path(__file__).resolve().parents[1] / "pipelines"


def test_catalogue_rules_cited_or_marked_unverified() -> None:
    cat = rule_specs.load_rules()
    # the rules the issue names are there, with their document numbers
    assert "142号" in cat["eco_redline"].citation.number
    assert cat["pv_basic_farmland"].citation.number == "自然资办发〔2023〕12号"
    assert cat["wind_forest_2019_natural_forest"].citation.number == "林资发〔2019〕17号"
    for rule in cat.values():
        assert rule.citation is not None or rule.unverified, rule.id
        if rule.citation is not None and not rule.unverified:
            assert rule.citation.read_from and rule.citation.issuer and rule.citation.year
    # the hard legal bans cannot be overridden by a forced-inclusion zone
    assert not cat["eco_redline"].overridable and not cat["pv_basic_farmland"].overridable


def _write(folder: Path, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "x.yaml").write_text(text, encoding="utf-8")
    return folder


RULE = """rules:
  - id: r1
    name_zh: 测试
    name_en: test
    technologies: [pv]
    action: buffer
    buffer_m: 100
    layer_role: settlement
    unverified: true
"""


def test_rule_errors_name_file_line_key(tmp_path: Path) -> None:
    rule_specs.load_rules.cache_clear()
    folder = _write(tmp_path / "a", RULE.replace("    buffer_m: 100\n", "    bufer_m: 100\n"))
    with pytest.raises(RecipeError, match=r"x.yaml:7: .*'bufer_m'.*did you mean 'buffer_m'"):
        rule_specs.load_rules(folder)
    # a rule without citation must say it is unverified
    folder = _write(tmp_path / "b", RULE.replace("    unverified: true\n", ""))
    with pytest.raises(RecipeError, match="citation, or `unverified: true`"):
        rule_specs.load_rules(folder)
    # a buffer rule without a distance
    folder = _write(tmp_path / "c", RULE.replace("    buffer_m: 100\n", ""))
    with pytest.raises(RecipeError, match="buffer_m > 0"):
        rule_specs.load_rules(folder)


def _recipe_with(tmp_path: Path, rule_ids: str) -> Path:
    text = (PIPES / "pv.yaml").read_text(encoding="utf-8")
    start = text.index("rules:\n")
    end = text.index("\n\n", start)
    p = tmp_path / "pv.yaml"
    p.write_text(text[:start] + f"rules: {rule_ids}" + text[end:], encoding="utf-8")
    return p


def test_recipe_unknown_or_wrong_technology_rule(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"pv.yaml:\d+.*unknown rule 'no_such_rule'"):
        load_recipe(_recipe_with(tmp_path, "[eco_redline, no_such_rule]"))
    with pytest.raises(RecipeError, match="applies to \\['wind'\\], not to pv"):
        load_recipe(_recipe_with(tmp_path, "[wind_protected_areas]"))


class _FakeCatalog:
    """Just what :func:`rules.expand` asks of a catalogue."""

    def __init__(self, provides: dict[str, list[str]]) -> None:
        self.layers = [SimpleNamespace(id=k, provides=v) for k, v in provides.items()]

    def providing(self, role: str):
        return [s for s in self.layers if role in s.provides]


def test_expand_applies_rules_with_a_layer_and_lists_the_missing(tmp_path: Path) -> None:
    recipe, _ = load_recipe(
        _recipe_with(tmp_path, "[eco_redline, pv_no_cropland, pv_forest_agrivoltaic]")
    )
    n0 = len(recipe.constraints)
    cat = _FakeCatalog({"redlines": ["ecological_redline"], "forest": ["forest_land"]})
    out, status = rules.expand(recipe, cat)
    by_id = {s["id"]: s for s in status}
    assert by_id["eco_redline"]["status"] == "applied"
    assert by_id["eco_redline"]["layer"] == "redlines"
    assert by_id["pv_no_cropland"]["status"] == "layer_missing"
    assert by_id["pv_forest_agrivoltaic"]["status"] == "advisory"  # never a constraint
    assert len(out.constraints) == n0 + 1
    added = out.constraints[-1]
    assert (added.id, added.kind, added.layer, added.overridable) == (
        "eco_redline",
        "polygon",
        "redlines",
        False,
    )
    assert "142号" in by_id["eco_redline"]["citation"]
    assert len(recipe.constraints) == n0  # the loaded recipe itself is untouched


def test_measure_areas_by_hand() -> None:
    # 2 × 3 pixels of 1 km²; bit 0 = recipe constraint "steep", bit 1 = rule "eco_redline"
    reasons = np.array([[0, 1, 2], [3, 2, 0]], dtype=np.uint32)
    sf = np.array([[1.0, 1.0, 1.0], [1.0, 0.5, 0.0]], dtype=np.float32)
    legend = [(0, "steep", "", ""), (1, "eco_redline", "", "")]
    status = [{"id": "eco_redline", "status": "applied"}, {"id": "x", "status": "layer_missing"}]
    got = rules.measure(status, legend, reasons, sf, 1.0)
    red = got["rules"][0]
    # redline bit on (0,2) sf 1, (1,0) sf 1, (1,1) sf 0.5 → 2.5 km²; alone on (0,2), (1,1) → 1.5
    assert red["removed_km2"] == pytest.approx(2.5)
    assert red["removed_only_km2"] == pytest.approx(1.5)
    assert "removed_km2" not in got["rules"][1]
    assert got["study_area_km2"] == pytest.approx(4.5)
    # eligible: only (0,0) → 1 / 4.5; without the rule also (0,2) and (1,1) → 2.5 / 4.5
    assert got["eligible_share"] == pytest.approx(1 / 4.5, abs=1e-5)
    assert got["eligible_share_without_rules"] == pytest.approx(2.5 / 4.5, abs=1e-5)
    # steep bit on (0,1) and (1,0): 2 km²
    assert got["constraints_km2"] == {
        "steep": pytest.approx(2.0),
        "eco_redline": pytest.approx(2.5),
    }


def test_banner_lists_missing_rules() -> None:
    prov = {
        "wind": {
            "rules": [
                {"id": "eco_redline", "status": "layer_missing"},
                {"id": "water_no_pv_wind", "status": "applied"},
            ]
        }
    }
    text = banner_text(prov)
    assert "1 rule(s) applied" in text and "NOT applied, layer missing (eco_redline)" in text


def test_gem_columns_and_prefecture_spellings() -> None:
    df = pd.DataFrame(
        {
            "Project Name": ["A", "B"],
            "Capacity (MW)": ["50.0", "x"],
            "Status": ["Operating", "construction"],
            "Major area (prefecture, district)": [
                "Liangshan Yi Autonomous Prefecture",
                "Pazhihua Municipality",
            ],
        }
    )
    out = rules.standard_plants(df)
    assert list(out["prefecture"]) == ["Liangshan", "Panzhihua"]
    assert list(out["status"]) == ["operating", "construction"]
    assert out["capacity_mw"].iloc[0] == 50.0 and np.isnan(out["capacity_mw"].iloc[1])


def test_forbidden_mask_unions_the_recipes_grid_forbidden_constraints() -> None:
    import xarray as xr

    a = xr.DataArray(np.array([[True, False], [False, False]]), name="nobuild")
    b = xr.DataArray(np.array([[False, True], [False, False]]), name="eco_redline")
    graph = SimpleNamespace(
        recipe=SimpleNamespace(grid=SimpleNamespace(forbidden=["nobuild", "eco_redline", "zz"])),
        constraints=SimpleNamespace(masks={"nobuild": a, "eco_redline": b}),
    )
    m = rules.forbidden_mask(graph)
    assert m.values.tolist() == [[True, True], [False, False]]
    graph.recipe.grid.forbidden = ["nobuild"]
    assert rules.forbidden_mask(graph).name == "nobuild"  # single: its own name (cache keys)
    graph.recipe.grid.forbidden = ["zz"]
    assert rules.forbidden_mask(graph) is None


def test_crossing_penalty_multiplies_per_rule() -> None:
    import xarray as xr

    water = xr.DataArray(np.array([[True, True], [False, False]]), name="water")
    red = xr.DataArray(np.array([[True, False], [True, False]]), name="eco_redline")
    graph = SimpleNamespace(
        recipe=SimpleNamespace(
            grid=SimpleNamespace(crossing_costs={"water": 3.0, "eco_redline": 50.0})
        ),
        constraints=SimpleNamespace(masks={"water": water, "eco_redline": red}),
    )
    # both on (0,0): 3 × 50; water alone: 3; redline alone: 50; neither: 1
    assert rules.crossing_penalty(graph).values.tolist() == [[150.0, 3.0], [50.0, 1.0]]
    graph.recipe.grid.crossing_costs = {}
    assert rules.crossing_penalty(graph) is None


def test_the_specs_default_rules_folder_is_the_bundled_one() -> None:
    # specs may not import engine: the folder is found twice, the same way
    from sitekit.engine.resources import data_root

    assert data_root() / "pipelines" / "rules" == rule_specs.RULES_DIR
