"""Rollouts the console shows: each alias of a model with its target, its shadow and split settings, and for an
active shadow the comparison report (``functions.core.shadow_report``) over the newest comparison records.

Comparison records are read from the data bucket's ``shadow/NAME/`` when the settings name one, else from this
process's capture folder (``maas serve --capture DIR``, ``MAAS_CAPTURE_DIR``, default ``./.maas/capture``) under
``_shadow/NAME``. Nothing here takes a path from a request. A missing or unreadable source is an empty report
with a note, never an error; the work is bounded by a record count (and, in the route, the request budget).
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import asdict
from typing import Any

from functions.core import capture, catalog
from functions.core.errors import MaasError, NotFoundError
from functions.core.settings import Settings
from functions.core.store import Store

log = logging.getLogger("maas.console")

DEFAULT_RECORDS = 2_000
MAX_RECORDS = 20_000


def comparison_source(name: str, settings: Settings) -> str:
    """Where ``name``'s comparison records are for this process: the data bucket, else the folder capture
    writes to (``maas serve --capture DIR``), else the default of ``maas shadow report``."""
    from functions.core.shadow_report import SHADOW_FOLDER, default_source

    sink = capture.state().sink
    if not settings.data_bucket and isinstance(sink, capture.DirectorySink):
        return str(sink.root / SHADOW_FOLDER / name)
    return default_source(name, settings)


def model_rollouts(store: Store, name: str) -> dict[str, Any]:
    """Every alias of ``name``: target, shadow, split and why a malformed rollout is ignored (``report``: None,
    filled by ``shadow_summary`` for an alias with a shadow); ``unreadable``: aliases whose record is unusable."""
    if not catalog.list_versions(store, name):
        raise NotFoundError(f"model {name!r} has no versions")
    records, unreadable = catalog.read_aliases(store, name)
    aliases = [{"alias": alias, "version": record.version, "updated_at": record.updated_at,
                "shadow": asdict(record.shadow) if record.shadow else None,
                "split": asdict(record.split) if record.split else None,
                "ignored": list(record.ignored), "report": None} for alias, record in sorted(records.items())]
    return {"model": name, "aliases": aliases, "unreadable": unreadable}


def shadow_summary(source: str, name: str, alias: str, live: str, candidate: str, endpoint_url: str | None = None,
                   limit: int = DEFAULT_RECORDS) -> dict[str, Any]:
    """The shadow report of ``candidate`` against the alias's current target ``live``; records that cannot be
    read make an empty report with a ``note`` (the reason is logged, not returned: it names the source)."""
    from functions.core.shadow_report import read_comparisons, shadow_report

    note = None
    try:
        found = read_comparisons(source, name, alias, endpoint_url=endpoint_url, limit=limit)
    except _read_errors(source) as exc:
        code = exc.code if isinstance(exc, MaasError) else type(exc).__name__
        log.warning("shadow report of %s/%s: %s: %s", name, alias, code, exc)
        found, note = [], f"no comparison records could be read ({code})"
    return _summary(shadow_report(found, name=name, alias=alias, candidate=candidate, live=live), len(found),
                    limit, note)


def late_summary(name: str, alias: str, live: str, candidate: str, limit: int) -> dict[str, Any]:
    """The empty report given when reading the records did not fit the request budget."""
    from functions.core.shadow_report import shadow_report

    return _summary(shadow_report([], name=name, alias=alias, candidate=candidate, live=live), 0, limit,
                    "the comparison records took longer than the request budget to read: ask for fewer records")


def _summary(report: dict[str, Any], read: int, limit: int, note: str | None) -> dict[str, Any]:
    return {**report, "records_read": read, "records_limit": limit, "note": note}


def _read_errors(source: str) -> tuple[type[Exception], ...]:
    """What reading comparison records may raise: a missing folder, an unreadable file or object, a bad gzip
    stream, and S3's errors for an ``s3://`` source."""
    errors: tuple[type[Exception], ...] = (MaasError, OSError, ValueError, zlib.error)
    if source.startswith("s3://"):
        from botocore.exceptions import BotoCoreError, ClientError

        errors += (BotoCoreError, ClientError)
    return errors
