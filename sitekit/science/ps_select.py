"""Pumped-storage pairs: greedy non-overlapping selection, outputs and grid connection.

Pairs are taken by cost relative to the class-A limit (then energy); a new reservoir is flooded to
the exact dam height that holds its pair's volume and used once; an existing reservoir may serve
several pairs while their volumes fit its capacity.

References
----------
Stocks, M. et al. (2021). A global atlas of pumped hydro systems. Joule 5(1), 270–284.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from sitekit.grid import Grid, shapes

if TYPE_CHECKING:
    from sitekit.science.pumped_storage import PumpedStorageParams

PAIR_COLUMNS = [
    "pair_id", "storage_gwh", "power_mw", "storage_hours", "head_m", "separation_km", "slope",
    "volume_gl", "usable_volume_gl", "dam_height_m", "mean_depth_m", "lower_dam_height_m",
    "lower_mean_depth_m", "water_rock_ratio", "cost_class", "cost_usd_per_kw",
    "cost_usd_per_kwh", "cost_cny_per_kw", "power_cost_usd_per_kw", "storage_cost_usd_per_kwh",
    "grid_distance_km", "uses_existing_reservoir", "upper_id", "lower_id", "upper_name",
    "lower_name",
]  # fmt: skip
RESERVOIR_COLUMNS = [
    "reservoir_id", "role", "water_level_m", "dam_height_m", "volume_gl", "area_km2",
    "mean_depth_m", "dam_volume_m3", "water_rock_ratio", "existing", "name", "outline_method",
    "pair_id",
]  # fmt: skip


# -- global selection and vectorisation ------------------------------------------------------
def _polygons(pix_list: list[np.ndarray], grid: Grid) -> list:
    """Vectorise disjoint pixel sets (one GDAL polygonize call over their bounding box)."""
    if not pix_list:
        return []
    allpix = np.concatenate(pix_list)
    rr, cc = np.divmod(allpix, grid.shape[1])
    r0, c0 = int(rr.min()), int(cc.min())
    lab = np.zeros((int(rr.max()) - r0 + 1, int(cc.max()) - c0 + 1), np.int32)
    lab[rr - r0, cc - c0] = np.repeat(np.arange(1, len(pix_list) + 1), [p.size for p in pix_list])
    parts: dict[int, list] = {}
    for g, v in shapes(lab, mask=lab > 0, connectivity=4, transform=grid.window_transform(r0, c0)):
        parts.setdefault(int(v), []).append(shapely.geometry.shape(g))
    return [
        parts[i][0] if len(parts[i]) == 1 else shapely.unary_union(parts[i])
        for i in range(1, len(pix_list) + 1)
    ]


def flood_to_volume(depth_m: np.ndarray, volume_m3: float, pixel_area_m2: float):
    """Exact dam height [m] whose reservoir holds ``volume_m3`` and the flooded-pixel mask.

    ``depth_m`` are the members' heights above the dam site on the pit-filled DEM; at height H
    the volume is Σ max(H − d, 0) · a, piecewise linear in H, solved exactly.
    """
    d = np.sort(depth_m)
    k = np.arange(1, d.size + 1)
    cum = np.cumsum(d)
    # volume when the level reaches the next pixel's depth: a·(k·d[k] − Σ_{i<k} d_i)
    nxt = np.append(d[1:], np.inf)
    vol_at_next = (k * nxt - cum) * pixel_area_m2
    i = int(np.searchsorted(vol_at_next, volume_m3))
    i = min(i, d.size - 1)
    h = (volume_m3 / pixel_area_m2 + cum[i]) / (i + 1)
    return h, depth_m < h


def _largest_pair_volume(pairs: pd.DataFrame) -> dict[int, float]:
    """Largest pair volume [m³] each reservoir key (upper or lower) takes part in."""
    if not len(pairs):
        return {}
    v = pd.concat(
        [pairs[["upper_key", "volume_m3"]].set_axis(["key", "v"], axis=1),
         pairs[["lower_key", "volume_m3"]].set_axis(["key", "v"], axis=1)]
    ).groupby("key")["v"].max()  # fmt: skip
    return {int(k): float(x) for k, x in v.items()}


def _pixel_set(
    pix, depth, zval, volume_m3: float, a_px: float, itype
) -> tuple[np.ndarray, np.ndarray]:
    """A new reservoir's members as the selection needs them: global pixel index (``itype``,
    int32 where the grid allows) and filled elevation [m] in the filled DEM's dtype, only those
    up to the level that holds ``volume_m3`` (the largest volume of its pairs in this window).

    The selection recovers each depth bit for bit as ``float64(zval) − level_m`` (``level_m``
    is z_f at the dam site, as when the depths were computed) and floods a pair's volume with
    :func:`~sitekit.science.ps_select.flood_to_volume`, which only ever reads depths up to the
    level of the volume asked: the kept members are a prefix of the sorted depths, so that
    level and the flooded pixels are the same as from all the members. Every window's sets
    wait in memory for the selection: two 30 m mountain windows shipped 38.5 and 43.9 MiB of
    them at the highest dam (16 B per member), 14.1 and 15.0 MiB so.
    """
    h, _ = flood_to_volume(depth, volume_m3, a_px)
    keep = depth <= h
    return pix[keep].astype(itype), zval[keep]


def _select(results, grid: Grid, p: PumpedStorageParams, zones=None, zone_field="name_en"):
    """Greedy non-overlapping selection over all windows; GeoDataFrames in the grid CRS.

    A new reservoir is used once, flooded to the height that holds its pair's volume; an
    existing reservoir may serve several pairs while their volumes fit its capacity.
    """
    pairs = [r["pairs"] for r in results if len(r["pairs"])]
    res_tab = pd.concat([r["reservoirs"] for r in results], ignore_index=True)
    res_tab = res_tab.drop_duplicates("key").set_index("key")
    pixels: dict[int, tuple] = {}
    for r in results:  # a reservoir seen by several windows: the one with the most members
        for k, v in r["pixels"].items():
            old = pixels.get(int(k))
            if old is None or (v[1] is not None and v[0].size > old[0].size):
                pixels[int(k)] = v
    allp = pd.concat(pairs, ignore_index=True) if pairs else pd.DataFrame()
    chosen, flooded = [], []
    a_px = grid.resolution_m**2
    if len(allp):
        allp["neg_e"] = -allp["storage_gwh"]
        allp = allp.drop_duplicates(["upper_key", "lower_key"])
        allp = allp.sort_values(["rel_cost", "neg_e", "upper_key", "lower_key"], kind="stable")
        used_keys: set[int] = set()
        left: dict[int, float] = {}  # remaining volume of existing reservoirs [m³]
        used_px = np.zeros(grid.shape[0] * grid.shape[1], bool)
        for pix, zval in pixels.values():  # no new reservoir floods an existing lake
            if zval is None:
                used_px[pix] = True
        for row in allp.itertuples(index=False):
            u, lo = int(row.upper_key), int(row.lower_key)
            if u in used_keys or lo in used_keys:
                continue
            sets, hts = [], []
            for key in (u, lo):
                pix, zval = pixels[key]
                if zval is None:  # existing: its volume must still hold the pair's
                    cap = left.setdefault(key, float(res_tab.at[key, "v0"]))
                    sets.append(None if row.volume_m3 <= cap else False)
                    hts.append(np.nan)
                    continue
                depth = zval.astype(np.float64) - float(res_tab.at[key, "level_m"])
                h, m = flood_to_volume(depth, row.volume_m3, a_px)
                sets.append(pix[m])
                hts.append(h)
            if any(s is False for s in sets):
                continue
            pu, pl = (s if s is not None else np.zeros(0, np.int64) for s in sets)
            if used_px[pu].any() or used_px[pl].any() or np.intersect1d(pu, pl).size:
                continue
            for key, s in zip((u, lo), sets, strict=True):
                if s is None:
                    left[key] -= row.volume_m3
                else:
                    used_keys.add(key)
            used_px[pu] = used_px[pl] = True
            chosen.append(row)
            flooded.append((pu, pl, hts[0], hts[1]))
            if p.max_pairs is not None and len(chosen) >= p.max_pairs:
                break
    return _frames(chosen, flooded, res_tab, pixels, grid, p, zones, zone_field)


def _frames(chosen, flooded, res_tab, pixels, grid, p, zones, zone_field):
    t = grid.transform
    ch = pd.DataFrame(chosen, columns=chosen[0]._fields) if chosen else pd.DataFrame()
    n = len(ch)
    keys = np.column_stack([ch["upper_key"], ch["lower_key"]]).ravel() if n else []
    r = res_tab.loc[keys].reset_index()
    ex = r["existing"].astype(bool).to_numpy()
    a_px = grid.resolution_m**2
    vol = ch["volume_m3"].to_numpy(float) if n else np.zeros(0)
    dams = np.column_stack([ch["upper_dam_m3"], ch["lower_dam_m3"]]).ravel() if n else []
    hts = np.array([h for f in flooded for h in f[2:]], float)
    px = [s for f in flooded for s in f[:2]]
    area = np.array([s.size * a_px for s in px], float)
    cap = r["v0"].to_numpy(float)
    names = [v if isinstance(v, str) else None for v in r["name"]]
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.where(ex, np.nan, np.repeat(vol, 2) / area)
        wr = np.where(ex, np.nan, np.repeat(vol, 2) / np.asarray(dams, float))
    ex_area = np.array([pixels[int(k)][0].size * a_px for k in keys], float)
    reservoirs = pd.DataFrame(
        {
            "reservoir_id": np.arange(1, 2 * n + 1), "role": ["upper", "lower"] * n,
            "water_level_m": np.where(ex, r["level_m"], r["level_m"] + hts),
            "dam_height_m": np.where(ex, np.nan, hts),
            "volume_gl": np.where(ex, np.where(np.isfinite(cap), cap / 1e6, np.nan),
                                  np.repeat(vol, 2) / 1e6),
            "area_km2": np.where(ex, ex_area, area) / 1e6, "mean_depth_m": depth,
            "dam_volume_m3": np.where(ex, 0.0, dams), "water_rock_ratio": wr, "existing": ex,
            "name": names, "outline_method": r["outline_method"].to_numpy(object),
            "pair_id": np.repeat(np.arange(1, n + 1), 2),
        },
        columns=RESERVOIR_COLUMNS,
    )  # fmt: skip
    polys = [None] * (2 * n)
    new = np.flatnonzero(~ex)
    for i, g in zip(new, _polygons([px[i] for i in new], grid), strict=True):
        polys[i] = g
    lake_poly: dict[int, Any] = {}
    for i in np.flatnonzero(ex):
        k = int(keys[i])
        if k not in lake_poly:
            lake_poly[k] = _polygons([pixels[k][0]], grid)[0]
        polys[i] = lake_poly[k]
    xy = np.column_stack([t.c + t.a * (r["col"] + 0.5), t.f + t.e * (r["row"] + 0.5)])
    lines = [shapely.LineString(xy[2 * i : 2 * i + 2]) for i in range(n)]
    pairs = pd.DataFrame(
        {
            "pair_id": np.arange(1, n + 1), "upper_id": np.arange(1, 2 * n, 2),
            "lower_id": np.arange(2, 2 * n + 1, 2),
            "uses_existing_reservoir": ex[0::2] | ex[1::2], "upper_name": names[0::2],
            "lower_name": names[1::2], "dam_height_m": hts[0::2], "mean_depth_m": depth[0::2],
            "lower_dam_height_m": hts[1::2], "lower_mean_depth_m": depth[1::2],
            "grid_distance_km": np.full(n, np.nan),
            **{c: ch[c].to_numpy() for c in (
                "head_m", "separation_km", "slope", "storage_gwh", "power_mw", "storage_hours",
                "cost_class", "cost_usd_per_kw", "power_cost_usd_per_kw",
                "storage_cost_usd_per_kwh", "water_rock_ratio") if n},
        },
        columns=PAIR_COLUMNS,
    )  # fmt: skip
    if n:
        pairs["volume_gl"] = vol / 1e6
        pairs["usable_volume_gl"] = vol * p.usable_fraction / 1e6
        pairs["water_rock_ratio"] = pairs["water_rock_ratio"].where(
            np.isfinite(pairs["water_rock_ratio"].astype(float))
        )
        pairs["cost_usd_per_kwh"] = pairs["cost_usd_per_kw"] / pairs["storage_hours"]
        pairs["cost_cny_per_kw"] = pairs["cost_usd_per_kw"] * p.cost.cny_per_usd
    pairs = gpd.GeoDataFrame(pairs, geometry=gpd.GeoSeries(lines, crs=grid.crs, dtype="geometry"))
    reservoirs = gpd.GeoDataFrame(
        reservoirs, geometry=gpd.GeoSeries(polys, crs=grid.crs, dtype="geometry")
    )
    if zones is not None:
        _add_zone(pairs, reservoirs, grid, zones, zone_field)
    return reservoirs, pairs


def _add_zone(pairs, reservoirs, grid, zones, zone_field) -> None:
    """``prefecture`` column: the zone holding each pair's upper end / each reservoir's centre."""
    z = grid.to_grid_crs(zones, "zones")[[zone_field, "geometry"]]
    for gdf, pts in (
        (pairs, shapely.get_point(pairs.geometry.values, 0)),
        (reservoirs, reservoirs.geometry.representative_point().values),
    ):
        pts_gdf = gpd.GeoDataFrame(geometry=gpd.GeoSeries(pts, crs=grid.crs), index=gdf.index)
        hit = gpd.sjoin(pts_gdf, z, how="left", predicate="within")
        gdf["prefecture"] = hit[~hit.index.duplicated()][zone_field].reindex(gdf.index)


def add_grid_connection(
    pairs: gpd.GeoDataFrame,
    features: gpd.GeoDataFrame,
    cny_per_km: dict[int, float] | None = None,
    bay_cny: dict[int, float] | None = None,
    voltage_by_capacity_mw: dict[int, float] | None = None,
) -> gpd.GeoDataFrame:
    """Grid distance [km] from each pair's upper reservoir centroid to the nearest connection
    feature, the voltage class [kV] its power needs and the connection cost [CNY] = distance ×
    line cost + bay cost of that class (as the PV/wind sites; straight-line distance).

    ``pairs`` and ``features`` are in the same metric CRS; a copy of ``pairs`` is returned.
    """
    out = pairs.copy()
    if not len(out) or features is None or not len(features):
        return out
    feats = features.to_crs(out.crs) if features.crs != out.crs else features
    start = gpd.GeoSeries(shapely.get_point(out.geometry.values, 0), crs=out.crs)
    idx = feats.sindex.nearest(start.values, return_all=False)
    d = shapely.distance(start.values[idx[0]], feats.geometry.values[idx[1]])
    dist = np.full(len(out), np.nan)
    dist[idx[0]] = d / 1000.0
    out["grid_distance_km"] = dist
    if voltage_by_capacity_mw:
        kv_sorted = sorted(voltage_by_capacity_mw.items(), key=lambda kv: kv[1])
        power = out["power_mw"].to_numpy(float)
        kv = np.full(len(out), np.nan)
        for v, cap in kv_sorted[::-1]:
            kv = np.where(power <= cap, v, kv)
        out["connection_kv"] = kv
        line = np.array([(cny_per_km or {}).get(int(v), np.nan) if v == v else np.nan for v in kv])
        bay = np.array([(bay_cny or {}).get(int(v), 0.0) if v == v else np.nan for v in kv])
        out["connection_cost_cny"] = dist * line + bay
    return out


def connect_found(found, features, grid_spec) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """(reservoirs, pairs) with the pairs' grid distance and connection cost (dask task)."""
    res, pairs = found
    if grid_spec is None or features is None:
        return res, pairs
    return res, add_grid_connection(
        pairs, features, grid_spec.connection_cny_per_km, grid_spec.connection_bay_cny,
        grid_spec.voltage_by_capacity_mw,
    )  # fmt: skip
