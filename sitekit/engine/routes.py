"""The route steps that need the engine: the cost surface a run's least-cost connections used
(:func:`run_connection_cost`, rebuilt by :class:`sitekit.engine.pipeline.Pipeline` from the
recipe in ``run.json``) and the route report with its map overlays kept in the run's layer cache
(:func:`write_route_report`, :class:`sitekit.engine.cache.LayerCache`).

The analysis is :mod:`sitekit.science.routes`; the files are written by
:mod:`sitekit.outputs.routes`; the run folder is read by :mod:`sitekit.io.routes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr
import yaml

from sitekit.engine.cache import LayerCache
from sitekit.engine.pipeline import Pipeline
from sitekit.errors import InputError
from sitekit.grid import Grid
from sitekit.io.results import read_provenance
from sitekit.outputs import routes as route_files
from sitekit.science.routes import RouteReport, SuggestedRoute
from sitekit.specs.recipe import Recipe


@dataclass
class RunCost:
    """A run's connection cost surface (:func:`run_connection_cost`)."""

    cost: xr.DataArray  # cost per metre [1, flat open ground = 1]
    forbidden: xr.DataArray | None  # the recipe's grid.forbidden zones (bool), or None
    technology: str
    description: str  # what the surface holds, for the route summary
    search_radius_km: float | None = None  # the recipe's economics.search_radius_km [km]


def run_recipes(provenance: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The run's PV/wind recipes from its ``run.json``: ``{technology: (file name, final
    YAML)}``, the first recipe of each technology, in the run's order."""
    recipes: dict[str, tuple[str, str]] = {}
    for name, entry in (provenance.get("recipes") or {}).items():
        if isinstance(entry, dict) and entry.get("technology") in ("pv", "wind"):
            recipes.setdefault(entry["technology"], (name, entry.get("yaml", "")))
    return recipes


def run_connection_cost(
    run_dir: str | Path, catalog: Any, grid: Grid, *, technology: str | None = None,
    provenance: dict[str, Any] | None = None,
) -> RunCost | None:  # fmt: skip
    """The cost surface the run's least-cost connections used, rebuilt from ``run.json``.

    The recipe (of ``technology``, default: the first PV/wind recipe of the run) is read back
    from ``run.json`` and handed with the catalogue to
    :meth:`sitekit.engine.pipeline.Pipeline.connection_cost`: slope term × ``grid.cost_terms`` (any
    raster) × ``grid.crossing_costs`` (per rule), ``grid.forbidden`` zones at
    ``grid.forbidden_cost`` — the same function ``sitekit run`` prices connections with. Lazy.

    ``provenance`` is the run's ``run.json`` when the caller has read it already
    (:func:`sitekit.io.results.read_provenance`); else it is read here.

    Returns None when the run folder has no ``run.json`` with a PV/wind recipe (an older or
    hand-made folder) or no catalogue is given: the caller then falls back to slope only.

    Raises
    ------
    InputError : ``technology`` not among the run's recipes, or the catalogue's grid is not the
        run's (another catalogue, resolution or CRS).
    """
    run = Path(run_dir)
    prov = provenance
    if prov is None:
        try:
            prov = read_provenance(run)
        except (OSError, ValueError):
            return None
    recipes = run_recipes(prov)
    if catalog is None or not recipes:
        return None
    if technology is not None and technology not in recipes:
        raise InputError(f"{run / 'run.json'}: the run has no '{technology}' recipe (it has "
                         f"{', '.join(recipes)}); choose one of those")  # fmt: skip
    tech = technology or next(iter(recipes))
    name, text = recipes[tech]
    recipe = Recipe.model_validate(yaml.safe_load(text))
    g = prov.get("grid", {})
    mine = catalog.grid(float(g.get("resolution_m", grid.resolution_m)), grid.crs,
                        int(g.get("chunks", grid.chunks)))  # fmt: skip
    if tuple(mine.shape) != tuple(grid.shape) or not mine.transform.almost_equals(grid.transform):
        raise InputError(
            f"catalogue {catalog.path} gives a {mine.shape[0]}×{mine.shape[1]} grid at "
            f"{tuple(round(v) for v in mine.bounds)}, the run {run} a {grid.shape[0]}×"
            f"{grid.shape[1]} one at {tuple(round(v) for v in grid.bounds)}; pass the run's "
            "catalogue with --catalog"
        )
    cost, forbidden = Pipeline(catalog, mine).connection_cost(recipe)
    r = recipe.grid
    parts = ["slope"]
    parts += [f"{t.layer} ×{{{', '.join(f'{k}: {v:g}' for k, v in t.classes.items())}}}"
              if t.classes is not None else f"{t.layer} > {t.above:g} ×{t.multiplier:g}"
              for t in r.cost_terms]  # fmt: skip
    parts += [f"crossing {k} ×{v:g}" for k, v in r.crossing_costs.items()]
    if forbidden is not None:
        parts.append(f"forbidden {'+'.join(r.forbidden)} ×{r.forbidden_cost:g}")
    desc = f"recipe {name} ({tech}): {', '.join(parts)}"
    return RunCost(cost, forbidden, tech, desc, recipe.economics.search_radius_km)


def write_route_report(
    report: RouteReport, out_dir: str | Path, *, suggestion: SuggestedRoute | None = None,
    make_map: bool = True, cache_dir: str | Path | None = None, provenance: dict | None = None,
) -> dict[str, Path]:  # fmt: skip
    """:func:`sitekit.outputs.routes.write_route_report` with the map's overlays kept in the run's
    layer cache ``cache_dir`` (:class:`sitekit.engine.cache.LayerCache`, keyed by the pixels'
    content: a re-run on the same terrain reuses them); None = no cache. Returns {name: path}."""
    map_cache = None
    if cache_dir is not None:

        def map_cache(window: Grid) -> LayerCache:
            return LayerCache(cache_dir, window, "")

    return route_files.write_route_report(report, out_dir, suggestion=suggestion,
                                          make_map=make_map, map_cache=map_cache,
                                          provenance=provenance)  # fmt: skip
