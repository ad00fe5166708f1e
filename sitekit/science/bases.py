"""Hydro–wind–solar complementary bases (水风光一体化基地): how much PV and wind a hydro plant's
export line can carry, from typical-day profiles (:mod:`sitekit.science.profiles`).

For one base — a hydro plant with installed MW ``P``, an export line of ``C`` MW and the PV and
wind sites of its catchment — a linear programme over 12 typical days × 24 h (weights = days
of the month) chooses the PV MW ``x_pv``, the wind MW ``x_w``, the hourly hydro output
``h[m,t]`` and the curtailment ``c[m,t]`` that maximise the PV+wind energy delivered::

    max  Σ_m D_m Σ_t (x_pv p[m,t] + x_w w[m,t] − c[m,t])
    s.t. h[m,t] + x_pv p[m,t] + x_w w[m,t] − c[m,t] ≤ C          (line)
         0 ≤ c[m,t] ≤ x_pv p[m,t] + x_w w[m,t]                   (only generation is curtailed)
         Σ_t h[m,t] = E_m                                          (the day's hydro energy is fixed)
         lo_m ≤ h[m,t] ≤ P                                         (regulation class bounds)
         Σ D_m Σ_t c ≤ α Σ D_m Σ_t (x_pv p + x_w w)                (annual curtailment limit α)
         0 ≤ x_pv ≤ PV MW of the catchment, 0 ≤ x_w ≤ wind MW of the catchment

with a secondary term −ε Σ_m D_m 24 z_m (z_m ≤ each hour's line flow, ε = :data:`FIRM_WEIGHT`)
that picks, among equally good dispatches, the one with the highest daily minimum line flow
(the firm share reported), solved with scipy ``linprog`` (HiGHS). The same LP with the MW fixed gives the least-curtailment
dispatch of a chosen set of sites (:func:`dispatch`). Hydro has priority on its own line (its
energy is never curtailed: water that cannot pass the line in a day is counted as spilled
before the PV/wind are added); hydro moves within the day only, never between days or months.

Limits of the method (screening, not a grid study): typical days average out the weather, so
curtailment on real cloudy/windy days is under-stated; the line is the plant's own export line
(default: installed MW × ``line_rating_factor``, :class:`sitekit.science.hosting.LineShareAssumption`),
not the backbone behind it; one plant per base (cascades are not pooled).

References
----------
Ming, B. et al. (2017): Optimizing utility-scale photovoltaic power generation for integration
into a hydropower reservoir by incorporating long- and short-term operational decisions. Applied
Energy 204, 432–445 — the setting (PV sharing a reservoir plant's line, Longyangxia); the LP
here is this module's own, simpler, typical-day form.
Virtanen, P. et al. (2020): SciPy 1.0. Nature Methods 17, 261–272; Huangfu, Q., Hall, J.A.J.
(2018): Parallelizing the dual revised simplex method. Math. Prog. Comp. 10, 119–142 (HiGHS).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import linprog
from scipy.sparse import coo_matrix, csr_matrix, hstack, vstack

from sitekit.errors import InputError, SitekitError
from sitekit.science.profiles import DAYS_IN_MONTH, HydroProfile

#: dry season of the southwest China hydro system (枯水期): December–May [month numbers]
DRY_MONTHS = (12, 1, 2, 3, 4, 5)
_T = 12 * 24
#: weight of the secondary objective (flattest line flow) against delivered energy [-]
FIRM_WEIGHT = 1e-3


@dataclass(frozen=True)
class Dispatch:
    """A base's typical days [MW], each (12, 24), and the MW of PV and wind."""

    line_mw: float
    pv_mw: float
    wind_mw: float
    hydro: np.ndarray  # dispatched hydro output
    pv: np.ndarray  # PV generation before curtailment
    wind: np.ndarray  # wind generation before curtailment
    curtailed: np.ndarray  # PV+wind curtailed

    @property
    def flow(self) -> np.ndarray:
        """Line flow [MW] (12, 24)."""
        return self.hydro + self.pv + self.wind - self.curtailed

    def energy_gwh(self, a: np.ndarray) -> float:
        """Annual energy [GWh] of a (12, 24) power array [MW]."""
        return float((a.sum(axis=1) * DAYS_IN_MONTH).sum() / 1000.0)

    def monthly_gwh(self, a: np.ndarray) -> np.ndarray:
        """Monthly energy [GWh] (12,) of a (12, 24) power array [MW]."""
        return a.sum(axis=1) * DAYS_IN_MONTH / 1000.0

    def summary(self) -> dict[str, float]:
        """Annual metrics: hydro, PV+wind generated, delivered (``added_gwh``) and curtailed
        [GWh]; curtailment = curtailed / generated [-]; line utilisation = energy / (line MW ×
        8760 h) before (hydro alone) and after [-]; firm share = the part of the line's annual
        energy under each typical day's lowest hourly flow (a block there every hour) [-]."""
        gen = self.energy_gwh(self.pv + self.wind)
        cur = self.energy_gwh(self.curtailed)
        cap = self.line_mw * 8.76
        flow = self.flow
        total = self.energy_gwh(flow)
        firm = float((flow.min(axis=1) * 24 * DAYS_IN_MONTH).sum() / 1000.0)
        return {
            "hydro_gwh": self.energy_gwh(self.hydro),
            "generated_gwh": gen,
            "added_gwh": gen - cur,
            "curtailed_gwh": cur,
            "curtailment": cur / gen if gen > 0 else 0.0,
            "utilisation_before": self.energy_gwh(self.hydro) / cap if cap > 0 else np.nan,
            "utilisation_after": total / cap if cap > 0 else np.nan,
            "firm_share": firm / total if total > 0 else np.nan,
        }


