"""Builds the lazy graph of a run: derived layers (once per grid), constraints, scores, LCOE.

Nothing here computes: :mod:`sitekit.engine.run` hands the arrays to a Dask client. Derived layers are
memoised on the :class:`Pipeline`, so PV and wind share one slope, one distance-to-grid … With a
:class:`~sitekit.engine.cache.LayerCache` the pipeline is where the cache meets the science: derived
layers, vector burns (:meth:`Pipeline.burn`, also handed to
:func:`sitekit.science.constraints.evaluate`) and the study fraction go through it; the grid and
the science modules never see it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import geopandas as gpd
import numpy as np
import xarray as xr

from sitekit.engine import rules
from sitekit.engine.cache import LayerCache
from sitekit.errors import RecipeError
from sitekit.grid import Grid
from sitekit.io.catalog import Catalog
from sitekit.science import constraints as cons_lib
from sitekit.science import proximity, scoring, terrain
from sitekit.specs.recipe import DERIVED, Recipe


@dataclass
class TechGraph:
    """The lazy outputs of one recipe."""

    recipe: Recipe
    score: xr.DataArray  # 0–1, NaN outside the study area
    eligible: xr.DataArray  # bool: not excluded and inside the study area
    inclusion: xr.DataArray  # 0–1 eligible fraction of each pixel
    lcoe: xr.DataArray  # CNY/kWh for the reference site size
    energy_kwh_per_kw: xr.DataArray  # kWh/kW/yr
    constraints: cons_lib.ConstraintResult
    memberships: dict[str, xr.DataArray]
    #: per siting rule: applied / layer_missing / advisory (sitekit.engine.rules.expand)
    rule_status: list[dict] = field(default_factory=list)


class Pipeline:
    """Derived layers of one catalogue on one grid (lazy, memoised)."""

    def __init__(self, catalog: Catalog, grid: Grid, cache: LayerCache | None = None) -> None:
        self.catalog = catalog
        self.grid = grid
        self.cache = cache
        self._memo: dict[Any, Any] = {}

    def _cached(self, name: str, params: Any, layer: xr.DataArray) -> xr.DataArray:
        """Route an intermediate layer through the on-disk cache (when one is configured)."""
        return self.cache.wrap(name, params, layer) if self.cache is not None else layer

    def burn(self, geoms: Any, **kwargs: Any) -> xr.DataArray:
        """:meth:`sitekit.grid.Grid.rasterize` through the on-disk cache (when one is configured):
        keyed by the burnt geometries' WKB and the burn options, so a re-run reads the raster back
        instead of burning again (constraint layers, zones, the study fraction)."""
        out = self.grid.rasterize(geoms, **kwargs)
        return self.cache.wrap_burn(out) if self.cache is not None else out

    @property
    def _burn(self) -> Any:
        """The burn handed to science code: :meth:`burn` with a cache, else None (the grid's
        own :meth:`~sitekit.grid.Grid.rasterize`)."""
        return self.burn if self.cache is not None else None

    @cached_property
    def study_fraction(self) -> xr.DataArray:
        """:meth:`sitekit.grid.Grid.study_fraction`, burnt through the cache when there is one."""
        return self.grid.study_fraction(self._burn)

    # -- inputs ----------------------------------------------------------------------------
    @cached_property
    def dem_id(self) -> str:
        rasters = [s for s in self.catalog.by_role("terrain") if s.kind == "raster"]
        if not rasters:
            raise RecipeError(f"{self.catalog.path}: no raster layer with role 'terrain' (a DEM)")
        named = [s for s in rasters if s.id == "dem"]
        return (named or rasters)[0].id

    @cached_property
    def elevation(self) -> xr.DataArray:
        dem = self.catalog.raster(self.dem_id, self.grid)
        inside = self.study_fraction > 0  # cached as a burn (Pipeline.burn)
        return self._cached("elevation", self.dem_id, dem.where(inside).rename("elevation"))

    @cached_property
    def dem_is_modelled(self) -> bool:
        return self.elevation.attrs.get("modelled") == "yes"

    @cached_property
    def slope(self) -> xr.DataArray:
        return self._cached("slope", {}, terrain.slope(self.elevation))

    @cached_property
    def aspect(self) -> xr.DataArray:
        return self._cached("aspect", {}, terrain.aspect(self.elevation))

    @cached_property
    def hillshade(self) -> xr.DataArray:
        return self._cached("hillshade", {}, terrain.hillshade(self.elevation))

    @cached_property
    def zones(self) -> dict[str, tuple[xr.DataArray, list[str], gpd.GeoDataFrame]]:
        """{'prefecture'|'county': (int32 id raster, names, polygons)} (1-based ids)."""
        out = {}
        for key, layer_id in (
            ("prefecture", self.catalog.spec.study_area),
            ("county", self.catalog.spec.admin_units),
        ):
            if not layer_id:
                continue
            gdf = self.catalog.vector(layer_id, self.grid)
            field = "name_en" if "name_en" in gdf.columns else gdf.columns[0]
            names = [str(v) for v in gdf[field]]
            ids = self.burn(gdf, values=np.arange(1, len(gdf) + 1), name=f"{key}_id")
            out[key] = (ids, names, gdf)
        return out

    def grid_features(self, recipe: Recipe) -> gpd.GeoDataFrame:
        return self.catalog.vector(recipe.grid.layer, self.grid)

    def grid_distance(self, recipe: Recipe) -> xr.DataArray:
        key = ("grid_distance", recipe.grid.layer)
        if key not in self._memo:
            self._memo[key] = self._cached(
                "grid_distance",
                recipe.grid.layer,
                proximity.distance_to_features(self.grid, self.grid_features(recipe)),
            )
        return self._memo[key]

    def nearest_point(self, recipe: Recipe) -> xr.DataArray:
        key = ("nearest", recipe.grid.layer)
        if key not in self._memo:
            self._memo[key] = self._cached(
                "nearest_point",
                recipe.grid.layer,
                proximity.nearest_feature_index(self.grid, self.grid_features(recipe)),
            )
        return self._memo[key]

    def connection_distance(
        self,
        recipe: Recipe,
        forbidden: xr.DataArray | None,
        crossing: xr.DataArray | None = None,
    ) -> xr.DataArray:
        """Least-cost distance [km of flat-equivalent line] to the nearest connection point
        (``crossing``: per-rule crossing multipliers, :func:`sitekit.engine.rules.crossing_penalty`)."""
        crossed = [
            _mask_spec(c) for c in recipe.constraints if c.id in recipe.grid.crossing_costs
        ]  # fmt: skip
        # the forbidden mask is the recipe's constraints (one, or a union named "a+b",
        # rules.forbidden_mask): key by their settings, not their names (two recipes may give
        # one id two buffers), in the memo and in the cache alike
        names = set(str(forbidden.name).split("+")) if forbidden is not None else set()
        spec = [_mask_spec(c) for c in recipe.constraints if c.id in names]
        params = (recipe.grid.layer, forbidden is not None and forbidden.name, spec)
        params += (recipe.grid.model_dump(mode="json"), crossed)  # cost terms, crossings
        params += (_line_inputs(recipe, names),)
        key = ("lcd", json.dumps(params, sort_keys=True))
        if key not in self._memo:
            cost = self.line_cost(recipe, forbidden, crossing)
            self._memo[key] = self._cached(
                "connection_distance",
                params,
                proximity.least_cost_distance(cost, self.grid_features(recipe), self.grid),
            )
        return self._memo[key]

    def line_cost(
        self,
        recipe: Recipe,
        forbidden: xr.DataArray | None,
        crossing: xr.DataArray | None = None,
    ) -> xr.DataArray:
        """Cost per metre [1, flat open ground = 1] of a connection line across each pixel: the
        ONE surface of the least-cost connections (:meth:`connection_distance`) and of the route
        suggestions (:meth:`connection_cost`, ``sitekit route --from/--to``).

        Slope term × the recipe's ``grid.cost_terms`` (any raster: class codes or a threshold,
        :func:`sitekit.engine.rules.cost_penalty`) × ``crossing`` (per-rule crossing multipliers,
        :func:`sitekit.engine.rules.crossing_penalty`); ``forbidden`` pixels cost
        ``grid.forbidden_cost`` (:func:`sitekit.science.proximity.cost_surface`).
        """
        penalty = rules.cost_penalty(recipe.grid.cost_terms, self, recipe)
        if crossing is not None:
            penalty = crossing if penalty is None else penalty * crossing
        return proximity.cost_surface(
            self.slope, forbidden, penalty, forbidden_cost=recipe.grid.forbidden_cost
        )

    def connection_cost(self, recipe: Recipe) -> tuple[xr.DataArray, xr.DataArray | None]:
        """``(line cost [1], forbidden mask or None)`` of a recipe as loaded (its ``rules``
        expanded here): :meth:`line_cost` with the masks of the recipe's ``grid.forbidden``
        and ``grid.crossing_costs`` constraints, as ``sitekit run`` builds its connections."""
        recipe, _ = rules.expand(recipe, self.catalog, DERIVED)
        view = _ConstraintView(recipe, self.constraints(recipe))
        forbidden = rules.forbidden_mask(view)
        return self.line_cost(recipe, forbidden, rules.crossing_penalty(view)), forbidden

    # -- resources -------------------------------------------------------------------------
    def pv_yield(self, recipe: Recipe) -> xr.DataArray:
        from sitekit.io.climate import read_merra2
        from sitekit.science import solar

        cfg = recipe.solar
        key = ("pv_yield", cfg.model_dump_json())
        if key in self._memo:
            return self._memo[key]
        if cfg.model == "ghi_layer":
            if not cfg.ghi_layer:
                raise RecipeError(f"{recipe.name_en}: solar.model ghi_layer needs solar.ghi_layer")
            ghi = self.catalog.raster(cfg.ghi_layer, self.grid)
            lon, lat = self.grid.lonlat()
            out = solar.pv_yield_from_ghi(
                ghi,
                lat,
                lon,
                self.elevation,
                self.slope,
                self.aspect,
                losses_pct=cfg.losses_pct,
                tracking=cfg.tracking,
            )
        else:
            if not cfg.calibration_layer:
                raise RecipeError(
                    f"{recipe.name_en}: modelled PV needs solar.calibration_layer (a monthly GHI "
                    "table such as the embedded MERRA-2 one) or solar.model: ghi_layer"
                )
            calib = self.catalog.file(self.catalog.layer(cfg.calibration_layer))
            lon, lat = self.grid.lonlat()
            out = solar.modelled_pv_yield(
                lat,
                lon,
                self.elevation,
                self.slope,
                self.aspect,
                clearness=read_merra2(calib),
                tracking=cfg.tracking,
                losses_pct=cfg.losses_pct,
            )
        out = self._cached("pv_yield", cfg.model_dump(), out)
        self._memo[key] = out
        return out

    def wind_layers(self, recipe: Recipe) -> dict[str, xr.DataArray]:
        from sitekit.science import wind

        cfg = recipe.wind
        key = ("wind", cfg.model_dump_json())
        if key in self._memo:
            return self._memo[key]
        if cfg.model == "speed_layer":
            if not cfg.speed_layer:
                raise RecipeError(
                    f"{recipe.name_en}: wind.model speed_layer needs wind.speed_layer"
                )
            ref = self.catalog.raster(cfg.speed_layer, self.grid)
        else:
            ref = wind.modelled_reference_speed(self.elevation)
        speed = wind.hub_height_speed(ref, cfg.speed_height_m, cfg.hub_height_m, cfg.shear_alpha)
        rho = wind.air_density(self.elevation + cfg.hub_height_m)
        curve = wind.load_power_curve(cfg.turbine)
        cf = wind.capacity_factor(speed, rho, curve, k=cfg.weibull_k) * (1 - cfg.losses_pct / 100)
        cf = cf.astype(np.float32)
        cf.attrs.update(units="1", long_name=f"net capacity factor ({cfg.turbine})")
        cf.attrs["modelled"] = "yes" if cfg.model == "modelled" else "no"
        p = cfg.model_dump()
        out = {
            "wind_speed": self._cached("wind_speed", p, speed),
            "air_density": self._cached("air_density", p, rho),
            "wind_cf": self._cached("wind_cf", p, cf.rename("wind_cf")),
        }
        self._memo[key] = out
        return out

    def derived(self, name: str, recipe: Recipe) -> xr.DataArray:
        """A derived layer by recipe name (see :data:`sitekit.specs.recipe.DERIVED`)."""
        if name in ("elevation", "slope", "aspect"):
            return getattr(self, name)
        if name == "tpi":
            return terrain.tpi(self.elevation)
        if name == "grid_distance":
            return self.grid_distance(recipe)
        if name in ("pv_yield", "pv_cf"):
            if recipe.solar is None:
                raise RecipeError(f"{recipe.name_en}: layer '{name}' needs a `solar:` section")
            y = self.pv_yield(recipe)
            return y if name == "pv_yield" else (y / 8760.0).assign_attrs(units="1")
        if name in ("wind_speed", "wind_cf", "air_density"):
            if recipe.wind is None:
                raise RecipeError(f"{recipe.name_en}: layer '{name}' needs a `wind:` section")
            return self.wind_layers(recipe)[name]
        if name in self.catalog and self.catalog.layer(name).kind == "raster":
            return self.catalog.raster(name, self.grid)  # any catalogue raster
        raise RecipeError(
            f"unknown layer '{name}': not a derived layer ({', '.join(DERIVED)}) nor a raster of "
            f"{self.catalog.path.name}"
        )

    # -- constraints / score ---------------------------------------------------------------
    def constraint_objects(self, recipe: Any) -> list:
        """Library constraint objects for a recipe's ``constraints`` list (PV, wind or PS): each
        recipe model names its class and gives its parameters
        (:meth:`sitekit.specs.recipe.PolygonC.params` …); the engine adds the data."""
        out = []
        for c in recipe.constraints:
            cls = getattr(cons_lib, c.LIBRARY_CLASS)
            out.append(cls(**c.params(), **self._constraint_data(c, recipe)))
        return out + rules.zone_constraints(recipe, self.catalog, self.grid)

    def _constraint_data(self, c: Any, recipe: Any) -> dict[str, Any]:
        """The data a recipe constraint names, on the grid: geometries or rasters."""
        if c.kind in ("polygon", "setback"):
            return {"geoms": self.catalog.vector(c.layer, self.grid)}
        if c.kind == "threshold":
            return {"layer": self.derived(c.layer, recipe)}
        if c.kind == "aspect_on_slope":
            return {"slope": self.slope, "aspect": self.aspect}
        return {"layer": rules.class_layer(c, self.catalog, self.grid)}  # classes

    def constraints(self, recipe: Any, inclusion: bool = True) -> cons_lib.ConstraintResult:
        """:func:`sitekit.science.constraints.evaluate` of a recipe's constraints (PV, wind or PS).

        With a cache, the combined ``exclusion_reasons`` and ``inclusion_fraction`` rasters are
        cached, keyed by the constraints and the resource settings their derived layers depend
        on: a re-run that changes only weights reads them instead of combining every mask again
        (``excluded`` is then ``reasons != 0``, which is how :func:`evaluate` defines it).
        ``inclusion=False`` leaves the inclusion fraction uncached (pumped storage never uses it:
        an entry nobody computes would stay incomplete)."""
        cons = cons_lib.evaluate(self.constraint_objects(recipe), self.grid, self._burn)
        if self.cache is None:
            return cons
        params = {
            "constraints": [c.model_dump(mode="json") for c in recipe.constraints],
            "solar": _dump(getattr(recipe, "solar", None)),
            "wind": _dump(getattr(recipe, "wind", None)),
            "grid": _dump(getattr(recipe, "grid", None)),  # a threshold on grid_distance
            "zones": rules.zone_params(recipe),  # forced inclusion, existing plants
        }
        reasons = self._cached("exclusion_reasons", params, cons.reasons)
        excluded = self.grid.wrap(
            cons_lib.excluded_from_reasons(reasons.data, cons.forced_bits, cons.hard_bits),
            "excluded",
            "bool",
            "excluded by any hard constraint",
        )
        incl = cons.inclusion_fraction
        if inclusion:
            incl = self._cached("inclusion_fraction", params, incl)
        return replace(cons, reasons=reasons, excluded=excluded, inclusion_fraction=incl)

    def technology(self, recipe: Recipe) -> TechGraph:
        """The lazy score, eligibility, LCOE and energy rasters of a recipe."""
        recipe, rule_status = rules.expand(recipe, self.catalog, DERIVED)
        cons = self.constraints(recipe)
        memberships: dict[str, xr.DataArray] = {}
        for crit in recipe.criteria:
            x = self.derived(crit.layer, recipe)
            params = crit.membership.model_dump(exclude={"kind"})
            memberships[crit.id] = scoring.membership(x, crit.membership.kind, **params)
        score = scoring.weighted_overlay(
            list(memberships.values()), [c.weight for c in recipe.criteria]
        )
        inside = self.study_fraction > 0
        score = score.where(inside).astype(np.float32).rename(f"{recipe.technology}_score")
        score.attrs = {"units": "1", "long_name": f"{recipe.name_en} suitability score"}
        if recipe.technology == "pv":
            energy = self.pv_yield(recipe)
        else:
            energy = self.wind_layers(recipe)["wind_cf"] * 8760.0
        energy = energy.astype(np.float32)
        e = recipe.economics
        ref_mw = np.array([e.reference_capacity_mw])
        from sitekit.science.sites import connection_cost_cny_per_kw

        dist = self.grid_distance(recipe)
        per_km = e.connection_cny_per_km
        # per-pixel LCOE: reference-size site connected by a straight line to the nearest point
        _, kv = connection_cost_cny_per_kw(np.array([0.0]), ref_mw, e)
        kv0 = int(kv[0])
        conn = (dist * per_km.get(kv0, 0.0) + e.connection_bay_cny.get(kv0, 0.0)) / (
            e.reference_capacity_mw * 1000.0
        )
        lcoe = scoring.lcoe_cny_per_kwh(
            energy,
            e.capex_cny_per_kw,
            e.fixed_om_cny_per_kw_yr,
            e.wacc,
            e.lifetime_yr,
            e.degradation_pct_per_yr / 100.0,
            conn,
        )
        lcoe = lcoe.where(inside).astype(np.float32).rename(f"{recipe.technology}_lcoe")
        lcoe.attrs = {"units": "CNY/kWh", "long_name": f"{recipe.name_en} LCOE (reference site)"}
        # a pixel without data in a scored layer (a raster with allow_gaps) cannot be assessed:
        # it is neither eligible nor counted in any eligible area
        has_data = np.isfinite(score)
        eligible = (~cons.excluded) & inside & has_data
        return TechGraph(
            recipe=recipe,
            score=score,
            eligible=eligible.rename(f"{recipe.technology}_eligible"),
            inclusion=cons.inclusion_fraction.where(has_data, 0.0).astype(np.float32),
            lcoe=lcoe,
            energy_kwh_per_kw=energy,
            constraints=cons,
            memberships=memberships,
            rule_status=rule_status,
        )


@dataclass
class _ConstraintView:
    """A recipe with its constraint masks: what :func:`sitekit.engine.rules.forbidden_mask` and
    :func:`sitekit.engine.rules.crossing_penalty` read of a :class:`TechGraph`."""

    recipe: Any
    constraints: cons_lib.ConstraintResult


def _mask_spec(constraint: Any) -> dict[str, Any]:
    """A constraint's settings that shape its mask (its labels left out: two recipes that name
    one mask differently share one connection layer)."""
    return constraint.model_dump(mode="json", exclude={"name_zh", "name_en"})


def _line_inputs(recipe: Recipe, forbidden_ids: set[str]) -> dict[str, Any]:
    """What the connection surface's masks and cost terms depend on beyond their own settings
    (for :meth:`Pipeline.connection_distance`'s key): the resource settings of a derived layer
    they threshold (``pv_yield``, ``wind_speed`` …) and the zone settings of a zone mask they
    name (``existing_plants``, forced inclusion). Empty for the usual slope + constraint
    polygons, so PV and wind with the same line settings share one layer."""
    ids = forbidden_ids | set(recipe.grid.crossing_costs)
    layers = {str(getattr(c, "layer", "")) for c in recipe.constraints if c.id in ids}
    layers |= {str(t.layer) for t in recipe.grid.cost_terms}
    out: dict[str, Any] = {}
    if layers & {"pv_yield", "pv_cf"}:
        out["solar"] = _dump(getattr(recipe, "solar", None))
    if layers & {"wind_speed", "wind_cf", "air_density"}:
        out["wind"] = _dump(getattr(recipe, "wind", None))
    zones = {rules.OCCUPIED, *(z.id for z in getattr(recipe, "forced_inclusion", []))}
    if ids & zones:
        out["zones"] = rules.zone_params(recipe)
    return out


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json") if model is not None else None
