"""``sitekit cache info|prune``: what the layer cache holds, and trimming it by age or size."""

from __future__ import annotations

from pathlib import Path

import click

from sitekit.cli import cli
from sitekit.cli.options import format_opt

cache_dir_arg = click.argument(
    "cache_dir",
    required=False,
    default=".sitekit-cache",
    type=click.Path(file_okay=False, path_type=Path),
)


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


@cli.group("cache")
def cache_group() -> None:
    """The layer cache (default .sitekit-cache): list it, prune it."""


@cache_group.command("info")
@cache_dir_arg
@format_opt
def info(cache_dir: Path, fmt: str) -> None:
    """Entries, size and last use by kind in CACHE_DIR."""
    import time

    from sitekit.cli.tables import emit_table
    from sitekit.engine.cachedir import entries, summary
    from sitekit.io.ownership import require_cache

    if cache_dir.exists():
        require_cache(cache_dir)
    listed = entries(cache_dir)
    if not listed and fmt == "table":
        click.echo(f"sitekit: {cache_dir} holds no cache entries", err=True)
        return
    now = time.time()
    rows: list[list[object]] = []
    for kind, (n, size) in sorted(summary(listed).items()):
        oldest = min(e.last_used for e in listed if e.kind == kind)
        rows.append([kind, n, round(size / 1e9, 3), round((now - oldest) / 86400.0, 1)])
    if listed:
        total = sum(e.size for e in listed)
        rows.append(["total", len(listed), round(total / 1e9, 3),
                     round((now - listed[0].last_used) / 86400.0, 1)])  # fmt: skip
    emit_table(
        ["kind", "entries", "size_gb", "oldest_last_used_days"],
        rows,
        fmt,
        title=f"sitekit cache {cache_dir}",
        headers=["kind", "entries", "size [GB]", "oldest last use [days]"],
    )


@cache_group.command("prune")
@cache_dir_arg
@click.option(
    "--older-than",
    type=click.FloatRange(min=0),
    default=None,
    metavar="DAYS",
    help="Remove entries last used more than DAYS days ago.",
)
@click.option(
    "--max-size",
    type=click.FloatRange(min=0),
    default=None,
    metavar="GB",
    help="Then remove the least recently used entries until at most GB gigabytes remain.",
)
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
def prune_cmd(cache_dir: Path, older_than: float | None, max_size: float | None,
              dry_run: bool) -> None:  # fmt: skip
    """Remove old or least recently used entries from CACHE_DIR.

    Entries used in the last 10 minutes are kept (a run may be reading them). A later run
    recomputes whatever it needs of what was removed."""
    from sitekit.engine.cachedir import entries, prune

    if older_than is None and max_size is None:
        raise click.UsageError("give --older-than DAYS, --max-size GB or both")
    from sitekit.io.ownership import require_cache

    require_cache(cache_dir)  # only a folder sitekit tagged as its cache: nothing else is touched
    before = sum(e.size for e in entries(cache_dir))
    gone = prune(
        cache_dir,
        older_than_days=older_than,
        max_bytes=None if max_size is None else int(max_size * 1e9),
        dry_run=dry_run,
    )
    freed = sum(e.size for e in gone)
    verb = "would remove" if dry_run else "removed"
    for e in gone if dry_run else []:
        click.echo(f"  {e.kind:10s} {_gb(e.size):>10s}  {e.paths[0].name}")
    click.echo(
        f"sitekit: {verb} {len(gone)} entries ({_gb(freed)}); "
        f"{_gb(before - (0 if dry_run else freed))} left in {cache_dir}"
    )
