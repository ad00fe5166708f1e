"""``sitekit validate RUN_DIR``: check a finished run against the plants actually built."""

from __future__ import annotations

from pathlib import Path

import click

from sitekit.cli import cli


@cli.command("validate")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option(
    "--plants",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Plant list (CSV with lat/lon or GEM columns, or a GeoPackage); default: the run's own.",
)
@click.option(
    "--technology",
    type=click.Choice(["pv", "wind"]),
    default=None,
    help="Technology of --plants (default wind; a `technology` column filters rows).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random pixels.")
@click.pass_context
def validate(
    ctx: click.Context, run_dir: Path, plants: Path | None, technology: str | None, seed: int
) -> None:
    """Share of built plants on eligible land, their score percentile, modelled CF and ROC AUC;
    writes RUN_DIR/validation.csv and RUN_DIR/validation_plants.csv."""
    from sitekit.engine.validation import validate_run

    summary = validate_run(run_dir, plants, technology, seed=seed)
    if not (ctx.obj or {}).get("quiet"):
        for row in summary.to_dict("records"):
            click.echo(
                f"{row['technology']}: {row['operating_on_eligible']}/"
                f"{row['operating_in_study_area']} operating plants on eligible land "
                f"({row['share_operating_on_eligible']:.0%}), median score percentile "
                f"{row['median_score_percentile']:.1f}, AUC {row['auc_operating_vs_random_eligible']:.3f}"
                f", {row['plants_outside']} plant(s) outside the study area"
            )
        click.echo(f"sitekit: results in {(run_dir / 'validation.csv').resolve()}")
