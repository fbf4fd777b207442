"""``maas keys create/list/revoke/rotate``: API keys in the consumer store (a SQLite file or ``dynamodb://TABLE``).

A new key is printed once, alone on stdout (``KEY=$(maas keys create team-a)``); its details go to stderr. Only
its SHA-256 is stored, so a lost key cannot be shown again: rotate it. Listings name keys by their public id
(``maas_xxxxxxxx``) and never print a key or its hash.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from functions.consumers.keys import MAX_RATE

if TYPE_CHECKING:
    from functions.consumers.keys import KeyRecord
    from functions.consumers.store import ConsumerStore

DEFAULT_GRACE_HOURS = 24.0
MAX_EXPIRES_DAYS = 36_500.0
"""A hundred years: longer is "never" (leave --expires out)."""
MAX_GRACE_HOURS = 8_760.0
"""A year of grace for a rotated key at most."""
PIPE_WIDTH = 10_000
"""Console width when stdout is not a terminal: rows are never cut or wrapped for a pipe or a file."""

keys_option = click.option(
    "--keys", "keys_uri", metavar="FILE", default=None,
    help="The key store: a SQLite file or dynamodb://TABLE (default: $MAAS_KEYS, else .maas/keys.db).")


def open_keys(uri: str | None, create: bool = False) -> ConsumerStore:
    """The consumer store at ``uri`` (else ``MAAS_KEYS``, else ``.maas/keys.db``). A SQLite file must exist
    unless ``create``: a mistyped path is named, not silently made empty."""
    from functions.consumers.store import DYNAMODB, SQLITE, keys_uri, open_store
    from functions.core.errors import NotFoundError

    resolved = keys_uri(uri)
    if not resolved.startswith(DYNAMODB):
        path = Path(resolved[len(SQLITE):] if resolved.startswith(SQLITE) else resolved)
        if path.is_dir():
            raise click.BadParameter(f"{resolved} is a folder: give the key store's file, e.g. {path / 'keys.db'}",
                                     param_hint="--keys")
        if not create and "://" not in str(path) and not path.is_file():
            raise NotFoundError(f"no key store at {resolved}: make one with `maas keys create CONSUMER "
                                f"--keys {resolved}`")
    try:
        return open_store(resolved)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--keys") from None


def when(moment: float | None) -> str:
    """A moment as UTC ``YYYY-MM-DD HH:MM``; ``-`` for none."""
    if moment is None:
        return "-"
    try:
        return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M")
    except (OverflowError, OSError, ValueError):  # a record written by other tools: never break a listing
        return "far future" if moment > 0 else "far past"


def _positive(name: str, most: float | None = None) -> Any:
    def check(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and value > 0):
            raise click.BadParameter(f"must be a number > 0, got {value:g}", param_hint=name)
        if value is not None and most is not None and value > most:
            raise click.BadParameter(f"must be at most {most:g}, got {value:g}", param_hint=name)
        return value
    return check


def _models(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    from functions.consumers.keys import parse_models

    try:
        return parse_models(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--models") from None


def _consumer(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from functions.consumers.keys import check_consumer

    try:
        return check_consumer(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="CONSUMER") from None


def _key_id(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from functions.consumers.keys import parse_key_id

    try:
        return parse_key_id(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="KEY-PREFIX") from None


def _find(store: ConsumerStore, key_id: str) -> KeyRecord:
    from functions.consumers.keys import shown_id
    from functions.core.errors import NotFoundError

    record = store.find_key(key_id)
    if record is None:
        raise NotFoundError(f"no key {shown_id(key_id)} in {store.uri} (see `maas keys list`)")
    return record


def issue(store: ConsumerStore, consumer: str, models: tuple[str, ...], rate_limit: float | None,
          daily_quota: int | None, expires_at: float | None, now: float) -> tuple[str, KeyRecord]:
    """Make a key, store its record (never the key) and return both."""
    from functions.consumers.keys import KeyRecord, key_hash, new_key
    from functions.core.errors import AlreadyExistsError

    for attempt in range(3):  # 40 bits of id: a clash is a once-in-a-lifetime event; just draw again
        key, key_id = new_key()
        record = KeyRecord(key_hash(key), key_id, consumer, models, rate_limit, daily_quota, created_at=now,
                           expires_at=expires_at)
        try:
            store.put_key(record)
        except AlreadyExistsError:
            if attempt == 2:
                raise
            continue
        return key, record
    raise AssertionError("unreachable")


def announce(key: str, record: KeyRecord, verb: str) -> None:
    """The key alone on stdout, what it allows on stderr."""
    from functions.consumers.keys import shown_id

    click.echo(key)
    expires = f"{when(record.expires_at)} UTC" if record.expires_at is not None else "never"
    click.echo(f"{verb} key {shown_id(record.key_id)} for consumer {record.consumer}: models "
               f"{','.join(record.models)}, rate limit {_limit(record.rate_limit, ' req/s')}, daily quota "
               f"{_limit(record.daily_quota, ' requests')}, expires {expires}", err=True)
    click.echo("the key is shown this once; only its hash is stored", err=True)


def _limit(value: float | None, unit: str) -> str:
    return "none" if value is None else f"{value:g}{unit}"


@click.group()
def keys() -> None:
    """API keys: create, list, revoke and rotate (see docs/consumers.md)."""


@keys.command()
@click.argument("consumer", callback=_consumer)
@click.option("--models", default="*", show_default=True, callback=_models,
              help="The models the key may call: m1,m2 or * for all.")
@click.option("--rate-limit", type=float, default=None, callback=_positive("--rate-limit", MAX_RATE), metavar="R",
              help="Requests per second for the consumer (1/3600 to 1e6), in the shortest window up to a minute "
                   "holding whole requests (below 1/60: one request per ceil(1/R) seconds). Default: none.")
@click.option("--daily-quota", type=int, default=None, metavar="N",
              help="Requests per UTC day for the consumer (1 to 10^12). Default: none.")
@click.option("--expires", "expires_days", type=float, default=None,
              callback=_positive("--expires", MAX_EXPIRES_DAYS),
              metavar="DAYS", help="Days until the key expires (fractions allowed). Default: never.")
@keys_option
def create(consumer: str, models: tuple[str, ...], rate_limit: float | None, daily_quota: int | None,
           expires_days: float | None, keys_uri: str | None) -> None:
    """Create a key for CONSUMER and print it once (stdout: the key alone; stderr: its id and limits)."""
    from functions.consumers.keys import MAX_QUOTA, MIN_RATE

    if daily_quota is not None and not 1 <= daily_quota <= MAX_QUOTA:
        raise click.BadParameter(f"must be 1 to {MAX_QUOTA}, got {daily_quota}", param_hint="--daily-quota")
    if rate_limit is not None and rate_limit < MIN_RATE:
        raise click.BadParameter(f"must be at least {MIN_RATE:.6f} (one request an hour), got {rate_limit:g}",
                                 param_hint="--rate-limit")
    now = time.time()
    store = open_keys(keys_uri, create=True)
    key, record = issue(store, consumer, models, rate_limit, daily_quota,
                        None if expires_days is None else now + expires_days * 86400, now)
    announce(key, record, "created")


def public(record: KeyRecord, now: float) -> dict[str, Any]:
    """A record as listings show it: no hash, with its printed id and its state."""
    from functions.consumers.keys import shown_id

    data = record.to_dict()
    del data["key_hash"]
    state: str = record.state(now)
    if state == "active" and record.replaced_by is not None:
        state = "rotated"  # still valid, in its grace period
    return {"id": shown_id(record.key_id), **data, "state": state}


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (no key hashes).")
@keys_option
def list_command(as_json: bool, keys_uri: str | None) -> None:
    """List every key: id, consumer, scope, limits, dates and state (never a key or its hash)."""
    now = time.time()
    store = open_keys(keys_uri)
    rows = [public(record, now) for record in store.list_keys()]
    if as_json:
        import orjson

        click.echo(orjson.dumps(rows).decode())
        return
    if not rows:
        click.echo(f"no keys in {store.uri}; make one with: maas keys create CONSUMER --keys {store.uri}", err=True)
        return
    from rich.console import Console
    from rich.table import Table

    from functions.consumers.keys import shown_id

    table = Table(title=f"API keys in {store.uri}")
    for column in ("id", "consumer", "models", "rate limit", "daily quota", "created", "expires", "state",
                   "replaced by"):
        table.add_column(column, no_wrap=not sys.stdout.isatty())
    for row in rows:
        table.add_row(row["id"], row["consumer"], ",".join(row["models"]), _limit(row["rate_limit"], "/s"),
                      _limit(row["daily_quota"], "/day"), when(row["created_at"]), when(row["expires_at"]),
                      row["state"], shown_id(row["replaced_by"]) if row["replaced_by"] else "-")
    Console(width=None if sys.stdout.isatty() else PIPE_WIDTH).print(table)


@keys.command()
@click.argument("key_id", metavar="KEY-PREFIX", callback=_key_id)
@keys_option
def revoke(key_id: str, keys_uri: str | None) -> None:
    """Revoke key KEY-PREFIX (maas_xxxxxxxx or xxxxxxxx) at once; `maas serve` refuses it within its cache TTL."""
    from functions.consumers.keys import shown_id

    store = open_keys(keys_uri)
    record = _find(store, key_id)
    if record.revoked_at is not None:
        click.echo(f"key {shown_id(key_id)} was already revoked at {when(record.revoked_at)} UTC", err=True)
        return
    store.update_key(record.revoked(time.time()))
    click.echo(f"revoked key {shown_id(key_id)} of consumer {record.consumer}", err=True)


@keys.command()
@click.argument("key_id", metavar="KEY-PREFIX", callback=_key_id)
@click.option("--grace", "grace_hours", type=float, default=DEFAULT_GRACE_HOURS, show_default=True,
              metavar="HOURS", help="How long the old key keeps working (0: not at all).")
@keys_option
def rotate(key_id: str, grace_hours: float, keys_uri: str | None) -> None:
    """Replace key KEY-PREFIX with a new one (same consumer, models, limits and expiry), printed once like
    `create`; the old key works for the grace period. A revoked, expired or already rotated key is refused
    (exit 16)."""
    from functions.consumers.keys import shown_id
    from functions.core.errors import ForbiddenError

    if not (math.isfinite(grace_hours) and 0 <= grace_hours <= MAX_GRACE_HOURS):
        raise click.BadParameter(f"must be a number of hours from 0 to {MAX_GRACE_HOURS:g}, got {grace_hours:g}",
                                 param_hint="--grace")
    now = time.time()
    store = open_keys(keys_uri)
    old = _find(store, key_id)
    state = old.state(now)
    if state != "active":
        raise ForbiddenError(f"key {shown_id(key_id)} is {state}: nothing to rotate; make a new one with "
                             f"`maas keys create {old.consumer}`")
    if old.replaced_by is not None:
        raise ForbiddenError(f"key {shown_id(key_id)} was already rotated to {shown_id(old.replaced_by)} (it "
                             f"stays valid until {when(old.expires_at)} UTC); rotate the new key instead")
    key, new = issue(store, old.consumer, old.models, old.rate_limit, old.daily_quota, old.expires_at, now)
    ends = now + grace_hours * 3600
    store.update_key(replace(old, expires_at=ends if old.expires_at is None else min(old.expires_at, ends),
                             replaced_by=new.key_id))
    announce(key, new, "rotated to")
    if grace_hours == 0:
        click.echo(f"the old key {shown_id(key_id)} no longer works", err=True)
    else:
        click.echo(f"the old key {shown_id(key_id)} works until {when(min(ends, old.expires_at or ends))} UTC",
                   err=True)
