"""Supply-curve files of a run (:mod:`sitekit.science.supply`): ``potential.csv``,
``grid_allocation.csv``, ``supply_curve.csv`` and the ``supply_curve.png`` chart, each written
atomically and, with the run's provenance, carrying its data status (:mod:`sitekit.outputs.tags`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sitekit.io.atomic import atomic_path
from sitekit.outputs.export import write_table
from sitekit.outputs.tags import png_text


def plot_supply_curve(
    supply: pd.DataFrame, target: Path, provenance: dict[str, Any] | None = None
) -> Path:
    """``supply_curve.png``: total LCOE incl. connection [CNY/kWh] against cumulative capacity
    [GW] of ALL candidate sites, one step line per technology (written atomically; the run's
    data status in the PNG's text chunks, :func:`sitekit.outputs.tags.png_text`)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.8), layout="constrained")
    ax = fig.subplots()
    names = {"pv": "PV", "wind": "Wind"}  # PNG: no CJK font is assumed
    for tech, g in supply.groupby("technology", sort=True):
        g = g[np.isfinite(g["total_lcoe_cny_per_kwh"].to_numpy(float))]
        x = np.r_[0.0, g["cumulative_mw"].to_numpy(float) / 1000.0]
        y = g["total_lcoe_cny_per_kwh"].to_numpy(float)
        if len(y):
            ax.stairs(y, x, baseline=None, label=f"{names.get(tech, tech)} ({x[-1]:,.0f} GW)")
    ax.set_xlabel("cumulative capacity of all candidate sites [GW]")
    ax.set_ylabel("total LCOE incl. grid connection [CNY/kWh]")
    ax.set_title("Supply curves: all candidate sites (not the top-N lists)")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata=png_text("supply_curve", provenance))
    return target


def write_run_tables(
    stage: Path, tables: dict[str, Any], provenance: dict[str, Any] | None = None
) -> None:
    """Write what :func:`sitekit.science.supply.run_tables` returned into the run folder
    ``stage``: ``potential.csv``, ``grid_allocation.csv`` (when the sites were allocated to
    connection points), ``supply_curve.csv`` and, with any candidate site, ``supply_curve.png``
    (:func:`sitekit.outputs.export.write_table`; ``provenance`` tags every file)."""
    write_table(stage / "potential.csv", tables["potential"], provenance=provenance)
    if tables["allocated"]:
        write_table(stage / "grid_allocation.csv", tables["per_point"], provenance=provenance)
    supply = tables["supply"]
    write_table(stage / "supply_curve.csv", supply, provenance=provenance)
    if len(supply):
        plot_supply_curve(supply, stage / "supply_curve.png", provenance)
