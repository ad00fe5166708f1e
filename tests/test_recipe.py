"""Recipes: the shipped ones validate; typos/wrong types name file, line and key; --set works."""

from __future__ import annotations

from pathlib import Path

import pytest

from sitekit.errors import RecipeError
from sitekit.specs.recipe import load_recipe

PIPES = Path(__file__).resolve().parents[1] / "pipelines"


@pytest.mark.parametrize("name", ["pv.yaml", "wind.yaml"])
def test_shipped_recipes_validate(name: str) -> None:
    recipe, text = load_recipe(PIPES / name)
    assert recipe.criteria and recipe.constraints
    assert recipe.technology in text


def _copy(tmp_path: Path, old: str, new: str) -> Path:
    text = (PIPES / "pv.yaml").read_text(encoding="utf-8")
    assert old in text
    p = tmp_path / "pv.yaml"
    p.write_text(text.replace(old, new, 1), encoding="utf-8")
    return p


def _line_of(path: Path, needle: str) -> int:
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(needle)


def test_typo_names_file_line_key_and_suggestion(tmp_path: Path) -> None:
    p = _copy(tmp_path, "    weight: 0.2\n", "    wieght: 0.2\n")
    with pytest.raises(RecipeError) as exc:
        load_recipe(p)
    msg = str(exc.value)
    assert f"pv.yaml:{_line_of(p, 'wieght')}:" in msg
    assert "unknown key 'wieght' in criteria[1]" in msg and "did you mean 'weight'" in msg


def test_wrong_type(tmp_path: Path) -> None:
    p = _copy(tmp_path, "  wacc: 0.06", "  wacc: six percent")
    with pytest.raises(RecipeError, match=rf"pv.yaml:{_line_of(p, 'six percent')}: economics.wacc"):
        load_recipe(p)


def test_negative_weight_and_zero_sum(tmp_path: Path) -> None:
    p = _copy(tmp_path, "    weight: 0.45", "    weight: -0.45")
    with pytest.raises(RecipeError, match=r"criteria\[0\].weight"):
        load_recipe(p)
    text = (PIPES / "pv.yaml").read_text(encoding="utf-8")
    for w in ("0.45", "0.2", "0.25", "0.1"):
        text = text.replace(f"    weight: {w}\n", "    weight: 0\n")
    p.write_text(text, encoding="utf-8")
    with pytest.raises(RecipeError, match="weights sum to 0"):
        load_recipe(p)


def test_impossible_threshold(tmp_path: Path) -> None:
    p = _copy(tmp_path, "  score_threshold: 0.75", "  score_threshold: 1.6")
    with pytest.raises(RecipeError, match="sites.score_threshold"):
        load_recipe(p)


def test_unknown_membership_kind(tmp_path: Path) -> None:
    p = _copy(tmp_path, "{kind: linear, low: 1200, high: 1750}", "{kind: cubic, low: 1, high: 2}")
    with pytest.raises(RecipeError, match=r"criteria\[0\].membership"):
        load_recipe(p)


def test_set_overrides(tmp_path: Path) -> None:
    recipe, text = load_recipe(
        PIPES / "pv.yaml",
        ["sites.score_threshold=0.75", "economics.wacc=0.05", "criteria.slope.weight=0.5"],
    )
    assert recipe.sites.score_threshold == 0.75
    assert recipe.economics.wacc == 0.05
    assert [c.weight for c in recipe.criteria if c.id == "slope"] == [0.5]
    assert "score_threshold: 0.75" in text
    with pytest.raises(RecipeError, match="no key 'nope'"):
        load_recipe(PIPES / "pv.yaml", ["nope.x=1"])
    with pytest.raises(RecipeError, match="sites.score_threshold"):
        load_recipe(PIPES / "pv.yaml", ["sites.score_threshold=abc"])


@pytest.mark.parametrize(
    ("spec", "data"),
    [
        ({"kind": "polygon", "layer": "x", "buffer_m": 50, "rule": "centre"}, {"geoms"}),
        ({"kind": "setback", "layer": "x", "setback_m": 500}, {"geoms"}),
        ({"kind": "threshold", "layer": "slope", "op": ">", "value": 25}, {"layer"}),
        ({"kind": "classes", "layer": "lc", "include_classes": [10, 20]}, {"layer"}),
        ({"kind": "classes", "layer": "lc", "exclude_classes": [80]}, {"layer"}),
        (
            {"kind": "aspect_on_slope", "min_slope_deg": 5, "aspect_from_deg": 315,
             "aspect_to_deg": 45},
            {"slope", "aspect"},
        ),
    ],
)  # fmt: skip
def test_each_constraint_model_gives_its_library_parameters(spec: dict, data: set) -> None:
    """A recipe constraint converts itself: its parameters plus the data the engine adds are
    exactly the fields of its library class, with the recipe's values."""
    import dataclasses

    from pydantic import TypeAdapter

    from sitekit.science import constraints as cons_lib
    from sitekit.specs.recipe import Constraint

    c = TypeAdapter(Constraint).validate_python({"id": "c1", "name_en": "C one", **spec})
    params = c.params()
    fields = {f.name for f in dataclasses.fields(getattr(cons_lib, c.LIBRARY_CLASS))}
    required = {
        f.name
        for f in dataclasses.fields(getattr(cons_lib, c.LIBRARY_CLASS))
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    assert set(params) | data <= fields and required <= set(params) | data
    assert params["code"] == "c1" and params["name_en"] == "C one" and params["name_zh"] == "c1"
    for key, value in spec.items():  # every recipe setting reaches the library, unrenamed
        if key not in ("kind", "layer", "include_classes", "exclude_classes"):
            assert params[key] == value
    if spec["kind"] == "classes":
        assert params["mode"] == ("include" if "include_classes" in spec else "exclude")
        assert params["classes"] == tuple(spec.get("include_classes") or spec["exclude_classes"])