def _check(profile: np.ndarray, what: str) -> np.ndarray:
    p = np.asarray(profile, float)
    if p.shape != (12, 24) or not np.isfinite(p).all() or (p < 0).any():
        raise InputError(f"{what} profile must be 12 × 24 finite values ≥ 0 [MW/MW]")
    return p


def _lp(hydro: HydroProfile, line_mw: float, pv: np.ndarray, wind: np.ndarray, *,
        curtailment_limit: float, pv_bounds: tuple[float, float],
        wind_bounds: tuple[float, float], size: bool) -> Dispatch:  # fmt: skip
    """Build and solve the LP of the module docstring (``size``: maximise delivered energy;
    else the MW are fixed by equal bounds and curtailment is minimised)."""
    if not line_mw > 0:
        raise InputError(f"line capacity must be > 0 MW, got {line_mw}")
    p, w = _check(pv, "PV").ravel(), _check(wind, "wind").ravel()
    d = np.repeat(DAYS_IN_MONTH, 24)  # weight of each typical hour [days]
    cap_h = min(line_mw, hydro.max_mw)
    e_day = np.minimum(hydro.energy_mwh_per_day, 24.0 * cap_h)  # what the line can take
    lo = np.minimum(hydro.min_mw, e_day / 24.0)
    lo_h = np.repeat(lo, 24)
    # variables: [x_pv, x_w, h(288), c(288), z(12)]; z = each day's lowest line flow
    n = 2 + 2 * _T + 12
    eye = csr_matrix(np.eye(_T))
    gen = csr_matrix(np.column_stack([p, w]))
    rows = np.repeat(np.arange(12), 24)
    pick = coo_matrix((np.ones(_T), (np.arange(_T), rows)), shape=(_T, 12))
    none = csr_matrix((_T, 12))
    # line: gen·x + h − c ≤ C ; curtail ≤ generation: −gen·x + c ≤ 0 ; z ≤ flow
    a_line = hstack([gen, eye, -eye, none])
    a_cur = hstack([-gen, csr_matrix((_T, _T)), eye, none])
    a_min = hstack([-gen, -eye, eye, pick])
    # annual curtailment limit: Σ d c − α Σ d gen·x ≤ 0
    e_pv, e_w = float((d * p).sum()), float((d * w).sum())
    a_lim = csr_matrix(np.r_[-curtailment_limit * e_pv, -curtailment_limit * e_w,
                             np.zeros(_T), d, np.zeros(12)][None, :])  # fmt: skip
    a_ub = vstack([a_line, a_cur, a_min, a_lim]).tocsr()
    b_ub = np.r_[np.full(_T, line_mw), np.zeros(_T), np.zeros(_T), 0.0]
    a_eq = hstack([csr_matrix((12, 2)), coo_matrix((np.ones(_T), (rows, np.arange(_T))),
                   shape=(12, _T)), csr_matrix((12, _T + 12))]).tocsr()  # fmt: skip
    b_eq = e_day
    bounds = [pv_bounds, wind_bounds, *zip(lo_h, np.full(_T, cap_h), strict=True),
              *((0.0, None),) * _T, *((0.0, None),) * 12]  # fmt: skip
    cost = np.zeros(n)
    cost[2 + _T : 2 + 2 * _T] = d / 1000.0
    # secondary: among equally good dispatches, the flattest line flow (highest daily minimum);
    # FIRM_WEIGHT < 1 so that curtailing energy never buys a higher minimum
    cost[2 + 2 * _T :] = -FIRM_WEIGHT * 24.0 * DAYS_IN_MONTH / 1000.0
    if size:
        cost[0], cost[1] = -e_pv / 1000.0, -e_w / 1000.0
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=bounds,
                  method="highs")  # fmt: skip
    if res.status != 0:
        raise SitekitError(f"base LP not solved: {res.message}")
    x = res.x
    hydro_mw = x[2 : 2 + _T].reshape(12, 24)
    cur = np.clip(x[2 + _T : 2 + 2 * _T], 0.0, None).reshape(12, 24)
    return Dispatch(line_mw, float(x[0]), float(x[1]), hydro_mw, float(x[0]) * p.reshape(12, 24),
                    float(x[1]) * w.reshape(12, 24), cur)  # fmt: skip


