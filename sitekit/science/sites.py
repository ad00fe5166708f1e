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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numba
import numpy as np
import pandas as pd

from sitekit.grid import Grid
from sitekit.science.blockops import values_at, zone_sums
from sitekit.science.labelling import StreamLabels, polygons
from sitekit.science.labelling import label_sites as label_sites  # the whole-array reference
from sitekit.science.scoring import lcoe_cny_per_kwh

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

#: columns of every candidate site (``extract_sites(..., candidates=True)``)
CANDIDATE_COLUMNS = [
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
    "connection_distance_km",
    "grid_point_name",
    "point_index",
    "connection_kv",
    "connection_cny_per_kw",
    "x_m",
    "y_m",
    "in_top_n",
]


@dataclass(frozen=True)
class SiteRules:
    """Site-extraction rules (see ``pipelines/*.yaml`` → ``sites``)."""

    score_threshold: float
    min_area_km2: float
    max_area_km2: float
    power_density_mw_per_km2: float
    max_sites: int = 500  # per prefecture


#: rows per strip when a layer is a NumPy array (a dask layer's strips are its rows of chunks)
STRIP_ROWS = 1024
#: bytes of dask layers read into the client per round trip (candidate mask, candidate values)
READ_BUDGET_BYTES = 256 * 2**20


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


def _strips(cand: Any, edges: Sequence[int]):
    """Yield ``(r0, mask)`` per strip of the candidate mask: as many strips per round trip as
    :data:`READ_BUDGET_BYTES` holds (a NumPy mask: views)."""
    i = 0
    while i < len(edges) - 1:
        j = i + 1
        while j < len(edges) - 1 and (edges[j + 1] - edges[i]) * cand.shape[1] <= READ_BUDGET_BYTES:
            j += 1  # one more strip fits
        (rows,) = _read([cand], edges[i], edges[j])
        for r0, r1 in zip(edges[i:j], edges[i + 1 : j + 1], strict=True):
            yield r0, rows[r0 - edges[i] : r1 - edges[i]]
        i = j


