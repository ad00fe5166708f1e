"""Hosting-capacity files (:mod:`sitekit.science.hosting`): ``hosting.csv``,
``supply_curves.csv``/``.png`` and ``hosting.gpkg`` per connection point, ``hydro_bases.csv``/
``.gpkg`` for the hydro–wind–solar bases. Every file is written atomically; tables through the
one CSV writer (:func:`sitekit.outputs.export.write_csv`: UTF-8 with BOM, formula guard); with
the run's provenance each file carries its data status (:mod:`sitekit.outputs.tags`).
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from sitekit.errors import InputError
from sitekit.io.atomic import atomic_path
from sitekit.outputs.export import write_csv, write_geopackage
from sitekit.outputs.tags import png_text


def write_hosting(
    per_point: pd.DataFrame, curves: pd.DataFrame, points: gpd.GeoDataFrame,
    out_dir: str | Path, *, top_n: int = 8, provenance: dict | None = None,
) -> gpd.GeoDataFrame:  # fmt: skip
    """Write ``hosting.csv``, ``supply_curves.csv``, ``supply_curves.png`` (the ``top_n`` points
    by MW) and ``hosting.gpkg`` (layer ``hosting_points``), atomically. With the run's
    ``provenance`` (``run.json``) every file says whether it rests on modelled or illustrative
    inputs (:mod:`sitekit.outputs.tags`).

    Returns the points (their CRS) with the per-point MW/GWh columns, for a GeoPackage or map.
    """
    from matplotlib.figure import Figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "hosting.csv", per_point, provenance)
    write_csv(out / "supply_curves.csv", curves, provenance)
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.subplots()
    top = per_point[per_point["total_mw"] > 0].head(top_n)
    for _, p in top.iterrows():
        c = curves[(curves["point_index"] == p["point_index"]) & curves["lcoe_cny_per_kwh"].notna()]
        x = np.r_[0.0, c["cumulative_mw"].to_numpy()]
        y = np.r_[c["lcoe_cny_per_kwh"].to_numpy()[:1], c["lcoe_cny_per_kwh"].to_numpy()]
        label = p["name"] if str(p["name"]).isascii() else f"point {p['point_index']}"
        ax.step(x, y, where="pre", label=f"{label} ({p['total_mw']:,.0f} MW)")
    ax.set_xlabel("cumulative capacity [MW]")
    ax.set_ylabel("LCOE incl. grid connection [CNY/kWh]")
    ax.set_title(f"Supply curves of the {len(top)} connection points gathering the most capacity")
    if len(top):
        ax.legend(fontsize=8)
    with atomic_path(out / "supply_curves.png") as tmp:
        fig.savefig(tmp, format="png", dpi=120, metadata=png_text("supply_curves", provenance))
    layer = points.reset_index(drop=True).copy()
    extra = per_point.set_index("point_index").drop(columns=["name"], errors="ignore")
    extra = extra.drop(columns=[c for c in extra.columns if c in layer.columns])
    layer = layer.join(extra, how="left")
    write_geopackage(out / "hosting.gpkg", {"hosting_points": layer}, metadata=provenance)
    return layer


def write_hydro_bases(
    bases: gpd.GeoDataFrame, out_dir: str | Path, *, provenance: dict | None = None
) -> dict[str, Path]:
    """Write ``hydro_bases.csv`` and ``hydro_bases.gpkg`` (layer ``hydro_bases``), atomically;
    with the run's ``provenance`` both carry its data status."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if bases.crs is None:
        raise InputError("hydro bases have no CRS")
    return {"csv": write_csv(out / "hydro_bases.csv", bases, provenance),
            "gpkg": write_geopackage(out / "hydro_bases.gpkg", {"hydro_bases": bases},
                                     metadata=provenance)}  # fmt: skip
