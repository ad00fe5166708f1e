"""The ``sitekit`` command: one thin verb per file over library functions."""

from __future__ import annotations

import sys
import traceback

import click

from sitekit import __version__
from sitekit.errors import SitekitError


class _Group(click.Group):
    """Turns SitekitError into one line + exit 2; unexpected errors into one line + exit 1.
    Every verb added gets ``-q``/``-v`` (so they work after the verb as well as before it)."""

    group_class = type  # sub-groups (``layers``, ``cache``) are _Groups too

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:  # noqa: D102
        from sitekit.cli.options import add_verbosity

        super().add_command(add_verbosity(cmd), name)

    def invoke(self, ctx: click.Context):  # noqa: D102
        try:
            return super().invoke(ctx)
        except SitekitError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            click.echo(f"sitekit: error: {exc}", err=True)
            sys.exit(2)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            else:
                click.echo(
                    f"sitekit: internal error: {type(exc).__name__}: {exc} "
                    "(re-run with --debug for the traceback)",
                    err=True,
                )
            sys.exit(1)


def _show_versions(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from sitekit.io.provenance import versions

    for k, v in versions().items():
        click.echo(f"{k:14s} {v}")
    ctx.exit()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sitekit")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.option(
    "--quiet", "-q", is_flag=True, help="Warnings and errors only: no progress or chatter."
)
@click.option("--verbose", "-v", count=True, help="More detail (-v: debug; -vv: also dask's).")
@click.option(
    "--show-versions",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_show_versions,
    help="Print library versions (for bug reports) and exit.",
)
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool, verbose: int) -> None:
    """sitekit — screen land for solar PV, wind and pumped-storage hydro."""
    from sitekit.engine import logs

    ctx.ensure_object(dict)
    ctx.obj.update(debug=debug, quiet=quiet, verbose=verbose)
    logs.configure(verbose, quiet)


def register() -> None:
    """Import every verb module (each registers its commands on :data:`cli`)."""
    import importlib

    for mod in ("layers", "run", "outputs", "route", "cache", "validate"):
        try:
            importlib.import_module(f"sitekit.cli.{mod}")
        except ModuleNotFoundError as exc:  # pragma: no cover - optional verb module missing
            if exc.name != f"sitekit.cli.{mod}":
                raise


def _install_warning_format() -> None:
    """Print sitekit's own warnings as one line: ``sitekit: warning: …``."""
    import warnings

    from sitekit.errors import SitekitWarning

    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        if issubclass(category, SitekitWarning):
            print(f"sitekit: warning: {message}", file=file or sys.stderr)
        else:
            original(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def _handle_sigterm() -> None:
    """Make SIGTERM (``kill``, a batch system's time limit) end a run as Ctrl-C does: the
    staging folder is removed, the previous results stay, the cluster is closed."""
    import signal

    def stop(signum, frame):  # noqa: ANN001
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)


def main() -> None:
    """Console entry point."""
    _handle_sigterm()
    _install_warning_format()
    register()
    try:
        cli(prog_name="sitekit")
    finally:  # spare the interpreter's last full collection (~0.7 s after a run; sitekit.engine.gctools)
        from sitekit.engine import gctools

        gctools.freeze()
