"""``sitekit layers check``: open every layer of a catalogue and report what it holds."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import shapely

from sitekit.errors import SitekitError
from sitekit.grid import Grid
from sitekit.io.catalog import Catalog
from sitekit.io.layers import PLAUSIBLE


@dataclass
class LayerReport:
    """One row of the check table."""

    id: str
    title: str
    kind: str
    crs: str = ""
    detail: str = ""  # resolution or feature count
    coverage_pct: float = float("nan")
    value_range: str = ""
    plausible: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_catalog(catalog: Catalog, resolution_m: float = 2000.0) -> tuple[Grid, list[LayerReport]]:
    """Open every layer on a coarse check grid; never raises for a single bad layer."""
    grid = catalog.grid(resolution_m, chunks=1024)
    inside = grid.study_fraction().data.compute() > 0.5
    rows: list[LayerReport] = []
    for spec in catalog.spec.layers:
        row = LayerReport(spec.id, spec.title, spec.kind)
        try:
            if spec.kind == "raster":
                from sitekit.io.layers import raster_info

                info = raster_info(catalog.file(spec), spec, catalog.where(spec))
                row.crs = info["pyproj_crs"].to_string()
                rx, ry = info["res"]
                unit = "°" if info["pyproj_crs"].is_geographic else " m"
                row.detail = f"{rx:.6g}{unit} × {ry:.6g}{unit}"
                arr = catalog.raster(spec.id, grid, resampling="average").data.compute()
                valid = np.isfinite(arr) & inside
                row.coverage_pct = 100.0 * valid.sum() / max(1, inside.sum())
                if valid.any():
                    row.value_range = f"{arr[valid].min():.4g}…{arr[valid].max():.4g} {spec.units}"
                rng = PLAUSIBLE.get(spec.units or "")
                row.plausible = f"{rng[0]:g}…{rng[1]:g}" if rng else "—"
                if row.coverage_pct < 1:
                    row.problems.append(
                        f"{catalog.where(spec)}: covers <1% of the study area (nodata elsewhere)"
                    )
            else:
                gdf = catalog.vector(spec.id, grid)
                row.crs = catalog.source_crs.get(spec.id, "")
                row.detail = f"{len(gdf)} {gdf.geom_type.mode().iat[0].lower()}s"
                area = grid.study_area
                ext = shapely.box(*gdf.total_bounds)
                if gdf.geom_type.isin(["Polygon", "MultiPolygon"]).all():
                    ext = shapely.make_valid(gdf.union_all())
                row.coverage_pct = 100.0 * area.intersection(ext).area / area.area
                if math.isnan(row.coverage_pct):
                    row.coverage_pct = 0.0
        except SitekitError as exc:
            row.problems.append(str(exc))
        rows.append(row)
    return grid, rows
