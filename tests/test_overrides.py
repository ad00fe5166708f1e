"""``--set`` in a run of several recipes (issue 24): scoped items reach only the recipes they name,
unscoped items reach the recipes that have the key (and say so when that is not all of them), an
item that fits no recipe is an error, and pumped-storage items are never silently dropped."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sitekit.engine.run import RunOptions, _check_overrides, _extra_runs
from sitekit.errors import RecipeError
from sitekit.specs.recipe import load_ps_recipe, load_recipe, parse_override

PIPES = Path(__file__).resolve().parents[1] / "pipelines"
PV, WIND, PS = PIPES / "pv.yaml", PIPES / "wind.yaml", PIPES / "pumped_storage.yaml"


def _weights(path: Path, sets: list[str]) -> float:
    applied: dict[str, list[str]] = {}
    recipe, _ = load_recipe(path, sets, applied)
    return recipe.criteria[0].weight


def test_a_scoped_item_reaches_only_the_recipe_it_names() -> None:
    base_pv, base_wind = _weights(PV, []), _weights(WIND, [])
    sets = ["pv:criteria.0.weight=0.123"]
    assert _weights(PV, sets) == 0.123
    assert _weights(WIND, sets) == base_wind != 0.123
    assert _weights(PV, ["wind:criteria.0.weight=0.5"]) == base_pv
    assert _weights(PV, ["pv:criteria.0.weight=0.4"]) == 0.4  # the file name works as well
    assert parse_override("pv:criteria.0.weight=0.3") == ("pv", "criteria.0.weight", "0.3")


def test_an_unscoped_item_reaches_the_recipes_with_its_key(caplog) -> None:
    applied: dict[str, list[str]] = {}
    pv, _ = load_recipe(PV, ["solar.tracking=single_axis"], applied)
    wind, _ = load_recipe(WIND, ["solar.tracking=single_axis"], applied)  # no solar section
    assert pv.solar.tracking == "single_axis"
    assert applied["solar.tracking=single_axis"] == ["pv.yaml"]
    with caplog.at_level(logging.INFO, logger="sitekit"):
        _check_overrides(("solar.tracking=single_axis",), applied, [PV, WIND])
    assert "applies to pv.yaml only" in caplog.text


@pytest.mark.parametrize(
    "item,match",
    [
        ("soalr.tracking=single_axis", "no recipe has the key 'soalr.tracking'"),
        ("hydro:criteria.0.weight=0.3", "no recipe named 'hydro'"),
    ],
)
def test_an_item_that_fits_no_recipe_is_an_error(tmp_path: Path, item: str, match: str) -> None:
    opts = RunOptions(catalog=tmp_path / "c.yaml", out=tmp_path / "out", overrides=(item,))
    with pytest.raises(RecipeError, match=match):
        _extra_runs([PV, WIND], opts)


def test_pumped_storage_items_beyond_search_are_applied() -> None:
    applied: dict[str, list[str]] = {}
    ps, _ = load_ps_recipe(PS, ["grid.connection_cny_per_km.220=1234", "search.max_pairs=7"],
                           applied)  # fmt: skip
    assert ps.grid.connection_cny_per_km[220] == 1234
    assert ps.search.max_pairs == 7
    with pytest.raises(RecipeError, match="no key 'nope'"):
        load_ps_recipe(PS, ["nope.x=1"])  # alone, every item must fit
