"""``sitekit map``, ``sitekit sites`` and ``sitekit export``: work on a finished run folder."""

from __future__ import annotations

from pathlib import Path

import click

from sitekit.cli import cli
from sitekit.cli.options import format_opt
from sitekit.cli.tables import emit_table
from sitekit.engine.logs import LOGGER
from sitekit.outputs.labels import TECH_TITLES, short_header

run_dir_arg = click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))


@cli.command("map")
@run_dir_arg
@click.option(
    "--style",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Map style spec (default maps/default.yaml).",
)
@click.option("--online-tiles", is_flag=True, help="Add an OpenStreetMap tile layer.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Output HTML (default RUN_DIR/map.html).",
)
def map_(run_dir: Path, style: Path | None, online_tiles: bool, out: Path | None) -> None:
    """Re-render RUN_DIR/map.html from a run's GeoPackage and rasters."""
    from sitekit.engine.run import REPO_ROOT
    from sitekit.io.results import load_run
    from sitekit.outputs import render
    from sitekit.outputs import style as st

    run = load_run(run_dir)
    ms = st.load_style(style or REPO_ROOT / "maps" / "default.yaml")
    rasters = dict(run.rasters)
    if "exclusion_reasons" not in rasters:
        rasters.pop("exclusion_reasons", None)
    path = render.render_map(
        out or run_dir / "map.html",
        grid=run.grid,
        rasters=rasters,
        vectors=run.vectors,
        style=ms,
        provenance=run.provenance,
        online_tiles=online_tiles,
    )
    LOGGER.info(f"map in {path.resolve()}")


@cli.command()
@run_dir_arg
@click.option("--technology", type=click.Choice(["pv", "wind"]), default="pv", show_default=True)
@click.option("--top", type=int, default=20, show_default=True)
@format_opt
def sites(run_dir: Path, technology: str, top: int, fmt: str) -> None:
    """Print the top-ranked candidate sites of a run (table, CSV or JSON on stdout)."""
    from sitekit.errors import InputError
    from sitekit.io.results import load_run

    run = load_run(run_dir)
    key = f"{technology}_sites"
    if key not in run.vectors:
        raise InputError(f"{run_dir}: the run has no {key} layer")
    df = run.vectors[key].sort_values("rank").head(top)
    cols = [
        c
        for c in (
            "rank",
            "site_id",
            "prefecture_zh",
            "prefecture",
            "county_zh",
            "county",
            "adcode",
            "capacity_mw",
            "energy_gwh",
            "lcoe_cny_per_kwh",
            "grid_distance_km",
            "grid_point_name",
        )
        if c in df.columns
    ]
    emit_table(
        cols,
        [[r[c] for c in cols] for _, r in df.iterrows()],
        fmt,
        title=f"{TECH_TITLES.get(technology, technology)}: top {len(df)} — {run_dir}",
        headers=[short_header(c) for c in cols],
    )


@cli.command()
@run_dir_arg
@click.option("--format", "fmt", type=click.Choice(["gpkg", "cog", "csv", "xlsx"]), required=True)
@click.option("--crs", default=None, help="Target CRS, e.g. EPSG:4490.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder (default RUN_DIR/export).",
)
def export(run_dir: Path, fmt: str, crs: str | None, out: Path | None) -> None:
    """Re-export a finished run as GeoPackage, COG, CSV or XLSX (optionally reprojected)."""
    from sitekit.outputs import export as ex

    paths = ex.reexport(run_dir, fmt, crs=crs, out=out)
    for p in paths:
        LOGGER.info(str(p))
    LOGGER.info(f"{len(paths)} file(s) written")