def size_base(hydro: HydroProfile, line_mw: float, pv: np.ndarray, wind: np.ndarray, *,
              curtailment_limit: float = 0.05, pv_max_mw: float = np.inf,
              wind_max_mw: float = np.inf) -> Dispatch:  # fmt: skip
    """PV and wind MW [MW] the line carries with at most ``curtailment_limit`` [-] of their
    annual energy curtailed, maximising the PV+wind energy delivered (module docstring).

    ``pv``/``wind``: per-MW typical-day output [MW/MW] (12, 24); ``pv_max_mw``/``wind_max_mw``:
    the MW available in the catchment (``inf`` = unlimited)."""
    if not 0 <= curtailment_limit < 1:
        raise InputError(f"curtailment limit must be in [0, 1), got {curtailment_limit}")
    big = 1e3 * line_mw  # "unlimited" is bounded by what a line could ever see
    return _lp(hydro, line_mw, pv, wind, curtailment_limit=curtailment_limit,
               pv_bounds=(0.0, float(min(pv_max_mw, big))),
               wind_bounds=(0.0, float(min(wind_max_mw, big))), size=True)  # fmt: skip


def dispatch(hydro: HydroProfile, line_mw: float, pv: np.ndarray, wind: np.ndarray, *,
             pv_mw: float, wind_mw: float) -> Dispatch:  # fmt: skip
    """Least-curtailment dispatch of fixed PV and wind MW with the hydro re-dispatched within
    each day (no curtailment limit)."""
    return _lp(hydro, line_mw, pv, wind, curtailment_limit=1.0, pv_bounds=(pv_mw, pv_mw),
               wind_bounds=(wind_mw, wind_mw), size=False)  # fmt: skip


def correlations(hydro: np.ndarray, pv: np.ndarray, wind: np.ndarray) -> dict[str, float]:
    """Pearson correlations of the monthly energy of hydro with PV and with wind (seasonal
    complementarity: < 0 = complementary) and of PV with wind over the 288 typical hours."""

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        if np.std(a) == 0 or np.std(b) == 0:
            return float("nan")
        return float(np.corrcoef(a, b)[0, 1])

    month = lambda a: np.asarray(a, float).sum(axis=1) * DAYS_IN_MONTH  # noqa: E731
    return {
        "corr_hydro_pv_monthly": corr(month(hydro), month(pv)),
        "corr_hydro_wind_monthly": corr(month(hydro), month(wind)),
        "corr_pv_wind_hourly": corr(np.ravel(pv), np.ravel(wind)),
    }


def pick_sites(sites: pd.DataFrame, target_mw: float) -> np.ndarray:
    """Sites taken cheapest first (``lcoe_cny_per_kwh``, then ``site_id``), whole, while their
    cumulative MW stays ≤ ``target_mw`` [MW]; returns a boolean mask in the given order."""
    take = np.zeros(len(sites), bool)
    if not len(sites) or target_mw <= 0:
        return take
    order = np.lexsort((sites["site_id"].astype(str).to_numpy(),
                        sites["lcoe_cny_per_kwh"].to_numpy(float)))  # fmt: skip
    left = target_mw + 1e-6
    for i in order:
        mw = float(sites["capacity_mw"].iloc[i])
        if mw <= left:
            take[i] = True
            left -= mw
    return take


