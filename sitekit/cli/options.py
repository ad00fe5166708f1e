"""Options shared by several verbs (as rasterio's ``rio/options.py``)."""

from __future__ import annotations

from pathlib import Path

import click

DEFAULT_CATALOG = "layers/sichuan-west/catalog.yaml"

catalog_opt = click.option(
    "--catalog",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Layer catalogue (YAML); default: the embedded {DEFAULT_CATALOG}.",
)
out_opt = click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("out"),
    show_default=True,
    help="Output folder.",
)
force_opt = click.option("--force", is_flag=True, help="Overwrite an existing output folder.")
resolution_opt = click.option(
    "--resolution", type=float, default=250.0, show_default=True, help="Grid resolution [m]."
)
crs_opt = click.option(
    "--crs", default=None, help="CRS of exported vectors, e.g. EPSG:4490 (default: grid CRS)."
)
scheduler_opt = click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="Dask distributed scheduler address (tcp://host:port); default: a local cluster.",
)
workers_opt = click.option("--workers", type=int, default=None, help="Local Dask workers.")
threads_opt = click.option(
    "--threads-per-worker", type=int, default=None, help="Threads per local worker."
)
processes_opt = click.option(
    "--processes/--no-processes",
    default=False,
    show_default=True,
    help="Local workers as separate processes (isolated; --memory-limit enforced by restarting "
    "a worker), or, by default, as thread pools inside this process (no pickling or copying of "
    "blocks; the kernels release the GIL; faster and leaner on 2 cores).",
)
memory_opt = click.option(
    "--memory-limit", default="auto", show_default=True, help="Memory limit per local worker."
)
set_opt = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a recipe value: KEY=VALUE changes every recipe of the run that has KEY "
    "(e.g. sites.score_threshold=0.6); RECIPE:KEY=VALUE only the recipe named (pv, wind, "
    "pumped_storage or a recipe file name), e.g. pv:criteria.0.weight=0.3. A KEY no recipe has "
    "is an error (repeatable).",
)
chunks_opt = click.option(
    "--chunks", type=int, default=1024, show_default=True, help="Dask chunk edge [px]."
)
data_root_opt = click.option(
    "--data-root",
    "data_roots",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Allow catalogue paths below this folder too (repeatable).",
)


# -- verbosity: accepted before the verb (``sitekit -q demo``) and after it (``sitekit demo -q``)
def _verbosity(ctx: click.Context, param: click.Parameter, value: object) -> object:
    """Record ``-q``/``-v`` in the shared context object and (re)configure logging."""
    from sitekit.engine import logs

    if ctx.resilient_parsing:
        return value
    obj = ctx.ensure_object(dict)
    if param.name == "quiet" and value:
        obj["quiet"] = True
    elif param.name == "verbose" and value:
        obj["verbose"] = max(int(obj.get("verbose", 0)), int(value))  # type: ignore[call-overload]
    logs.configure(int(obj.get("verbose", 0)), bool(obj.get("quiet", False)))
    return value


def verbosity_params() -> list[click.Option]:
    """Fresh ``-q/--quiet`` and ``-v/--verbose`` options (one set per command)."""
    return [
        click.Option(
            ["--quiet", "-q"],
            is_flag=True,
            expose_value=False,
            callback=_verbosity,
            help="Warnings and errors only: no progress, no chatter.",
        ),
        click.Option(
            ["--verbose", "-v"],
            count=True,
            expose_value=False,
            callback=_verbosity,
            help="More detail (-v: debug messages; -vv: also dask's).",
        ),
    ]


def add_verbosity(command: click.Command) -> click.Command:
    """Give ``command`` the ``-q``/``-v`` options unless it has them already."""
    names = {n for p in command.params for n in getattr(p, "opts", [])}
    if not names & {"--quiet", "-q", "--verbose", "-v"}:
        command.params.extend(verbosity_params())
    return command


FORMATS = ("table", "csv", "json")
format_opt = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="table: for people; csv or json: for scripts (machine-readable, on stdout; notes go "
    "to stderr).",
)
