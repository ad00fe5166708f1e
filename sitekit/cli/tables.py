"""One way to print a table from a verb: ``--format table|csv|json`` (``sites``, ``layers check``,
``cache info``)."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from collections.abc import Sequence
from typing import Any

import click


def _plain(v: Any) -> Any:
    """A JSON/CSV-friendly scalar (numpy scalars unwrapped, NaN → None)."""
    if hasattr(v, "item") and not isinstance(v, str | bytes):
        try:
            v = v.item()
        except (ValueError, TypeError):
            v = str(v)
    if isinstance(v, float) and math.isnan(v):
        return None
    if v is None or isinstance(v, str | int | float | bool):
        return v
    return str(v)


def emit_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    fmt: str = "table",
    *,
    title: str | None = None,
    headers: Sequence[str] | None = None,
) -> None:
    """Print ``rows`` on stdout as a rich table (``headers`` shown, ``title`` above), CSV (header
    = ``columns``, the machine names) or JSON (a list of objects keyed by ``columns``)."""
    if fmt == "json":
        data = [dict(zip(columns, map(_plain, r), strict=True)) for r in rows]
        click.echo(json.dumps(data, ensure_ascii=False, indent=1))
        return
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow(["" if (p := _plain(v)) is None else p for v in r])
        click.echo(buf.getvalue(), nl=False)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for h in headers or columns:
        table.add_column(str(h), overflow="fold")
    for r in rows:
        table.add_row(*[_cell(v) for v in r])
    width = shutil.get_terminal_size((160, 24)).columns
    Console(width=max(80, width), soft_wrap=False).print(table)


def _cell(v: Any) -> str:
    v = _plain(v)
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)
