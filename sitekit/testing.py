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


def plane(grid: Grid, slope_deg: float, aspect_deg: float, z0_m: float = 1000.0) -> xr.DataArray:
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


def ridge_and_valley(
    grid: Grid, base_m: float = 1000.0, amplitude_m: float = 200.0, wavelength_m: float = 4000.0
) -> xr.DataArray:
    """Parallel north–south ridges: ``z = base + amplitude·cos(2π(x − x_mid)/wavelength)``.

    ``x_mid`` is the centre of column ``ncols // 2``: a crest runs down that column, valley floors
    lie half a wavelength to either side.
    """
    xx, _ = _xy(grid)
    x_mid = grid.x[grid.shape[1] // 2]
    z = base_m + amplitude_m * np.cos(2 * np.pi * (xx - x_mid) / wavelength_m)
    return _wrap(grid, z, "elevation")


def synthetic_results(
    shape: tuple[int, int] = (120, 160), resolution_m: float = 250.0, chunks: int = 64
) -> dict:
    """A complete fake run (rasters, vectors, summary, provenance) for map/report/export tests.

    Returns a dict with ``grid``, ``rasters`` (lazy), ``vectors`` (grid CRS), ``summary``,
    ``provenance`` and ``recipes``. One PV site is named ``<img src=x onerror=alert(1)>`` and one
    county ``<script>alert(2)</script>`` so escaping can be checked. Nothing here is physical.
    """
    import geopandas as gpd
    import pandas as pd
    import shapely

    ny, nx = shape
    grid = small_grid(
        shape, resolution_m, (-nx * resolution_m / 2, -ny * resolution_m / 2), chunks=chunks
    )
    xx, yy = _xy(grid)
    w, h = nx * resolution_m, ny * resolution_m
    u, v = (xx - xx.min()) / (xx.max() - xx.min()), (yy - yy.min()) / (yy.max() - yy.min())
    elev = cone(grid, height_m=1500.0, radius_m=min(w, h) / 2, base_m=2000.0)
    excl = np.zeros(shape, np.uint32)
    excl[:, : nx // 8] |= 1 << 0
    excl[: ny // 6, :] |= 1 << 2

    def lazy(z: np.ndarray, name: str, units: str, **attrs: Any) -> xr.DataArray:
        return grid.wrap(da.from_array(z, chunks=grid.dask_chunks), name, units, **attrs)

    rasters = {
        "elevation": elev,
        "pv_yield": lazy(
            (1200 + 400 * u).astype(np.float32),
            "pv_yield",
            "kWh/kWp/yr",
            modelled="yes",
            method="synthetic",
        ),
        "wind_cf": lazy((0.5 * v).astype(np.float32), "wind_cf", "1"),
        "pv_score": lazy(u.astype(np.float32), "pv_score", "1"),
        "wind_score": lazy(v.astype(np.float32), "wind_score", "1"),
        "exclusion_reasons": lazy(excl, "exclusion_reasons", "bits"),
        "grid_distance": lazy((np.hypot(xx, yy) / 1000).astype(np.float32), "grid_distance", "km"),
    }
    x0, y0, x1, y1 = grid.bounds
    xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
    crs = grid.crs
    pref = gpd.GeoDataFrame(
        {"name_zh": ["甲州", "乙州"], "name_en": ["Jia", "Yi"]},
        geometry=[shapely.box(x0, y0, xm, y1), shapely.box(xm, y0, x1, y1)],
        crs=crs,
    )
    counties = gpd.GeoDataFrame(
        {
            "name_zh": ["一县", "二县", "三县", "<script>alert(2)</script>"],
            "name_en": ["One", "Two", "Three", "Four"],
        },
        geometry=[
            shapely.box(x0, y0, xm, ym),
            shapely.box(x0, ym, xm, y1),
            shapely.box(xm, y0, x1, ym),
            shapely.box(xm, ym, x1, y1),
        ],
        crs=crs,
    )
    s = 6 * resolution_m

    def square(cx: float, cy: float) -> Any:
        return shapely.box(cx - s, cy - s, cx + s, cy + s)

    def sites(tech: str, centres: list, names: list) -> gpd.GeoDataFrame:
        n = len(centres)
        area = (2 * s / 1000) ** 2
        return gpd.GeoDataFrame(
            {
                "site_id": names,
                "prefecture": ["Jia"] * n,
                "county": ["One"] * n,
                "area_km2": [area] * n,
                "capacity_mw": [area * (40 if tech == "pv" else 8)] * n,
                "energy_gwh": [area * (60 if tech == "pv" else 20)] * n,
                "capacity_factor": [0.17 if tech == "pv" else 0.3] * n,
                "mean_score": np.linspace(0.9, 0.6, n),
                "lcoe_cny_per_kwh": np.linspace(0.25, 0.4, n),
                "grid_distance_km": np.linspace(3, 12, n),
                "grid_point_name": ["Station A"] * n,
                "rank": np.arange(1, n + 1),
            },
            geometry=[square(cx, cy) for cx, cy in centres],
            crs=crs,
        )

    pv = sites(
        "pv",
        [(xm - w / 8, ym), (xm - w / 4, ym - h / 5), (xm + w / 4, ym + h / 5)],
        ["<img src=x onerror=alert(1)>", "PV-0002", "PV-0003"],
    )
    wind = sites("wind", [(xm + w / 8, ym - h / 4), (xm + w / 3, ym - h / 4)], ["W-0001", "W-0002"])
    up, low = (xm - w / 3, ym + h / 3), (xm - w / 5, ym + h / 3)
    reservoirs = gpd.GeoDataFrame(
        {"pair_id": ["P1", "P1"], "role": ["upper", "lower"], "volume_gl": [5.0, 6.0]},
        geometry=[
            shapely.Point(up).buffer(2 * resolution_m),
            shapely.Point(low).buffer(2 * resolution_m),
        ],
        crs=crs,
    )
    pairs = gpd.GeoDataFrame(
        {
            "pair_id": ["P1"],
            "head_m": [600.0],
            "separation_km": [3.3],
            "volume_gl": [5.0],
            "storage_gwh": [6.5],  # per cycle (pumped storage has no annual energy)
            "power_mw": [800.0],
            "storage_hours": [8.1],
            "cost_class": ["A"],
            "uses_existing_reservoir": [False],
            "prefecture": ["Jia"],
        },
        geometry=[shapely.LineString([up, low])],
        crs=crs,
    )
    points = gpd.GeoDataFrame(
        {"name": ["Station A", "Station B"], "voltage_kv": [500, 220], "capacity_mw": [3300, 600]},
        geometry=[shapely.Point(xm, ym - h / 3), shapely.Point(xm + w / 3, ym)],
        crs=crs,
    )
    lines = gpd.GeoDataFrame(
        {"name": ["A–B"], "voltage_kv": [500]},
        geometry=[shapely.LineString([(xm, ym - h / 3), (xm + w / 3, ym)])],
        crs=crs,
    )
    vectors = {
        "prefectures": pref,
        "counties": counties,
        "pv_sites": pv,
        "wind_sites": wind,
        "ps_reservoirs": reservoirs,
        "ps_pairs": pairs,
        "grid_points": points,
        "grid_lines": lines,
    }
    summary = pd.DataFrame(
        {
            "prefecture": ["Jia", "Jia", "Yi", "Yi"],
            "technology": ["pv", "wind", "pv", "wind"],
            "eligible_km2": [120.0, 80.0, 60.0, 40.0],
            "potential_mw": [4800.0, 640.0, 2400.0, 320.0],
            "energy_gwh": [7200.0, 1600.0, 3600.0, 800.0],
            "n_sites": [3, 2, 1, 1],
        }
    )
    provenance = {
        "title": "synthetic run",
        "demo_terrain": True,
        "modelled": {"pv_yield": True, "wind_cf": "modelled (reference wind speed)"},
        "exclusion_legend": [
            (0, "ELEV", "High elevation", "高海拔"),
            (2, "SETTLE", "Settlement setback", "居民点退让"),
        ],
        "dem": "synthetic cone",
    }
    recipes = {"pv": "name: pv\nweights: {yield: 0.6, slope: 0.4}\n# <b>not bold</b>\n"}
    return {
        "grid": grid,
        "rasters": rasters,
        "vectors": vectors,
        "summary": summary,
        "provenance": provenance,
        "recipes": recipes,
    }


def fractal_dem(
    grid: Grid, relief_m: float = 800.0, beta: float = 2.2, seed: int = 0, base_m: float = 2000.0
) -> xr.DataArray:
    """A seeded fractal (spectral-synthesis) DEM that looks like real mountains.

    Gaussian noise filtered to a power spectrum ``P(k) ∝ k^-beta`` (Voss 1988, in *The Science of
    Fractal Images*, ch. 1), rescaled to span ``relief_m`` above ``base_m``. Deterministic for a
    given ``seed``; slopes, aspects and curvatures of every kind occur, as on real terrain.
    """
    ny, nx = grid.shape
    rng = np.random.default_rng(seed)
    noise = np.fft.fft2(rng.standard_normal((ny, nx)))
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(nx), np.fft.fftfreq(ny)))
    k[0, 0] = np.inf
    z = np.fft.ifft2(noise * k ** (-beta / 2.0)).real
    z = (z - z.min()) / (z.max() - z.min())
    return _wrap(grid, base_m + relief_m * z, "elevation")


def notched_plateau(
    grid: Grid,
    plateau_m: float = 1500.0,
    notch_depth_m: float = 20.0,
    notch_length_px: int = 12,
    valley_m: float = 1000.0,
    tilt_m_per_px: float = 5.0,
) -> xr.DataArray:
    """A plateau (left half) cut by a one-pixel-wide notch that opens onto a cliff above a valley.

    The plateau rises ``tilt_m_per_px`` per pixel westward from ``plateau_m`` at the cliff
    edge; the notch runs along the middle row over the last ``notch_length_px`` plateau columns
    with a flat floor ``notch_depth_m`` below ``plateau_m``; the valley (right half) is flat at
    ``valley_m``. A dam of height h ≤ ``notch_depth_m`` across the notch mouth impounds exactly
    ``notch_length_px · pixel area · h`` of water at level ``plateau_m − notch_depth_m + h``.
    """
    ny, nx = grid.shape
    cols = np.arange(nx)
    z = np.where(cols < nx // 2, plateau_m + tilt_m_per_px * (nx // 2 - 1 - cols), valley_m)
    z = np.repeat(z[None, :].astype(np.float64), ny, axis=0)
    z[ny // 2, nx // 2 - notch_length_px : nx // 2] = plateau_m - notch_depth_m
    return _wrap(grid, z, "elevation")


def mountain_terrain(
    grid: Grid, relief_m: float = 1500.0, wavelength_m: float = 4000.0, seed: int = 0
) -> xr.DataArray:
    """Smooth deterministic mountains: a sum of random-phase sine ridges over a tilted base.

    No pits and no flats (float64 before the float32 cast), so flow routing is unambiguous;
    elevations span roughly ``relief_m`` above 1000 m.
    """
    rng = np.random.default_rng(seed)
    xx, yy = _xy(grid)
    z = np.zeros(grid.shape)
    for _ in range(6):
        k = 2 * np.pi / (wavelength_m * rng.uniform(0.6, 1.6))
        a = rng.uniform(0, np.pi)
        z += np.sin(k * (xx * np.cos(a) + yy * np.sin(a)) + rng.uniform(0, 2 * np.pi))
    z = (z - z.min()) / (z.max() - z.min())
    tilt = (xx - xx.min()) / max(1.0, float(xx.max() - xx.min()))
    return _wrap(grid, 1000.0 + relief_m * (0.7 * z + 0.3 * tilt), "elevation")
