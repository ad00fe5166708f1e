"""Scoring recipes (``pipelines/*.yaml``): validated, declarative, never code.

A recipe names criteria (derived layers + membership function + weight), hard constraints, the
grid-connection layer, economics and site-extraction rules. Every key is documented here and in the
commented example files under ``pipelines/``. ``--set key=value`` overrides any value.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sitekit.errors import RecipeError
from sitekit.specs.loader import load_yaml_model, read_yaml, set_dotted

#: derived layers a criterion or threshold constraint may use
DERIVED = (
    "elevation",
    "slope",
    "aspect",
    "tpi",
    "pv_yield",
    "pv_cf",
    "wind_speed",
    "wind_cf",
    "air_density",
    "grid_distance",
)


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # finite numbers only


class Linear(_M):
    kind: Literal["linear"]
    low: float = Field(description="value with membership 0")
    high: float = Field(description="value with membership 1 (may be < low: decreasing)")

    @model_validator(mode="after")
    def _ne(self) -> Linear:
        if self.low == self.high:
            raise ValueError("low and high must differ")
        return self


class Sigmoid(_M):
    kind: Literal["sigmoid"]
    midpoint: float
    width: float = Field(gt=0)
    decreasing: bool = False


class Gaussian(_M):
    kind: Literal["gaussian"]
    centre: float
    sigma: float = Field(gt=0)


class Step(_M):
    kind: Literal["step"]
    threshold: float
    above: bool = True


Membership = Annotated[Linear | Sigmoid | Gaussian | Step, Field(discriminator="kind")]


#: a derived layer name (DERIVED) or the id of a catalogue raster
LayerRef = Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]


class Criterion(_M):
    id: str
    layer: LayerRef = Field(description="derived layer (see DERIVED) or catalogue raster id")
    membership: Membership
    weight: float = Field(ge=0, description="relative weight (normalised to sum 1)")
    name_zh: str | None = None
    name_en: str | None = None


class _Constraint(_M):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    name_zh: str | None = None
    name_en: str | None = None
    overridable: bool = Field(
        True, description="false = a hard legal ban that forced-inclusion zones cannot override"
    )

    #: the class of :mod:`sitekit.science.constraints` this constraint becomes
    LIBRARY_CLASS: ClassVar[str] = ""

    def params(self) -> dict[str, Any]:
        """Keyword arguments of :attr:`LIBRARY_CLASS` except the data the engine resolves
        (geometries or rasters of ``layer``, slope and aspect)."""
        return {
            "code": self.id,
            "name_en": self.name_en or self.id,
            "name_zh": self.name_zh or self.id,
            "overridable": self.overridable,
        }


class PolygonC(_Constraint):
    kind: Literal["polygon"]
    layer: str = Field(description="catalogue layer id (polygons)")
    buffer_m: float = Field(0, ge=0)
    rule: Literal["centre", "all_touched", "fraction"] = "fraction"

    LIBRARY_CLASS: ClassVar[str] = "PolygonConstraint"

    def params(self) -> dict[str, Any]:
        return {**super().params(), "buffer_m": self.buffer_m, "rule": self.rule}


class SetbackC(_Constraint):
    kind: Literal["setback"]
    layer: str = Field(description="catalogue layer id (points or lines)")
    setback_m: float = Field(gt=0)
    rule: Literal["centre", "all_touched", "fraction"] = "centre"

    LIBRARY_CLASS: ClassVar[str] = "FeatureSetback"

    def params(self) -> dict[str, Any]:
        return {**super().params(), "setback_m": self.setback_m, "rule": self.rule}


class ThresholdC(_Constraint):
    kind: Literal["threshold"]
    layer: LayerRef = Field(description="derived layer (see DERIVED) or catalogue raster id")
    op: Literal[">", ">=", "<", "<="]
    value: float

    LIBRARY_CLASS: ClassVar[str] = "RasterThreshold"

    def params(self) -> dict[str, Any]:
        return {**super().params(), "op": self.op, "value": self.value}


class ClassesC(_Constraint):
    """Class codes of a categorical catalogue raster (e.g. ESA WorldCover 80 = permanent water)."""

    kind: Literal["classes"]
    layer: str = Field(description="catalogue raster id with `categorical: true`")
    exclude_classes: list[int] | None = Field(None, description="class codes excluded")
    include_classes: list[int] | None = Field(
        None, description="the only class codes kept eligible (all others excluded)"
    )

    @model_validator(mode="after")
    def _one(self) -> ClassesC:
        if (self.exclude_classes is None) == (self.include_classes is None):
            raise ValueError("give exactly one of exclude_classes or include_classes")
        if not (self.exclude_classes or self.include_classes):
            raise ValueError("the class list is empty")
        return self

    LIBRARY_CLASS: ClassVar[str] = "ClassRaster"

    def params(self) -> dict[str, Any]:
        include = self.include_classes is not None
        classes = tuple(self.include_classes if include else self.exclude_classes)
        mode = "include" if include else "exclude"
        return {**super().params(), "classes": classes, "mode": mode}


class AspectOnSlopeC(_Constraint):
    kind: Literal["aspect_on_slope"]
    min_slope_deg: float = Field(ge=0, le=90)
    aspect_from_deg: float = Field(ge=0, le=360)
    aspect_to_deg: float = Field(ge=0, le=360)

    LIBRARY_CLASS: ClassVar[str] = "AspectOnSlope"

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "min_slope_deg": self.min_slope_deg,
            "aspect_from_deg": self.aspect_from_deg,
            "aspect_to_deg": self.aspect_to_deg,
        }


Constraint = Annotated[
    PolygonC | SetbackC | ThresholdC | AspectOnSlopeC | ClassesC, Field(discriminator="kind")
]


class ForcedZone(_M):
    """Polygons (planned bases, approved projects) kept eligible over overridable exclusions."""

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    layer: str = Field(description="catalogue layer id (polygons)")
    name_zh: str | None = None
    name_en: str | None = None


class ExistingPlants(_M):
    """Built plants occupy their land: no new site on a footprint (polygon, or capacity ÷ the
    recipe's ``sites.power_density_mw_per_km2`` around a point)."""

    layer: str = Field(description="catalogue layer id of the built plants (points or polygons)")
    capacity_field: str = Field("capacity_mw", description="installed capacity column [MW]")
    status_field: str | None = Field("status", description="status column (null: all rows)")
    statuses: list[str] = Field(
        default_factory=lambda: ["operating", "construction"],
        description="statuses whose land counts as occupied",
    )


class SolarResource(_M):
    model: Literal["modelled", "ghi_layer"] = "modelled"
    ghi_layer: str | None = Field(None, description="catalogue raster id of a GHI climatology")
    calibration_layer: str | None = Field(
        None, description="catalogue id of the MERRA-2 monthly GHI table (clearness calibration)"
    )
    tracking: Literal["fixed", "single_axis"] = "fixed"
    losses_pct: float = Field(14.0, ge=0, lt=100)


class WindResource(_M):
    model: Literal["modelled", "speed_layer"] = "modelled"
    speed_layer: str | None = Field(None, description="catalogue raster id of mean speed [m/s]")
    speed_height_m: float = Field(100.0, gt=0, description="height of the speed layer [m]")
    turbine: str = Field("E-141/4200", description="windpowerlib turbine type")
    hub_height_m: float = Field(120.0, gt=0)
    shear_alpha: float = Field(0.14, ge=0, le=0.6, description="power-law shear exponent")
    weibull_k: float = Field(2.0, gt=0.5, le=6.0)
    losses_pct: float = Field(12.0, ge=0, lt=100, description="wake, availability, electrical")


class CostTerm(_M):
    """One multiplier of the least-cost connection surface (on top of the slope term)."""

    layer: LayerRef = Field(description="derived layer or catalogue raster id")
    classes: dict[int, float] | None = Field(
        None, description="categorical raster: class code → cost multiplier (others 1)"
    )
    above: float | None = Field(None, description="continuous raster: multiply where value > this")
    multiplier: float | None = Field(None, gt=0, description="multiplier used with `above`")

    @model_validator(mode="after")
    def _one(self) -> CostTerm:
        if (self.classes is None) == (self.above is None or self.multiplier is None):
            raise ValueError("give either classes, or above and multiplier")
        return self


class GridConnection(_M):
    layer: str = Field(description="catalogue layer id of connection points/lines")
    name_field: str = "name"
    line_layer: str | None = None
    forbidden: list[str] = Field(
        default_factory=lambda: ["nobuild"],
        description="constraint/rule ids a connection line avoids (cost forbidden_cost)",
    )
    forbidden_cost: float = Field(20.0, gt=0, description="cost multiplier in forbidden pixels")
    crossing_costs: dict[str, float] = Field(
        default_factory=dict,
        description="constraint/rule id → cost multiplier where a line crosses it (e.g. water: 3)",
    )
    cost_terms: list[CostTerm] = Field(
        default_factory=list, description="extra multipliers: land cover, crossings …"
    )


class Economics(_M):
    capex_cny_per_kw: float = Field(gt=0)
    fixed_om_cny_per_kw_yr: float = Field(ge=0)
    wacc: float = Field(ge=0, le=0.3)
    lifetime_yr: int = Field(gt=0, le=60)
    degradation_pct_per_yr: float = Field(0.0, ge=0, le=5)
    connection_cny_per_km: dict[int, float] = Field(
        description="line cost by voltage class [kV → CNY/km]"
    )
    connection_bay_cny: dict[int, float] = Field(
        default_factory=dict, description="substation bay cost by voltage class [kV → CNY]"
    )
    voltage_by_capacity_mw: dict[int, float] = Field(
        description="voltage class [kV] → largest site capacity [MW] it connects"
    )
    reference_capacity_mw: float = Field(
        100.0, gt=0, description="site size assumed for the per-pixel LCOE raster [MW]"
    )
    search_radius_km: float | None = Field(
        None,
        gt=0,
        description="straight-line radius around a site within which it may connect to an "
        "existing connection point [km]; a site with no point of its class in reach needs new "
        "transmission. Default none (no limit). As the clip radius of reVX least-cost "
        "transmission (least-cost-xmission --radius)",
    )


class Sites(_M):
    score_threshold: float = Field(ge=0, le=1)
    min_area_km2: float = Field(gt=0)
    max_area_km2: float = Field(gt=0)
    power_density_mw_per_km2: float = Field(gt=0)
    max_sites: int = Field(500, gt=0, description="best sites kept per prefecture")

    @model_validator(mode="after")
    def _order(self) -> Sites:
        if self.max_area_km2 < self.min_area_km2:
            raise ValueError("max_area_km2 must be ≥ min_area_km2")
        return self


class Competition(_M):
    """Where PV and wind are both eligible on a pixel, who gets the land (one technology per
    hectare, :mod:`sitekit.science.competition`). Both recipes of a run must name the same rule."""

    rule: Literal["lower_lcoe", "pv_first", "wind_first", "shared"] = Field(
        "lower_lcoe",
        description="lower_lcoe: the technology with the lower per-pixel LCOE; pv_first; "
        "wind_first; shared: both build, at shared_power_density_mw_per_km2",
    )
    shared_power_density_mw_per_km2: float | None = Field(
        None,
        gt=0,
        description="this technology's density on shared land [MW/km²] (rule shared; "
        "default: sites.power_density_mw_per_km2)",
    )


class Recipe(_M):
    technology: Literal["pv", "wind"]
    name_zh: str
    name_en: str
    description: str | None = None
    solar: SolarResource | None = None
    wind: WindResource | None = None
    criteria: list[Criterion] = Field(min_length=1)
    constraints: list[Constraint] = Field(default_factory=list)
    rules: list[str] = Field(
        default_factory=list, description="ids of siting rules in pipelines/rules/*.yaml"
    )
    forced_inclusion: list[ForcedZone] = Field(default_factory=list)
    existing_plants: ExistingPlants | None = None
    grid: GridConnection
    economics: Economics
    sites: Sites
    competition: Competition = Field(default_factory=Competition)

    @model_validator(mode="after")
    def _check(self) -> Recipe:
        if sum(c.weight for c in self.criteria) <= 0:
            raise ValueError("criteria weights sum to 0; give at least one a weight > 0")
        ids = [c.id for c in self.constraints] + list(self.rules)
        ids += [z.id for z in self.forced_inclusion]
        if len(set(ids)) != len(ids):
            raise ValueError("constraint, rule and forced-inclusion ids must be unique")
        if self.rules:
            from sitekit.specs.rules import check_rule_ids

            check_rule_ids(self.rules, self.technology)
        if self.technology == "pv" and self.solar is None:
            self.solar = SolarResource()
        if self.technology == "wind" and self.wind is None:
            self.wind = WindResource()
        return self


def parse_override(item: str) -> tuple[str | None, str, str]:
    """``[scope:]key=value`` → (scope or None, key, value). A scope names a technology (``pv``,
    ``wind``, ``pumped_storage``) or a recipe file's name without ``.yaml``."""
    if "=" not in item:
        raise RecipeError(f"--set {item!r}: expected key=value or recipe:key=value")
    key, value = item.split("=", 1)
    scope = None
    if ":" in key:
        scope, key = key.split(":", 1)
        scope = scope.strip() or None
    if not key.strip():
        raise RecipeError(f"--set {item!r}: no key before '='")
    return scope, key.strip(), value


def apply_overrides(
    path: Path, data: Any, overrides: list[str] | None, applied: dict[str, list[str]] | None = None
) -> None:
    """Apply ``--set`` overrides to one recipe's data, in place.

    A scoped item (``pv:criteria.0.weight=0.3``) applies only to the recipes it names and must
    fit them. An unscoped item applies to every recipe that has its key path; a recipe without
    it is left alone (PV's ``solar.*`` is not the wind recipe's) when the caller collects
    ``applied`` (a run of several recipes); without it every item must fit. ``applied`` collects
    {item: [recipe file names]} (and ``"!" + item``: why it did not fit, per recipe), so the run
    can refuse an item that fits no recipe at all and say which recipes an unscoped one
    reached."""
    if not overrides:
        return
    if not isinstance(data, dict):
        raise RecipeError(f"{path}:1: expected a mapping at the top level")
    names = {str(data.get("technology", "")), path.stem}
    for item in overrides:
        scope, key, value = parse_override(item)
        if scope is not None:
            if scope in names:
                set_dotted(data, key, value, where=f"--set ({path.name})")
                if applied is not None:
                    applied.setdefault(item, []).append(path.name)
            continue
        if applied is not None and not _has_parent(data, key):  # a run's item for another recipe
            import copy

            try:  # why it does not fit here, in case no recipe takes it (the run's error)
                set_dotted(copy.deepcopy(data), key, value, where=f"--set ({path.name})")
            except RecipeError as exc:
                applied.setdefault(f"!{item}", []).append(str(exc))
            continue
        set_dotted(data, key, value, where=f"--set ({path.name})")
        if applied is not None:
            applied.setdefault(item, []).append(path.name)


def _has_parent(data: Any, key: str) -> bool:
    """True when every part of ``key`` but the last exists in ``data`` (dict keys, list indices
    or list items named by ``id``/``name``)."""
    cur = data
    for part in key.split(".")[:-1]:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif (
            isinstance(cur, list)
            and part.lstrip("-").isdigit()
            and -len(cur) <= int(part) < len(cur)
        ):
            cur = cur[int(part)]
        elif isinstance(cur, list):
            named = [x for x in cur if isinstance(x, dict) and part in (x.get("id"), x.get("name"))]
            if not named:
                return False
            cur = named[0]
        else:
            return False
    return True


def load_recipe(
    path: str | Path,
    overrides: list[str] | None = None,
    applied: dict[str, list[str]] | None = None,
) -> tuple[Recipe, str]:
    """Load and validate a recipe; apply ``[scope:]key=value`` overrides
    (:func:`apply_overrides`). Returns (recipe, final YAML)."""
    path = Path(path)
    data, lines = read_yaml(path)
    apply_overrides(path, data, overrides, applied)
    recipe = load_yaml_model(path, Recipe, data=data, lines=lines)
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    return recipe, text


def recipe_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def as_dict(recipe: Recipe) -> dict[str, Any]:
    return recipe.model_dump(mode="json")


# ----------------------------------------------------------------------------- pumped storage
class PSSearch(_M):
    """Search parameters (→ :class:`sitekit.science.pumped_storage.PumpedStorageParams`; defaults from
    the ANU atlas ``variables`` file, Stocks et al. 2021)."""

    dam_heights_m: list[float] = Field(
        default_factory=lambda: [float(h) for h in range(10, 151, 10)],
        min_length=1,
        description="dam heights tried at each dam site [m] (ANU 10, 20 … 150)",
    )
    min_head_m: float = Field(300.0, gt=0)
    max_head_m: float = Field(800.0, gt=0)
    max_separation_km: float = Field(15.0, gt=0)
    min_slope: float = Field(0.05, gt=0, description="head / separation (ANU 1:20)")
    generation_efficiency: float = Field(0.9, gt=0, le=1, description="η (ANU 0.9)")
    usable_fraction: float = Field(
        0.85, gt=0, le=1, description="usable share of the gross volume (ANU 0.85)"
    )
    classes: list[tuple[float, float]] = Field(
        default_factory=lambda: [
            (2.0, 6.0), (5.0, 18.0), (15.0, 18.0), (50.0, 50.0), (150.0, 50.0), (500.0, 168.0),
            (1500.0, 504.0),
        ],
        min_length=1,
        description="[energy GWh, storage hours] classes a pair is sized to (ANU)",
    )  # fmt: skip
    max_power_mw: float = Field(3600.0, gt=0)
    min_volume_gl: float = Field(1.0, gt=0)
    min_water_rock: float = Field(3.0, gt=0, description="reservoir W/R at its best dam (ANU 3)")
    min_pair_water_rock: float = Field(1.5, gt=0, description="pair W/R (ANU 1.5)")
    max_pairs: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _heads(self) -> PSSearch:
        if sorted(set(self.dam_heights_m)) != self.dam_heights_m or min(self.dam_heights_m) <= 0:
            raise ValueError("dam_heights_m must be increasing and > 0")
        if not max(self.dam_heights_m) < self.min_head_m <= self.max_head_m:
            raise ValueError("need max(dam_heights_m) < min_head_m <= max_head_m")
        if not any(e * 1000.0 / h <= self.max_power_mw for e, h in self.classes):
            raise ValueError("no class has power (energy / hours) ≤ max_power_mw")
        return self


class ExistingReservoirs(_M):
    """Real reservoirs used as bluefield lower reservoirs (a catalogue layer with the
    published normal pool level per dam; rows without one are not used)."""

    layer: str = Field(description="catalogue id of the reservoir table (dam points)")
    name_field: str = "name"
    level_field: str = Field("water_level_m", description="normal pool level [m]")
    volume_field: str | None = Field("volume_gl", description="capacity [GL] (empty: ample)")
    reach_km: float = Field(60.0, gt=0, description="farthest flooded pixel from the dam")


class PSGrid(_M):
    """Grid connection of pumped-storage pairs (distance from the upper reservoir)."""

    layer: str = Field(description="catalogue layer id of connection points/lines")
    name_field: str = "name"
    connection_cny_per_km: dict[int, float] = Field(
        default_factory=dict, description="line cost by voltage class [kV → CNY/km]"
    )
    connection_bay_cny: dict[int, float] = Field(
        default_factory=dict, description="substation bay cost by voltage class [kV → CNY]"
    )
    voltage_by_capacity_mw: dict[int, float] = Field(
        default_factory=dict, description="voltage class [kV] → largest plant [MW] it connects"
    )


class PumpedStorageRecipe(_M):
    technology: Literal["pumped_storage"]
    name_zh: str
    name_en: str
    description: str | None = None
    search: PSSearch = Field(default_factory=PSSearch)
    existing_reservoirs: ExistingReservoirs | None = None
    grid: PSGrid | None = None
    constraints: list[Constraint] = Field(default_factory=list)


def load_ps_recipe(
    path: str | Path,
    overrides: list[str] | None = None,
    applied: dict[str, list[str]] | None = None,
):
    """Load a pumped-storage recipe (same rules as :func:`load_recipe`: every key, not only
    ``search.*``)."""
    path = Path(path)
    data, lines = read_yaml(path)
    apply_overrides(path, data, overrides, applied)
    recipe = load_yaml_model(path, PumpedStorageRecipe, data=data, lines=lines)
    return recipe, yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
