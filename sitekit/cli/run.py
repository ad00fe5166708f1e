"""``sitekit demo`` and ``sitekit run RECIPE…``: thin wrappers over :func:`sitekit.engine.run.run_job`."""

from __future__ import annotations

from pathlib import Path

import click

from sitekit.cli import cli
from sitekit.cli.options import (
    catalog_opt,
    chunks_opt,
    crs_opt,
    data_root_opt,
    force_opt,
    memory_opt,
    out_opt,
    processes_opt,
    resolution_opt,
    scheduler_opt,
    set_opt,
    threads_opt,
    workers_opt,
)
from sitekit.engine import gctools
from sitekit.engine.resources import data_root

REPO = data_root()  # pipelines/, layers/, maps/: a checkout or the wheel's bundled copy


def _options(ctx: click.Context, **kw) -> object:
    from sitekit.cli.options import DEFAULT_CATALOG
    from sitekit.engine.run import RunOptions

    return RunOptions(
        catalog=kw["catalog"] or REPO / DEFAULT_CATALOG,
        out=kw["out"],
        resolution_m=kw["resolution"],
        export_crs=kw["crs"],
        chunks=kw["chunks"],
        scheduler=kw["scheduler"],
        workers=kw["workers"],
        threads_per_worker=kw["threads_per_worker"],
        processes=kw["processes"],
        memory_limit=kw["memory_limit"],
        force=kw["force"],
        quiet=ctx.obj.get("quiet", False),
        overrides=tuple(kw.get("overrides") or ()),
        pumped_storage=kw.get("pumped_storage"),
        make_map=not kw.get("no_map", False),
        online_tiles=kw.get("online_tiles", False),
        data_roots=tuple(kw.get("data_roots") or ()),
        cache_dir=None if kw.get("no_cache") else kw.get("cache_dir"),
        size_check=not kw.get("no_size_check", False),
    )


def _common(f):
    for opt in reversed(
        [
            catalog_opt,
            out_opt,
            force_opt,
            resolution_opt,
            crs_opt,
            chunks_opt,
            scheduler_opt,
            workers_opt,
            threads_opt,
            processes_opt,
            memory_opt,
            set_opt,
            data_root_opt,
        ]
    ):
        f = opt(f)
    f = click.option("--no-map", is_flag=True, help="Skip map.html and report.html.")(f)
    f = click.option(
        "--cache-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path(".sitekit-cache"),
        show_default=True,
        help="Cache of intermediate layers (slope, yield, CF, distances).",
    )(f)
    f = click.option("--no-cache", is_flag=True, help="Recompute every layer.")(f)
    f = click.option(
        "--no-size-check",
        is_flag=True,
        help="Run even when the grid looks too large for this machine's memory or disk.",
    )(f)
    f = click.option(
        "--online-tiles",
        is_flag=True,
        help="Add an OpenStreetMap tile layer (needs internet to view).",
    )(f)
    return f


@cli.command()
@_common
@click.pass_context
def demo(ctx: click.Context, **kw) -> None:
    """The whole job on the embedded four-prefecture data: PV, wind, pumped storage, map, GeoPackage."""
    with gctools.paused():  # the heavy imports (dask, numba, geopandas, ...)
        from sitekit.engine.run import run_job

    pipes = REPO / "pipelines"
    kw.setdefault("pumped_storage", pipes / "pumped_storage.yaml")
    if not (pipes / "pumped_storage.yaml").exists():
        kw["pumped_storage"] = None
    opts = _options(ctx, **kw)
    # grid planners' part: the illustrative example corridor, hosting capacity, hydro bases. It
    # runs on the staging folder before that replaces --out, so the demo lands whole or not at all
    from sitekit.cli.route import hosting as hosting_cmd
    from sitekit.cli.route import route as route_cmd

    example = REPO / "layers" / "sichuan-west" / "routes" / "example_route.geojson"

    def grid_steps(stage: Path) -> None:
        ctx.obj["staged_as"] = (stage, opts.out)  # messages name --out, not the staging folder
        if example.exists() and kw["catalog"] is None:
            ctx.invoke(
                route_cmd,
                route_file=example,
                run_dir=stage,
                force=True,
                no_map=kw.get("no_map", False),
            )
        ctx.invoke(hosting_cmd, run_dir=stage, catalog=kw["catalog"], force=True)

    opts.post = grid_steps
    run_job([pipes / "pv.yaml", pipes / "wind.yaml"], opts)


@cli.command()
@click.argument("recipes", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@_common
@click.pass_context
def run(ctx: click.Context, recipes: tuple[Path, ...], **kw) -> None:
    """Run scoring RECIPES (pipelines/pv.yaml, wind.yaml, pumped_storage.yaml) on a catalogue."""
    with gctools.paused():  # the heavy imports (dask, numba, geopandas, ...)
        from sitekit.engine.run import run_job

    ps = [p for p in recipes if _is_ps(p)]
    kw["pumped_storage"] = ps[0] if ps else None
    opts = _options(ctx, **kw)
    opts.extra_pumped_storage = tuple(ps[1:])  # each into OUT/<recipe name>/
    run_job([p for p in recipes if not _is_ps(p)], opts)


def _is_ps(path: Path) -> bool:
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:4000]
    except OSError:
        return False
    return "technology: pumped_storage" in head
