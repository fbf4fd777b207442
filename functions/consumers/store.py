"""Where keys, limit counters and usage live: one interface, a SQLite file locally and a DynamoDB table deployed.

Every counter update is atomic in the store itself (SQLite's upsert, DynamoDB's ``ADD``), so any number of
threads, processes or Lambda containers count exactly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from functions.consumers.keys import KeyRecord
from functions.consumers.usage import Usage
from functions.core.settings import ENV_KEYS

DEFAULT_KEYS = ".maas/keys.db"
DYNAMODB = "dynamodb://"
SQLITE = "sqlite://"


class ConsumerStore(Protocol):
    """Keys by hash, counters with limits, and usage rows."""

    uri: str

    def put_key(self, record: KeyRecord) -> None:
        """Add a key (AlreadyExistsError if its hash or id is taken)."""

    def get_key(self, key_hash: str) -> KeyRecord | None:
        """The key with this hash, if any."""

    def find_key(self, key_id: str) -> KeyRecord | None:
        """The key with this public id, if any."""

    def list_keys(self) -> list[KeyRecord]:
        """Every key, revoked and expired ones included."""

    def update_key(self, record: KeyRecord) -> None:
        """Replace an existing key's record (NotFoundError if there is none)."""

    def take(self, counter: str, window: str, limit: int, expires_at: float) -> int | None:
        """Count one more in ``counter``'s ``window`` unless it already holds ``limit``: the new count, or None
        when the limit is reached (nothing counted). The window is forgotten after ``expires_at``."""

    def add_usage(self, rows: Sequence[Usage]) -> None:
        """Add each row's counts to the stored totals of its (consumer, model, version, day)."""

    def usage(self, consumer: str | None = None, model: str | None = None,
              since: str | None = None) -> list[Usage]:
        """Stored totals, filtered by consumer, model and first day (``YYYY-MM-DD``)."""


def keys_uri(given: str | None = None) -> str:
    """The key store to use: the one given, else ``MAAS_KEYS``, else ``.maas/keys.db``."""
    return given or os.environ.get(ENV_KEYS) or DEFAULT_KEYS


def open_store(uri: str) -> ConsumerStore:
    """``dynamodb://TABLE`` or a SQLite file (a path, or ``sqlite:///path``)."""
    if uri.startswith(DYNAMODB):
        from functions.consumers.dynamo_store import DynamoStore

        table = uri[len(DYNAMODB):]
        if not table:
            raise ValueError(f"{uri!r} names no table (dynamodb://TABLE)")
        return DynamoStore(table)
    from functions.consumers.sqlite_store import SqliteStore

    path = uri[len(SQLITE):] if uri.startswith(SQLITE) else uri
    if "://" in path:
        raise ValueError(f"{uri!r}: keys live in a SQLite file (a path) or dynamodb://TABLE")
    return SqliteStore(Path(path))
