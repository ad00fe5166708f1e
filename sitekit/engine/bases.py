"""The hosting step's hydro–wind–solar bases (:mod:`sitekit.science.bases`) around a run's output
folder: read the plants and ``pipelines/bases.yaml``, choose which sites a base may bundle (every
candidate site of the run, from ``supply_curve.csv``), size the bases, and have
:mod:`sitekit.outputs.bases` write their files and add them to the run's ``report.html``,
``map.html`` and grid-point tables."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from sitekit.outputs.bases import (
    mark_bundled_in_run,
    update_run_pages,
    write_bases,
    write_profile_tables,
)

#: where a base's catchment sites come from (:func:`candidate_sites`)
ALL_CANDIDATES = "all candidate sites of the run (supply_curve.csv)"
TOP_N_ONLY = "the run's top-N sites only (no supply_curve.csv with site centres)"


def candidate_sites(run_dir: Path | None, run) -> tuple[dict, str]:
    """The sites a base may bundle, per technology, in the run's grid CRS.

    Every candidate site of the run — ``supply_curve.csv`` (:mod:`sitekit.science.supply`), one row
    per site with its centre ``x_m``/``y_m`` [m, grid CRS] — as points with ``site_id``,
    ``capacity_mw`` [MW], ``energy_gwh`` [GWh/yr], ``lcoe_cny_per_kwh`` (= the supply curve's
    total LCOE incl. connection [CNY/kWh]), ``in_top_n`` and ``connection_point`` (the grid
    point the run allocated the site to, before any base). Without that file or its centre
    columns (older runs): the run's top-N site polygons (``run.sites``).

    Returns (sites by technology, :data:`ALL_CANDIDATES` or :data:`TOP_N_ONLY`)."""
    from shapely import points

    path = Path(run_dir) / "supply_curve.csv" if run_dir is not None else None
    if path is None or not path.is_file():
        return dict(run.sites), TOP_N_ONLY
    sc = pd.read_csv(path, encoding="utf-8-sig", dtype={"site_id": str})
    if not {"x_m", "y_m", "site_id", "technology"} <= set(sc.columns) or not len(sc):
        return dict(run.sites), TOP_N_ONLY
    sc = sc[np.isfinite(sc["x_m"].astype(float)) & np.isfinite(sc["y_m"].astype(float))]
    out = {}
    for tech, g in sc.groupby("technology", sort=True):
        df = pd.DataFrame({"site_id": g["site_id"].astype(str),
                           "capacity_mw": g["capacity_mw"].astype(float),
                           "energy_gwh": g["energy_gwh"].astype(float),
                           "lcoe_cny_per_kwh": g["total_lcoe_cny_per_kwh"].astype(float),
                           "in_top_n": g["in_top_n"].astype(str).str.lower() == "true",
                           "connection_point": g["connection_point"].fillna("").astype(str)})  # fmt: skip
        geom = points(g["x_m"].to_numpy(float), g["y_m"].to_numpy(float))
        out[str(tech)] = gpd.GeoDataFrame(df.reset_index(drop=True), geometry=geom,
                                          crs=run.grid.crs)  # fmt: skip
    return out, ALL_CANDIDATES


def with_pool_columns(sites: pd.DataFrame, pool: dict) -> pd.DataFrame:
    """``bases_sites`` rows with the pool's ``in_top_n`` and, as
    ``connection_point_without_base``, the grid point the run allocated the site to before the
    bases (``supply_curve.csv``), where the pool has them."""
    frames = [g for g in pool.values() if g is not None and len(g)]
    cols = [c for c in ("in_top_n", "connection_point") if frames and all(c in g for g in frames)]
    if not cols:
        return sites
    ref = pd.concat([pd.DataFrame(g[["site_id", *cols]]).assign(technology=t)
                     for t, g in pool.items() if g is not None and len(g)],
                    ignore_index=True)  # fmt: skip
    ref["site_id"] = ref["site_id"].astype(str)
    ref = ref.rename(columns={"connection_point": "connection_point_without_base"})
    return sites.merge(ref, on=["technology", "site_id"], how="left")


def bundled_points(bundled: pd.DataFrame, pool: dict, crs) -> gpd.GeoDataFrame | None:
    """The bundled sites as points at their centres (``crs``): site_id, technology, base_id,
    capacity_mw [MW], lcoe_cny_per_kwh [CNY/kWh], in_top_n (when known); None if none."""
    parts = []
    for tech, g in pool.items():
        if g is None or not len(g):
            continue
        b = bundled[bundled["technology"] == tech].set_index("site_id")["base_id"]
        mine = g[g["site_id"].astype(str).isin(b.index)]
        if not len(mine):
            continue
        cols = [c for c in ("site_id", "capacity_mw", "lcoe_cny_per_kwh", "in_top_n")
                if c in mine.columns]  # fmt: skip
        part = pd.DataFrame(mine[cols]).assign(technology=tech).reset_index(drop=True)
        part["site_id"] = part["site_id"].astype(str)
        part["base_id"] = [b[i] for i in part["site_id"]]
        geom = mine.geometry.to_crs(crs).representative_point().values
        parts.append(gpd.GeoDataFrame(part, geometry=geom, crs=crs))
    if not parts:
        return None
    return gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), geometry="geometry", crs=crs)


def run_bases(run, cat, spec_file: Path | None, out_dir: Path,
              provenance: dict | None = None,
              run_dir: Path | None = None) -> tuple[dict, int]:  # fmt: skip
    """The hosting step's bases: read the GEM plants and ``spec_file`` (default
    ``pipelines/bases.yaml``), size every base, write its files into ``out_dir`` (tagged with the
    run's ``provenance``, :func:`sitekit.outputs.bases.write_bases`). Returns the
    run's sites without the bundled ones (they are allocated to their base's line, not to a
    grid point) and the number of bases. A base bundles any candidate site of the run in its
    catchment (``run_dir``'s supply_curve.csv, :func:`candidate_sites`); with
    ``run_dir`` the run's report.html and map.html get the bases too
    (:func:`sitekit.outputs.bases.update_run_pages`)."""
    from sitekit.engine.run import REPO_ROOT
    from sitekit.io.climate import read_merra2
    from sitekit.io.layers import read_vector
    from sitekit.science.bases import build_bases, hydro_table
    from sitekit.specs.bases import load_bases_spec

    spec = load_bases_spec(spec_file or REPO_ROOT / "pipelines" / "bases.yaml")
    spec = with_reservoir_regulation(spec, cat)
    layer = cat.layer("hydro_plants_gem")
    plants = read_vector(cat.file(layer), layer, cat.where(layer))
    clear = read_merra2(cat.file(cat.layer("ghi_calibration"))) if "ghi_calibration" in cat else 0.6
    profiles: dict = {}
    pool, source = candidate_sites(run_dir, run)
    bases, sites, runs = build_bases(plants, pool, spec, crs=run.grid.crs,
                                     profiles_out=profiles, clearness=clear)  # fmt: skip
    sites = with_pool_columns(sites, pool)
    bundled = sites[sites["bundled"]]
    keyed = set(zip(bundled["technology"], bundled["site_id"], strict=True))
    left = {}
    for tech, g in run.sites.items():  # the top-N lists that the grid-point allocation reads
        if g is None or not len(g) or "site_id" not in g.columns:
            left[tech] = g
            continue
        mask = np.array([(tech, str(i)) in keyed for i in g["site_id"]], bool)
        left[tech] = g[~mask]
    site_shapes = bundled_points(bundled, pool, run.grid.crs)
    files = write_bases(bases, sites, runs, out_dir, limit=spec.curtailment_limit,
                site_shapes=site_shapes, grid=run.grid, provenance=provenance)  # fmt: skip
    write_profile_tables(out_dir, hydro_table(plants, spec), profiles, provenance)
    if run_dir is not None:
        charts = {k.removeprefix("png_"): v for k, v in files.items() if k.startswith("png_")}
        update_run_pages(run_dir, out_dir, bases, site_shapes, charts,
                         limit=spec.curtailment_limit, source=source)  # fmt: skip
        mark_bundled_in_run(run_dir, out_dir, bundled, provenance)  # no site at two points
    return left, len(bases)


def with_reservoir_regulation(spec, cat):
    """``spec`` with the catalogue's ``reservoirs`` table rows that carry a ``regulation`` class
    (run_of_river / daily / seasonal; optional ``regulation_source``) put before its own
    ``plant_regulation`` rows, matched on ``name_zh``. Unchanged when the table has no such
    column."""
    from sitekit.io.layers import read_vector
    from sitekit.specs.bases import REGULATION_CLASSES, PlantRegulation

    if "reservoirs" not in cat:
        return spec
    layer = cat.layer("reservoirs")
    table = read_vector(cat.file(layer), layer, cat.where(layer))
    if not {"regulation", "name_zh"} <= set(table.columns):
        return spec
    rows = []
    for _, r in table.iterrows():
        reg = str(r["regulation"]).strip()
        if reg in REGULATION_CLASSES and str(r["name_zh"]).strip():
            src = r.get("regulation_source", "")
            rows.append(PlantRegulation(name_zh=str(r["name_zh"]).strip(), regulation=reg,
                                        source=f"reservoirs table: {src or 'no source given'}"))  # fmt: skip
    return spec.model_copy(update={"plant_regulation": rows + list(spec.plant_regulation)})
