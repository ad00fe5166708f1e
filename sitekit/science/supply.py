"""Supply curves over ALL candidate sites, and the run's technical-potential outputs.

:func:`supply_curve` orders every candidate site of a technology (not only the top-N lists) by
total LCOE including its grid connection, with cumulative MW and GWh/yr — the table NREL's reV
writes and its users chart (reV ``supply_curve/supply_curve.py``: ``total_lcoe`` = plant LCOE +
levelised cost of transmission; Maclaurin et al. 2021, *The Renewable Energy Potential (reV)
Model*, NREL/TP-6A20-73067). :func:`run_tables` is what :mod:`sitekit.engine.run` calls: land
competition, the technical potential per admin unit (:mod:`sitekit.science.potential`) and grid-point
allocation (:func:`sitekit.science.hosting.allocate`); :mod:`sitekit.outputs.supply` writes the CSV
files and the supply-curve chart.

References: Maclaurin et al. 2021 (NREL/TP-6A20-73067).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

#: columns of ``supply_curve.csv``
SUPPLY_COLUMNS = [
    "technology",
    "order",
    "site_id",
    "prefecture",
    "county",
    "capacity_mw",
    "energy_gwh",
    "capacity_factor",
    "total_lcoe_cny_per_kwh",
    "connection_point",
    "connection_kv",
    "connection_km",
    "connection_status",
    "new_transmission_cny",
    "cumulative_mw",
    "cumulative_gwh",
    "in_top_n",
    "x_m",
    "y_m",
]


def supply_curve(sites: pd.DataFrame, point_names: list[str]) -> pd.DataFrame:
    """Per technology, every site by ascending total LCOE incl. connection, with cumulative MW
    and GWh/yr (ties: site id).

    Parameters
    ----------
    sites : all candidate sites of all technologies after :func:`sitekit.science.hosting.allocate`
        (technology, site_id, capacity_mw [MW], energy_gwh [GWh/yr], total_lcoe_cny_per_kwh,
        allocated_point_index, allocated_connection_km, connection_kv, connection_status …).
    point_names : connection point names by index.

    Returns :data:`SUPPLY_COLUMNS` (``x_m``/``y_m``: the site's centre in the grid CRS [m],
    read by the hydro–wind–solar bases); the last ``cumulative_mw`` of a technology equals the
    sum of its sites' MW.
    """
    df = sites.copy()
    names = np.asarray([*point_names, ""], dtype=object)
    idx = df["allocated_point_index"].to_numpy(int)
    df["connection_point"] = names[np.where(idx >= 0, idx, len(point_names))]
    df["connection_km"] = df["allocated_connection_km"]
    df = df.sort_values(
        ["technology", "total_lcoe_cny_per_kwh", "site_id"], na_position="last", kind="stable"
    )
    g = df.groupby("technology", sort=False)
    df["order"] = g.cumcount() + 1
    df["cumulative_mw"] = g["capacity_mw"].cumsum()
    df["cumulative_gwh"] = g["energy_gwh"].cumsum()
    for c in SUPPLY_COLUMNS:
        if c not in df.columns:
            df[c] = np.nan
    out = df[SUPPLY_COLUMNS].reset_index(drop=True)
    for c in ("capacity_mw", "energy_gwh", "connection_km", "cumulative_mw", "cumulative_gwh",
              "x_m", "y_m"):  # fmt: skip
        out[c] = out[c].astype(float).round(3)
    out["total_lcoe_cny_per_kwh"] = out["total_lcoe_cny_per_kwh"].astype(float).round(4)
    out["new_transmission_cny"] = out["new_transmission_cny"].astype(float).round(0)
    return out


def check_sites(df: pd.DataFrame, *, max_lcoe_cny_per_kwh: float = 20.0) -> list[str]:
    """Invariants every site / supply-curve table keeps; returns the broken ones (empty = ok).

    capacity factor in [0, 1]; energy = MW × CF × 8.76 GWh/yr (±0.5 % for rounding); LCOE
    finite, > 0 and below ``max_lcoe_cny_per_kwh`` (20 CNY/kWh ≈ 50× China's coal benchmark
    tariff of ≈0.35–0.45 CNY/kWh, NDRC 发改价格〔2019〕1658号: anything above is a unit error).
    """
    bad: list[str] = []
    if not len(df):
        return bad
    cf = df["capacity_factor"].to_numpy(float)
    if not ((cf >= 0) & (cf <= 1)).all():
        bad.append(f"capacity factor outside [0, 1]: max {np.nanmax(cf):.3g}")
    e = df["energy_gwh"].to_numpy(float)
    want = df["capacity_mw"].to_numpy(float) * cf * 8.76
    if not np.allclose(e, want, rtol=5e-3, atol=1e-3):
        bad.append("energy_gwh != capacity_mw × capacity_factor × 8.76")
    col = "total_lcoe_cny_per_kwh" if "total_lcoe_cny_per_kwh" in df else "lcoe_cny_per_kwh"
    lc = df[col].to_numpy(float)
    if not (np.isfinite(lc) & (lc > 0) & (lc < max_lcoe_cny_per_kwh)).all():
        bad.append(f"{col} outside (0, {max_lcoe_cny_per_kwh}) CNY/kWh: max {np.nanmax(lc):.3g}")
    return bad


@dataclass
class Land:
    """One technology's land after competition (lazy arrays on the run's grid)."""

    inclusion: Any  # eligible fraction if alone [0–1]
    inclusion_after: Any  # eligible fraction after competition [0–1]
    capacity_after: Any  # installed MW per km² of pixel after competition
    shared: Any  # bool: shared with the other technology (rule "shared")


def land_use(layers: dict[str, Any], recipes: dict[str, Any]) -> dict[str, Land]:
    """Land per technology after :func:`sitekit.science.competition.resolve` (lazy; rule from the
    recipes, which must agree when both PV and wind run)."""
    import dask.array as da

    from sitekit.errors import RecipeError
    from sitekit.science import competition

    incl = {
        t: da.where(layers[f"{t}_eligible"], layers[f"{t}_inclusion"], np.float32(0))
        for t in recipes
    }
    dens = {t: r.sites.power_density_mw_per_km2 for t, r in recipes.items()}
    shared_d = {
        t: r.competition.shared_power_density_mw_per_km2 or dens[t] for t, r in recipes.items()
    }
    if not {"pv", "wind"} <= set(recipes):
        no = da.zeros_like(next(iter(incl.values())), dtype=bool) if incl else None
        return {t: Land(incl[t], incl[t], incl[t] * np.float32(dens[t]), no) for t in recipes}
    rules = {recipes["pv"].competition.rule, recipes["wind"].competition.rule}
    if len(rules) > 1:
        raise RecipeError(
            f"competition.rule differs between the PV and wind recipes ({sorted(rules)}); "
            "set the same rule in both"
        )
    pv, wind, shared = competition.resolve(
        incl["pv"], incl["wind"], layers["pv_lcoe"], layers["wind_lcoe"], rules.pop()
    )
    after = {"pv": pv, "wind": wind}
    return {
        t: Land(
            incl[t],
            after[t],
            competition.density(after[t], shared, dens[t], shared_d[t]),
            shared,
        )
        for t in ("pv", "wind")
    }


def run_tables(
    *,
    grid: Any,
    layers: dict[str, Any],
    recipes: dict[str, Any],
    legends: dict[str, list],
    land: dict[str, Land],
    zones: dict[str, Any],
    candidates: dict[str, pd.DataFrame],
    points: Any,
    point_names: list[str],
) -> dict[str, Any]:
    """Technical potential, grid allocation and supply curves of a run (computes the per-zone
    sums; :func:`sitekit.outputs.supply.write_run_tables` writes ``potential.csv``,
    ``grid_allocation.csv``, ``supply_curve.csv`` and ``supply_curve.png``).

    Returns {"potential": DataFrame, "supply": DataFrame, "per_point": DataFrame,
    "layer": county GeoDataFrame with the potential columns (or None), "checks": [str],
    "allocated": bool (the sites were allocated to connection points), "timings": {str: s}}.
    """
    import time

    import dask
    import dask.array as da

    from sitekit.science import hosting, potential

    t0 = time.perf_counter()

    pref_ids, pref_names, _ = zones["prefecture"]
    cnty = zones.get("county")
    cnty_ids = layers["county_id"] if cnty else da.zeros_like(layers["prefecture_id"])
    cnty_names = cnty[1] if cnty else []
    sums, codes = {}, {}
    for t in recipes:
        legend = getattr(legends[t], "legend", legends[t])  # a ConstraintResult or its legend
        forced = int(getattr(legends[t], "forced_bits", 0))
        codes[t] = [rb.code for rb in legend]
        sums[t] = potential.zone_totals(
            prefecture_id=layers["prefecture_id"],
            county_id=cnty_ids,
            study_fraction=layers["study_fraction"],
            reasons=layers[f"{t}_exclusion_reasons"],
            inclusion=land[t].inclusion,
            inclusion_after=land[t].inclusion_after,
            capacity_after_mw_per_km2=land[t].capacity_after,
            shared=land[t].shared,
            energy_kwh_per_kw=layers[f"{t}_energy"],
            density_mw_per_km2=recipes[t].sites.power_density_mw_per_km2,
            n_prefectures=len(pref_names),
            n_counties=len(cnty_names),
            n_bits=len(legend),
            forced_bits=forced,
            compute=False,
        )
    # both technologies in one round trip: they share the competition graph
    done = dask.compute(sums)[0]
    sums = {t: np.sum(v, axis=0) if isinstance(v, list | tuple) else v for t, v in done.items()}
    timings = {"potential_sums_s": time.perf_counter() - t0}
    for t in recipes:  # forced-inclusion bits keep land: report them as such
        forced = int(getattr(legends[t], "forced_bits", 0))
        for rb in getattr(legends[t], "legend", legends[t]):
            if forced & (1 << rb.bit):
                codes[t][rb.bit] = f"forced_{rb.code}"
    pot = potential.potential_table(
        sums,
        pixel_area_km2=grid.pixel_area_km2,
        prefecture_names=pref_names,
        county_names=cnty_names,
        reason_codes=codes,
    )
    layer = None
    if cnty:
        gdf = cnty[2]
        field = "name_en" if "name_en" in gdf.columns else gdf.columns[0]
        rows = pot[pot["level"] == "county"].drop(columns=["level"])
        value_cols = [c for c in rows.columns if c not in ("prefecture", "county", "technology")]
        wide = pd.concat(
            [
                rows[rows["technology"] == t]
                .groupby("county")[value_cols]
                .sum()
                .add_prefix(f"{t}_")
                for t in recipes
            ],
            axis=1,
        )
        layer = gdf[[field, "geometry"]].merge(wide, left_on=field, right_index=True, how="left")
    # all candidate sites compete for the connection points, cheapest first
    frames = [c.assign(technology=t) for t, c in candidates.items() if len(c)]
    allsites = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    supply, per_point, checks = pd.DataFrame(columns=SUPPLY_COLUMNS), pd.DataFrame(), []
    allocated = bool(len(allsites) and points is not None and len(points))
    if allocated:
        pts = grid.to_grid_crs(points, "connection points")
        cap, src = hosting.point_capacity_mw(pts)
        econ = {t: r.economics for t, r in recipes.items()}
        t1 = time.perf_counter()
        alloc = hosting.allocate(allsites, pts, cap, economics=econ)
        timings["allocation_s"] = time.perf_counter() - t1
        per_point = hosting.allocation_per_point(alloc, pts, cap, src)
        per_point["name"] = point_names[: len(per_point)]
        supply = supply_curve(alloc, point_names)
        checks = check_sites(supply)
        if checks:
            import warnings

            from sitekit.errors import SitekitWarning

            warnings.warn(f"supply curve: {'; '.join(checks)}", SitekitWarning, stacklevel=2)
    return {"potential": pot, "supply": supply, "per_point": per_point, "layer": layer,
            "checks": checks, "allocated": allocated, "timings": timings}  # fmt: skip


#: bilingual headers of the report's technical-potential table
POTENTIAL_HEADERS = {
    "prefecture": "Prefecture 市州",
    "technology": "Technology 技术",
    "study_km2": "Study area [km²] 研究区面积",
    "excluded_km2": "Excluded, all rules [km²] 排除面积（合计）",
    "eligible_km2": "Eligible if alone [km²] 可用面积（单独）",
    "technical_potential_mw": "Technical potential if alone [MW] 技术可开发量（单独）",
    "technical_potential_gwh": "Technical potential if alone [GWh/yr] 技术可开发电量（单独）",
    "mean_cf": "Mean CF 平均容量系数",
    "technical_potential_mw_after_competition": (
        "Technical potential after competition [MW] 技术可开发量（用地竞争后）"
    ),
    "technical_potential_gwh_after_competition": (
        "Technical potential after competition [GWh/yr] 技术可开发电量（用地竞争后）"
    ),
    "shared_km2": "Shared land [km²] 共用土地",
}


def report_tables(
    pot: pd.DataFrame, supply: pd.DataFrame | None = None
) -> list[tuple[str, str, pd.DataFrame]]:
    """(English title, Chinese title, table) for the run report: the technical potential per
    prefecture, the share of the study area each exclusion rule removes [%] and, given the
    supply curve, the MW allocated to existing connection points or needing new lines."""
    out = allocation_table(supply)
    if pot is None or not len(pot):
        return out
    p = pot[pot["level"].isin(["prefecture", "study_area"])].copy()
    p["prefecture"] = p["prefecture"].where(p["level"] != "study_area", "Study area 研究区")
    cols = [c for c in POTENTIAL_HEADERS if c in p.columns]
    t1 = p[cols].rename(columns=POTENTIAL_HEADERS)
    rules = [c for c in p.columns if c.startswith("excluded_") and c.endswith("_km2")]
    share = p[["prefecture", "technology"]].copy()
    for c in ["excluded_km2", *[r for r in rules if r != "excluded_km2"]]:
        name = "all rules 合计" if c == "excluded_km2" else c[len("excluded_") : -len("_km2")]
        share[f"{name} [%]"] = (100 * p[c] / p["study_km2"]).round(2)
    share = share.rename(columns=POTENTIAL_HEADERS)
    return [
        (
            "Technical potential — all eligible land (not the top-N site lists)",
            "技术可开发量——全部可用土地（非前N名场址）",
            t1,
        ),
        ("Share of the study area each rule removes", "各排除规则占研究区面积比例", share),
        *out,
    ]


def allocation_table(supply: pd.DataFrame | None) -> list[tuple[str, str, pd.DataFrame]]:
    """Candidate sites' MW allocated to existing connection points and MW that needs new
    transmission (with the new lines' cost), per technology, from ``supply_curve.csv``."""
    if supply is None or not len(supply):
        return []
    g = supply.groupby(["technology", "connection_status"])
    t = g.agg(
        n_sites=("site_id", "size"),
        capacity_mw=("capacity_mw", "sum"),
        energy_gwh=("energy_gwh", "sum"),
        new_transmission_cny_bn=("new_transmission_cny", lambda x: x.sum() / 1e9),
    ).reset_index()
    zh = {"allocated": "已分配", "needs new transmission": "需新建输电"}
    t["connection_status"] = [f"{s} {zh.get(s, '')}".strip() for s in t["connection_status"]]
    t = t.round({"capacity_mw": 1, "energy_gwh": 1, "new_transmission_cny_bn": 3}).rename(
        columns={
            "technology": "Technology 技术",
            "connection_status": "Connection 并网",
            "n_sites": "Sites 场址数",
            "capacity_mw": "MW 装机",
            "energy_gwh": "GWh/yr 年发电量",
            "new_transmission_cny_bn": "New lines [bn CNY] 新建线路投资 [十亿元]",
        }
    )
    return [
        (
            "All candidate sites: allocated to existing connection points or needing new lines",
            "全部候选场址：已分配至现有并网点或需新建输电",
            t,
        )
    ]


def site_overlaps(sites: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Per site, the area [km²] that a site of another technology also covers (0 unless the
    competition rule is "shared"), and the total per pair of layers ``"a∩b"`` [km²].
    Geometries in one metric CRS; the inputs are not changed."""
    import shapely

    keys = sorted(k for k, g in sites.items() if g is not None and len(g))
    per: dict[str, np.ndarray] = {}
    totals: dict[str, float] = {}
    for k in keys:
        geoms = np.asarray(sites[k].geometry.values, dtype=object)
        shared = np.zeros(len(geoms))
        for other in keys:
            if other == k:
                continue
            og = np.asarray(sites[other].geometry.values, dtype=object)
            left, right = shapely.STRtree(og).query(geoms, predicate="intersects")
            inter = shapely.area(shapely.intersection(geoms[left], og[right])) / 1e6
            np.add.at(shared, left, inter)
            if k < other:
                totals[f"{k}∩{other}"] = round(float(inter.sum()), 4)
        per[k] = shared
    return per, totals
