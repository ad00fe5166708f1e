"""Write the hydro–wind–solar bases (:func:`sitekit.science.bases.build_bases`): ``bases.csv``,
``bases_sites.csv``, ``bases_monthly.csv``, ``bases.gpkg`` (layers ``hydro_wind_solar_bases``
and ``bases_sites``), a monthly stacked chart per base (``bases/<id>.png``), ``bases.md``
(中文/English) and ``bases_map.html``; the hosting step's :func:`run_bases` adds
``bases_site_profiles.csv`` (typical days of the catchment sites) and ``hydro_profiles.csv``
(every GEM plant's class and monthly generation). Every file is written atomically."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from sitekit.io.atomic import atomic_path
from sitekit.science.bases import Dispatch
from sitekit.science.hosting import _write_csv as _csv  # the same table writer as hosting's

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def monthly_table(runs: dict[str, Dispatch]) -> pd.DataFrame:
    """Per base and month: hydro, PV and wind delivered, curtailed [GWh], line capacity [GWh]."""
    rows = []
    for bid, d in runs.items():
        gen = d.pv + d.wind
        with np.errstate(invalid="ignore", divide="ignore"):
            share_pv = np.where(gen > 0, d.pv / gen, 0.0)
        pv_in = d.monthly_gwh(d.pv - d.curtailed * share_pv)
        w_in = d.monthly_gwh(d.wind - d.curtailed * (1 - share_pv) * (gen > 0))
        for m in range(12):
            rows.append({"base_id": bid, "month": m + 1,
                         "hydro_gwh": d.monthly_gwh(d.hydro)[m], "pv_gwh": pv_in[m],
                         "wind_gwh": w_in[m], "curtailed_gwh": d.monthly_gwh(d.curtailed)[m],
                         "line_gwh": d.line_mw * 24 * [31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
                                                       30, 31][m] / 1000.0})  # fmt: skip
    return pd.DataFrame(rows)


def _chart(target: Path, row: pd.Series, month: pd.DataFrame, provenance: dict | None = None
           ) -> Path:  # fmt: skip
    from matplotlib.figure import Figure

    from sitekit.outputs.tags import png_text

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    x = np.arange(12)
    bottom = np.zeros(12)
    for col, colour, label in (("hydro_gwh", "#2c7fb8", "hydro"), ("pv_gwh", "#fdae61", "PV"),
                               ("wind_gwh", "#1a9641", "wind"),
                               ("curtailed_gwh", "#d7191c", "curtailed")):  # fmt: skip
        v = month[col].to_numpy(float)
        ax.bar(x, v, bottom=bottom, color=colour, label=label,
               hatch="//" if col == "curtailed_gwh" else None)  # fmt: skip
        bottom += v
    ax.step(np.r_[x - 0.5, 11.5], np.r_[month["line_gwh"], month["line_gwh"].iloc[-1]],
            where="post", color="k", lw=1, label="line capacity")  # fmt: skip
    ax.set_xticks(x, MONTHS)
    ax.set_ylabel("energy per month [GWh]")
    name = row["hydro_plant"] if str(row["hydro_plant"]).isascii() else row["base_id"]
    ax.set_title(f"{row['base_id']} {name}: {row['pv_mw']:,.0f} MW PV + {row['wind_mw']:,.0f} MW "
                 f"wind on a {row['line_mw']:,.0f} MW line (modelled typical days)", fontsize=9)  # fmt: skip
    ax.legend(fontsize=8, ncol=5, loc="upper left")
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata=png_text("bases", provenance))
    return target


def bases_markdown(bases: pd.DataFrame, limit: float) -> str:
    """The report section, 中文/English."""
    lines = [
        "# Hydro–wind–solar bases / 水风光一体化基地",
        "",
        f"Per large hydro plant (GEM Global Hydropower Tracker, May 2023, CC BY 4.0): the PV and "
        f"wind MW its export line carries with ≤ {limit:.0%} of their energy curtailed, from "
        "modelled typical days (12 months × 24 h; LP solved with scipy/HiGHS). MODELLED: the wind "
        "and hydro monthly shapes are illustrative (status `unverified` in pipelines/bases.yaml).",
        f"每座大型水电站外送线路在风光弃电率 ≤ {limit:.0%} 时可汇集的光伏、风电装机（典型日模型，"
        "线性规划求解）。风电与水电月分布为示意数据（未核实），非实测。",
        "",
        "| base 基地 | hydro 水电站 | regulation 调节 | hydro MW | line MW | PV MW | wind MW "
        "| sites | added GWh/yr | curtailment 弃电率 | utilisation 利用率 before→after |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for _, r in bases.iterrows():
        lines.append(
            f"| {r['base_id']} | {r['hydro_plant_zh']} {r['hydro_plant']} | {r['regulation']} "
            f"| {r['hydro_mw']:,.0f} | {r['line_mw']:,.0f} | {r['pv_mw']:,.0f} "
            f"| {r['wind_mw']:,.0f} | {r['n_sites']} | {r['added_gwh']:,.0f} "
            f"| {r['curtailment']:.1%} | {r['utilisation_before']:.0%} → "
            f"{r['utilisation_after']:.0%} |"
        )
    empty = int((bases["n_sites"] == 0).sum()) if len(bases) else 0
    lines += [
        "",
        "Charts: `bases/<base_id>.png`. Sites bundled into a base are allocated to its line and are "
        "not counted at any grid point (hosting.csv). / 纳入基地的场址计入其外送线路，不再计入并网点容量。",
        "",
        "Notes / 说明:",
        f"- {empty} of {len(bases)} bases have no candidate site within the radius. A base's "
        "catchment holds every candidate site of the run (supply_curve.csv; a run without site "
        "centres there: its top-N lists only), each counted at its nearest base only. / "
        "基地汇集范围为本次运行的全部候选场址，每个场址只计入最近的一个基地。",
        "- Line = the plant's installed MW × `line_rating_factor` unless the plant table gives "
        "`line_mw`; the backbone behind it is not modelled. / 线路容量默认取电站装机。",
        "- Typical days average the weather out: curtailment on real days is higher. / "
        "典型日平均掉天气波动，实际弃电率更高。",
        "- `hydro_bases.csv` is the older static screening ratio (spare line = hydro MW × (1 − CF)); "
        "`bases.csv` supersedes it. / hydro_bases.csv 为旧的静态估算。",
    ]
    from sitekit.engine.bases_run import comparison_markdown

    lines += comparison_markdown(bases)  # beside announced real bases (bases.yaml published)
    return "\n".join(lines) + "\n"


def write_bases(bases: gpd.GeoDataFrame, sites: pd.DataFrame, runs: dict[str, Dispatch],
                out_dir: str | Path, *, limit: float, site_shapes: gpd.GeoDataFrame | None = None,
                make_map: bool = True, grid=None,
                provenance: dict | None = None) -> dict[str, Path]:  # fmt: skip
    """Write the bases' files into ``out_dir`` (see module docstring); returns {name: path}.
    With the run's ``provenance`` (``run.json``) every table, layer, chart, page and the map say
    what they rest on (:mod:`sitekit.outputs.tags`)."""
    from sitekit.outputs.export import write_geopackage
    from sitekit.outputs.tags import banner

    prov = provenance

    out = Path(out_dir)
    (out / "bases").mkdir(parents=True, exist_ok=True)
    month = monthly_table(runs)
    files = {"csv": _csv(out / "bases.csv", bases, prov),
             "sites_csv": _csv(out / "bases_sites.csv", sites, prov),
             "monthly_csv": _csv(out / "bases_monthly.csv", month, prov)}  # fmt: skip
    layers = {"hydro_wind_solar_bases": bases}
    if site_shapes is not None and len(site_shapes):
        layers["bases_sites"] = site_shapes
    files["gpkg"] = write_geopackage(out / "bases.gpkg", layers, metadata=prov)
    for _, r in bases.iterrows():
        files[f"png_{r['base_id']}"] = _chart(out / "bases" / f"{r['base_id']}.png", r,
                                             month[month["base_id"] == r["base_id"]],
                                             prov)  # fmt: skip
    target = out / "bases.md"
    with atomic_path(target) as tmp:
        head, _, rest = bases_markdown(bases, limit).partition("\n")  # status under the title
        status = banner("bases", prov)
        text = f"{head}\n\n{status}\n{rest}" if status else f"{head}\n{rest}"
        Path(tmp).write_text(text, encoding="utf-8")
    files["md"] = target
    if make_map and grid is not None and len(bases):
        files["map_html"] = _map(out / "bases_map.html", bases, site_shapes, grid, prov)
    return files


def _map(target: Path, bases: gpd.GeoDataFrame, site_shapes, grid,
         provenance: dict | None = None) -> Path:  # fmt: skip
    from sitekit.outputs import render
    from sitekit.outputs.style import MapStyle, VectorStyle

    base = MapStyle()
    extra = {"hydro_wind_solar_bases": VectorStyle(name_en="Hydro–wind–solar bases",
                                                   name_zh="水风光一体化基地", color="#08519c",
                                                   weight=2.0, fill=True)}  # fmt: skip
    style = MapStyle(title_en="Hydro–wind–solar bases", title_zh="水风光一体化基地",
                     vectors={**base.vectors, **extra}, layer_control_collapsed=False)  # fmt: skip
    cols = ["base_id", "hydro_plant", "hydro_plant_zh", "hydro_mw", "line_mw", "pv_mw", "wind_mw",
            "curtailment", "utilisation_before", "utilisation_after", "geometry"]  # fmt: skip
    vectors = {"hydro_wind_solar_bases": bases[cols]}
    if site_shapes is not None and len(site_shapes):
        for tech in sorted(set(site_shapes["technology"])):
            vectors[f"{tech}_sites"] = site_shapes[site_shapes["technology"] == tech]
    return render.render_map(target, grid=grid, rasters={}, vectors=vectors, style=style,
                             provenance={**(provenance or {}),
                                         "title": "Hydro–wind–solar bases / 水风光一体化基地"})  # fmt: skip


def run_bases(run, cat, spec_file: Path | None, out_dir: Path,
              provenance: dict | None = None,
              run_dir: Path | None = None) -> tuple[dict, int]:  # fmt: skip
    """The hosting step's bases: read the GEM plants and ``spec_file`` (default
    ``pipelines/bases.yaml``), size every base, write its files into ``out_dir`` (tagged with the
    run's ``provenance``, :func:`write_bases`). Returns the
    run's sites without the bundled ones (they are allocated to their base's line, not to a
    grid point) and the number of bases. A base bundles any candidate site of the run in its
    catchment (``run_dir``'s supply_curve.csv, :func:`sitekit.engine.bases_run.candidate_sites`); with
    ``run_dir`` the run's report.html and map.html get the bases too
    (:func:`sitekit.engine.bases_run.update_run_pages`)."""
    from sitekit.engine.bases_run import (
        bundled_points,
        candidate_sites,
        mark_bundled_in_run,
        update_run_pages,
        with_pool_columns,
    )
    from sitekit.engine.run import REPO_ROOT
    from sitekit.io.layers import read_vector
    from sitekit.science.bases import build_bases, hydro_table
    from sitekit.science.profiles import load_bases_spec

    spec = load_bases_spec(spec_file or REPO_ROOT / "pipelines" / "bases.yaml")
    spec = with_reservoir_regulation(spec, cat)
    layer = cat.layer("hydro_plants_gem")
    plants = read_vector(cat.file(layer), layer, cat.where(layer))
    clear = cat.file(cat.layer("ghi_calibration")) if "ghi_calibration" in cat else 0.6
    profiles: dict = {}
    pool, source = candidate_sites(run_dir, run)
    bases, sites, runs = build_bases(plants, pool, spec, crs=run.grid.crs,
                                     profiles_out=profiles,
                                     clearness=str(clear) if not isinstance(clear, float)
                                     else clear)  # fmt: skip
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
    _csv(Path(out_dir) / "hydro_profiles.csv", hydro_table(plants, spec), provenance)
    _csv(Path(out_dir) / "bases_site_profiles.csv", profile_table(profiles), provenance)
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
    from sitekit.science.profiles import REGULATION_CLASSES, PlantRegulation

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


def profile_table(profiles: dict) -> pd.DataFrame:
    """``{(base_id, technology, site_id): (12, 24)}`` as rows base_id, technology, site_id,
    month, h00…h23 [MW per MW installed, Beijing time]."""
    rows = []
    for (bid, tech, sid), arr in profiles.items():
        for m in range(12):
            rows.append({"base_id": bid, "technology": tech, "site_id": sid, "month": m + 1,
                         **{f"h{h:02d}": float(arr[m, h]) for h in range(24)}})  # fmt: skip
    cols = ["base_id", "technology", "site_id", "month", *(f"h{h:02d}" for h in range(24))]
    return pd.DataFrame(rows, columns=cols)
