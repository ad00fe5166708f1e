"""Provenance: library versions, input hashes, timings."""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "sitekit",
    "numpy",
    "scipy",
    "pandas",
    "xarray",
    "dask",
    "distributed",
    "rasterio",
    "geopandas",
    "shapely",
    "pyproj",
    "pyogrio",
    "rioxarray",
    "odc-geo",
    "pvlib",
    "windpowerlib",
    "scikit-image",
    "folium",
    "pydantic",
)


def versions() -> dict[str, str]:
    """Versions of Python, GDAL, PROJ and the libraries sitekit uses."""
    import pyproj
    import rasterio

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["GDAL"] = rasterio.__gdal_version__
    out["PROJ"] = pyproj.proj_version_str
    return out


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
