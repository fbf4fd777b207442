"""What several commands share: the ``--store`` option, opening the store, error lines."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from functions.core.store import Store

store_option = click.option("--store", "store_uri", metavar="URI", default=None,
                            help="file://PATH or s3://BUCKET/PREFIX (default: $MAAS_STORE, else file://./.maas/store)")


def open_store(uri: str | None) -> Store:
    """The store at ``uri``, else the configured one."""
    from functions.core.settings import get_settings
    from functions.core.store import open_store as open_uri

    settings = get_settings()
    return open_uri(uri or settings.store, endpoint_url=settings.s3_endpoint_url)


def err(text: str) -> None:
    """One red line on stderr."""
    click.secho(text, fg="red", err=True)
