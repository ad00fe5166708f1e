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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numba
import numpy as np
import pandas as pd
import shapely
from scipy import ndimage

from sitekit.grid import Grid, shapes
from sitekit.scoring import lcoe_cny_per_kwh

SITE_COLUMNS = [
    "site_id",
    "prefecture",
    "county",
    "area_km2",
    "capacity_mw",
    "energy_gwh",
    "capacity_factor",
    "mean_score",
    "lcoe_cny_per_kwh",
    "grid_distance_km",
    "grid_point_name",
    "rank",
    "rank_in_prefecture",
]


@dataclass(frozen=True)
class SiteRules:
    """Site-extraction rules (see ``pipelines/*.yaml`` → ``sites``)."""

    score_threshold: float
    min_area_km2: float
    max_area_km2: float
    power_density_mw_per_km2: float
    max_sites: int = 500  # per prefecture


#: rows per strip when a layer is a NumPy array (dask layers are read one row of chunks at a time)
STRIP_ROWS = 1024


@numba.njit(cache=True, nogil=True)
def _count(labels: np.ndarray, n: int) -> np.ndarray:  # pragma: no cover - numba
    """Pixels per label 0..n (``np.bincount`` without its 8 B/px intp copy)."""
    out = np.zeros(n + 1, np.int64)
    for v in labels.ravel():
        out[v] += 1
    return out


