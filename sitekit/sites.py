"""Candidate sites: score raster → buildable site polygons with MW, GWh/yr, LCOE and a rank.

Method: pixels that are eligible (inclusion fraction ≥ 0.5) and score ≥ the recipe threshold form
connected regions (8-connectivity). Regions larger than ``max_area_km2`` are split on a regular
lattice of cells of that area (so a 5,000 km² plateau becomes ~100 sites of ≤ 50 km², each a
plausible single project), pieces smaller than ``min_area_km2`` are dropped. Per site:
eligible area = Σ inclusion fraction × pixel area; capacity = area × power density; energy from the
mean specific yield (PV) or capacity factor (wind); LCOE by the annuity method including the
grid-connection line (least-cost distance × CNY/km of the voltage class chosen by capacity, plus the
bay). Sites are ranked by LCOE (ties: higher score first, then site id), which is deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy import ndimage

from sitekit.grid import Grid, shapes
from sitekit.scoring import lcoe_cny_per_kwh

SITE_COLUMNS = [
    "site_id", "prefecture", "county", "area_km2", "capacity_mw", "energy_gwh",
    "capacity_factor", "mean_score", "lcoe_cny_per_kwh", "grid_distance_km", "grid_point_name",
    "rank", "rank_in_prefecture",
]


@dataclass(frozen=True)
class SiteRules:
    """Site-extraction rules (see ``pipelines/*.yaml`` → ``sites``)."""

    score_threshold: float
    min_area_km2: float
    max_area_km2: float
    power_density_mw_per_km2: float
    max_sites: int = 500  # per prefecture


def label_sites(
    candidate: np.ndarray, pixel_area_km2: float, max_area_km2: float
) -> tuple[np.ndarray, int]:
    """Label connected candidate regions, split on a lattice of ``max_area_km2`` cells.

    Returns (labels int32 with 0 = background, number of labels). Labels are ordered by the
    first pixel of each piece in row-major order (deterministic).
    """
    structure = np.ones((3, 3), bool)
    regions, n = ndimage.label(candidate, structure=structure)
    if n == 0:
        return regions.astype(np.int32), 0
    size_km2 = np.bincount(regions.ravel(), minlength=n + 1) * pixel_area_km2
    big = size_km2 > max_area_km2
    big[0] = False
    pieces = np.where(big[regions], 0, regions).astype(np.int32)
    count = n
    if big.any():  # split only the large regions, on a lattice of max_area_km2 cells
        cell = max(1, int(math.floor(math.sqrt(max_area_km2 / pixel_area_km2))))
        split = big[regions]
        ny, nx = candidate.shape
        for r0 in range(0, ny, cell):
            for c0 in range(0, nx, cell):
                sub = split[r0 : r0 + cell, c0 : c0 + cell]
                if not sub.any():
                    continue
                lab, m = ndimage.label(sub, structure=structure)
                view = pieces[r0 : r0 + cell, c0 : c0 + cell]
                view[lab > 0] = lab[lab > 0] + count
                count += m
    # renumber by first pixel position for determinism
    flat = pieces.ravel()
    first = np.full(count + 1, flat.size, np.int64)
    np.minimum.at(first, flat, np.arange(flat.size))
    order = np.argsort(first[1:], kind="stable") + 1
    remap = np.zeros(count + 1, np.int32)
    remap[order] = np.arange(1, count + 1, dtype=np.int32)
    present = int((first[1:] < flat.size).sum())  # ids of split regions left no pixels
    return remap[pieces], present


def _mean_by(labels: np.ndarray, values: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    v = np.where(np.isfinite(values), values, 0.0)
    w = np.where(np.isfinite(values), weights, 0.0)
    num = np.bincount(labels.ravel(), (v * w).ravel(), n + 1)
    den = np.bincount(labels.ravel(), w.ravel(), n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def _majority(labels: np.ndarray, zone: np.ndarray, n: int) -> np.ndarray:
    """Most frequent non-zero zone id per label (0 where the label has no zoned pixel)."""
    m = (labels > 0) & (zone > 0)  # boundary pixels whose centre is outside every zone don't vote
    if not m.any():
        return np.zeros(n + 1, np.int64)
    pairs = labels[m].astype(np.int64) * (int(zone.max()) + 1) + zone[m]
    uniq, counts = np.unique(pairs, return_counts=True)
    lab = uniq // (int(zone.max()) + 1)
    zid = uniq % (int(zone.max()) + 1)
    out = np.zeros(n + 1, np.int64)
    best = np.zeros(n + 1, np.int64)
    for la, z, c in zip(lab, zid, counts, strict=True):
        if c > best[la]:
            best[la], out[la] = c, z
    return out


def connection_cost_cny_per_kw(
    distance_km: np.ndarray, capacity_mw: np.ndarray, economics
) -> tuple[np.ndarray, np.ndarray]:
    """(connection cost [CNY/kW], voltage class [kV]) for sites of ``capacity_mw``."""
    classes = sorted(economics.voltage_by_capacity_mw.items(), key=lambda kv: kv[1])
    kv = np.full(capacity_mw.shape, classes[-1][0], np.int64)
    for volt, max_mw in reversed(classes):
        kv = np.where(capacity_mw <= max_mw, volt, kv)
    per_km = np.vectorize(lambda k: economics.connection_cny_per_km.get(int(k), np.nan))(kv)
    bay = np.vectorize(lambda k: economics.connection_bay_cny.get(int(k), 0.0))(kv)
    cost = distance_km * per_km + bay
    return cost / np.maximum(capacity_mw * 1000.0, 1e-9), kv


def extract_sites(
    grid: Grid,
    *,
    score: np.ndarray,
    inclusion: np.ndarray,
    energy_kwh_per_kw: np.ndarray,
    grid_distance_km: np.ndarray,
    connection_distance_km: np.ndarray,
    nearest_point: np.ndarray,
    point_names: list[str],
    prefecture_id: np.ndarray,
    prefecture_names: list[str],
    county_id: np.ndarray,
    county_names: list[str],
    rules: SiteRules,
    economics,
) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """Extract ranked candidate sites from computed (numpy) layers on ``grid``.

    Parameters
    ----------
    score : suitability 0–1 [1]; inclusion : eligible fraction of each pixel 0–1 [1];
    energy_kwh_per_kw : first-year energy per installed kW [kWh/kW/yr];
    grid_distance_km : straight-line distance to the nearest connection point [km];
    connection_distance_km : least-cost connection distance [km] (equivalent length);
    nearest_point : index of the nearest connection point (−1 none);
    prefecture_id / county_id : 1-based zone ids (0 = none) into the name lists.

    Returns (sites GeoDataFrame in the grid CRS with :data:`SITE_COLUMNS`, label raster).
    """
    pa = grid.pixel_area_km2
    cand = (inclusion >= 0.5) & np.isfinite(score) & (score >= rules.score_threshold)
    labels, n = label_sites(cand, pa, rules.max_area_km2)
    empty = gpd.GeoDataFrame({c: [] for c in SITE_COLUMNS}, geometry=[], crs=grid.crs)
    if n == 0:
        return empty, labels
    incl = np.where(cand, inclusion, 0.0)
    area = np.bincount(labels.ravel(), incl.ravel(), n + 1)
    keep = area >= rules.min_area_km2 / pa
    keep[0] = False
    ones = np.ones_like(incl)
    mean_score = _mean_by(labels, score, incl, n)
    energy = _mean_by(labels, energy_kwh_per_kw, incl, n)
    gdist = _mean_by(labels, grid_distance_km, ones, n)
    cdist = _mean_by(labels, connection_distance_km, ones, n)
    # nearest connection point: the one nearest to the site's closest pixel
    near = np.full(n + 1, -1, np.int64)
    flat_lab = labels.ravel()
    d = np.where(labels > 0, grid_distance_km, np.inf).ravel()
    order = np.lexsort((d, flat_lab))
    first = np.unique(flat_lab[order], return_index=True)
    near[first[0]] = nearest_point.ravel()[order[first[1]]]
    pref = _majority(labels, prefecture_id.astype(np.int64), n)
    cnty = _majority(labels, county_id.astype(np.int64), n)

    idx = np.nonzero(keep)[0]
    area_km2 = area[idx] * pa
    cap = area_km2 * rules.power_density_mw_per_km2
    e = energy[idx]
    conn, _kv = connection_cost_cny_per_kw(cdist[idx], cap, economics)
    lcoe = lcoe_cny_per_kwh(
        e,
        economics.capex_cny_per_kw,
        economics.fixed_om_cny_per_kw_yr,
        economics.wacc,
        economics.lifetime_yr,
        economics.degradation_pct_per_yr / 100.0,
        conn,
    )
    df = pd.DataFrame(
        {
            "label": idx,
            "prefecture": [prefecture_names[i - 1] if i > 0 else "" for i in pref[idx]],
            "county": [county_names[i - 1] if i > 0 else "" for i in cnty[idx]],
            "area_km2": area_km2,
            "capacity_mw": cap,
            "energy_gwh": cap * e / 1000.0,
            "capacity_factor": e / 8760.0,
            "mean_score": mean_score[idx],
            "lcoe_cny_per_kwh": lcoe,
            "grid_distance_km": gdist[idx],
            "connection_distance_km": cdist[idx],
            "grid_point_name": [point_names[i] if i >= 0 else "" for i in near[idx]],
        }
    )
    if prefecture_names:  # boundary slivers whose pixel centres lie outside every prefecture
        df = df[df["prefecture"] != ""]
    df = df.sort_values(
        ["lcoe_cny_per_kwh", "mean_score", "label"], ascending=[True, False, True], kind="stable"
    )
    # the best ``max_sites`` of every prefecture (a bureau screens its own area), ranked overall
    df = df.groupby("prefecture", sort=False, group_keys=False).head(rules.max_sites)
    df["rank"] = np.arange(1, len(df) + 1)
    df["rank_in_prefecture"] = df.groupby("prefecture", sort=False).cumcount() + 1
    keep_labels = df["label"].to_numpy()
    geoms = _polygons(labels, keep_labels, grid)
    df["geometry"] = [geoms[k] for k in keep_labels]
    out = gpd.GeoDataFrame(df, geometry="geometry", crs=grid.crs)
    out.insert(0, "site_id", [f"S{int(k):05d}" for k in out["label"]])
    out = out.drop(columns="label").reset_index(drop=True)
    for col in ("area_km2", "capacity_mw", "energy_gwh", "grid_distance_km", "connection_distance_km"):
        out[col] = out[col].round(3)
    out["capacity_factor"] = out["capacity_factor"].round(4)
    out["mean_score"] = out["mean_score"].round(4)
    out["lcoe_cny_per_kwh"] = out["lcoe_cny_per_kwh"].round(4)
    return out, labels


def _polygons(labels: np.ndarray, wanted: np.ndarray, grid: Grid) -> dict[int, object]:
    """Vectorise the wanted labels (pixel outlines, dissolved per label)."""
    mask = np.isin(labels, wanted)
    parts: dict[int, list] = {}
    for geom, val in shapes(
        labels.astype(np.int32), mask=mask, transform=grid.transform, connectivity=8
    ):
        parts.setdefault(int(val), []).append(shapely.geometry.shape(geom))
    return {k: shapely.union_all(v) for k, v in parts.items()}


def summarise(
    sites: gpd.GeoDataFrame,
    eligible_km2_by_zone: dict[str, float],
    technology: str,
) -> pd.DataFrame:
    """Per-prefecture totals: eligible km², potential MW and GWh/yr of sites, number of sites."""
    rows = []
    for zone in sorted(eligible_km2_by_zone):
        s = sites[sites["prefecture"] == zone]
        rows.append(
            {
                "prefecture": zone,
                "technology": technology,
                "eligible_km2": round(float(eligible_km2_by_zone[zone]), 3),
                "potential_mw": round(float(s["capacity_mw"].sum()), 3),
                "energy_gwh": round(float(s["energy_gwh"].sum()), 3),
                "n_sites": len(s),
            }
        )
    return pd.DataFrame(rows)