def weighted_profile(profiles: np.ndarray, mw: np.ndarray) -> np.ndarray:
    """Capacity-weighted mean per-MW profile [MW/MW] of (n, 12, 24) site profiles."""
    mw = np.asarray(mw, float)
    if profiles.shape[0] == 0 or mw.sum() <= 0:
        return np.zeros((12, 24))
    return np.tensordot(mw, profiles, axes=1) / mw.sum()


# -- bases from the plant table and the sites -------------------------------------------------
def _bundle(hp: HydroProfile, line_mw: float, gp, pp, take_p, gw, pw, take_w,
            limit: float) -> Dispatch:  # fmt: skip
    """Dispatch the chosen whole sites; while their curtailment exceeds ``limit`` (their
    profiles differ from the catchment mean the LP sized on), drop the dearest chosen site.
    ``take_p``/``take_w`` are updated in place."""
    while True:
        mp, mw = gp["capacity_mw"].to_numpy(float), gw["capacity_mw"].to_numpy(float)
        d = dispatch(hp, line_mw, weighted_profile(pp[take_p], mp[take_p]),
                     weighted_profile(pw[take_w], mw[take_w]), pv_mw=float(mp[take_p].sum()),
                     wind_mw=float(mw[take_w].sum()))  # fmt: skip
        if d.summary()["curtailment"] <= limit + 1e-9 or not (take_p.any() or take_w.any()):
            return d
        cost = np.r_[np.where(take_p, gp["lcoe_cny_per_kwh"].to_numpy(float), -np.inf),
                     np.where(take_w, gw["lcoe_cny_per_kwh"].to_numpy(float), -np.inf)]  # fmt: skip
        k = int(np.argmax(np.nan_to_num(cost, nan=np.inf, neginf=-np.inf)))
        if k < len(take_p):
            take_p[k] = False
        else:
            take_w[k - len(take_p)] = False


#: GEM Global Hydropower Tracker columns read by :func:`anchor_plants`
GEM_COLUMNS = {"Project Name": "hydro_plant", "Project Name (local lang/script)": "hydro_plant_zh",
               "Capacity (MW)": "hydro_mw", "Status": "status", "Technology Type": "technology",
               "River / Watercourse": "river"}  # fmt: skip


def anchor_plants(plants, spec, *, crs, dedupe_km: float = 2.0):
    """The plants that anchor bases, in ``crs`` (metric): GEM rows with a status in
    ``spec.statuses``, not pumped storage, ≥ ``spec.min_hydro_mw``; a plant listed twice under
    one Chinese name, or within ``dedupe_km`` [km] of a larger one, counts once (the largest)."""
    import geopandas as gpd

    missing = [c for c in GEM_COLUMNS if c not in plants.columns]
    if missing:
        raise InputError(f"hydro plant table lacks GEM columns {missing}")
    p = plants.rename(columns=GEM_COLUMNS).to_crs(crs)
    p["hydro_mw"] = pd.to_numeric(p["hydro_mw"], errors="coerce")
    tech = p["technology"].astype(str).str.lower()
    keep = (p["status"].isin(spec.statuses) & ~tech.str.contains("pumped")
            & (p["hydro_mw"] >= spec.min_hydro_mw))  # fmt: skip
    p = p[keep].sort_values("hydro_mw", ascending=False, kind="stable")
    p = p.drop_duplicates("hydro_plant_zh", keep="first").reset_index(drop=True)
    xy = np.column_stack([p.geometry.x.to_numpy(), p.geometry.y.to_numpy()])
    drop = np.zeros(len(p), bool)
    for i in range(len(p)):
        if not drop[i]:
            near = np.hypot(*(xy[i + 1 :] - xy[i]).T) <= dedupe_km * 1000.0
            drop[i + 1 :] |= near
    return gpd.GeoDataFrame(p[~drop].reset_index(drop=True), geometry="geometry", crs=crs)


