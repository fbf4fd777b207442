"""``maas promote`` and ``maas rollback``: move a model's aliases."""

from __future__ import annotations

import click

from maas.common import open_store, store_option


@click.command()
@click.argument("name")
@click.argument("version")
@click.option("--alias", required=True, help="Alias to move, e.g. prod or staging.")
@store_option
def promote(name: str, version: str, alias: str, store_uri: str | None) -> None:
    """Point ALIAS of model NAME at VERSION."""
    from functions.core import catalog

    record = catalog.promote(open_store(store_uri), name, version, alias)
    click.echo(f"{name} {alias} -> {record.version}" + (f" (was {record.previous[0]})" if record.previous else ""))


@click.command()
@click.argument("name")
@click.option("--alias", required=True, help="Alias to move back to its previous version.")
@store_option
def rollback(name: str, alias: str, store_uri: str | None) -> None:
    """Return ALIAS of model NAME to the version it pointed at before."""
    from functions.core import catalog

    record = catalog.rollback(open_store(store_uri), name, alias)
    click.echo(f"{name} {alias} -> {record.version}")
