"""``sitekit layers check CATALOG``."""

from __future__ import annotations

import math
from pathlib import Path

import click

from sitekit.cli import cli
from sitekit.cli.options import data_root_opt


@cli.group()
def layers() -> None:
    """Inspect layer catalogues."""


@layers.command("check")
@click.argument("catalog", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--resolution", type=float, default=2000.0, show_default=True, help="Check-grid resolution [m]."
)
@data_root_opt
def check(catalog: Path, resolution: float, data_roots: tuple[Path, ...]) -> None:
    """Open every layer of CATALOG and print a table; exit 2 on any problem."""
    from rich.console import Console
    from rich.table import Table

    from sitekit.catalog import Catalog
    from sitekit.check import check_catalog
    from sitekit.errors import LayerError

    cat = Catalog(catalog, extra_roots=data_roots)
    grid, rows = check_catalog(cat, resolution)
    table = Table(title=f"{cat.spec.title_zh or ''} {cat.spec.title_en or cat.spec.name}".strip())
    for col in (
        "layer",
        "name 中文 / English",
        "kind",
        "CRS",
        "resolution / features",
        "coverage %",
        "values",
        "plausible",
        "problems",
    ):
        table.add_column(col, overflow="fold")
    for r in rows:
        cov = "" if math.isnan(r.coverage_pct) else f"{r.coverage_pct:.1f}"
        table.add_row(
            r.id,
            r.title,
            r.kind,
            r.crs,
            r.detail,
            cov,
            r.value_range,
            r.plausible,
            "; ".join(r.problems) or "ok",
        )
    Console(width=200).print(table)
    click.echo(f"study area: {grid.study_area.area / 1e6:,.0f} km² — {grid.describe()}")
    bad = [r for r in rows if not r.ok]
    if bad:
        raise LayerError(
            f"{len(bad)} of {len(rows)} layers have problems: "
            + " | ".join(f"{r.id}: {r.problems[0]}" for r in bad)
        )
    click.echo(f"{len(rows)} layers ok")
