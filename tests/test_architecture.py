"""The package's layout is a contract: what computes, what reads, what writes and what runs.

- ``science/`` imports only :mod:`sitekit.grid`, :mod:`sitekit.errors` and ``science/`` itself:
  no file is read or written there, no cache, no engine;
- ``specs/`` imports only :mod:`sitekit.errors` and ``specs/``;
- ``io/`` never imports ``outputs/``, ``engine/`` or ``cli/``;
- ``outputs/`` never imports ``engine/`` (its logging and bundled-data paths excepted) or ``cli/``;
- nothing outside ``engine/`` (and the CLI) computes a Dask graph, except the functions named in
  :data:`COMPUTE_ALLOWED`, each with its reason.

Imports are read from the source (function-local imports included; ``if TYPE_CHECKING:`` blocks
are annotations only and are skipped).
"""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "sitekit"

#: layer → module prefixes it may import (anything else from sitekit is a violation)
MAY_IMPORT = {
    "science": ("sitekit.grid", "sitekit.errors", "sitekit.science"),
    "specs": ("sitekit.errors", "sitekit.specs"),
}
#: layer → module prefixes it must not import
MUST_NOT_IMPORT = {
    "io": ("sitekit.outputs", "sitekit.engine", "sitekit.cli"),
    "outputs": ("sitekit.cli",),
}
#: the engine modules outputs/ may use: logging/progress and where the bundled data are
OUTPUTS_MAY_USE_ENGINE = ("sitekit.engine.logs", "sitekit.engine.resources")

#: (module, function) that may call ``.compute()``/``.persist()`` outside the engine, and why.
#: Each one gathers a bounded reduction (a few numbers per block or per site), never a raster.
COMPUTE_ALLOWED: dict[tuple[str, str], str] = {
    ("sitekit.io.check", "check_catalog"): "`layers check` samples each layer to report its range",
    ("sitekit.outputs.export", "write_cog"): "a raster strip is computed as it is written",
    ("sitekit.science.constraints", "excluded_area_km2"): "k area totals per block",
    ("sitekit.science.potential", "zone_totals"): "one row of sums per zone and block",
    ("sitekit.science.leastcost", "least_cost_paths"): "the coarsened cost for one Dijkstra",
    ("sitekit.science.routes", "sample"): "the pixels under a route's stations",
    ("sitekit.science.sites", "_read"): "the pixels of the candidate sites' windows",
    ("sitekit.science.sites", "_read_at"): "values at the sites' pixels",
    ("sitekit.science.sites", "extract_sites"): "the candidate mask, once, before labelling",
    ("sitekit.science.sites", "zone_areas"): "one float64 per zone and block",
    ("sitekit.science.supply", "run_tables"): "per-zone sums of the supply curve",
}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        if rel.parts[0] in ("_bundled", "__pycache__"):
            continue
        name = ".".join(("sitekit", *rel.with_suffix("").parts)).removesuffix(".__init__")
        out.append((name, path))
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every sitekit import in ``path`` outside ``if TYPE_CHECKING:``."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "sitekit":
                found.extend((node.lineno, f"sitekit.{a.name}") for a in node.names)
            elif node.module.startswith("sitekit."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.append((node.lineno, "<relative import>"))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names if a.name.startswith("sitekit"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def _starts(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations() -> list[str]:
    bad = []
    for name, path in _modules():
        parts = name.split(".")
        layer = parts[1] if len(parts) > 2 else None
        for line, mod in _imports(path):
            where = f"{path.relative_to(PKG.parent)}:{line}: imports {mod}"
            if (
                mod == "<relative import>"
                or layer in MAY_IMPORT
                and not _starts(mod, MAY_IMPORT[layer])
            ):
                bad.append(where)
            elif layer == "outputs" and _starts(mod, ("sitekit.engine",)):
                if not _starts(mod, OUTPUTS_MAY_USE_ENGINE):
                    bad.append(where)
            elif layer in MUST_NOT_IMPORT and _starts(mod, MUST_NOT_IMPORT[layer]):
                bad.append(where)
    return bad


def test_layers_import_only_what_the_contract_allows():
    assert violations() == []


def test_the_contract_check_sees_a_violation(tmp_path, monkeypatch):
    """The check itself works: a science module importing the engine is reported, also from
    inside a function; a TYPE_CHECKING import is not."""
    fake = tmp_path / "sitekit"
    (fake / "science").mkdir(parents=True)
    (fake / "science" / "bad.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from sitekit.engine.cache import LayerCache\n"
        "def f():\n    from sitekit.engine import cache\n    return cache\n"
    )
    import sys

    monkeypatch.setattr(sys.modules[__name__], "PKG", fake)
    assert violations() == ["sitekit/science/bad.py:5: imports sitekit.engine"]


def _compute_calls(path: Path) -> list[tuple[int, str]]:
    """``(line, enclosing function)`` of every ``.compute(``/``.persist(`` call in ``path``."""
    calls: list[tuple[int, str]] = []

    def visit(node: ast.AST, func: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            func = node.name if func == "<module>" else func
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("compute", "persist")
        ):
            calls.append((node.lineno, func))
        for child in ast.iter_child_nodes(node):
            visit(child, func)

    visit(ast.parse(path.read_text(encoding="utf-8")), "<module>")
    return calls


def test_only_the_engine_computes():
    unexpected, stale = [], set(COMPUTE_ALLOWED)
    for name, path in _modules():
        if name.startswith(("sitekit.engine", "sitekit.cli")) or name == "sitekit.testing":
            continue
        for line, func in _compute_calls(path):
            key = (name, func)
            if key in COMPUTE_ALLOWED:
                stale.discard(key)
            else:
                unexpected.append(f"{path.relative_to(PKG.parent)}:{line} in {func}()")
    assert unexpected == [], "computes outside the engine (add to COMPUTE_ALLOWED with a reason)"
    assert not stale, f"allow-list entries that no longer compute: {sorted(stale)}"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("sitekit.terrain", "sitekit.science.terrain"),
        ("sitekit.run", "sitekit.engine.run"),
        ("sitekit.catalog", "sitekit.io.catalog"),
        ("sitekit.export", "sitekit.outputs.export"),
        ("sitekit.recipe", "sitekit.specs.recipe"),
    ],
)
def test_old_flat_paths_are_the_new_modules(old, new):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        import sys

        sys.modules.pop(old, None)
        mod = importlib.import_module(old)
    assert mod is importlib.import_module(new)
    assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in seen)


def test_old_io_and_specs_names_still_import():
    from sitekit.io import open_raster
    from sitekit.io.layers import open_raster as new
    from sitekit.specs import load_yaml_model
    from sitekit.specs.loader import load_yaml_model as new_spec

    assert open_raster is new and load_yaml_model is new_spec


#: science modules allowed above ~600 lines, with the reason
LONG_SCIENCE = {}


def test_science_modules_stay_readable():
    long = {
        path.name: n
        for name, path in _modules()
        if name.startswith("sitekit.science.")
        and (n := len(path.read_text(encoding="utf-8").splitlines())) > 650
        and path.name not in LONG_SCIENCE
    }
    assert long == {}
