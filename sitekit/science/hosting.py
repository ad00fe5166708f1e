"""Capacity gathered per connection point (hosting, supply curves) and hydro–wind–solar bases.

:func:`hosting_capacity` assigns every candidate site to one connection point — the cheapest by
least-cost path over a cost surface (one MCP run for all sites, :func:`sitekit.science.proximity.
least_cost_paths`) or else the nearest in a straight line — and sums MW and GWh/yr per point; its
supply curve lists the point's sites by LCOE (the sites' LCOE already includes their grid
connection, :mod:`sitekit.science.sites`) with the cumulative MW. :func:`hydro_bases` groups PV and wind
sites around large hydro plants (水风光一体化基地) and estimates how much of the added capacity the
plant's outgoing line could carry (:class:`LineShareAssumption`). The files (``hosting.csv``,
supply curves, ``hydro_bases.csv`` …) are written by :mod:`sitekit.outputs.hosting`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
import xarray as xr

from sitekit.errors import CRSError, LayerError, SitekitWarning
from sitekit.grid import Grid
from sitekit.science import proximity

#: Default available transfer capacity of a connection point by voltage class [kV → MW] when
#: the catalogue gives none: the upper end of the economic transmission capacity of one
#: overhead circuit of that class in Chinese planning practice (110 kV 10–50 MW, 220 kV
#: 100–500 MW, 330 kV 200–800 MW, 500 kV 1,000–1,500 MW; 电力工业部电力规划设计总院《电力系统
#: 设计手册》1998, 表"各级电压架空线路的输送能力"). A screening default, not a grid study: give
#: surveyed values in the catalogue's ``available_mw`` column.
DEFAULT_ATC_MW: dict[int, float] = {110: 50.0, 220: 500.0, 330: 800.0, 500: 1500.0}
#: search radius for a site's alternative connection points [km straight line]
DEFAULT_RADIUS_KM = 50.0
#: status of a site that fits at an existing point, and of one that does not
ALLOCATED, NEW_TRANSMISSION = "allocated", "needs new transmission"


def _all_sites(sites: dict[str, gpd.GeoDataFrame], crs: Any) -> gpd.GeoDataFrame:
    frames = []
    for tech, gdf in sites.items():
        if gdf is None or len(gdf) == 0:
            continue
        if gdf.crs is None:
            raise CRSError(f"{tech} sites have no CRS")
        g = gdf.to_crs(crs) if pyproj.CRS(gdf.crs) != pyproj.CRS(crs) else gdf
        if "capacity_mw" not in g.columns:
            raise LayerError(f"{tech} sites have no 'capacity_mw' column")
        cols = {"site_id": None, "rank": np.nan, "energy_gwh": 0.0,
                "lcoe_cny_per_kwh": np.nan}  # fmt: skip
        g = g.copy()
        for c, default in cols.items():
            if c not in g.columns:
                g[c] = [f"{tech}-{i + 1}" for i in range(len(g))] if c == "site_id" else default
        g["technology"] = tech
        part = pd.DataFrame(g[["technology", *cols, "capacity_mw"]])
        frames.append(gpd.GeoDataFrame(part, geometry=g.geometry.values, crs=crs))
    if not frames:
        return gpd.GeoDataFrame({"technology": [], "site_id": [], "capacity_mw": [],
                                 "energy_gwh": [], "lcoe_cny_per_kwh": []}, geometry=[],
                                crs=crs)  # fmt: skip
    out = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=crs)
    return out[out["capacity_mw"].notna()].reset_index(drop=True)


def assign_sites(
    sites: dict[str, gpd.GeoDataFrame], points: gpd.GeoDataFrame, *,
    cost: xr.DataArray | Mapping[str, xr.DataArray] | None = None, grid: Grid, store: Any = None,
) -> gpd.GeoDataFrame:  # fmt: skip
    """Every site (all technologies) with its connection point.

    ``cost``: one surface for every technology, or ``{technology: surface}`` when their recipes'
    line settings differ (as the run's ``<tech>_connection_distance``); a technology missing from
    the mapping uses its first surface.

    Returns the sites (grid CRS) with ``point_index`` (row position in ``points``),
    ``connection_km`` (least-cost path length, or straight distance from the site polygon [km]),
    ``connection_cost_km`` (accumulated cost [km of flat-equivalent line]; = connection_km for
    straight lines) and ``connection_method``. Sites that no least-cost path reaches fall back to
    the straight line (with a warning), so every site is counted once.
    """
    if points is None or len(points) == 0:
        raise LayerError("no connection points given (grid_points layer is empty)")
    pts = grid.to_grid_crs(points, "connection points")
    allsites = _all_sites(sites, grid.crs)
    geoms = np.asarray(allsites.geometry.values, dtype=object)
    tree = shapely.STRtree(np.asarray(pts.geometry.values, dtype=object))
    if len(geoms):
        (_, nearest), dist = tree.query_nearest(geoms, return_distance=True, all_matches=False)
    else:
        nearest, dist = np.zeros(0, int), np.zeros(0)
    out = allsites.copy()
    out["point_index"] = nearest.astype(int)
    out["connection_km"] = dist / 1000.0
    out["connection_cost_km"] = dist / 1000.0
    out["connection_method"] = "straight line"
    if cost is not None and len(geoms):
        start = shapely.point_on_surface(geoms)
        xy = np.column_stack([shapely.get_x(start), shapely.get_y(start)])
        costs = cost if isinstance(cost, Mapping) else {None: cost}
        first = next(iter(costs.values()))
        tech = allsites["technology"].to_numpy()
        paths: list[Any] = [None] * len(geoms)
        for t in (None,) if len(costs) == 1 else tuple(dict.fromkeys(tech)):
            rows = np.arange(len(geoms)) if t is None else np.nonzero(tech == t)[0]
            found = proximity.least_cost_paths(
                costs.get(t, first), xy[rows], pts, grid, store=store
            )
            for i, p in zip(rows, found, strict=True):
                paths[i] = p
        ok = np.array([p.line is not None and p.target_index >= 0 for p in paths])
        idx = np.nonzero(ok)[0]
        out.loc[idx, "point_index"] = [paths[i].target_index for i in idx]
        out.loc[idx, "connection_km"] = [paths[i].length_m / 1000.0 for i in idx]
        out.loc[idx, "connection_cost_km"] = [paths[i].cost_m / 1000.0 for i in idx]
        out.loc[idx, "connection_method"] = "least-cost path"
        if (~ok).any():
            warnings.warn(f"{int((~ok).sum())} site(s) have no least-cost path to any connection "
                          "point (enclosed by impassable pixels); assigned to the nearest point in "
                          "a straight line", SitekitWarning, stacklevel=2)  # fmt: skip
    return out


def hosting_capacity(
    sites: dict[str, gpd.GeoDataFrame], points: gpd.GeoDataFrame, *,
    cost: xr.DataArray | Mapping[str, xr.DataArray] | None = None, grid: Grid,
    name_field: str = "name", store: Any = None, capacity_field: str = "available_mw",
    radius_km: float = DEFAULT_RADIUS_KM, search_radius_km: float | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Candidate capacity gathered per connection point, what each point can take (allocated
    in order of LCOE, :func:`allocate`), and per-point supply curves.

    Parameters
    ----------
    sites : ``{technology: sites GeoDataFrame}`` with ``capacity_mw`` [MW], ``energy_gwh``
        [GWh/yr], ``lcoe_cny_per_kwh`` [CNY/kWh] (:data:`sitekit.science.sites.SITE_COLUMNS`).
    points : connection points (any CRS).
    cost : cost per metre on ``grid`` (:func:`sitekit.science.proximity.cost_surface`), or
        ``{technology: surface}`` (:func:`assign_sites`); None = straight line to the nearest
        point.
    name_field : column of ``points`` naming them.
    store : keeps the least-cost search for re-runs with other sites (a
        :class:`sitekit.science.proximity.SearchStore`, e.g. the run's
        :func:`sitekit.engine.mcp_store.mcp_store`); None = no store.
    capacity_field : column of ``points`` with the available transfer capacity [MW]
        (:func:`point_capacity_mw`; :data:`DEFAULT_ATC_MW` by voltage class where missing).
    radius_km : search radius for a full point's alternatives [km].
    search_radius_km : no connection to a point farther than this from the site [km straight
        line]; None = no limit (:func:`allocate`, the recipe's ``economics.search_radius_km``).

    Returns
    -------
    per_point : one row per point (all points, sorted by total MW): point_index, name, n_sites,
        ``<tech>_mw``, ``<tech>_gwh`` per technology, total_mw, total_gwh (the sites whose
        cheapest point it is, before any capacity limit: Σ total_mw = Σ site capacity_mw),
        min_lcoe_cny_per_kwh, mean_connection_km, capacity_mw, capacity_source,
        ``allocated_<tech>_mw``, allocated_mw (≤ capacity_mw), remaining_mw, n_sites_allocated.
    supply_curves : per point, its sites by ascending LCOE (incl. connection): point_index, name,
        order, technology, site_id, capacity_mw, energy_gwh, lcoe_cny_per_kwh, connection_km,
        cumulative_mw, cumulative_gwh, connection_status, allocated_point.
    """
    a = assign_sites(sites, points, cost=cost, grid=grid, store=store)
    pts = grid.to_grid_crs(points, "connection points")
    cen = shapely.point_on_surface(np.asarray(a.geometry.values, dtype=object))
    a["x_m"], a["y_m"] = shapely.get_x(cen), shapely.get_y(cen)
    a["connection_distance_km"] = a["connection_cost_km"]
    cap, src = point_capacity_mw(points, capacity_field=capacity_field)
    alloc = allocate(a, pts, cap, radius_km=radius_km, search_radius_km=search_radius_km)
    a["connection_status"] = alloc["connection_status"].to_numpy()
    a["allocated_point_index"] = alloc["allocated_point_index"].to_numpy()
    names = (points[name_field].astype(str).to_numpy() if name_field in points.columns
             else np.asarray([f"point {i}" for i in range(len(points))]))  # fmt: skip
    techs = sorted({t for t, g in sites.items() if g is not None and len(g)})
    per = pd.DataFrame({"point_index": np.arange(len(points)), "name": names})
    if "voltage_kv" in points.columns:
        per["voltage_kv"] = points["voltage_kv"].to_numpy()
    grp = a.groupby("point_index")
    per["n_sites"] = per["point_index"].map(grp.size()).fillna(0).astype(int)
    for t in techs:
        gt = a[a["technology"] == t].groupby("point_index")
        per[f"{t}_mw"] = per["point_index"].map(gt["capacity_mw"].sum()).fillna(0.0)
        per[f"{t}_gwh"] = per["point_index"].map(gt["energy_gwh"].sum()).fillna(0.0)
    per["total_mw"] = per["point_index"].map(grp["capacity_mw"].sum()).fillna(0.0)
    per["total_gwh"] = per["point_index"].map(grp["energy_gwh"].sum()).fillna(0.0)
    per["min_lcoe_cny_per_kwh"] = per["point_index"].map(grp["lcoe_cny_per_kwh"].min())
    per["mean_connection_km"] = per["point_index"].map(grp["connection_km"].mean())
    al = allocation_per_point(alloc, points, cap, src, name_field=name_field)
    per = per.join(al.drop(columns=["point_index", "name", "voltage_kv"], errors="ignore"))
    per = per.sort_values(["total_mw", "point_index"], ascending=[False, True], kind="stable")
    curves = a.assign(name=names[a["point_index"].to_numpy()] if len(a) else [])
    curves = pd.DataFrame(curves.drop(columns="geometry")).sort_values(
        ["point_index", "lcoe_cny_per_kwh", "site_id"], na_position="last", kind="stable"
    )
    g = curves.groupby("point_index")
    curves["order"] = g.cumcount() + 1
    curves["cumulative_mw"] = g["capacity_mw"].cumsum()
    curves["cumulative_gwh"] = g["energy_gwh"].cumsum()
    ap = curves["allocated_point_index"].to_numpy()
    curves["allocated_point"] = np.where(ap >= 0, names[np.maximum(ap, 0)], "")
    cols = ["point_index", "name", "order", "technology", "site_id", "capacity_mw", "energy_gwh",
            "lcoe_cny_per_kwh", "connection_km", "connection_cost_km", "connection_method",
            "cumulative_mw", "cumulative_gwh", "connection_status", "allocated_point"]  # fmt: skip
    return per.reset_index(drop=True), curves[cols].reset_index(drop=True)


# -- hydro–wind–solar bases ------------------------------------------------------------------
@dataclass(frozen=True)
class LineShareAssumption:
    """How much of a hydro plant's outgoing line the added PV/wind could use.

    The line is rated ``line_rating_factor`` × the hydro installed MW. On average hydro uses
    ``hydro_capacity_factor`` of it, leaving ``spare_mw = rating × (1 − CF)``; the share of the
    added nameplate MW that fits is ``line_share = min(1, spare_mw / added_mw)``. This is a
    screening ratio, not a dispatch study: it assumes PV/wind output comes mostly when hydro runs
    below rating (the dry season, Nov–May, when the cascades draw their reservoirs down) and
    ignores wet-season curtailment.

    Default CF 0.5: design generation of the large cascade plants is 4,100–5,000 full-load hours,
    e.g. Xiluodu 13.86 GW / 57 TWh/yr = 0.47 (China Three Gorges Corp., Reuters 3 July 2014),
    Wudongde 10.2 GW / 38.9 TWh/yr = 0.44 (Xinhua, 4 June 2019); Yalong plants run ≈0.55–0.6.
    """

    hydro_capacity_factor: float = 0.5
    line_rating_factor: float = 1.0


def _dedupe(plants: gpd.GeoDataFrame, km: float) -> gpd.GeoDataFrame:
    """Keep the largest of plants within ``km`` of each other; record the merged names."""
    p = plants.sort_values("capacity_mw", ascending=False, kind="stable").reset_index(drop=True)
    geoms = np.asarray(p.geometry.values, dtype=object)
    tree = shapely.STRtree(geoms)
    taken = np.zeros(len(p), bool)
    keep, merged = [], []
    for i in range(len(p)):
        if taken[i]:
            continue
        near = tree.query(geoms[i], predicate="dwithin", distance=km * 1000.0)
        near = near[~taken[near] & (near != i)]
        taken[near] = True
        taken[i] = True
        keep.append(i)
        merged.append("; ".join(str(p["name"].iloc[j]) for j in sorted(near)))
    out = p.iloc[keep].copy()
    out["merged_plants"] = merged
    return out.reset_index(drop=True)


def hydro_bases(
    sites: dict[str, gpd.GeoDataFrame],
    plants: gpd.GeoDataFrame,
    *,
    radius_km: float = 50.0,
    min_hydro_mw: float = 1000.0,
    dedupe_km: float = 2.0,
    line_share_assumption: LineShareAssumption = LineShareAssumption(),
    crs: Any = None,
) -> gpd.GeoDataFrame:
    """Hydro–wind–solar complementary bases (水风光一体化基地) around large hydro plants.

    Each hydro plant of ≥ ``min_hydro_mw`` [MW] (plants within ``dedupe_km`` of each other count
    once: the largest is kept) is a base; every PV/wind site whose polygon centroid lies within
    ``radius_km`` [km] of a base joins its nearest base only.

    Parameters
    ----------
    sites : ``{"pv": …, "wind": …}`` sites with capacity_mw [MW] and energy_gwh [GWh/yr].
    plants : power plants with ``name``, ``fuel`` (hydro rows contain "hydro"), ``capacity_mw``
        and optionally ``river``.
    crs : metric CRS for distances; default the sites' CRS.

    Returns
    -------
    GeoDataFrame (plant points, metric CRS) sorted by added_mw: base_id, hydro_plant, river,
    hydro_mw, pv_mw, wind_mw, added_mw, added_gwh [GWh/yr], n_sites, spare_mw [MW],
    line_share [0–1, NaN without added capacity], allocated_mw / allocated_gwh (the base's
    sites, cheapest first and whole, while their MW fit the spare line capacity: allocated_mw ≤
    spare_mw), not_allocated_mw, merged_plants.
    """
    for col in ("name", "capacity_mw"):
        if col not in plants.columns:
            raise LayerError(f"power plant layer has no '{col}' column")
    if plants.crs is None:
        raise CRSError("power plant layer has no CRS")
    if crs is None:
        crs = next((g.crs for g in sites.values() if g is not None and g.crs is not None), None)
    crs = pyproj.CRS(crs) if crs is not None else plants.estimate_utm_crs()
    if crs.is_geographic:
        raise CRSError(f"hydro bases need a metric CRS, got {crs.name}")
    hydro = plants
    if "fuel" in plants.columns:
        hydro = plants[plants["fuel"].astype(str).str.contains("hydro", case=False)]
    hydro = hydro[pd.to_numeric(hydro["capacity_mw"], errors="coerce") >= min_hydro_mw]
    hydro = _dedupe(hydro.to_crs(crs), dedupe_km) if len(hydro) else hydro.to_crs(crs)
    a = line_share_assumption
    base = gpd.GeoDataFrame({
        "base_id": [""] * len(hydro), "hydro_plant": hydro["name"].astype(str).to_numpy(),
        "river": (hydro["river"].to_numpy() if "river" in hydro.columns else [None] * len(hydro)),
        "hydro_mw": hydro["capacity_mw"].astype(float).to_numpy(),
    }, geometry=np.asarray(hydro.geometry.values, dtype=object), crs=crs)  # fmt: skip
    s = _all_sites(sites, crs)
    cen = shapely.centroid(np.asarray(s.geometry.values, dtype=object))
    owner = np.full(len(s), -1)
    if len(base) and len(s):
        tree = shapely.STRtree(np.asarray(base.geometry.values, dtype=object))
        (si, bi) = tree.query_nearest(cen, max_distance=radius_km * 1000.0, all_matches=False)
        owner[si] = bi
    s["base"] = owner
    s = s[s["base"] >= 0]
    for t in ("pv", "wind"):
        base[f"{t}_mw"] = base.index.map(s[s["technology"] == t].groupby("base")["capacity_mw"]
                                         .sum()).fillna(0.0).astype(float)  # fmt: skip
    base["added_mw"] = base.index.map(s.groupby("base")["capacity_mw"].sum()).fillna(0.0)
    base["added_gwh"] = base.index.map(s.groupby("base")["energy_gwh"].sum()).fillna(0.0)
    base["n_sites"] = base.index.map(s.groupby("base").size()).fillna(0).astype(int)
    base["spare_mw"] = base["hydro_mw"] * a.line_rating_factor * (1 - a.hydro_capacity_factor)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.minimum(1.0, base["spare_mw"] / base["added_mw"])
    base["line_share"] = share.where(base["added_mw"] > 0)
    # the base takes its sites cheapest first, whole, while they fit the spare line capacity
    s = s.sort_values(["base", "lcoe_cny_per_kwh", "site_id"], kind="stable")
    taken = np.zeros(len(s), bool)
    spare = base["spare_mw"].to_numpy(float)
    room = dict(enumerate(spare))
    for k, (b, mw) in enumerate(zip(s["base"].to_numpy(), s["capacity_mw"].to_numpy(float),
                                    strict=True)):  # fmt: skip
        if mw <= room[b] + 1e-9:
            room[b] -= mw
            taken[k] = True
    ok = s[taken]
    base["allocated_mw"] = base.index.map(ok.groupby("base")["capacity_mw"].sum()).fillna(0.0)
    base["allocated_gwh"] = base.index.map(ok.groupby("base")["energy_gwh"].sum()).fillna(0.0)
    base["not_allocated_mw"] = base["added_mw"] - base["allocated_mw"]
    base["merged_plants"] = hydro["merged_plants"].to_numpy() if len(hydro) else []
    base = base.sort_values(["added_mw", "hydro_mw"], ascending=False, kind="stable")
    base["base_id"] = [f"HB{i:02d}" for i in range(1, len(base) + 1)]
    cols = [
        "base_id",
        "hydro_plant",
        "river",
        "hydro_mw",
        "pv_mw",
        "wind_mw",
        "added_mw",
        "added_gwh",
        "n_sites",
        "spare_mw",
        "line_share",
        "allocated_mw",
        "allocated_gwh",
        "not_allocated_mw",
        "merged_plants",
        "geometry",
    ]
    return base[cols].reset_index(drop=True)


# -- grid points with a capacity: allocation in order of total LCOE --------------------------
def point_capacity_mw(
    points: pd.DataFrame,
    *,
    capacity_field: str = "available_mw",
    voltage_field: str = "voltage_kv",
    defaults: dict[int, float] = DEFAULT_ATC_MW,
) -> tuple[np.ndarray, np.ndarray]:
    """Available transfer capacity [MW] of each connection point and where it comes from.

    The catalogue's ``capacity_field`` where it holds a finite value ≥ 0 ("catalogue"), else
    ``defaults`` of the point's voltage class (the largest class ≤ its voltage, the smallest
    class when below all or unknown; "default <kV> kV"). Returns (MW, source) arrays."""
    n = len(points)
    given = (
        pd.to_numeric(points[capacity_field], errors="coerce").to_numpy(float)
        if capacity_field in points.columns
        else np.full(n, np.nan)
    )
    volts = (
        pd.to_numeric(points[voltage_field], errors="coerce").to_numpy(float)
        if voltage_field in points.columns
        else np.full(n, np.nan)
    )
    classes = sorted(defaults)
    cap, src = np.empty(n), np.empty(n, dtype=object)
    for i in range(n):
        if np.isfinite(given[i]) and given[i] >= 0:
            cap[i], src[i] = given[i], "catalogue"
            continue
        below = [k for k in classes if np.isfinite(volts[i]) and k <= volts[i]]
        k = below[-1] if below else classes[0]
        cap[i], src[i] = defaults[k], f"default {k} kV"
    return cap, src


def allocate(
    sites: pd.DataFrame,
    points: gpd.GeoDataFrame,
    capacity_mw: np.ndarray,
    *,
    radius_km: float = DEFAULT_RADIUS_KM,
    economics: dict[str, Any] | None = None,
    search_radius_km: float | None = None,
) -> pd.DataFrame:
    """Connect sites to points of limited capacity, cheapest site first (reV's competitive
    supply-curve sort: NREL reV ``supply_curve/supply_curve.py``, ``SupplyCurve`` — remaining
    transmission capacity is tracked and updated after each connection; Maclaurin et al. 2021,
    NREL/TP-6A20-73067).

    Sites are taken in order of total LCOE incl. connection (``lcoe_cny_per_kwh``; ties by
    site id). Each goes to the cheapest point, among its own ``point_index`` (at its least-cost
    ``connection_distance_km``) and every point within ``radius_km`` of its centre (at the
    straight distance × the site's detour factor, connection / straight distance to its own
    point, ≥ 1), that has at least the site's MW left; a site fits whole or not at all. A site
    that fits nowhere "needs new transmission": a new line of its voltage class (+ bay) to the
    cheapest point of at least that class at any distance (its own cheapest point when none
    is); the backbone reinforcement beyond that point is not costed. With ``economics``, a site
    fits only points whose ``voltage_kv`` is at least the class its MW needs.

    With ``economics`` (``{technology: recipe economics}``) the connection voltage (by site
    MW), cost [CNY/kW] and total LCOE follow the point the site gets; without, the LCOE stays.

    Search radius: a point farther than ``search_radius_km`` (else the technology's
    ``economics.search_radius_km``; none = no limit) in a straight line from the site centre is
    out of the site's reach — not even its own least-cost point is connected then — so a site
    with no point in reach "needs new transmission". This is the clip radius of reVX's
    least-cost transmission (NREL reVX ``least_cost_xmission/least_cost_xmission_cli.py``,
    option ``--radius``: the cost raster is clipped to that radius around each supply-curve
    point, so features beyond it get no connection; without it reVX clips to the two nearest
    sinks × 1.05, ``NUM_NN_SINKS``/``CLIP_RASTER_BUFFER``).

    Parameters
    ----------
    sites : technology, site_id, capacity_mw [MW], energy_gwh [GWh/yr], lcoe_cny_per_kwh
        [CNY/kWh], x_m, y_m (centre, points' CRS [m]), point_index, connection_distance_km [km].
    points : connection points (metric CRS of x_m/y_m).
    capacity_mw : available transfer capacity per point [MW] (:func:`point_capacity_mw`).

    Returns the sites (same order as given) with allocated_point_index, connection_status
    (:data:`ALLOCATED` | :data:`NEW_TRANSMISSION`), allocated_connection_km, connection_kv,
    connection_cny_per_kw, total_lcoe_cny_per_kwh, new_transmission_cny, allocation_order.
    """
    from sitekit.science.scoring import lcoe_cny_per_kwh
    from sitekit.science.sites import connection_cost_cny_per_kw

    out = sites.copy()
    n = len(out)
    px = shapely.get_x(np.asarray(points.geometry.values, dtype=object)).astype(float)
    py = shapely.get_y(np.asarray(points.geometry.values, dtype=object)).astype(float)
    left = np.asarray(capacity_mw, float).copy()
    mw = out["capacity_mw"].to_numpy(float)
    own = out["point_index"].to_numpy(int)
    own_km = out["connection_distance_km"].to_numpy(float)
    x, y = out["x_m"].to_numpy(float), out["y_m"].to_numpy(float)
    order = np.lexsort((out["site_id"].astype(str).to_numpy(),
                        out["lcoe_cny_per_kwh"].to_numpy(float)))  # fmt: skip
    # the voltage class a site needs (by its MW) and the points' voltages: a site connects only
    # to a point of at least its class (a 500 kV line does not end in a 110 kV substation)
    need = np.zeros(n)
    for tech, e in (economics or {}).items():
        m = (out["technology"] == tech).to_numpy()
        if m.any():
            need[m] = connection_cost_cny_per_kw(np.zeros(int(m.sum())), mw[m], e)[1]
    volts = (pd.to_numeric(points["voltage_kv"], errors="coerce").to_numpy(float)
             if "voltage_kv" in points.columns else np.full(len(px), np.inf))  # fmt: skip
    volts = np.where(np.isnan(volts), np.inf, volts)  # unknown voltage: not a reason to refuse
    reach = np.full(n, np.inf)  # search radius per site [km straight line]
    for tech, e in (economics or {}).items():
        r_km = getattr(e, "search_radius_km", None)
        if r_km is not None:
            reach[(out["technology"] == tech).to_numpy()] = r_km
    if search_radius_km is not None:
        reach[:] = search_radius_km
    got = np.full(n, -1)
    km = np.full(n, np.nan)
    status = np.full(n, NEW_TRANSMISSION, dtype=object)
    rank = np.zeros(n, int)
    for r, i in enumerate(order, start=1):
        rank[i] = r
        d_km = np.hypot(px - x[i], py - y[i]) / 1000.0
        straight_own = d_km[own[i]] if own[i] >= 0 else np.nan
        detour = own_km[i] / straight_own if straight_own > 0 else 1.0
        cost = d_km * max(1.0, detour if np.isfinite(detour) else 1.0)
        cand = np.nonzero((d_km <= radius_km) & (d_km <= reach[i]))[0]
        if own[i] >= 0:
            cost[own[i]] = own_km[i]
            if d_km[own[i]] <= reach[i]:  # beyond the search radius: no connection to it
                cand = np.union1d(cand, [own[i]])
        cand = cand[np.argsort(cost[cand], kind="stable")]
        fits = cand[(left[cand] >= mw[i] - 1e-9) & (volts[cand] >= need[i])]
        if len(fits):
            j = fits[0]
            left[j] -= mw[i]
            got[i], km[i], status[i] = j, cost[j], ALLOCATED
        else:  # a new line of its class to the cheapest point of that class, at any distance
            able = np.nonzero(volts >= need[i])[0]
            if len(able):
                got[i] = able[np.argmin(cost[able])]
            else:
                got[i] = own[i] if own[i] >= 0 else (cand[0] if len(cand) else -1)
            km[i] = cost[got[i]] if got[i] >= 0 else np.nan
    out["allocation_order"] = rank
    out["allocated_point_index"] = got
    out["connection_status"] = status
    out["allocated_connection_km"] = km
    out["total_lcoe_cny_per_kwh"] = out["lcoe_cny_per_kwh"]
    out["new_transmission_cny"] = 0.0
    if economics:
        for tech, e in economics.items():
            m = (out["technology"] == tech).to_numpy()
            if not m.any():
                continue
            conn, kv = connection_cost_cny_per_kw(km[m], mw[m], e)
            ekw = out.loc[m, "energy_gwh"].to_numpy(float) * 1e6 / np.maximum(mw[m] * 1e3, 1e-9)
            out.loc[m, "connection_kv"] = kv
            out.loc[m, "connection_cny_per_kw"] = conn
            out.loc[m, "total_lcoe_cny_per_kwh"] = lcoe_cny_per_kwh(
                ekw, e.capex_cny_per_kw, e.fixed_om_cny_per_kw_yr, e.wacc, e.lifetime_yr,
                e.degradation_pct_per_yr / 100.0, conn,
            )  # fmt: skip
            new = m & (status == NEW_TRANSMISSION)
            out.loc[new, "new_transmission_cny"] = conn[new[m]] * mw[new] * 1e3
    return out


def allocation_per_point(
    allocated: pd.DataFrame, points: pd.DataFrame, capacity_mw: np.ndarray, source: np.ndarray,
    *, name_field: str = "name",
) -> pd.DataFrame:  # fmt: skip
    """Per point: available capacity [MW] and its source, allocated MW per technology and in
    all, remaining MW (= capacity − allocated ≥ 0) and the number of sites allocated."""
    names = (points[name_field].astype(str).to_numpy() if name_field in points.columns
             else np.asarray([f"point {i}" for i in range(len(points))]))  # fmt: skip
    per = pd.DataFrame({"point_index": np.arange(len(points)), "name": names})
    if "voltage_kv" in points.columns:
        per["voltage_kv"] = points["voltage_kv"].to_numpy()
    per["capacity_mw"] = capacity_mw
    per["capacity_source"] = source
    ok = allocated[allocated["connection_status"] == ALLOCATED]
    for t in sorted(set(allocated["technology"])):
        g = ok[ok["technology"] == t].groupby("allocated_point_index")["capacity_mw"].sum()
        per[f"allocated_{t}_mw"] = per["point_index"].map(g).fillna(0.0)
    g = ok.groupby("allocated_point_index")
    per["allocated_mw"] = per["point_index"].map(g["capacity_mw"].sum()).fillna(0.0)
    per["remaining_mw"] = per["capacity_mw"] - per["allocated_mw"]
    per["n_sites_allocated"] = per["point_index"].map(g.size()).fillna(0).astype(int)
    return per