def build_bases(plants, sites: dict, spec, *, crs, clearness=0.6, design=None,
                profiles_out: dict | None = None):  # fmt: skip
    """Size a base at every anchor plant (:func:`anchor_plants`).

    Every PV/wind site whose centre lies within ``spec.radius_km`` of an anchor joins its
    nearest anchor (its catchment). The LP (:func:`size_base`) runs on the capacity-weighted
    profile of the catchment; the sites are then taken cheapest first, whole, up to the LP's MW
    per technology (:func:`pick_sites`), and the chosen sites are dispatched again
    (:func:`dispatch`) for the reported figures.

    ``profiles_out``, when given, receives every catchment site's per-MW typical day
    ``{(base_id, technology, site_id): (12, 24) array}``.

    Returns (bases GeoDataFrame in ``crs``, sites DataFrame: base_id, technology, site_id,
    capacity_mw, energy_gwh, lcoe_cny_per_kwh, distance_km, bundled; {base_id: Dispatch}).
    """
    import geopandas as gpd
    import shapely

    from sitekit.science import profiles as pr
    from sitekit.science.hosting import _all_sites

    anchors = anchor_plants(plants, spec, crs=crs)
    s = _all_sites({t: g for t, g in sites.items() if t in ("pv", "wind")}, crs)
    cen = shapely.centroid(np.asarray(s.geometry.values, dtype=object))
    owner, dist = np.full(len(s), -1), np.full(len(s), np.nan)
    if len(anchors) and len(s):
        tree = shapely.STRtree(np.asarray(anchors.geometry.values, dtype=object))
        (si, bi), dd = tree.query_nearest(cen, max_distance=spec.radius_km * 1000.0,
                                          return_distance=True, all_matches=False)  # fmt: skip
        owner[si], dist[si] = bi, dd / 1000.0
    s["anchor"], s["distance_km"] = owner, dist
    rows, site_rows, runs = [], [], {}
    for i, a in anchors.iterrows():
        bid = f"HWS{i + 1:02d}"
        mine = s[s["anchor"] == i]
        prof = {}
        for tech in ("pv", "wind"):
            g = mine[mine["technology"] == tech]
            prof[tech] = (g, pr.site_profiles(g, tech, wind=spec.wind, clearness=clearness,
                                              design=design))  # fmt: skip
            if profiles_out is not None:
                for sid, arr in zip(g["site_id"].astype(str), prof[tech][1], strict=True):
                    profiles_out[(bid, tech, sid)] = arr
        reg, reg_src = pr.regulation_class(a["technology"], a["hydro_plant_zh"], spec)
        table = spec.hydro_shares.get(str(a["hydro_plant_zh"]), spec.hydro_shares[reg])
        hp = pr.hydro_profile(float(a["hydro_mw"]), spec.hydro_capacity_factor,
                              table.monthly_shares, reg, spec.regulation[reg].min_output_frac)  # fmt: skip
        given = pd.to_numeric(pd.Series([a.get("line_mw", np.nan)]), errors="coerce").iloc[0]
        line_mw = float(given) if np.isfinite(given) and given > 0 else (
            float(a["hydro_mw"]) * spec.line_rating_factor)  # fmt: skip
        line_src = "catalogue" if np.isfinite(given) and given > 0 else (
            f"default: installed MW × {spec.line_rating_factor:g}")  # fmt: skip
        gp, pp = prof["pv"]
        gw, pw = prof["wind"]
        pv_all = weighted_profile(pp, gp["capacity_mw"].to_numpy(float))
        w_all = weighted_profile(pw, gw["capacity_mw"].to_numpy(float))
        lp = size_base(hp, line_mw, pv_all, w_all, curtailment_limit=spec.curtailment_limit,
                       pv_max_mw=float(gp["capacity_mw"].sum()),
                       wind_max_mw=float(gw["capacity_mw"].sum()))  # fmt: skip
        take_p, take_w = pick_sites(gp, lp.pv_mw), pick_sites(gw, lp.wind_mw)
        d = _bundle(hp, line_mw, gp, pp, take_p, gw, pw, take_w, spec.curtailment_limit)
        pv_mw, w_mw = d.pv_mw, d.wind_mw
        runs[bid] = d
        summ = d.summary()
        corr = correlations(hp.flat(), pv_all, w_all)
        ids = [*gp["site_id"].astype(str)[take_p], *gw["site_id"].astype(str)[take_w]]
        rows.append({
            "base_id": bid, "hydro_plant": a["hydro_plant"], "hydro_plant_zh": a["hydro_plant_zh"],
            "river": a["river"], "status": a["status"], "regulation": reg,
            "regulation_source": reg_src, "hydro_mw": float(a["hydro_mw"]), "line_mw": line_mw,
            "line_source": line_src, "pv_candidates_mw": float(gp["capacity_mw"].sum()),
            "wind_candidates_mw": float(gw["capacity_mw"].sum()), "pv_mw_lp": lp.pv_mw,
            "wind_mw_lp": lp.wind_mw, "pv_mw": pv_mw, "wind_mw": w_mw,
            "n_sites": len(ids), "site_ids": " ".join(ids),
            **{k: summ[k] for k in ("hydro_gwh", "generated_gwh", "added_gwh", "curtailed_gwh",
                                    "curtailment", "utilisation_before", "utilisation_after",
                                    "firm_share")},
            "hydro_spilled_gwh": hp.spilled_mwh_per_yr / 1000.0, **corr,
            "hydro_shares_status": table.status, "wind_shape_status": spec.wind.status,
            **published(a["hydro_plant_zh"], spec), "geometry": a.geometry,
        })  # fmt: skip
        for g, take in ((gp, take_p), (gw, take_w)):
            for k in range(len(g)):
                r = g.iloc[k]
                site_rows.append({"base_id": bid, "technology": r["technology"],
                                  "site_id": str(r["site_id"]), "capacity_mw": r["capacity_mw"],
                                  "energy_gwh": r["energy_gwh"],
                                  "lcoe_cny_per_kwh": r["lcoe_cny_per_kwh"],
                                  "distance_km": r["distance_km"], "bundled": bool(take[k])})  # fmt: skip
    cols = list(rows[0]) if rows else ["base_id", "geometry"]
    out = gpd.GeoDataFrame(pd.DataFrame(rows, columns=cols), geometry="geometry", crs=crs)
    site_cols = ["base_id", "technology", "site_id", "capacity_mw", "energy_gwh",
                 "lcoe_cny_per_kwh", "distance_km", "bundled"]  # fmt: skip
    return out, pd.DataFrame(site_rows, columns=site_cols), runs


