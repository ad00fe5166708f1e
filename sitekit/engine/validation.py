"""How well the screen agrees with the plants actually built.

For each technology with a plant list (the embedded Global Energy Monitor wind tracker, or any user
CSV/GeoPackage with the same columns) :func:`validate_arrays` reports

* the share of *operating* plants whose pixel is eligible (ignoring the "land occupied by built
  plants" bit, which would otherwise exclude every built farm by construction);
* the percentile of their score among all eligible pixels (50 = no better than chance);
* the modelled capacity factor at their pixels (modelled, not measured);
* the ROC AUC of the score separating the operating plants' pixels from random eligible pixels
  (seeded; 0.5 = no skill), computed as the Mann–Whitney U statistic with average ranks for ties.

Plants off the grid or outside the study area are listed by name, never dropped silently.

References
----------
Mann & Whitney (1947), Ann. Math. Stat. 18(1):50–60; Hanley & McNeil (1982), Radiology
143(1):29–36 (AUC = U / (n₁ n₀)). Global Wind Power Tracker, Global Energy Monitor, May 2023.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.stats import rankdata

from sitekit.engine.rules import standard_plants
from sitekit.errors import InputError, LayerError
from sitekit.outputs.export import write_csv
from sitekit.science.constraints import excluded_from_reasons

#: random eligible pixels drawn for the AUC
N_RANDOM = 10_000


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """ROC AUC = P(score of a positive > score of a negative), ties counting ½.

    Parameters
    ----------
    positive, negative : array
        Scores of the two groups (NaN removed).

    Returns
    -------
    float
        0–1; NaN when a group is empty.

    References
    ----------
    Hanley & McNeil (1982), Radiology 143(1):29–36.
    """
    p = np.asarray(positive, float)
    n = np.asarray(negative, float)
    p, n = p[np.isfinite(p)], n[np.isfinite(n)]
    if not len(p) or not len(n):
        return float("nan")
    ranks = rankdata(np.concatenate([p, n]))
    u = ranks[: len(p)].sum() - len(p) * (len(p) + 1) / 2.0
    return float(u / (len(p) * len(n)))


def read_plants(path: str | Path) -> gpd.GeoDataFrame:
    """A plant list: CSV with ``lat``/``lon`` (or GEM ``Latitude``/``Longitude``, WGS 84) or any
    vector file with a CRS; columns renamed by :func:`sitekit.engine.rules.standard_plants`.

    Rows with missing or impossible coordinates (|lat| > 90, |lon| > 180) are kept with an empty
    geometry, so they are reported by name rather than lost.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"plant list {path} not found")
    if path.suffix.lower() in (".csv", ".txt"):
        df = standard_plants(pd.read_csv(path))
        if not {"lat", "lon"} <= set(df.columns):
            raise InputError(
                f"{path}: a plant CSV needs lat and lon columns (or GEM Latitude/Longitude), "
                f"found {list(df.columns)}"
            )
        lat = pd.to_numeric(df["lat"], errors="coerce")
        lon = pd.to_numeric(df["lon"], errors="coerce")
        ok = lat.abs().le(90) & lon.abs().le(180)
        geom = [
            shapely.Point(x, y) if good else None for x, y, good in zip(lon, lat, ok, strict=True)
        ]
        gdf = gpd.GeoDataFrame(df, geometry=geom, crs="EPSG:4326")
    else:
        gdf = gpd.read_file(path, engine="pyogrio")
        if gdf.crs is None:
            raise LayerError(f"{path}: plant layer has no CRS; save it with one (e.g. EPSG:4326)")
        gdf = standard_plants(gdf)
    if "name" not in gdf.columns:
        gdf["name"] = [f"plant {i + 1}" for i in range(len(gdf))]
    if "status" not in gdf.columns:
        gdf["status"] = "operating"
    return gdf


def _label(row: pd.Series) -> str:
    phase = row.get("phase")
    name = str(row.get("name"))
    return f"{name} ({phase})" if isinstance(phase, str) and phase.strip() else name


