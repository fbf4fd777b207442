"""``maas models``: models, versions, aliases and headline metrics, as a table or JSON."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from maas.common import open_store, store_option

if TYPE_CHECKING:
    from functions.core.catalog import AliasRecord

PIPE_WIDTH = 10_000
"""Console width when stdout is not a terminal: rows are never cut or wrapped for a pipe or a file."""


@click.command()
@store_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models(store_uri: str | None, as_json: bool) -> None:
    """List models, versions, aliases and headline metrics."""
    from functions.core import catalog
    from functions.core.errors import IntegrityError, NotFoundError

    store = open_store(store_uri)
    rows: list[dict[str, Any]] = []
    for name in catalog.list_models(store):
        versions = catalog.list_versions(store, name)
        if not versions:
            continue
        records, broken = catalog.read_aliases(store, name)
        aliases = {alias: record.version for alias, record in records.items()} | dict.fromkeys(broken, "broken")
        rollouts = {alias: summary for alias, record in records.items() if (summary := rollout_summary(record))}
        try:
            manifest = catalog.read_manifest(store, name, versions[-1])
        except (NotFoundError, IntegrityError) as exc:
            rows.append({"name": name, "versions": versions, "aliases": aliases, "rollouts": rollouts,
                         "error": exc.message})
            continue
        shipped = manifest.variant(manifest.selected["cpu"])
        rows.append({"name": name, "versions": versions, "aliases": aliases, "rollouts": rollouts,
                     "task": manifest.task, "latest": manifest.version, "variant": shipped.name,
                     "metric_name": manifest.metric_name,
                     "metric": shipped.metrics.metric if shipped.metrics else None})
    if as_json:
        import orjson

        click.echo(orjson.dumps(rows).decode())
        return
    if not rows:
        click.echo(f"no models in {store.uri}; build one with: maas build digits-cnn", err=True)
        return
    _print_table(store.uri, rows)


def _print_table(store_uri: str, rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"models in {store_uri}")
    for column in ("model", "task", "versions", "aliases", "latest: shipped variant", "latest: test metric"):
        table.add_column(column, no_wrap=not sys.stdout.isatty())
    for row in rows:
        metric = f"{row['metric_name']} {row['metric']:.4f}" if row.get("metric") is not None else row.get("error", "-")
        table.add_row(row["name"], row.get("task", "-"), ", ".join(row["versions"]),
                      ", ".join(f"{a} -> {v}{_rollout_text(row['rollouts'].get(a))}"
                                for a, v in sorted(row["aliases"].items())) or "-",
                      row.get("variant", "-"), metric)
    Console(width=None if sys.stdout.isatty() else PIPE_WIDTH).print(table)


def rollout_summary(record: AliasRecord) -> dict[str, Any]:
    """An alias's active shadow and split, and the malformed rollout settings it ignores (empty: none)."""
    summary: dict[str, Any] = {}
    if record.shadow is not None:
        summary["shadow"] = {"candidate": record.shadow.candidate, "rate": record.shadow.rate,
                             "started_at": record.shadow.started_at}
    if record.split is not None:
        summary["split"] = {"version": record.split.version, "percent": record.split.percent,
                            "started_at": record.split.started_at}
    if record.ignored:
        summary["ignored"] = list(record.ignored)
    return summary


def _rollout_text(summary: dict[str, Any] | None) -> str:
    if not summary:
        return ""
    parts = []
    if shadow := summary.get("shadow"):
        parts.append(f"shadow {shadow['candidate']} at {shadow['rate']:g}")
    if split := summary.get("split"):
        parts.append(f"split {split['percent']:g}% -> {split['version']}")
    if summary.get("ignored"):
        parts.append("malformed rollout ignored")
    return f" ({'; '.join(parts)})"
