"""``sitekit layers check CATALOG``."""

from __future__ import annotations

import math
from pathlib import Path

import click

from sitekit.cli import cli
from sitekit.cli.options import data_root_opt, format_opt
from sitekit.cli.tables import emit_table


@cli.group()
def layers() -> None:
    """Inspect layer catalogues."""


@layers.command("check")
@click.argument("catalog", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--resolution", type=float, default=2000.0, show_default=True, help="Check-grid resolution [m]."
)
@data_root_opt
@format_opt
def check(catalog: Path, resolution: float, data_roots: tuple[Path, ...], fmt: str) -> None:
    """Open every layer of CATALOG and print a table (or CSV/JSON); exit 2 on any problem."""
    from sitekit.errors import LayerError
    from sitekit.io.catalog import Catalog
    from sitekit.io.check import check_catalog

    cat = Catalog(catalog, extra_roots=data_roots)
    grid, rows = check_catalog(cat, resolution)
    cols = [
        "layer",
        "name",
        "kind",
        "crs",
        "resolution_or_features",
        "coverage_pct",
        "values",
        "plausible",
        "problems",
    ]
    headers = [
        "layer",
        "name 中文 / English",
        "kind",
        "CRS",
        "resolution / features",
        "coverage %",
        "values",
        "plausible",
        "problems",
    ]
    emit_table(
        cols,
        [
            [
                r.id,
                r.title,
                r.kind,
                r.crs,
                r.detail,
                None if math.isnan(r.coverage_pct) else round(r.coverage_pct, 1),
                r.value_range,
                r.plausible,
                "; ".join(r.problems) or "ok",
            ]
            for r in rows
        ],
        fmt,
        title=f"{cat.spec.title_zh or ''} {cat.spec.title_en or cat.spec.name}".strip(),
        headers=headers,
    )
    say = click.echo if fmt == "table" else (lambda m: click.echo(m, err=True))
    say(f"study area: {grid.study_area.area / 1e6:,.0f} km² — {grid.describe()}")
    bad = [r for r in rows if not r.ok]
    if bad:
        raise LayerError(
            f"{len(bad)} of {len(rows)} layers have problems: "
            + " | ".join(f"{r.id}: {r.problems[0]}" for r in bad)
        )
    say(f"{len(rows)} layers ok")
