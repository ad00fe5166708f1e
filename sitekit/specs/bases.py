"""``pipelines/bases.yaml``: the typical-day shape tables and sizing settings of the hydro–wind–solar
bases (水风光一体化基地), as pydantic models. The shapes and the sizing that use them are
:mod:`sitekit.science.profiles` and :mod:`sitekit.science.bases`.

Every shape table is labelled with its ``status``: ``cited`` (numbers from the named source),
``unverified`` (a qualitative pattern that a source describes but whose numbers were not found:
the values are an illustration of that pattern). Sources are cited in ``pipelines/bases.yaml``
and in :mod:`sitekit.science.profiles`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sitekit.specs.loader import load_yaml_model

__all__ = [
    "REGULATION_CLASSES",
    "BasesSpec",
    "HydroShares",
    "PlantRegulation",
    "PublishedBase",
    "RegulationRule",
    "WindShape",
    "load_bases_spec",
]

#: the regulation classes a plant can have; what each means within a day is
#: :data:`sitekit.science.profiles.REGULATION_CLASSES` (the same tuple: specs may not import
#: science, ``tests/test_profiles.py`` checks they agree)
REGULATION_CLASSES = ("run_of_river", "daily", "seasonal")


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _twelve(v: list[float]) -> list[float]:
    if len(v) != 12 or min(v) < 0 or sum(v) <= 0:
        raise ValueError("needs 12 non-negative monthly values (January first), not all 0")
    return v


class WindShape(_M):
    """Seasonal and diurnal shape of wind output (multiplies the site's annual mean CF)."""

    monthly_factors: list[float] = Field(description="12 monthly factors [-], rescaled to mean 1")
    diurnal_amplitude: float = Field(
        0.0, ge=0, lt=1, description="half range of the daily cycle [-]"
    )
    diurnal_peak_hour: float = Field(
        15.0, ge=0, lt=24, description="hour of the daily maximum [h, BJT]"
    )
    status: Literal["cited", "unverified"]
    source: str

    _m = field_validator("monthly_factors")(classmethod(lambda cls, v: _twelve(v)))


class HydroShares(_M):
    """Monthly shares of a hydro plant's annual generation [-] (rescaled to sum 1)."""

    monthly_shares: list[float]
    status: Literal["cited", "unverified"]
    source: str

    _m = field_validator("monthly_shares")(classmethod(lambda cls, v: _twelve(v)))


class RegulationRule(_M):
    """Within-day freedom of one regulation class."""

    min_output_frac: float = Field(ge=0, le=1, description="see REGULATION_CLASSES [-]")


class PlantRegulation(_M):
    """A plant's regulation class from a named source (overrides the GEM technology default)."""

    name_zh: str
    regulation: Literal["run_of_river", "daily", "seasonal"]
    source: str


class PublishedBase(_M):
    """A real hydro–wind–solar base as announced, to set a modelled base beside (a sanity check
    printed in bases.md and the report, never used in the sizing)."""

    name_zh: str = Field(
        description="the anchor plant's Chinese name, matched as in plant_regulation"
    )
    pv_mw: float = Field(0.0, ge=0, description="announced PV bundled with the plant [MW]")
    wind_mw: float = Field(0.0, ge=0, description="announced wind bundled with the plant [MW]")
    energy_gwh: float | None = Field(None, ge=0, description="announced PV+wind energy [GWh/yr]")
    what: str = Field(description="what the figures are (project, phase, status)")
    source: str


class BasesSpec(_M):
    """``pipelines/bases.yaml``: the shape tables and the sizing settings of the bases."""

    curtailment_limit: float = Field(
        0.05, ge=0, lt=1, description="annual curtailed / generated [-]"
    )
    radius_km: float = Field(50.0, gt=0, description="sites within this distance join a base [km]")
    min_hydro_mw: float = Field(1000.0, ge=0, description="smallest plant anchoring a base [MW]")
    statuses: list[str] = Field(default_factory=lambda: ["operating", "construction"])
    hydro_capacity_factor: float = Field(0.5, gt=0, le=1, description="annual CF of the plants [-]")
    line_rating_factor: float = Field(1.0, gt=0, description="export line MW / installed MW [-]")
    wind: WindShape
    hydro_shares: dict[str, HydroShares] = Field(
        description="per regulation class (or plant name_zh)"
    )
    regulation: dict[str, RegulationRule]
    plant_regulation: list[PlantRegulation] = Field(default_factory=list)
    published: list[PublishedBase] = Field(
        default_factory=list, description="announced bases to compare with (not a fit)"
    )

    @field_validator("regulation", "hydro_shares")
    @classmethod
    def _classes(cls, v: dict) -> dict:
        missing = set(REGULATION_CLASSES) - set(v)
        if missing:
            raise ValueError(f"needs an entry for every class: missing {sorted(missing)}")
        return v


def load_bases_spec(path: str | Path) -> BasesSpec:
    """Read and validate ``pipelines/bases.yaml`` (errors name file, line and key)."""
    return load_yaml_model(Path(path), BasesSpec)
