"""Synthetic rasters with answers you can compute by hand, for tests and for users' own checks.

Every function returns a georeferenced float32 ``xarray.DataArray`` on a small metric :class:`Grid`
(default: the sitekit Albers CRS, origin near 101 °E 30 °N) so the same code paths as real data run.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from sitekit.grid import DEFAULT_CRS, Grid


def small_grid(
    shape: tuple[int, int] = (64, 64),
    resolution_m: float = 100.0,
    origin: tuple[float, float] = (0.0, 0.0),
    crs: Any = DEFAULT_CRS,
    chunks: int = 32,
) -> Grid:
    """A grid of ``shape`` pixels whose lower-left corner is ``origin`` [m] in ``crs``."""
    ny, nx = shape
    x0, y0 = origin
    return Grid.from_bounds(
        (x0, y0, x0 + nx * resolution_m, y0 + ny * resolution_m), resolution_m, crs, chunks
    )


def _xy(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(grid.x, grid.y)


def _wrap(grid: Grid, z: np.ndarray, name: str, units: str = "m") -> xr.DataArray:
    return grid.wrap(da.from_array(z.astype(np.float32), chunks=grid.dask_chunks), name, units)


def plane(
    grid: Grid, slope_deg: float, aspect_deg: float, z0_m: float = 1000.0
) -> xr.DataArray:
    """A tilted plane of ``slope_deg`` [°] whose downhill direction is ``aspect_deg`` [° from N]."""
    xx, yy = _xy(grid)
    g = np.tan(np.radians(slope_deg))
    a = np.radians(aspect_deg)
    # elevation decreases along the aspect direction (east component sin a, north component cos a)
    z = z0_m - g * ((xx - xx.mean()) * np.sin(a) + (yy - yy.mean()) * np.cos(a))
    return _wrap(grid, z, "elevation")


def cone(grid: Grid, height_m: float = 1000.0, radius_m: float = 2000.0, base_m: float = 500.0):
    """A cone of ``height_m`` over ``radius_m`` on a flat base: slope = atan(height/radius)."""
    xx, yy = _xy(grid)
    r = np.hypot(xx - xx.mean(), yy - yy.mean())
    z = base_m + np.clip(height_m * (1 - r / radius_m), 0, None)
    return _wrap(grid, z, "elevation")


def basin_above_valley(
    grid: Grid,
    plateau_m: float = 1500.0,
    basin_depth_m: float = 20.0,
    basin_radius_px: int = 4,
    valley_m: float = 1000.0,
) -> xr.DataArray:
    """A flat plateau (left half) holding a square basin ``basin_depth_m`` deep, above a flat valley.

    The valley floor (right half) lies ``plateau_m - valley_m`` below the plateau.
    """
    ny, nx = grid.shape
    z = np.full((ny, nx), valley_m, np.float64)
    z[:, : nx // 2] = plateau_m
    cy, cx = ny // 2, nx // 4
    r = basin_radius_px
    z[cy - r : cy + r, cx - r : cx + r] = plateau_m - basin_depth_m
    return _wrap(grid, z, "elevation")
