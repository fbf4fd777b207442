"""``maas usage``: what each consumer did with each model version per UTC day, from the consumer store."""

from __future__ import annotations

import re
import sys
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from maas.keys import PIPE_WIDTH, keys_option, open_keys

if TYPE_CHECKING:
    from functions.consumers.usage import Usage

_DAYS_AGO = re.compile(r"(\d{1,4})d")


def parse_since(text: str, today: date | None = None) -> str:
    """``YYYY-MM-DD``, or ``Nd`` for N days before today (UTC; ``0d`` is today); ValueError otherwise."""
    today = today or datetime.now(UTC).date()
    text = text.strip()
    ago = _DAYS_AGO.fullmatch(text)
    if ago:
        return (today - timedelta(days=int(ago.group(1)))).isoformat()
    try:
        return datetime.strptime(text, "%Y-%m-%d").date().isoformat()
    except ValueError:
        raise ValueError(f"{text!r} is not a day: give YYYY-MM-DD, or Nd for N days ago (7d)") from None


def _since(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return parse_since(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None


def mean_ms(row: Usage) -> float | None:
    """Mean milliseconds from request to answer; None for no requests."""
    return row.latency_ms / row.requests if row.requests else None


def as_dict(row: Usage) -> dict[str, Any]:
    mean = mean_ms(row)
    return {**row.to_dict(), "mean_latency_ms": None if mean is None else round(mean, 3)}


@click.command()
@click.option("--consumer", default=None, help="Only this consumer.")
@click.option("--model", default=None, help="Only this model.")
@click.option("--since", default=None, callback=_since, metavar="DAY",
              help="From this UTC day on: YYYY-MM-DD, or Nd for N days ago (7d). Default: everything kept.")
@keys_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output: a list of rows.")
def usage(consumer: str | None, model: str | None, since: str | None, keys_uri: str | None,
          as_json: bool) -> None:
    """Usage per day, consumer, model and version: requests, rows, errors by class, mean latency."""
    from functions.consumers.usage import Usage, merged

    store = open_keys(keys_uri)
    rows = merged(store.usage(consumer, model, since))
    if as_json:
        import orjson

        click.echo(orjson.dumps([as_dict(row) for row in rows]).decode())
        return
    if not rows:
        filters = [f"{name} {value}" for name, value in (("consumer", consumer), ("model", model))
                   if value is not None]
        where = f" for {', '.join(filters)}" if filters else ""
        click.echo(f"no usage recorded in {store.uri}{where}{f' since {since}' if since else ''}")
        return
    from rich.console import Console
    from rich.table import Table

    total = Usage("", "", "", "total")
    for row in rows:
        total.add(row)
    table = Table(title=f"usage in {store.uri}" + (f" since {since}" if since else ""), show_footer=False)
    for column in ("day", "consumer", "model", "version", "requests", "rows", "client errors", "throttled",
                   "server errors", "mean latency ms"):
        table.add_column(column, justify="left" if column in ("day", "consumer", "model", "version") else "right",
                         no_wrap=not sys.stdout.isatty())
    for row in rows:
        table.add_row(*_cells(row))
    table.add_section()
    table.add_row(*_cells(total))
    Console(width=None if sys.stdout.isatty() else PIPE_WIDTH).print(table)


def _cells(row: Usage) -> list[str]:
    mean = mean_ms(row)
    return [row.day, row.consumer, row.model, row.version, str(row.requests), str(row.rows), str(row.client_errors),
            str(row.throttled), str(row.server_errors), "-" if mean is None else f"{mean:.1f}"]
