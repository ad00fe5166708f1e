"""Map style specs (``maps/*.yaml``): colours, class breaks, which layers appear, popup fields, language.

A style is data, never code: it is validated by the pydantic models below, which forbid unknown
keys, and every error names the file, the line and the key. ``maps/default.yaml`` is the one
copy of the built-in style: ``MapStyle()`` (all defaults) is that file (:func:`default_style`);
the map and the GeoPackage layer styles both read it.
"""

from __future__ import annotations

from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sitekit.engine.resources import bundled
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


class MapStyle(_Spec):
    """The whole map style. Every default is the built-in style ``maps/default.yaml``
    (:func:`default_style`, which documents every key); a style file or ``MapStyle(...)`` lists
    only what it changes."""

    title_en: str
    title_zh: str
    language: Language = Field(description="Labels: both (中文 / English), zh or en.")
    overlay_max_px: int = Field(
        ge=64, le=8192, description="Raster overlays are downsampled to ≤ this [px]."
    )
    simplify_m: float | None = Field(
        ge=0, description="Display simplification of vectors [m]; None = grid pixel size."
    )
    layer_control_collapsed: bool
    layers: list[str] | None = Field(
        description="Which layers appear, bottom to top; None = every layer given."
    )
    rasters: dict[str, RasterStyle]
    vectors: dict[str, VectorStyle]
    fields: dict[str, FieldLabel]

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: Any) -> Any:
        """Keys left out take the built-in style's; layer/field entries given replace the
        default entry of the same name and the other defaults stay (a style file lists only what
        it changes). The built-in file itself must give every key."""
        if not isinstance(data, dict) or _LOADING_DEFAULT.get():
            return data
        base = default_style()
        data = dict(data)
        for name in cls.model_fields:
            given = data.get(name)
            if name not in data:
                data[name] = getattr(base, name)
            elif name in _MERGED and isinstance(given, dict):
                data[name] = {**getattr(base, name), **given}
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


#: where the built-in style is (below :func:`sitekit.engine.resources.data_root`)
DEFAULT_STYLE = ("maps", "default.yaml")
#: the entries of these keys merge with the built-in style's by name
_MERGED = ("rasters", "vectors", "fields")
#: set while the built-in style itself is read (it takes no defaults)
_LOADING_DEFAULT: ContextVar[bool] = ContextVar("sitekit_loading_default_style", default=False)


@lru_cache(maxsize=1)
def default_style() -> MapStyle:
    """The built-in style, ``maps/default.yaml`` (the single source of every default of
    :class:`MapStyle`), read and validated once."""
    token = _LOADING_DEFAULT.set(True)
    try:
        return load_style(bundled(*DEFAULT_STYLE))
    finally:
        _LOADING_DEFAULT.reset(token)
