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
