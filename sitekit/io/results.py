"""Read a finished run folder back (for ``sitekit map``, ``sites``, ``export``, ``route``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import pyogrio
import pyproj
import rasterio
import rioxarray
import xarray as xr

from sitekit.errors import InputError
from sitekit.grid import Grid


@dataclass
class RunData:
    """A run's grid, rasters (lazy), vectors and provenance."""

    folder: Path
    grid: Grid
    rasters: dict[str, xr.DataArray]
    vectors: dict[str, gpd.GeoDataFrame]
    provenance: dict[str, Any] = field(default_factory=dict)


def read_provenance(folder: str | Path) -> dict[str, Any]:
    """A run folder's provenance (``run.json``), or ``{}`` when it has none (a folder written by
    an older sitekit, or a run still being staged before ``run.json`` is written)."""
    path = Path(folder) / "run.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def load_run(folder: str | Path, chunks: int = 1024) -> RunData:
    """Open ``folder`` (written by ``sitekit run``/``demo``); rasters stay lazy."""
    folder = Path(folder)
    gpkg = folder / "sitekit.gpkg"
    rdir = folder / "rasters"
    if not gpkg.exists() or not (rdir / "elevation.tif").exists():
        raise InputError(
            f"{folder}: not a sitekit run folder (needs sitekit.gpkg and rasters/elevation.tif); "
            "run `sitekit demo` or `sitekit run` first"
        )
    with rasterio.open(rdir / "elevation.tif") as src:
        crs = pyproj.CRS.from_wkt(src.crs.to_wkt())
        grid = Grid(crs, src.transform, (src.height, src.width), chunks)
    rasters: dict[str, xr.DataArray] = {}
    for tif in sorted(rdir.glob("*.tif")):
        arr = rioxarray.open_rasterio(tif, chunks=chunks, masked=False).squeeze("band", drop=True)
        with rasterio.open(tif) as src:
            tags = src.tags()
        nod = arr.rio.nodata
        if nod is not None and arr.dtype.kind == "f":
            arr = arr.where(arr != nod)
        arr.attrs = {
            k: v for k, v in tags.items() if k in ("units", "long_name", "modelled", "method")
        }
        extra = {k: v for k, v in arr.attrs.items() if k not in ("units", "long_name")}
        rasters[tif.stem] = grid.wrap(
            arr.data,
            tif.stem,
            arr.attrs.get("units", "1"),
            arr.attrs.get("long_name", tif.stem),
            **extra,
        )
    vectors = {
        name: gpd.read_file(gpkg, layer=name, engine="pyogrio")
        for name, _ in pyogrio.list_layers(gpkg)
    }
    return RunData(folder, grid, rasters, vectors, read_provenance(folder))