def published(name_zh, spec) -> dict:
    """The announced base of ``spec.published`` whose ``name_zh`` is in the plant's Chinese
    name: ``published_pv_mw``/``published_wind_mw`` [MW], ``published_gwh`` [GWh/yr],
    ``published_what``, ``published_source`` (NaN/"" when none). A sanity check beside the
    modelled base, never an input of the sizing."""
    for p in spec.published:
        if name_zh and p.name_zh in str(name_zh):
            return {"published_pv_mw": p.pv_mw, "published_wind_mw": p.wind_mw,
                    "published_gwh": np.nan if p.energy_gwh is None else p.energy_gwh,
                    "published_what": p.what, "published_source": p.source}  # fmt: skip
    return {"published_pv_mw": np.nan, "published_wind_mw": np.nan, "published_gwh": np.nan,
            "published_what": "", "published_source": ""}  # fmt: skip


def hydro_table(plants, spec) -> pd.DataFrame:
    """Every conventional (not pumped-storage) plant of a GEM table, any status, with its
    regulation class (and source), monthly-shares status and modelled monthly generation
    [GWh] (installed MW × ``spec.hydro_capacity_factor`` × 8760 h × monthly shares)."""
    from sitekit.science import profiles as pr

    missing = [c for c in GEM_COLUMNS if c not in plants.columns]
    if missing:
        raise InputError(f"hydro plant table lacks GEM columns {missing}")
    p = pd.DataFrame(plants.drop(columns=plants.geometry.name)).rename(columns=GEM_COLUMNS)
    p = p[~p["technology"].astype(str).str.lower().str.contains("pumped")]
    rows = []
    for _, a in p.iterrows():
        mw = float(pd.to_numeric(a["hydro_mw"], errors="coerce"))
        if not np.isfinite(mw) or mw <= 0:
            continue
        reg, src = pr.regulation_class(a["technology"], a["hydro_plant_zh"], spec)
        table = spec.hydro_shares.get(str(a["hydro_plant_zh"]), spec.hydro_shares[reg])
        hp = pr.hydro_profile(mw, spec.hydro_capacity_factor, table.monthly_shares, reg,
                              spec.regulation[reg].min_output_frac)  # fmt: skip
        gwh = hp.energy_mwh_per_day * DAYS_IN_MONTH / 1000.0
        rows.append({"hydro_plant": a["hydro_plant"], "hydro_plant_zh": a["hydro_plant_zh"],
                     "river": a["river"], "status": a["status"], "technology": a["technology"],
                     "hydro_mw": mw, "regulation": reg, "regulation_source": src,
                     "shares_status": table.status,
                     **{f"gwh_m{m + 1:02d}": gwh[m] for m in range(12)},
                     "spilled_gwh": hp.spilled_mwh_per_yr / 1000.0})  # fmt: skip
    return pd.DataFrame(rows)
