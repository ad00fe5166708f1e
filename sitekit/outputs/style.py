"""Map style specs (``maps/*.yaml``): colours, class breaks, which layers appear, popup fields, language.

A style is data, never code: it is validated by the pydantic models below, which forbid unknown
keys, and every error names the file, the line and the key. ``MapStyle()`` (all defaults) is the
same style as ``maps/default.yaml``; the map and the GeoPackage layer styles both read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sitekit.specs.loader import load_yaml_model

Language = Literal["both", "zh", "en"]


def _check_colour(value: str) -> str:
    from matplotlib.colors import is_color_like

    if not is_color_like(value):
        raise ValueError(f"{value!r} is not a colour; use a CSS hex colour such as '#1a9850'")
    return value


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class FieldLabel(_Spec):
    """How an attribute is labelled and formatted in popups and the report."""

    en: str = Field(description="English label (units in brackets, e.g. 'Capacity [MW]').")
    zh: str = Field("", description="Chinese label.")
    decimals: int | None = Field(
        None, ge=0, le=8, description="Fixed decimals; None = 4 significant digits."
    )


class RasterStyle(_Spec):
    """A raster drawn as a colour overlay (a PNG of at most ``overlay_max_px`` on its long side)."""

    name_en: str
    name_zh: str = ""
    units: str | None = Field(None, description="Legend units; None = the array's `units` attr.")
    colormap: str | list[str] = Field(
        "viridis", description="A matplotlib colormap name or a list of colours (low → high)."
    )
    vmin: float | None = Field(None, description="Low end of the ramp; None = 2nd percentile.")
    vmax: float | None = Field(None, description="High end of the ramp; None = 98th percentile.")
    breaks: list[float] | None = Field(
        None, description="Class breaks (ascending): a stepped ramp with len(breaks)+1 classes."
    )
    opacity: float = Field(0.7, ge=0, le=1)
    show: bool = Field(False, description="Visible when the map opens.")
    resampling: Literal["average", "nearest"] = Field(
        "average", description="How the overview is reduced: block mean, or nearest sample."
    )
    base: bool = Field(False, description="A base layer (radio button), e.g. the hillshade.")

    @field_validator("colormap")
    @classmethod
    def _known_colormap(cls, v: str | list[str]) -> str | list[str]:
        import matplotlib

        if isinstance(v, str):
            if v not in matplotlib.colormaps:
                raise ValueError(f"unknown matplotlib colormap {v!r} (e.g. viridis, YlOrRd)")
        elif len(v) < 2:
            raise ValueError("a colour list needs at least 2 colours")
        else:
            for c in v:
                _check_colour(c)
        return v

    @model_validator(mode="after")
    def _ascending(self) -> RasterStyle:
        if self.breaks is not None and list(self.breaks) != sorted(set(self.breaks)):
            raise ValueError("breaks must be strictly ascending")
        if self.vmin is not None and self.vmax is not None and not self.vmax > self.vmin:
            raise ValueError("vmax must be greater than vmin")
        return self


class VectorStyle(_Spec):
    """A vector layer: outline/fill, optional colour classes, popup/tooltip fields and labels."""

    name_en: str
    name_zh: str = ""
    color: str = Field("#3388ff", description="Outline (or point) colour.")
    weight: float = Field(1.5, ge=0, description="Outline width [px].")
    dash_array: str | None = Field(None, description="SVG dash pattern, e.g. '4 4'.")
    fill: bool = True
    fill_color: str | None = Field(None, description="Fill colour; None = `color`.")
    fill_opacity: float = Field(0.4, ge=0, le=1)
    radius_px: float = Field(5.0, gt=0, description="Point marker radius [px].")
    show: bool = True
    color_by: str | None = Field(None, description="Attribute that picks the colour.")
    breaks: list[float] | None = Field(
        None, description="Upper class limits for numeric `color_by` (value ≤ break)."
    )
    colors: list[str] | None = Field(None, description="len(breaks)+1 colours, lowest first.")
    categories: dict[str, str] | None = Field(
        None, description="Colour per category value for a text `color_by`."
    )
    label: Literal["none", "hover", "permanent"] = Field(
        "none", description="Bilingual name label: none, on hover, or always shown."
    )
    label_min_zoom: int = Field(0, ge=0, le=20, description="Hide permanent labels below.")
    popup_fields: list[str] | None = Field(
        None, description="Fields shown first in popups; every other attribute follows."
    )
    max_features: int | None = Field(
        None, ge=1, description="Show only the best-ranked N features (map only)."
    )

    @field_validator("color", "fill_color")
    @classmethod
    def _colour(cls, v: str | None) -> str | None:
        return None if v is None else _check_colour(v)

    @model_validator(mode="after")
    def _classes(self) -> VectorStyle:
        if self.breaks is not None:
            if list(self.breaks) != sorted(set(self.breaks)):
                raise ValueError("breaks must be strictly ascending")
            if self.colors is None or len(self.colors) != len(self.breaks) + 1:
                raise ValueError("colors needs exactly len(breaks)+1 entries")
        for c in (self.colors or []) + list((self.categories or {}).values()):
            _check_colour(c)
        if (self.breaks or self.categories) and not self.color_by:
            raise ValueError("breaks/categories need `color_by` (the attribute to classify)")
        return self


RANK_COLOURS = ["#b10026", "#fc4e2a", "#feb24c", "#ffeda0"]
#: built plants by GEM tracker status (green = operating, oranges = coming, greys = not coming)
PLANT_STATUS_COLOURS = {
    "operating": "#1b7837",
    "construction": "#e08214",
    "pre-construction": "#fdb863",
    "announced": "#b2abd2",
    "shelved": "#969696",
    "mothballed": "#737373",
    "cancelled": "#bdbdbd",
    "retired": "#525252",
}


def _rasters() -> dict[str, RasterStyle]:
    r = RasterStyle
    return {
        "hillshade": r(
            name_en="Hillshade",
            name_zh="山体阴影",
            units="",
            colormap="gray",
            opacity=1.0,
            show=True,
            base=True,
        ),
        "elevation": r(
            name_en="Elevation", name_zh="高程", units="m", colormap="terrain", opacity=0.6
        ),
        "pv_yield": r(
            name_en="PV specific yield",
            name_zh="光伏单位发电量",
            units="kWh/kWp/yr",
            colormap="YlOrRd",
        ),
        "wind_cf": r(
            name_en="Wind capacity factor",
            name_zh="风电容量系数",
            units="1",
            colormap="PuBu",
            vmin=0,
            vmax=0.5,
        ),
        "pv_score": r(
            name_en="PV suitability",
            name_zh="光伏适宜性",
            units="0–1",
            colormap="viridis",
            vmin=0,
            vmax=1,
            show=True,
        ),
        "wind_score": r(
            name_en="Wind suitability",
            name_zh="风电适宜性",
            units="0–1",
            colormap="viridis",
            vmin=0,
            vmax=1,
        ),
        "exclusion_reasons": r(
            name_en="Exclusion reasons",
            name_zh="排除原因",
            units="",
            colormap="tab10",
            opacity=0.6,
            resampling="nearest",
        ),
        "grid_distance": r(
            name_en="Distance to grid",
            name_zh="距电网距离",
            units="km",
            colormap="magma_r",
            vmin=0,
            breaks=[5, 10, 20, 50, 100],
        ),
    }


def _site_style(name_en: str, name_zh: str, color: str, colors: list[str]) -> VectorStyle:
    """Candidate sites of one technology: filled polygons classed by rank (top 10, 50, 200)."""
    return VectorStyle(
        name_en=name_en,
        name_zh=name_zh,
        label="hover",
        color=color,
        weight=1.0,
        fill_opacity=0.65,
        color_by="rank",
        breaks=[10, 50, 200],
        colors=colors,
        popup_fields=[
            "rank",
            "site_id",
            "prefecture",
            "county",
            "capacity_mw",
            "energy_gwh",
            "lcoe_cny_per_kwh",
        ],
        max_features=1000,
    )


def _vectors() -> dict[str, VectorStyle]:
    v = VectorStyle
    return {
        "prefectures": v(
            name_en="Prefectures",
            name_zh="市州",
            color="#222222",
            weight=2.5,
            fill=False,
            label="permanent",
        ),
        "counties": v(
            name_en="Counties",
            name_zh="县区",
            color="#666666",
            weight=1.0,
            dash_array="4 3",
            fill=False,
            label="permanent",
            label_min_zoom=8,
        ),
        "technical_potential": v(  # potential.csv per county: all eligible land, not top-N sites
            name_en="PV technical potential by county (after competition)",
            name_zh="县级光伏技术可开发量（用地竞争后）",
            color="#555555",
            weight=0.5,
            fill_opacity=0.45,
            show=False,
            color_by="pv_technical_potential_mw_after_competition",
            breaks=[50000, 150000, 300000],
            colors=["#fff5eb", "#fdbe85", "#fd8d3c", "#d94701"],
            popup_fields=[
                "name_en",
                "pv_technical_potential_mw_after_competition",
                "pv_technical_potential_gwh_after_competition",
                "wind_technical_potential_mw_after_competition",
                "wind_technical_potential_gwh_after_competition",
                "pv_technical_potential_mw",
                "wind_technical_potential_mw",
                "pv_eligible_km2",
                "pv_excluded_km2",
            ],
        ),
        "grid_lines": v(
            name_en="Grid lines", name_zh="输电线路", color="#7b3294", weight=2.0, fill=False
        ),
        "routes": v(
            name_en="Routes",
            name_zh="线路方案",
            color="#e7298a",
            weight=3.0,
            dash_array="6 4",
            fill=False,
        ),
        "ps_reservoirs": v(
            name_en="PSH reservoirs",
            name_zh="抽蓄水库",
            label="hover",
            color="#08519c",
            fill_color="#4292c6",
            fill_opacity=0.6,
            popup_fields=["pair_id", "role", "volume_gl"],
        ),
        "ps_pairs": v(
            name_en="PSH pairs",
            name_zh="抽水蓄能站点对",
            label="hover",
            color="#08306b",
            weight=3.0,
            color_by="cost_class",
            categories={"A": "#1a9850", "B": "#fdae61", "C": "#d73027"},
            popup_fields=[
                "pair_id",
                "storage_gwh",
                "power_mw",
                "storage_hours",
                "head_m",
                "dam_height_m",
                "cost_class",
                "lower_name",
            ],
        ),
        "wind_sites": _site_style(
            "Wind sites (top N per prefecture)",
            "风电场址（各市州前N名）",
            "#08306b",
            ["#08306b", "#2171b5", "#6baed6", "#c6dbef"],
        ),
        "pv_sites": _site_style(
            "PV sites (top N per prefecture)", "光伏场址（各市州前N名）", "#67000d", RANK_COLOURS
        ),
        "existing_wind_plants": v(  # recipe existing_plants: GEM Wind Power Tracker rows
            name_en="Wind farms in the GEM tracker (operating, under construction, planned)",
            name_zh="GEM风电场（已投运、在建、规划）",
            label="hover",
            color="#252525",
            weight=1.0,
            radius_px=6,
            fill_opacity=0.9,
            color_by="status",
            categories=PLANT_STATUS_COLOURS,
            popup_fields=[
                "name",
                "phase",
                "status",
                "start_year",
                "capacity_mw",
                "prefecture",
                "county",
                "location_accuracy",
                "eligible",
                "score_percentile",
                "cf_modelled",
                "excluded_by",
            ],
        ),
        "grid_points": v(
            name_en="Grid connection points",
            name_zh="并网点",
            label="hover",
            color="#000000",
            fill_color="#ffff33",
            fill_opacity=0.9,
            radius_px=5,
            weight=1.5,
            color_by="voltage_kv",
            breaks=[110, 220, 500],
            colors=["#ffffb2", "#fecc5c", "#fd8d3c", "#e31a1c"],
        ),
    }


def _fields() -> dict[str, FieldLabel]:
    f = FieldLabel
    return {
        "site_id": f(en="Site", zh="场址编号"),
        "rank": f(en="Rank", zh="排名", decimals=0),
        "prefecture": f(en="Prefecture", zh="市州"),
        "county": f(en="County", zh="县区"),
        "area_km2": f(en="Area [km²]", zh="面积 [km²]", decimals=2),
        "capacity_mw": f(en="Capacity [MW]", zh="装机容量 [MW]", decimals=0),
        "energy_gwh": f(en="Energy [GWh/yr]", zh="年发电量 [GWh]", decimals=1),
        "capacity_factor": f(en="Capacity factor", zh="容量系数", decimals=3),
        "mean_score": f(en="Mean score", zh="平均得分", decimals=3),
        "lcoe_cny_per_kwh": f(en="LCOE [CNY/kWh]", zh="平准化度电成本 [元/kWh]", decimals=3),
        "grid_distance_km": f(en="Grid distance [km]", zh="并网距离 [km]", decimals=1),
        "grid_point_name": f(en="Grid point", zh="并网点"),
        "pair_id": f(en="Pair", zh="站点对编号"),
        "head_m": f(en="Head [m]", zh="水头 [m]", decimals=0),
        "separation_km": f(en="Separation [km]", zh="上下库距离 [km]", decimals=2),
        "volume_gl": f(en="Volume [GL]", zh="库容 [GL]", decimals=2),
        "power_mw": f(en="Power [MW]", zh="功率 [MW]", decimals=0),
        "storage_gwh": f(en="Storage [GWh per cycle]", zh="储能容量 [GWh/次]", decimals=1),
        "dam_height_m": f(en="Dam height [m]", zh="坝高 [m]", decimals=0),
        "mean_depth_m": f(en="Mean depth [m]", zh="平均水深 [m]", decimals=1),
        "lower_name": f(en="Lower reservoir", zh="下水库"),
        "storage_hours": f(en="Storage [h]", zh="储能时长 [h]", decimals=1),
        "cost_class": f(en="Cost class", zh="成本等级"),
        "uses_existing_reservoir": f(en="Uses existing reservoir", zh="利用现有水库"),
        "name": f(en="Name", zh="名称"),
        "name_en": f(en="Name (English)", zh="英文名"),
        "name_zh": f(en="Name (Chinese)", zh="中文名"),
        "voltage_kv": f(en="Voltage [kV]", zh="电压 [kV]", decimals=0),
        "eligible_km2": f(en="Eligible area [km²]", zh="可用面积 [km²]", decimals=0),
        "potential_mw": f(en="Top-N sites [MW]", zh="前N名场址装机 [MW]", decimals=0),
        "pv_technical_potential_mw_after_competition": f(
            en="PV technical potential after competition [MW]",
            zh="光伏技术可开发量（用地竞争后）[MW]",
            decimals=0,
        ),
        "pv_technical_potential_gwh_after_competition": f(
            en="PV technical potential after competition [GWh/yr]",
            zh="光伏技术可开发电量（用地竞争后）[GWh]",
            decimals=0,
        ),
        "wind_technical_potential_mw_after_competition": f(
            en="Wind technical potential after competition [MW]",
            zh="风电技术可开发量（用地竞争后）[MW]",
            decimals=0,
        ),
        "wind_technical_potential_gwh_after_competition": f(
            en="Wind technical potential after competition [GWh/yr]",
            zh="风电技术可开发电量（用地竞争后）[GWh]",
            decimals=0,
        ),
        "pv_technical_potential_mw": f(
            en="PV technical potential if alone [MW]", zh="光伏技术可开发量（单独）[MW]", decimals=0
        ),
        "wind_technical_potential_mw": f(
            en="Wind technical potential if alone [MW]",
            zh="风电技术可开发量（单独）[MW]",
            decimals=0,
        ),
        "pv_eligible_km2": f(
            en="PV eligible area if alone [km²]", zh="光伏可用面积（单独）[km²]", decimals=0
        ),
        "pv_excluded_km2": f(
            en="Excluded for PV, all rules [km²]", zh="光伏排除面积（合计）[km²]", decimals=0
        ),
        "n_sites": f(en="Sites", zh="场址数", decimals=0),
        "technology": f(en="Technology", zh="技术类型"),
    }


class MapStyle(_Spec):
    """The whole map style (``maps/default.yaml`` documents every key)."""

    title_en: str = "sitekit — renewable siting screen, western Sichuan"
    title_zh: str = "川西新能源选址筛查"
    language: Language = Field("both", description="Labels: both (中文 / English), zh or en.")
    overlay_max_px: int = Field(
        1600, ge=64, le=8192, description="Raster overlays are downsampled to ≤ this [px]."
    )
    simplify_m: float | None = Field(
        None, ge=0, description="Display simplification of vectors [m]; None = grid pixel size."
    )
    layer_control_collapsed: bool = True
    layers: list[str] | None = Field(
        None, description="Which layers appear, bottom to top; None = every layer given."
    )
    rasters: dict[str, RasterStyle] = Field(default_factory=_rasters)
    vectors: dict[str, VectorStyle] = Field(default_factory=_vectors)
    fields: dict[str, FieldLabel] = Field(default_factory=_fields)

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: Any) -> Any:
        """Layer/field entries given in a file replace the default entry of the same name; the
        other defaults stay (a style file lists only what it changes)."""
        if isinstance(data, dict):
            data = dict(data)
            for key, factory in (("rasters", _rasters), ("vectors", _vectors), ("fields", _fields)):
                given = data.get(key)
                if isinstance(given, dict):
                    data[key] = {**factory(), **given}
        return data

    def label(self, en: str, zh: str) -> str:
        """A bilingual label in the style's language (plain text, not escaped)."""
        if self.language == "en" or not zh:
            return en
        if self.language == "zh":
            return zh
        return f"{zh} / {en}"

    def field_label(self, name: str) -> str:
        """Bilingual label of an attribute: the style's ``fields`` entry, else sitekit's
        vocabulary (:data:`sitekit.outputs.labels.FIELDS`, units in brackets), else the name itself."""
        f = self.fields.get(name)
        if f:
            return self.label(f.en, f.zh)
        from sitekit.outputs.labels import field_info

        info = field_info(name)
        if info is None:
            return name
        zh, en, unit = info
        u = f" [{unit}]" if unit else ""
        return self.label(en + u, zh + u)


def load_style(path: str | Path) -> MapStyle:
    """Load and validate a map style YAML file (``maps/*.yaml``).

    Raises
    ------
    RecipeError
        Naming the file, line and key of each problem (via :func:`sitekit.specs.loader.load_yaml_model`).
    """
    return load_yaml_model(path, MapStyle)