def locate(
    plants: gpd.GeoDataFrame, transform: Any, shape: tuple[int, int], crs: Any
) -> pd.DataFrame:
    """Pixel (row, col) of each plant on a raster grid; -1 where off the grid or unlocatable.

    Polygons are located by their representative point.
    """
    pts = plants.geometry
    bad = pts.isna() | pts.is_empty
    out = pd.DataFrame(index=plants.index)
    rows = np.full(len(plants), -1, np.int64)
    cols = np.full(len(plants), -1, np.int64)
    if (~bad).any():
        good = plants[~bad].to_crs(crs).geometry.representative_point()
        inv = ~transform
        c, r = inv * (good.x.to_numpy(), good.y.to_numpy())
        r, c = np.floor(r).astype(np.int64), np.floor(c).astype(np.int64)
        on = (r >= 0) & (r < shape[0]) & (c >= 0) & (c < shape[1])
        rows[np.flatnonzero(~bad)] = np.where(on, r, -1)
        cols[np.flatnonzero(~bad)] = np.where(on, c, -1)
    out["row"], out["col"] = rows, cols
    return out


def validate_arrays(
    plants: gpd.GeoDataFrame,
    *,
    technology: str,
    score: np.ndarray,
    reasons: np.ndarray,
    cf: np.ndarray | None,
    transform: Any,
    crs: Any,
    legend: list[Any],
    forced_bits: int = 0,
    hard_bits: int = 0,
    ignore_codes: tuple[str, ...] = ("existing_plants",),
    seed: int = 0,
    n_random: int = N_RANDOM,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Compare the screen with built plants (arrays in, tables out).

    Parameters
    ----------
    plants : GeoDataFrame
        Standard plant list (:func:`read_plants`), any CRS.
    score : 2-D float array (NumPy, or dask: read in strips of rows and at the plants only)
        Suitability score 0–1, NaN outside the study area.
    reasons : 2-D uint32 array (NumPy or dask)
        ``exclusion_reasons`` of the same technology.
    cf : 2-D float array (NumPy or dask) or None
        Modelled net capacity factor [0–1].
    transform, crs
        Affine transform and CRS of the rasters.
    legend : list of (bit, code, …)
        Reason bits; bits whose code is in ``ignore_codes`` do not make a pixel ineligible here.
    seed, n_random
        Random eligible pixels for the AUC (``numpy.random.default_rng(seed)``).

    Returns
    -------
    (dict, DataFrame)
        One summary row, and one row per plant (pixel, eligible, score, percentile, CF, the reason
        codes excluding it, ``in_study_area``).
    """
    ignore = sum(1 << int(b[0]) for b in legend if b[1] in ignore_codes)
    keep_bits = np.uint32(0xFFFFFFFF & ~ignore)

    def eligible_of(sc: np.ndarray, rs: np.ndarray) -> np.ndarray:
        r = np.asarray(rs).astype(np.uint32) & keep_bits
        return np.isfinite(sc) & ~excluded_from_reasons(r, forced_bits, hard_bits)

    # the eligible pixels' scores in row-major order, read in strips of whole rows: a dask
    # array (the run's stored layers) is never gathered whole (~12 GB at 30 m)
    ny, nx = score.shape
    step = max(1, STRIP_PX // max(nx, 1))
    if getattr(score, "chunks", None):  # whole block rows: no block is read twice
        rows = score.chunks[0][0]
        step = max(rows, step // rows * rows)
    parts = []
    for r0 in range(0, ny, step):
        sc = np.asarray(score[r0 : r0 + step])
        parts.append(sc[eligible_of(sc, reasons[r0 : r0 + step])])
    elig_in_order = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    del parts
    elig_scores = np.sort(elig_in_order)
    pos = locate(plants, transform, score.shape, crs)
    rows, cols = pos["row"].to_numpy(), pos["col"].to_numpy()
    on = rows >= 0
    rr, cc = np.where(on, rows, 0), np.where(on, cols, 0)
    at_score, at_reasons = _at(score, rr, cc), _at(reasons, rr, cc)
    p_score = np.where(on, at_score, np.nan)
    p_in = on & np.isfinite(p_score)
    p_elig = p_in & eligible_of(at_score, at_reasons)
    p_cf = (
        np.where(p_in, _at(cf, rr, cc), np.nan) if cf is not None else np.full(len(plants), np.nan)
    )
    # percentile of each plant's score among eligible pixels (share with a lower or equal score)
    if len(elig_scores):
        pct = 100.0 * np.searchsorted(elig_scores, p_score, side="right") / len(elig_scores)
        pct = np.where(p_in, pct, np.nan)
    else:
        pct = np.full(len(plants), np.nan)
    names = {int(b[0]): b[1] for b in legend}
    codes = [
        ",".join(names[b] for b in sorted(names) if int(rv) & (1 << b)) if ok else ""
        for rv, ok in zip(at_reasons, p_in, strict=True)
    ]
    table = pd.DataFrame(
        {
            "technology": technology,
            "name": [_label(row) for _, row in plants.iterrows()],
            "status": plants["status"].astype(str).to_numpy(),
            "capacity_mw": plants["capacity_mw"].to_numpy() if "capacity_mw" in plants else np.nan,
            "start_year": plants["start_year"].to_numpy() if "start_year" in plants else pd.NA,
            "in_study_area": p_in,
            "row": rows,
            "col": cols,
            "eligible": p_elig,
            "score": p_score,
            "score_percentile": pct,
            "cf_modelled": p_cf,
            "excluded_by": codes,
        }
    )
    op = (table["status"].str.lower() == "operating").to_numpy() & p_in
    # random eligible pixels: the same draw as ``rng.choice`` over their flat indices
    n_elig = len(elig_in_order)
    rng = np.random.default_rng(seed)
    pick = rng.choice(n_elig, size=min(n_random, n_elig), replace=False) if n_elig else []
    random_scores = elig_in_order[pick]
    summary = {
        "technology": technology,
        "plants": len(plants),
        "plants_in_study_area": int(p_in.sum()),
        "plants_outside": int((~p_in).sum()),
        "operating_in_study_area": int(op.sum()),
        "operating_on_eligible": int((op & p_elig).sum()),
        "share_operating_on_eligible": _r(np.mean(p_elig[op]) if op.any() else np.nan),
        "median_score_percentile": _r(np.nanmedian(pct[op]) if op.any() else np.nan),
        "median_score_operating": _r(np.nanmedian(p_score[op]) if op.any() else np.nan),
        "median_score_eligible": _r(np.median(elig_scores) if len(elig_scores) else np.nan),
        "median_cf_modelled_operating": _r(np.nanmedian(p_cf[op]) if op.any() else np.nan),
        "auc_operating_vs_random_eligible": _r(auc(p_score[op], random_scores)),
        "n_random": len(pick),
        "seed": seed,
        "eligible_pixels": int(n_elig),
    }
    return summary, table


#: pixels per strip when the eligible scores are read (whole rows; ~64 Mpx, 0.5 GB of score and
#: reasons)
STRIP_PX = 1 << 26


def _at(a: Any, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Values of a 2-D array (NumPy, or dask: only the blocks holding the points are read) at
    pixels (``rows``, ``cols``)."""
    if hasattr(a, "vindex"):
        return np.asarray(a.vindex[rows, cols].compute()) if len(rows) else np.zeros(0, a.dtype)
    return np.asarray(a)[rows, cols]


def _lazy(a: Any) -> Any:
    """The dask array behind a layer (DataArray or array); a NumPy array as a one-block one."""
    import dask.array as da

    data = getattr(a, "data", a)
    return data if isinstance(data, da.Array) else da.from_array(np.asarray(data), chunks=-1)


def _r(x: float) -> float:
    return round(float(x), 4) if np.isfinite(x) else float("nan")


def outside_report(table: pd.DataFrame) -> list[str]:
    """Names of plants not in the study area (off the grid, bad coordinates or outside)."""
    return [str(n) for n in table.loc[~table["in_study_area"], "name"]]


# -- a finished run ----------------------------------------------------------------------------
def validate_run(
    run_dir: str | Path,
    plants_path: str | Path | None = None,
    technology: str | None = None,
    seed: int = 0,
    write: bool = True,
) -> pd.DataFrame:
    """Validate a finished run folder against a plant list; writes ``validation.csv`` and
    ``validation_plants.csv`` in it (unless ``write=False``), tagged with the run's data status
    (``run.json``). Without ``plants_path``, the plant lists the run itself used (``run.json``
    → ``existing_plants``) are read."""
    import rasterio

    run = Path(run_dir)
    meta_path = run / "run.json"
    if not meta_path.is_file():
        raise InputError(f"{run} is not a sitekit run folder (no run.json)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    rules_meta = meta.get("rules") or {}
    if plants_path is not None:
        techs = [technology or "wind"]
        lists = {techs[0]: read_plants(plants_path)}
    else:
        known = meta.get("existing_plants") or {}
        if not known:
            raise InputError(f"{run}/run.json names no plant list; pass --plants FILE")
        lists = {t: read_plants(run / v["file"]) for t, v in known.items()}
    summaries, tables = [], []
    for tech, plants in lists.items():
        if "technology" in plants.columns:
            plants = plants[plants["technology"].astype(str).str.lower() == tech]
        info = rules_meta.get(tech)
        if info is None:
            raise InputError(f"{run} has no {tech} results (technologies: {list(rules_meta)})")
        with rasterio.open(run / "rasters" / f"{tech}_score.tif") as src:
            score = src.read(1).astype(np.float32)
            transform, crs = src.transform, src.crs
            if src.nodata is not None and np.isfinite(src.nodata):
                score[score == src.nodata] = np.nan
        with rasterio.open(run / "rasters" / f"{tech}_exclusion_reasons.tif") as src:
            reasons = src.read(1).astype(np.uint32)
        cf = _cf(run, tech)
        s, t = validate_arrays(
            plants,
            technology=tech,
            score=score,
            reasons=reasons,
            cf=cf,
            transform=transform,
            crs=crs,
            legend=info["legend"],
            forced_bits=info.get("forced_bits", 0),
            hard_bits=info.get("hard_bits", 0),
            seed=seed,
        )
        summaries.append(s)
        tables.append(t)
    summary = pd.DataFrame(summaries)
    if write:
        write_csv(run / "validation.csv", summary, meta, float_format=None)
        write_csv(run / "validation_plants.csv", pd.concat(tables), meta, float_format=None)
    return summary


def _cf(run: Path, tech: str) -> np.ndarray | None:
    import rasterio

    name, scale = ("wind_cf", 1.0) if tech == "wind" else ("pv_yield", 1.0 / 8760.0)
    path = run / "rasters" / f"{name}.tif"
    if not path.is_file():
        return None
    with rasterio.open(path) as src:
        arr = src.read(1).astype(np.float32)
        if src.nodata is not None and np.isfinite(src.nodata):
            arr[arr == src.nodata] = np.nan
    return arr * scale


# -- inside a run (called by sitekit.engine.run) ------------------------------------------------------
def plant_attribution(spec: Any) -> str:
    """Credit line of a built-plant layer for the map and GeoPackage (``name_en: source —
    licence`` from its catalogue entry); empty when the entry gives neither source nor licence."""
    if not (getattr(spec, "source", None) or getattr(spec, "licence", None)):
        return ""
    parts = [x for x in (spec.source, spec.licence) if x]
    return f"{spec.name_en or spec.id}: {' — '.join(parts)}"


def in_run(
    stage: Path,
    graphs: list[Any],
    layers: dict[str, Any],
    grid: Any,
    catalog: Any,
    seed: int = 0,
    provenance: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, gpd.GeoDataFrame], pd.DataFrame | None]:
    """Rules applied/missing (with areas), built plants and their validation, for one run.

    Returns ``(provenance, vectors, summary)``: ``provenance`` holds ``rules`` (per technology:
    the rule status with areas, the reason legend and bit masks) and ``existing_plants`` (per
    technology: the plant file written to the run folder and the plants outside the study area,
    by name); ``vectors`` the built plants inside the study area (for the GeoPackage and map);
    ``summary`` the validation table, also written to ``stage/validation.csv`` (None without
    plants). Writes ``existing_plants_<tech>.csv`` and ``validation_plants.csv`` too; with the
    run's tag ``provenance`` (:mod:`sitekit.outputs.tags`) every table has a ``data_status`` column.
    """
    import warnings

    from sitekit.engine import rules
    from sitekit.errors import SitekitWarning
    from sitekit.io import layers as io

    prov: dict[str, Any] = {"rules": {}, "existing_plants": {}}
    vectors: dict[str, gpd.GeoDataFrame] = {}
    summaries, tables = [], []
    for g in graphs:
        t = g.recipe.technology
        cons = g.constraints
        reasons = layers[f"{t}_exclusion_reasons"]
        info = rules.measure(
            g.rule_status,
            cons.legend,
            reasons,
            layers["study_fraction"],
            grid.pixel_area_km2,
            cons.forced_bits,
            cons.hard_bits,
        )
        info["legend"] = [list(b) for b in cons.legend]
        info["forced_bits"], info["hard_bits"] = cons.forced_bits, cons.hard_bits
        prov["rules"][t] = info
        plants_cfg = getattr(g.recipe, "existing_plants", None)
        if plants_cfg is None:
            continue
        spec = catalog.layer(plants_cfg.layer)
        raw = io.read_vector(catalog.file(spec), spec, catalog.where(spec))
        plants = standard_plants(raw).to_crs("EPSG:4326")
        pts = plants.geometry.representative_point()
        plants["lon"], plants["lat"] = pts.x.round(6), pts.y.round(6)
        fname = f"existing_plants_{t}.csv"
        write_csv(
            stage / fname,
            pd.DataFrame(plants.drop(columns="geometry")),
            provenance,
            float_format=None,
        )
        # lazy (the run's layers): read in strips and at the plants, never gathered whole
        cf = layers.get("wind_cf") if t == "wind" else layers.get("pv_yield")
        cf = None if cf is None else _lazy(cf).astype(np.float32)
        if cf is not None and t == "pv":
            cf = cf / np.float32(8760.0)
        summary, table = validate_arrays(
            plants,
            technology=t,
            score=_lazy(layers[f"{t}_score"]).astype(np.float32),
            reasons=_lazy(reasons),
            cf=cf,
            transform=grid.transform,
            crs=grid.crs,
            legend=cons.legend,
            forced_bits=cons.forced_bits,
            hard_bits=cons.hard_bits,
            seed=seed,
        )
        outside = outside_report(table)
        if outside:
            warnings.warn(
                f"{catalog.where(spec)}: {len(outside)} plant(s) outside the study area or with "
                f"impossible coordinates, not used: {'; '.join(outside)}",
                SitekitWarning,
                stacklevel=2,
            )
        prov["existing_plants"][t] = {"layer": spec.id, "file": fname, "outside": outside}
        credit = plant_attribution(spec)  # shown in the map's info box (CC BY needs the credit)
        if credit and credit not in prov.get("attribution", ""):
            prov["attribution"] = "; ".join(filter(None, [prov.get("attribution"), credit]))
        keep = table["in_study_area"].to_numpy()
        shown = plants[keep].copy()
        for col in ("eligible", "score", "score_percentile", "cf_modelled", "excluded_by"):
            shown[col] = table.loc[keep, col].to_numpy()
        cols = [
            c
            for c in ("name", "phase", "status", "capacity_mw", "start_year", "location_accuracy",
                      "prefecture", "county", "gem_id", "eligible", "score", "score_percentile",
                      "cf_modelled", "excluded_by")
            if c in shown.columns
        ]  # fmt: skip
        vectors[f"existing_{t}_plants"] = shown[[*cols, "geometry"]].to_crs(grid.crs)
        summaries.append(summary)
        tables.append(table)
    if not summaries:
        return prov, vectors, None
    summary_df = pd.DataFrame(summaries)
    write_csv(stage / "validation.csv", summary_df, provenance, float_format=None)
    write_csv(stage / "validation_plants.csv", pd.concat(tables), provenance, float_format=None)
    return prov, vectors, summary_df