@numba.njit(cache=True, nogil=True)
def _cut_big(pieces: np.ndarray, big: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """Zero the pixels of big regions in place; return their mask."""
    flat = pieces.ravel()
    split = np.zeros(flat.size, np.bool_)
    for i in range(flat.size):
        if big[flat[i]]:
            split[i] = True
            flat[i] = 0
    return split.reshape(pieces.shape)


@numba.njit(cache=True, nogil=True)
def _first_pixel(labels: np.ndarray, n: int) -> np.ndarray:  # pragma: no cover - numba
    """Row-major index of each label's first pixel (``labels.size`` where it has none)."""
    flat = labels.ravel()
    first = np.full(n + 1, flat.size, np.int64)
    for i in range(flat.size):
        v = flat[i]
        if first[v] == flat.size:
            first[v] = i
    return first


@numba.njit(cache=True, nogil=True)
def _remap(labels: np.ndarray, remap: np.ndarray) -> None:  # pragma: no cover - numba
    """``labels[:] = remap[labels]`` in place."""
    flat = labels.ravel()
    for i in range(flat.size):
        flat[i] = remap[flat[i]]


def label_sites(
    candidate: np.ndarray, pixel_area_km2: float, max_area_km2: float
) -> tuple[np.ndarray, int]:
    """Label connected candidate regions, split on a lattice of ``max_area_km2`` cells.

    Returns (labels int32 with 0 = background, number of labels). Labels are ordered by the
    first pixel of each piece in row-major order (deterministic). Memory: the int32 labels plus
    a 1 B/px mask of the regions that are split (no int64 per-pixel temporaries).
    """
    structure = np.ones((3, 3), bool)
    pieces = np.empty(candidate.shape, np.int32)
    n = int(ndimage.label(candidate, structure=structure, output=pieces))
    if n == 0:
        return pieces, 0
    big = _count(pieces, n) * pixel_area_km2 > max_area_km2
    big[0] = False
    count = n
    if big.any():  # split only the large regions, on a lattice of max_area_km2 cells
        cell = max(1, int(math.floor(math.sqrt(max_area_km2 / pixel_area_km2))))
        split = _cut_big(pieces, big)
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
        del split
    # renumber by first pixel position for determinism
    first = _first_pixel(pieces, count)
    order = np.argsort(first[1:], kind="stable") + 1
    remap = np.zeros(count + 1, np.int32)
    remap[order] = np.arange(1, count + 1, dtype=np.int32)
    present = int((first[1:] < pieces.size).sum())  # ids of split regions left no pixels
    _remap(pieces, remap)
    return pieces, present


def _row_edges(arrays: Sequence[Any], ny: int) -> list[int]:
    """Strip edges: one row of chunks of the first dask layer, else :data:`STRIP_ROWS` rows."""
    for a in arrays:
        chunks = getattr(a, "chunks", None)
        if chunks and isinstance(chunks[0], tuple):
            return [0, *np.cumsum(chunks[0]).tolist()]
    return [*range(0, ny, STRIP_ROWS), ny]


def _read(arrays: Sequence[Any], r0: int, r1: int) -> list[np.ndarray]:
    """Rows r0:r1 of each layer as NumPy (dask layers computed together, NumPy ones as views)."""
    import dask

    lazy = [i for i, a in enumerate(arrays) if hasattr(a, "compute")]
    out: list[Any] = [a[r0:r1] for a in arrays]
    if lazy:
        done = dask.compute(*[out[i] for i in lazy])
        for i, v in zip(lazy, done, strict=True):
            out[i] = v
    return [np.asarray(v) for v in out]


@numba.njit(cache=True, nogil=True)
def _add_by(labels: np.ndarray, weights: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """``out += np.bincount(labels, weights)`` summed in the same (row-major) order."""
    lab = labels.ravel()
    w = weights.ravel()
    for i in range(lab.size):
        out[lab[i]] += w[i]


@numba.njit(cache=True, nogil=True)
def _nearest_by(  # pragma: no cover - numba
    labels: np.ndarray,
    d: np.ndarray,
    point: np.ndarray,
    best: np.ndarray,
    near: np.ndarray,
    seen: np.ndarray,
) -> None:
    """Per label, ``point`` at the pixel of least ``d`` (first in row-major order on ties; NaN
    last, as a stable lexsort orders them)."""
    lab, dd, pp = labels.ravel(), d.ravel(), point.ravel()
    for i in range(lab.size):
        v = lab[i]
        if v == 0:
            continue
        x = dd[i]
        if not seen[v]:
            better = True
        elif np.isnan(best[v]):
            better = not np.isnan(x)
        else:
            better = x < best[v]
        if better:
            seen[v] = True
            best[v] = x
            near[v] = pp[i]


@numba.njit(cache=True, nogil=True)
def _bbox_by(labels: np.ndarray, r0: int, box: np.ndarray) -> None:  # pragma: no cover - numba
    """Grow each label's (row min, row max, col min, col max) box by rows r0.. of ``labels``."""
    ny, nx = labels.shape
    for r in range(ny):
        for c in range(nx):
            v = labels[r, c]
            if v == 0:
                continue
            box[v, 0] = min(box[v, 0], r0 + r)
            box[v, 1] = max(box[v, 1], r0 + r)
            box[v, 2] = min(box[v, 2], c)
            box[v, 3] = max(box[v, 3], c)


class _Stats:
    """Per-label sums over strips, bit-identical to whole-array ``np.bincount`` reductions."""

    MEANS = ("score", "energy", "gdist", "cdist")

    def __init__(self, n: int) -> None:
        self.n = n
        self.area = np.zeros(n + 1)
        self.num = {k: np.zeros(n + 1) for k in self.MEANS}
        self.den = {k: np.zeros(n + 1) for k in self.MEANS}
        self.best = np.full(n + 1, np.inf)
        self.near = np.full(n + 1, -1, np.int64)
        self.seen = np.zeros(n + 1, np.bool_)
        big = np.iinfo(np.int64).max
        self.box = np.array([[big, -1, big, -1]] * (n + 1), np.int64)
        self.zone_pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}

    def add_mean(self, key: str, lab: np.ndarray, values: np.ndarray, weights: np.ndarray) -> None:
        """Accumulate the weighted mean of ``values`` per label (non-finite values weigh 0)."""
        ok = np.isfinite(values)
        v = np.where(ok, values, 0.0)
        w = np.where(ok, weights, 0.0)
        _add_by(lab, (v * w).astype(np.float64), self.num[key])
        _add_by(lab, w.astype(np.float64), self.den[key])

    def mean(self, key: str) -> np.ndarray:
        """Weighted mean per label (NaN where a label has no weight)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.num[key] / self.den[key]

    def zones(self, key: str, lab: np.ndarray, zone: np.ndarray) -> None:
        """Pixel counts per (label, zone) pair, for the majority zone of each label."""
        zone = zone.astype(np.int64, copy=False)
        if zone.size and zone.max() >= 2**31:
            raise ValueError(f"{key} ids must be below 2**31")
        m = (lab > 0) & (zone > 0)  # boundary pixels whose centre is outside every zone don't vote
        pairs = (lab[m].astype(np.int64) << 31) | zone[m]  # labels are int32: both below 2**31
        self.zone_pairs.setdefault(key, []).append(np.unique(pairs, return_counts=True))

    def majority(self, key: str) -> np.ndarray:
        """Most frequent non-zero zone id per label (lowest id on ties; 0: no zoned pixel)."""
        out = np.zeros(self.n + 1, np.int64)
        parts = self.zone_pairs.get(key, [])
        if not parts:  # no strip was read
            return out
        uniq, inv = np.unique(np.concatenate([p for p, _ in parts]), return_inverse=True)
        if not uniq.size:  # no labelled pixel lies in any zone
            return out
        total = np.bincount(inv.ravel(), np.concatenate([c for _, c in parts]), len(uniq))
        lab, zid = uniq >> 31, uniq & (2**31 - 1)
        order = np.lexsort((zid, -total, lab))  # per label: most pixels, then the lowest id
        lab, zid = lab[order], zid[order]
        first = np.r_[True, lab[1:] != lab[:-1]]
        out[lab[first]] = zid[first]
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

    Layers may be NumPy or (persisted) dask arrays: they are read one strip of rows at a time,
    so the client holds the candidate mask (1 B/px) and the labels (4 B/px), never the layers.
    """
    pa = grid.pixel_area_km2
    ny = grid.shape[0]
    layers = [
        score,
        inclusion,
        energy_kwh_per_kw,
        grid_distance_km,
        connection_distance_km,
        nearest_point,
        prefecture_id,
        county_id,
    ]
    edges = _row_edges(layers, ny)
    cand = np.empty(grid.shape, bool)
    for r0, r1 in zip(edges[:-1], edges[1:], strict=True):
        s, inc = _read([score, inclusion], r0, r1)
        cand[r0:r1] = (inc >= 0.5) & np.isfinite(s) & (s >= rules.score_threshold)
    labels, n = label_sites(cand, pa, rules.max_area_km2)
    empty = gpd.GeoDataFrame({c: [] for c in SITE_COLUMNS}, geometry=[], crs=grid.crs)
    if n == 0:
        return empty, labels
    st = _Stats(n)
    for r0, r1 in zip(edges[:-1], edges[1:], strict=True):
        s, inc, en, gd, cd, npt, pref_s, cnty_s = _read(layers, r0, r1)
        lab = labels[r0:r1]
        incl = np.where(cand[r0:r1], inc, 0.0)
        _add_by(lab, incl.astype(np.float64), st.area)
        ones = np.ones_like(incl)
        st.add_mean("score", lab, s, incl)
        st.add_mean("energy", lab, en, incl)
        st.add_mean("gdist", lab, gd, ones)
        st.add_mean("cdist", lab, cd, ones)
        # nearest connection point: the one nearest to the site's closest pixel
        _nearest_by(lab, gd, npt, st.best, st.near, st.seen)
        _bbox_by(lab, r0, st.box)
        st.zones("prefecture", lab, pref_s)
        st.zones("county", lab, cnty_s)
    area = st.area
    keep = area >= rules.min_area_km2 / pa
    keep[0] = False
    mean_score, energy = st.mean("score"), st.mean("energy")
    gdist, cdist = st.mean("gdist"), st.mean("cdist")
    near = st.near
    pref = st.majority("prefecture")
    cnty = st.majority("county")

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
    geoms = _polygons(labels, keep_labels, st.box, grid)
    df["geometry"] = [geoms[k] for k in keep_labels]
    out = gpd.GeoDataFrame(df, geometry="geometry", crs=grid.crs)
    out.insert(0, "site_id", [f"S{int(k):05d}" for k in out["label"]])
    out = out.drop(columns="label").reset_index(drop=True)
    for col in (
        "area_km2",
        "capacity_mw",
        "energy_gwh",
        "grid_distance_km",
        "connection_distance_km",
    ):
        out[col] = out[col].round(3)
    out["capacity_factor"] = out["capacity_factor"].round(4)
    out["mean_score"] = out["mean_score"].round(4)
    out["lcoe_cny_per_kwh"] = out["lcoe_cny_per_kwh"].round(4)
    return out, labels


def _polygons(
    labels: np.ndarray, wanted: np.ndarray, box: np.ndarray, grid: Grid
) -> dict[int, object]:
    """Vectorise the wanted labels (pixel outlines, dissolved per label), each in its own box."""
    out: dict[int, object] = {}
    for k in wanted:
        r0, r1, c0, c1 = (int(v) for v in box[k])
        win = labels[r0 : r1 + 1, c0 : c1 + 1]
        transform = grid.window_transform(r0, c0)
        parts = [
            shapely.geometry.shape(geom)
            for geom, _ in shapes(win, mask=win == k, transform=transform, connectivity=8)
        ]
        out[int(k)] = shapely.union_all(parts)
    return out


def zone_areas(inclusion: Any, zone_ids: Any, names: list[str], pixel_area_km2: float) -> dict:
    """Eligible km² per zone name: Σ inclusion fraction × pixel area over each zone's pixels
    (1-based ids into ``names``), summed one strip of rows at a time (NumPy or dask layers)."""
    sums = np.zeros(len(names) + 1)
    edges = _row_edges([inclusion, zone_ids], inclusion.shape[0])
    for r0, r1 in zip(edges[:-1], edges[1:], strict=True):
        inc, zone = _read([inclusion, zone_ids], r0, r1)
        if zone.size and not 0 <= zone.min() <= zone.max() <= len(names):  # _add_by: no bounds
            raise ValueError(f"zone ids outside 0..{len(names)}")
        _add_by(zone, np.nan_to_num(inc).astype(np.float64), sums)
    return {n: float(sums[i + 1] * pixel_area_km2) for i, n in enumerate(names)}


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