def _read_at(
    arrays: Sequence[Any], cand: Any, strips: Sequence[tuple[int, np.ndarray]]
) -> list[list[np.ndarray]]:
    """Per strip ``(r0, mask)``: each layer's values at the ``True`` pixels of ``mask`` (rows
    r0.. of the ``cand`` layer it was read from), in row-major order.

    A dask layer sends only those pixels: each block is masked where it lives (one compute for
    all the strips) and the client puts the pieces back in row-major order. Site statistics
    need no other pixel, and the candidates are a small part of the grid (0.5–23 % of a strip
    in the demo), so the layers cost a fraction of their 36 B/px transfer from the worker
    processes."""
    import dask

    out: list[list[Any]] = [[None] * len(arrays) for _ in strips]
    picks, where = [], []
    for k, (r0, mask) in enumerate(strips):
        r1 = r0 + mask.shape[0]
        cand_blocks: dict[tuple, np.ndarray] = {}  # the strip's candidate blocks, per chunking
        for i, a in enumerate(arrays):
            if not hasattr(a, "compute"):
                out[k][i] = np.asarray(a[r0:r1])[mask]
                continue
            strip = a[r0:r1]
            if strip.chunks not in cand_blocks:
                cand_blocks[strip.chunks] = cand[r0:r1].rechunk(strip.chunks).to_delayed()
            blocks = cand_blocks[strip.chunks]
            rows = np.cumsum((0, *strip.chunks[0]))
            cols = np.cumsum((0, *strip.chunks[1]))
            for (bi, bj), block in np.ndenumerate(strip.to_delayed()):
                picks.append(dask.delayed(values_at, pure=True)(block, blocks[bi, bj]))
                where.append((k, i, slice(rows[bi], rows[bi + 1]), slice(cols[bj], cols[bj + 1])))
    if not picks:
        return out
    ranks: dict[int, np.ndarray] = {}
    dest: dict[tuple[int, int, int, int, int], np.ndarray] = {}  # block → places in the output
    for (k, i, rs, cs), vals in zip(where, dask.compute(*picks), strict=True):
        mask = strips[k][1]
        if k not in ranks:
            ranks[k] = (np.cumsum(mask.ravel(), dtype=np.int64) - 1).reshape(mask.shape)
        box = (k, rs.start, rs.stop, cs.start, cs.stop)
        if box not in dest:
            dest[box] = ranks[k][rs, cs][mask[rs, cs]]
        if out[k][i] is None:
            out[k][i] = np.empty(int(ranks[k].flat[-1]) + 1, vals.dtype)
        out[k][i][dest[box]] = vals
    return out


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
        self.zone_pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        self.npx = np.zeros(n + 1)  # candidate pixels per label, and their row/col sums
        self.rows = np.zeros(n + 1)
        self.cols = np.zeros(n + 1)

    def add_strip(
        self, lab: np.ndarray, r0: int, mask: np.ndarray, values: Sequence[np.ndarray]
    ) -> None:
        """Add the candidate pixels (``mask``) of the strip at rows r0.., of site ids ``lab``:
        ``values`` are score, inclusion, energy, grid and connection distance, nearest point,
        prefecture and county id at those pixels, in row-major order. Every candidate pixel
        has a label and no other pixel has one, so the per-label sums over the candidates are
        those over the whole strip, in the same order."""
        s, incl, en, gd, cd, npt, pref_s, cnty_s = values
        _add_by(lab, incl.astype(np.float64), self.area)
        ones = np.ones_like(incl)
        self.add_mean("score", lab, s, incl)
        self.add_mean("energy", lab, en, incl)
        self.add_mean("gdist", lab, gd, ones)
        self.add_mean("cdist", lab, cd, ones)
        # nearest connection point: the one nearest to the site's closest pixel
        _nearest_by(lab, gd, npt, self.best, self.near, self.seen)
        self.zones("prefecture", lab, pref_s)
        self.zones("county", lab, cnty_s)
        rr, cc = np.nonzero(mask)  # row-major, as ``lab``
        _add_by(lab, np.ones(lab.size), self.npx)
        _add_by(lab, (rr + r0 + 0.5).astype(np.float64), self.rows)
        _add_by(lab, (cc + 0.5).astype(np.float64), self.cols)

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
    candidates: bool = False,
    return_labels: bool = True,
) -> tuple[gpd.GeoDataFrame, Any] | tuple[gpd.GeoDataFrame, Any, pd.DataFrame]:
    """Extract ranked candidate sites from computed (numpy) layers on ``grid``.

    Parameters
    ----------
    score : suitability 0–1 [1]; inclusion : eligible fraction of each pixel 0–1 [1];
    energy_kwh_per_kw : first-year energy per installed kW [kWh/kW/yr];
    grid_distance_km : straight-line distance to the nearest connection point [km];
    connection_distance_km : least-cost connection distance [km] (equivalent length);
    nearest_point : index of the nearest connection point (−1 none);
    prefecture_id / county_id : 1-based zone ids (0 = none) into the name lists.

    Returns (sites GeoDataFrame in the grid CRS with :data:`SITE_COLUMNS`, label raster int32 of
    the site ids, 0 = none; ``None`` with ``return_labels=False``): the top ``rules.max_sites``
    sites of each prefecture. With ``candidates=True`` also a DataFrame
    of ALL candidate sites (no polygons, sorted by LCOE incl. connection) with
    :data:`CANDIDATE_COLUMNS`: the input of the supply curve (:mod:`sitekit.science.supply`).

    Layers may be NumPy or (persisted) dask arrays. Dask layers stay where they are: the client
    fetches the candidate mask (1 B/px) one batch of strips at a time, three times: pass 1
    labels each strip and merges the pieces across strip edges
    (:class:`sitekit.science.labelling.StreamLabels`, the labels of :func:`label_sites` bit for
    bit), pass 2 fetches only the candidate pixels' values, pass 3 vectorises the kept sites.
    Peak memory: a batch of strips (≤ :data:`READ_BUDGET_BYTES` of mask, ~10 B/px of labels per
    strip) and tables of a few numbers per site, not the grid (unless ``return_labels``).
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
    # the candidate mask, where the layers are (1 B/px to the client instead of score and
    # inclusion); with dask, kept there: each pass reads it one batch of strips at a time
    layers = [getattr(a, "data", a) if hasattr(a, "dims") else a for a in layers]  # xarray
    score, inclusion = layers[:2]
    cand_src = (inclusion >= 0.5) & np.isfinite(score) & (score >= rules.score_threshold)
    if hasattr(cand_src, "compute"):
        import dask

        (cand_src,) = dask.persist(cand_src)
    sl = StreamLabels(grid.shape, pa, rules.max_area_km2, keep_bytes=READ_BUDGET_BYTES)
    for r0, mask in _strips(cand_src, edges):  # pass 1: pieces per strip, merged across edges
        sl.add(mask, r0)
    n = sl.finish()
    labels = np.zeros(grid.shape, np.int32) if return_labels else None
    empty = gpd.GeoDataFrame({c: [] for c in SITE_COLUMNS}, geometry=[], crs=grid.crs)
    if n == 0:
        if candidates:
            return empty, labels, pd.DataFrame({c: [] for c in CANDIDATE_COLUMNS})
        return empty, labels
    st = _Stats(n)
    # pass 2: the candidates' values of as many strips as READ_BUDGET_BYTES holds, in one round
    # trip, summed per site (the strip's site ids at its candidates are kept, 4 B each)
    per_px = sum(np.dtype(a.dtype).itemsize for a in layers)
    batch: list[tuple[int, np.ndarray]] = []
    ids: list[np.ndarray] = []
    size = 0
    for r0, mask in _strips(cand_src, edges):
        if mask.any():
            lab = sl.labels(mask, r0)
            if labels is not None:
                labels[r0 : r0 + mask.shape[0]] = lab
            batch.append((r0, mask))
            ids.append(lab[mask])
            size += ids[-1].size * per_px + 9 * mask.size  # values; mask and its ranks (_read_at)
        if batch and (r0 + mask.shape[0] == ny or size >= READ_BUDGET_BYTES):
            for (r0b, m), lab, values in zip(batch, ids, _read_at(layers, cand_src, batch),
                                             strict=True):  # fmt: skip
                st.add_strip(lab, r0b, m, values)
            batch, ids, size = [], [], 0
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
    conn, kv = connection_cost_cny_per_kw(cdist[idx], cap, economics)
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
            "point_index": near[idx],
            "connection_kv": kv,
            "connection_cny_per_kw": conn,
        }
    )
    # the site's centre: mean of its candidate pixel centres [grid CRS m]
    with np.errstate(invalid="ignore", divide="ignore"):
        r_mean, c_mean = st.rows[idx] / st.npx[idx], st.cols[idx] / st.npx[idx]
    df["x_m"], df["y_m"] = grid.transform * (c_mean, r_mean)
    if prefecture_names:  # boundary slivers whose pixel centres lie outside every prefecture
        df = df[df["prefecture"] != ""]
    df = df.sort_values(
        ["lcoe_cny_per_kwh", "mean_score", "label"], ascending=[True, False, True], kind="stable"
    )
    every = df.drop(columns=["rank"], errors="ignore").copy() if candidates else None
    # the best ``max_sites`` of every prefecture (a bureau screens its own area), ranked overall
    df = df.groupby("prefecture", sort=False, group_keys=False).head(rules.max_sites)
    df["rank"] = np.arange(1, len(df) + 1)
    df["rank_in_prefecture"] = df.groupby("prefecture", sort=False).cumcount() + 1
    keep_labels = df["label"].to_numpy()
    # pass 3: the outlines of the kept sites
    strips = ((r0, sl.labels(m, r0)) for r0, m in _strips(cand_src, edges))
    geoms = polygons(strips, keep_labels, sl.top, sl.bottom, grid.transform)
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
    out = out.drop(columns=["point_index", "connection_kv", "connection_cny_per_kw", "x_m", "y_m"])
    if every is not None:
        every["in_top_n"] = every["label"].isin(keep_labels)
        every.insert(0, "site_id", [f"S{int(k):05d}" for k in every["label"]])
        every = every.drop(columns="label").reset_index(drop=True)
        return out, labels, every[CANDIDATE_COLUMNS]
    return out, labels


def zone_areas(inclusion: Any, zone_ids: Any, names: list[str], pixel_area_km2: float) -> dict:
    """Eligible km² per zone name: Σ inclusion fraction × pixel area over each zone's pixels
    (1-based ids into ``names``): dask layers are summed block by block on the workers (only
    the per-zone sums travel), NumPy ones one strip of rows at a time."""
    if hasattr(inclusion, "to_delayed") and hasattr(zone_ids, "rechunk"):  # dask: on the workers
        import dask

        blocks = zip(
            inclusion.to_delayed().ravel(),
            zone_ids.rechunk(inclusion.chunks).to_delayed().ravel(),
            strict=True,
        )
        parts = [dask.delayed(zone_sums, pure=True)(i, z, len(names)) for i, z in blocks]
        sums = np.sum(dask.compute(*parts), axis=0)  # one float64 per zone travels per block
    else:
        sums = np.zeros(len(names) + 1)
        edges = _row_edges([inclusion, zone_ids], inclusion.shape[0])
        for r0, r1 in zip(edges[:-1], edges[1:], strict=True):
            sums += zone_sums(*_read([inclusion, zone_ids], r0, r1), len(names))
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
