"""Layer catalogues (``layers/*.yaml``): what each input file is, and opening it onto the grid."""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import geopandas as gpd
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sitekit.errors import LayerError, RecipeError
from sitekit.grid import DEFAULT_CHUNK, DEFAULT_CRS, Grid
from sitekit.io import layers as io
from sitekit.specs.loader import load_yaml_model

Role = Literal[
    "boundary",
    "admin",
    "terrain",
    "solar",
    "wind",
    "constraint",
    "grid",
    "settlement",
    "hydro",
    "route",
    "calibration",
    "other",
]


#: the only resampling methods that keep class codes intact (GDAL's nearest and majority)
CATEGORICAL_RESAMPLING = ("nearest", "mode")


class LayerSpec(BaseModel):
    """One input layer of a catalogue."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9_]+$", description="unique id used by recipes")
    kind: Literal["raster", "vector", "points-csv"]
    path: str = Field(description="file path relative to the catalogue")
    role: Role
    layer: str | None = Field(None, description="layer name inside a GeoPackage/multi-layer file")
    name_zh: str | None = None
    name_en: str | None = None
    label_field: str | None = Field(None, description="attribute used to label features")
    units: str | None = Field(None, description="units of raster values (m, m/s, kWh/m2/yr …)")
    nodata: float | None = Field(None, description="nodata value if the file does not declare one")
    crs: str | None = Field(None, description="CRS to assume/override, e.g. EPSG:4490")
    resampling: Literal["nearest", "bilinear", "cubic", "average", "mode"] | None = None
    categorical: bool = Field(
        False,
        description="raster values are class codes (land cover): resampled nearest/mode only",
    )
    provides: list[str] = Field(
        default_factory=list,
        description="rule layer roles this layer provides (e.g. ecological_redline, land_cover); "
        "siting rules in pipelines/rules/ find their layer by these names",
    )
    band: int = Field(1, ge=1, description="raster band to read")
    allow_gaps: bool = Field(
        False,
        description="run even when the raster covers < 99 % of the study area (the uncovered "
        "area is then excluded); by default that is an error",
    )
    x: str | None = Field(None, description="points-csv: x/longitude column")
    y: str | None = Field(None, description="points-csv: y/latitude column")
    modelled: bool = False
    illustrative: bool = False
    description: str | None = None
    source: str | None = None
    licence: str | None = None

    @model_validator(mode="after")
    def _kind_fields(self) -> LayerSpec:
        if self.kind == "points-csv" and not (self.x and self.y and self.crs):
            raise ValueError("points-csv layers need `x`, `y` and `crs` (e.g. EPSG:4326)")
        if self.kind == "raster" and not self.units:
            raise ValueError("raster layers need `units` (e.g. m, m/s, kWh/m2/yr)")
        if self.categorical and self.kind != "raster":
            raise ValueError("`categorical: true` is for raster layers only")
        if self.categorical and self.resampling not in (None, *CATEGORICAL_RESAMPLING):
            raise ValueError(
                f"categorical raster resampled with '{self.resampling}' would invent class codes "
                "between neighbours; use `resampling: nearest` or `resampling: mode`"
            )
        return self

    @property
    def title(self) -> str:
        parts = [p for p in (self.name_zh, self.name_en) if p]
        return " / ".join(parts) or self.id


class CatalogSpec(BaseModel):
    """A layer catalogue file."""

    model_config = ConfigDict(extra="forbid")

    name: str
    title_zh: str | None = None
    title_en: str | None = None
    study_area: str = Field(description="id of the boundary layer whose union is the study area")
    admin_units: str | None = Field(None, description="id of the county (admin) layer")
    layers: list[LayerSpec]

    @field_validator("layers")
    @classmethod
    def _unique(cls, layers: list[LayerSpec]) -> list[LayerSpec]:
        seen: set[str] = set()
        for lay in layers:
            if lay.id in seen:
                raise ValueError(f"layer id '{lay.id}' appears twice")
            seen.add(lay.id)
        return layers

    @model_validator(mode="after")
    def _refs(self) -> CatalogSpec:
        ids = {lay.id for lay in self.layers}
        for ref in (self.study_area, self.admin_units):
            if ref and ref not in ids:
                raise ValueError(f"'{ref}' is not the id of a layer in this catalogue")
        return self


class Catalog:
    """A loaded catalogue: resolves paths safely and opens layers onto a :class:`Grid`."""

    def __init__(self, path: str | Path, extra_roots: tuple[Path, ...] = ()) -> None:
        self.path = Path(path).resolve()
        self.spec = load_yaml_model(self.path, CatalogSpec)
        self.base = self.path.parent
        self.extra_roots = tuple(Path(r).resolve() for r in extra_roots)
        self._vectors: dict[str, gpd.GeoDataFrame] = {}
        self._rasters: dict[tuple[str, str], xr.DataArray] = {}
        self.source_crs: dict[str, str] = {}
        self._files: dict[str, list[Path]] = {}
        self._sha: dict[Path, str] = {}
        #: share [0–1] of the study area where each opened raster has data
        self.coverage: dict[str, float] = {}

    # -- lookup --------------------------------------------------------------------------
    def __contains__(self, layer_id: str) -> bool:
        return any(lay.id == layer_id for lay in self.spec.layers)

    def layer(self, layer_id: str) -> LayerSpec:
        for lay in self.spec.layers:
            if lay.id == layer_id:
                return lay
        ids = ", ".join(lay.id for lay in self.spec.layers)
        raise RecipeError(f"{self.path}: no layer '{layer_id}' (layers: {ids})")

    def by_role(self, role: str) -> list[LayerSpec]:
        return [lay for lay in self.spec.layers if lay.role == role]

    def providing(self, rule_role: str) -> list[LayerSpec]:
        """Layers whose ``provides`` names ``rule_role`` (the layers a siting rule can use)."""
        return [lay for lay in self.spec.layers if rule_role in lay.provides]

    def file(self, spec: LayerSpec) -> Path:
        """The layer's file; a path that leaves the catalogue's folder is refused, and so is a
        VRT member that does (or a network path), or a device/pipe (:mod:`sitekit.io.sources`)."""
        p = (self.base / spec.path).resolve()
        roots = (self.base, *self.extra_roots)
        if not any(p.is_relative_to(r) for r in roots):
            raise LayerError(
                f"{self.path}: layer '{spec.id}' path '{spec.path}' leaves the catalogue folder "
                f"{self.base}; move the data below it or allow the folder with --data-root"
            )
        self.files(spec)
        return p

    def content_key(self) -> dict[str, list[str]]:
        """SHA-256 of every file each layer is read from ({layer id: [sha256, ...]}), for cache
        keys: new tiles behind a VRT or a changed ``.dbf``/``.prj`` sidecar give a new key."""
        return {
            s.id: [self.sha256(f) for f in self.files(s) if f.is_file()]
            for s in self.spec.layers
            if self.file(s).is_file()
        }

    def sha256(self, path: Path) -> str:
        """SHA-256 of a file this catalogue reads, hashed once per catalogue (cache key and
        provenance share it)."""
        from sitekit.io.provenance import file_sha256

        path = Path(path)
        if path not in self._sha:
            self._sha[path] = file_sha256(path)
        return self._sha[path]

    def files(self, spec: LayerSpec) -> list[Path]:
        """Every file the layer is read from: its own, VRT members, sidecars (for cache keys)."""
        from sitekit.io.sources import dependencies

        if spec.id not in self._files:
            p = (self.base / spec.path).resolve()
            roots = (self.base, *self.extra_roots)
            self._files[spec.id] = dependencies(p, roots, self.where(spec))
        return self._files[spec.id]

    def where(self, spec: LayerSpec) -> str:
        return f"{self.path.name}: layer '{spec.id}' ({spec.path})"

    def digest(self) -> str:
        """sha256 of the catalogue text (for provenance)."""
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    # -- grid ----------------------------------------------------------------------------
    @cached_property
    def study_area(self) -> gpd.GeoDataFrame:
        spec = self.layer(self.spec.study_area)
        return io.read_vector(self.file(spec), spec, self.where(spec))

    def grid(
        self, resolution_m: float = 250.0, crs: Any = DEFAULT_CRS, chunks: int = DEFAULT_CHUNK
    ) -> Grid:
        """The study-area grid: union of the study-area layer at ``resolution_m``."""
        return Grid.from_study_area(
            self.study_area, resolution_m, crs, chunks, name=self.spec.title_en or self.spec.name
        )

    # -- opening -------------------------------------------------------------------------
    def vector(self, layer_id: str, grid: Grid) -> gpd.GeoDataFrame:
        """Read a vector / points layer, reprojected to the grid CRS and clipped to the area."""
        if layer_id not in self._vectors:
            spec = self.layer(layer_id)
            if spec.kind == "raster":
                raise RecipeError(f"{self.where(spec)} is a raster, a vector layer is needed here")
            gdf = io.read_vector(self.file(spec), spec, self.where(spec))
            self.source_crs[layer_id] = gdf.crs.to_string()
            self._vectors[layer_id] = io.clip_to_grid(gdf, grid, self.where(spec))
        return self._vectors[layer_id]

    def raster(self, layer_id: str, grid: Grid, resampling: str | None = None) -> xr.DataArray:
        """Open a raster lazily onto the grid (float32, NaN nodata, ``units`` attribute).

        A ``categorical`` raster is resampled with ``nearest`` unless its entry says ``mode``;
        asking for bilinear/cubic/average on one raises :class:`LayerError`.
        """
        spec = self.layer(layer_id)
        if spec.categorical:
            if resampling is not None and resampling not in CATEGORICAL_RESAMPLING:
                raise LayerError(
                    f"{self.where(spec)} is categorical (class codes): resampling '{resampling}' "
                    "would average codes into classes that do not exist; use nearest or mode"
                )
            resampling = resampling or spec.resampling or "nearest"
        key = (layer_id, grid.token, resampling)
        if key not in self._rasters:
            if spec.kind != "raster":
                raise RecipeError(f"{self.where(spec)} is a {spec.kind} layer, a raster is needed")
            seen: dict[str, float] = {}
            self._rasters[key] = io.open_raster(
                self.file(spec), spec, grid, self.where(spec), resampling, report=seen
            )
            if "coverage" in seen:  # share of the study area with data (run.json)
                self.coverage[layer_id] = seen["coverage"]
        return self._rasters[key]

    def open_all(self, grid: Grid) -> dict[str, Any]:
        """Open every layer (lazily for rasters); returns {id: DataArray | GeoDataFrame}."""
        out: dict[str, Any] = {}
        for spec in self.spec.layers:
            out[spec.id] = (
                self.raster(spec.id, grid) if spec.kind == "raster" else self.vector(spec.id, grid)
            )
        return out
