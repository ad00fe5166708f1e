"""Shared fixtures: a tiny synthetic catalogue with known geometry (written per test session)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

REPO = Path(__file__).resolve().parents[1]
EMBEDDED = REPO / "layers" / "sichuan-west" / "catalog.yaml"

CATALOG_YAML = """\
name: tiny
title_zh: 测试区
title_en: Tiny test area
study_area: area
layers:
  - id: area
    kind: vector
    path: area.gpkg
    role: boundary
    name_zh: 测试区
    name_en: Test area
  - id: dem
    kind: raster
    path: dem.tif
    role: terrain
    units: m
  - id: towns
    kind: points-csv
    path: towns.csv
    role: settlement
    x: lon
    y: lat
    crs: EPSG:4326
"""


def write_tiny_catalog(folder: Path) -> Path:
    """A 0.5°×0.5° study area at 101–101.5 °E, 30–30.5 °N with a tilted-plane DEM and 2 towns."""
    folder.mkdir(parents=True, exist_ok=True)
    area = gpd.GeoDataFrame(
        {"name_zh": ["测试区"], "name_en": ["Test area"]},
        geometry=[shapely.box(101.0, 30.0, 101.5, 30.5)],
        crs="EPSG:4326",
    )
    area.to_file(folder / "area.gpkg", layer="area", engine="pyogrio")
    res = 0.01
    ny = nx = 80
    lon = 100.9 + res * (np.arange(nx) + 0.5)
    z = 2000.0 + 1000.0 * (lon - 100.9)[None, :].repeat(ny, 0)
    with rasterio.open(
        folder / "dem.tif",
        "w",
        driver="GTiff",
        width=nx,
        height=ny,
        count=1,
        dtype="float32",
        crs="EPSG:4326",
        transform=from_origin(100.9, 30.6, res, res),
        nodata=-9999.0,
    ) as dst:
        dst.write(z.astype("float32"), 1)
    (folder / "towns.csv").write_text("name,lon,lat\nA,101.1,30.1\nB,101.4,30.4\n")
    (folder / "catalog.yaml").write_text(CATALOG_YAML, encoding="utf-8")
    return folder / "catalog.yaml"


@pytest.fixture
def tiny_catalog(tmp_path: Path) -> Path:
    return write_tiny_catalog(tmp_path / "tiny")


#: a PV recipe for the tiny catalogue with a GHI layer (:func:`add_ghi_layer`)
TINY_PV = """\
technology: pv
name_zh: 测试光伏
name_en: Tiny PV
solar: {model: ghi_layer, ghi_layer: ghi}
criteria:
  - {id: yield, layer: pv_yield, membership: {kind: linear, low: 1000, high: 1800}, weight: 0.6}
  - {id: slope, layer: slope, membership: {kind: linear, low: 20, high: 0}, weight: 0.4}
constraints:
  - {id: towns, kind: setback, layer: towns, setback_m: 1000}
  - {id: steep, kind: threshold, layer: slope, op: ">", value: 25}
grid: {layer: towns, name_field: name}
economics:
  capex_cny_per_kw: 3600
  fixed_om_cny_per_kw_yr: 50
  wacc: 0.06
  lifetime_yr: 25
  connection_cny_per_km: {110: 800000, 220: 1500000}
  voltage_by_capacity_mw: {110: 100, 220: 100000}
sites: {score_threshold: 0.1, min_area_km2: 1, max_area_km2: 100, power_density_mw_per_km2: 40}
"""


def add_ghi_layer(catalog: Path) -> Path:
    """Add a GHI raster (1,500–1,700 kWh/m²/yr rising eastward) as layer ``ghi`` to a tiny
    catalogue (:func:`write_tiny_catalog`), for :data:`TINY_PV`; returns the catalogue."""
    ghi = (1500.0 + 200.0 * np.linspace(0, 1, 80))[None, :].repeat(80, 0).astype(np.float32)
    with rasterio.open(catalog.parent / "ghi.tif", "w", driver="GTiff", width=80, height=80,
                       count=1, dtype="float32", crs="EPSG:4326", nodata=-9999.0,
                       transform=from_origin(100.9, 30.6, 0.01, 0.01)) as dst:  # fmt: skip
        dst.write(ghi, 1)
    with open(catalog, "a", encoding="utf-8") as f:
        f.write("  - {id: ghi, kind: raster, path: ghi.tif, role: solar, units: kWh/m2/yr}\n")
    return catalog
