"""Existing (bluefield) reservoirs for pumped storage: real dams flooded to their pool level.

An existing reservoir is a real dam with a published normal pool level (正常蓄水位) L [m]. Its
water surface is the set of pixels that drain through the dam site on the pit-filled DEM and lie
below L, within ``reach_km`` of the dam — "the DEM flooded to the normal pool level". Its water
level is L, never the DEM at a point; a reservoir without a published level is not used. Where
the DEM at the dam site already lies above L (a coarse or modelled DEM disagrees with the real
valley) the reservoir is a disc of ``radius_km`` around the dam, still at level L, and says so
(``method``). A polygon (a real lake outline) is used as given.

References
----------
Stocks, M. et al. (2021). A global atlas of pumped hydro systems. Joule 5(1), 270–284 (bluefield
pairs with existing reservoirs); ANU RE100 ``PHES_Searching`` ``src/pairing.cpp`` (existing
reservoirs: their own water level, distance from their shape's nearest point).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from sitekit.grid import Grid, rasterize


@dataclass(frozen=True)
class Flooded:
    """An existing reservoir on the grid: global flat pixel indices, pool level, capacity."""

    pixels: np.ndarray
    level_m: float
    volume_m3: float
    name: str | None
    method: str


def upstream_below(
    zf: np.ndarray, recv: np.ndarray, dam: int, level_m: float, box: tuple[int, int, int, int]
) -> np.ndarray:
    """Flat indices of the pixels in ``box`` (r0, r1, c0, c1) that drain through ``dam`` and
    whose filled elevation is below ``level_m`` (the dam pixel included)."""
    ny, nx = zf.shape
    r0, r1, c0, c1 = box
    rr, cc = np.mgrid[r0:r1, c0:c1]
    idx = (rr * nx + cc).ravel()
    zfl = zf.ravel()
    rv = recv.ravel()
    idx = idx[zfl[idx] < level_m]
    hit = idx == dam
    cur = idx.copy()
    live = ~hit
    for _ in range((r1 - r0) + (c1 - c0)):  # a path inside the box is shorter than this
        if not live.any():
            break
        nxt = rv[cur[live]]
        r, c = np.divmod(np.maximum(nxt, 0), nx)
        inside = (nxt >= 0) & (r >= r0) & (r < r1) & (c >= c0) & (c < c1)
        w = np.flatnonzero(live)
        cur[w] = np.where(inside, nxt, -1)
        reached = cur[w] == dam
        hit[w[reached]] = True
        live[w[reached | ~inside]] = False
    return np.sort(idx[hit])


def plan(
    existing: gpd.GeoDataFrame | None,
    grid: Grid,
    radius_km: float = 0.5,
    reach_km: float = 60.0,
    snap_m: float = 1000.0,
) -> list[dict]:
    """What :func:`flood` does per reservoir, decided without the DEM (cheap, on the client).

    Polygons are burnt here (a finished :class:`Flooded` under ``"done"``); a dam point gets
    the window of the grid it can touch (``box`` (r0, r1, c0, c1): the snap distance plus
    ``reach_km`` around it), so its flood needs only that window of the DEM and receivers.
    """
    if existing is None or len(existing) == 0:
        return []
    gdf = grid.to_grid_crs(existing, "existing reservoirs")
    if "water_level_m" not in gdf.columns:
        return []
    ny, nx = grid.shape
    inv = ~grid.transform
    res = grid.resolution_m
    name_col = next((c for c in ("name", "name_en", "name_zh") if c in gdf.columns), None)
    snap_px = max(0, round(snap_m / res))
    reach = math.ceil(reach_km * 1000.0 / res)
    out: list[dict] = []
    for _, row in gdf.iterrows():
        geom, level = row.geometry, float(row["water_level_m"])
        if geom is None or geom.is_empty or not np.isfinite(level):
            continue
        vol = float(row["volume_gl"]) * 1e6 if "volume_gl" in gdf.columns else np.inf
        vol = vol if np.isfinite(vol) else np.inf
        name = str(row[name_col]) if name_col and pd.notna(row[name_col]) else None
        if geom.geom_type in ("Point", "MultiPoint"):
            c, r = inv * (geom.centroid.x, geom.centroid.y)
            r, c = int(math.floor(r)), int(math.floor(c))
            if not (0 <= r < ny and 0 <= c < nx):
                continue
            m = snap_px + reach + 1
            box = (max(0, r - m), min(ny, r + m + 1), max(0, c - m), min(nx, c + m + 1))
            out.append(
                {"rc": (r, c), "box": box, "level": level, "vol": vol, "name": name,
                 "snap_px": snap_px, "reach": reach, "radius_km": radius_km}
            )  # fmt: skip
        else:
            c0, r1f = inv * (geom.bounds[0], geom.bounds[1])
            c1f, r0 = inv * (geom.bounds[2], geom.bounds[3])
            r0, c0 = math.floor(r0), math.floor(c0)
            shape = (max(1, math.ceil(r1f) - r0), max(1, math.ceil(c1f) - c0))
            burn = rasterize(
                [geom], out_shape=shape, transform=grid.window_transform(r0, c0), all_touched=True
            )
            rr, cc = np.nonzero(burn)
            rr, cc = rr + r0, cc + c0
            m = (rr >= 0) & (rr < ny) & (cc >= 0) & (cc < nx)
            pix = np.sort(rr[m].astype(np.int64) * nx + cc[m])
            if pix.size:
                out.append({"done": Flooded(pix, level, vol, name, "lake polygon")})
    return out


def flood_point(
    item: dict, zf: np.ndarray, recv: np.ndarray, gshape: tuple[int, int], res: float
) -> Flooded | None:
    """The flood of one dam point of :func:`plan` from its window (``item["box"]``) of the
    pit-filled DEM [m] and of the D8 receivers (flat indices within the window, −1 none)."""
    ny, nx = gshape
    a0w, _, b0w, _ = item["box"]
    wy, wx = zf.shape
    r, c = item["rc"]
    lr, lc = r - a0w, c - b0w
    level, snap_px, reach = item["level"], item["snap_px"], item["reach"]
    a0, a1 = max(0, lr - snap_px), min(wy, lr + snap_px + 1)
    b0, b1 = max(0, lc - snap_px), min(wx, lc + snap_px + 1)
    win = zf[a0:a1, b0:b1]
    if not np.isfinite(win).any():
        return None
    k = int(np.nanargmin(win))
    dr, dc = divmod(k, b1 - b0)
    dam = (a0 + dr) * wx + b0 + dc
    pix = np.zeros(0, np.int64)
    method = ""
    if zf.ravel()[dam] < level:
        dr0, dc0 = divmod(dam, wx)
        box = (max(0, dr0 - reach), min(wy, dr0 + reach + 1),
               max(0, dc0 - reach), min(wx, dc0 + reach + 1))  # fmt: skip
        loc = upstream_below(zf, recv, dam, level, box)
        pr, pc = np.divmod(loc, wx)
        keep = (pr - dr0) ** 2 + (pc - dc0) ** 2 <= reach**2
        pix = (pr[keep] + a0w) * nx + pc[keep] + b0w
        method = "DEM flooded to the normal pool level"
    if pix.size <= 1:
        rp = max(item["radius_km"] * 1000.0 / res, 0.5)
        rr, cc = np.mgrid[math.floor(r - rp) : math.ceil(r + rp) + 1,
                          math.floor(c - rp) : math.ceil(c + rp) + 1]  # fmt: skip
        m = ((rr - r) ** 2 + (cc - c) ** 2 <= rp**2) & (rr >= 0) & (rr < ny)
        m &= (cc >= 0) & (cc < nx)
        pix = np.sort(rr[m].astype(np.int64) * nx + cc[m])
        method = "disc at the dam (DEM at the dam above the pool level)"
    if not pix.size:
        return None
    return Flooded(pix, item["level"], item["vol"], item["name"], method)


def local_receivers(recv: np.ndarray, box: tuple[int, int, int, int], gx: int) -> np.ndarray:
    """Global flat receivers (grid width ``gx``) of a window ``box`` as indices within it
    (−1 for none or outside the window)."""
    r0, r1, c0, c1 = box
    rv = np.asarray(recv)[r0:r1, c0:c1]
    rr, cc = np.divmod(rv, gx)
    rr, cc = rr - r0, cc - c0
    ok = (rv >= 0) & (rr >= 0) & (rr < r1 - r0) & (cc >= 0) & (cc < c1 - c0)
    return np.where(ok, rr * (c1 - c0) + cc, -1)


def flood(
    existing: gpd.GeoDataFrame | None,
    zf: np.ndarray,
    recv: np.ndarray,
    grid: Grid,
    radius_km: float = 0.5,
    reach_km: float = 60.0,
    snap_m: float = 1000.0,
) -> list[Flooded]:
    """Existing reservoirs as pixel sets at their normal pool level.

    Parameters
    ----------
    existing : GeoDataFrame or None
        ``water_level_m`` (normal pool level [m]; NaN rows are skipped), optional ``name``,
        ``volume_gl`` (capacity [GL]; NaN = ample); point = dam site, polygon = lake outline.
    zf, recv : ndarray
        Pit-filled DEM [m] and D8 receivers (flat indices, −1 none) of the whole grid.
    grid : Grid
    radius_km : float
        Disc radius where the DEM at the dam lies above the pool level [km].
    reach_km : float
        Largest distance of a flooded pixel from the dam [km].
    snap_m : float
        The dam snaps to the lowest filled pixel within this distance [m] (the valley floor:
        published dam coordinates are good to a few hundred metres).

    Returns
    -------
    list of :class:`Flooded` (reservoirs cut by the grid edge are kept with their inside part).
    Each dam point needs only its window (:func:`plan`), which is how the chunked search floods
    them (:func:`flood_point` per window).
    """
    out = []
    recv = np.asarray(recv).reshape(grid.shape)
    for item in plan(existing, grid, radius_km, reach_km, snap_m):
        if "done" in item:
            out.append(item["done"])
            continue
        r0, r1, c0, c1 = b = item["box"]
        rl = local_receivers(recv, b, grid.shape[1])
        f = flood_point(item, np.asarray(zf)[r0:r1, c0:c1], rl, grid.shape, grid.resolution_m)
        if f is not None:
            out.append(f)
    return out


#: Columns of the embedded reservoir table (``layers/sichuan-west/hydro/reservoirs.csv``).
TABLE_COLUMNS = [
    "name", "name_zh", "river", "lat", "lon", "water_level_m", "dead_level_m", "volume_gl",
    "capacity_mw", "status", "level_source", "location_source",
]  # fmt: skip


def read_table(path) -> gpd.GeoDataFrame:
    """The reservoir table (CSV, one dam per row, lat/lon in EPSG:4326) as points."""
    df = pd.read_csv(path)
    missing = [c for c in ("name", "lat", "lon", "water_level_m") if c not in df.columns]
    if missing:
        from sitekit.errors import InputError

        raise InputError(f"{path}: reservoir table lacks columns {missing}")
    return gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(df["lon"], df["lat"]), crs=4326)
