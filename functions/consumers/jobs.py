"""Batch jobs and consumers: a job submitted with an API key belongs to that key's consumer, who alone may read
it, and the rows it predicts count to that consumer's usage.

- Ownership: the job record keeps the submitting request's consumer; ``GET /v1/jobs/{id}`` (and its files)
  answers 404, as for an unknown job, to any other caller. Jobs submitted without a consumer (IAM or JWT
  stages, ``maas serve`` without ``--keys``) are anyone's who may call the API, as before.
- Locally (``maas serve --keys FILE``) a finished job adds its ok rows to the meter the key gate writes with
  (``use_meter``, set by ``local_gate``).
- Deployed, the upload's presigned POST fixes the object metadata ``x-amz-meta-maas-consumer`` (a policy
  condition: the uploader cannot change it); once the batch side has written an input's final report
  (write-once, so a repeated event counts nothing) it reads the metadata back and adds the ok rows to the table
  in ``MAAS_KEYS`` (``count_input_rows``).

A job counts rows only (``requests`` 0): its submit request was counted by the gate when it was answered.
"""

from __future__ import annotations

import os
import re
from functools import cache
from typing import TYPE_CHECKING, Protocol

from functions.consumers.usage import Usage, day_of
from functions.core.request_facts import FACTS
from functions.core.settings import ENV_KEYS
from functions.core.telemetry import log

if TYPE_CHECKING:
    from functions.consumers.meter import Meter
    from functions.consumers.store import ConsumerStore

CONSUMER_METADATA = "maas-consumer"
"""The user metadata an uploaded job input carries its consumer in (as S3 returns it from a HEAD)."""
CONSUMER_FIELD = f"x-amz-meta-{CONSUMER_METADATA}"
"""The presigned POST's form field (and policy condition) that sets it."""
_JOB_INPUT = re.compile(r"inputs/[^/]+/jobs/[^/]+")

_meter: Meter | None = None


class ObjectMetadata(Protocol):
    """What reading an input's consumer needs from a data bucket (``S3Store`` is one)."""

    def metadata(self, key: str) -> dict[str, str]: ...


def caller() -> str | None:
    """The consumer of the current request (None outside a request the key gate admitted)."""
    facts = FACTS.get()
    return None if facts is None else facts.consumer


def visible_to(owner: object, consumer: str | None) -> bool:
    """Whether a job whose record names ``owner`` (None: submitted without a consumer) may be read by
    ``consumer``: an owned job only by its owner, any other by whoever may call the API."""
    return owner is None or owner == consumer


def use_meter(meter: Meter | None) -> None:
    """The meter finished local jobs count their rows into: the key gate's (``local_gate`` sets it)."""
    global _meter
    _meter = meter


def job_usage(consumer: str, model: str, version: str, rows: int, now: float | None = None) -> Usage:
    """A job's ok rows as a usage row of the day it finished (no request: the submit was counted)."""
    return Usage(consumer, model, version, day_of(now), rows=rows)


def count_job_rows(consumer: str, model: str, version: str, rows: int) -> bool:
    """Add a finished local job's ok rows to the process's meter; False (logged) when there is none."""
    if rows <= 0:
        return False
    meter = _meter
    if meter is None:
        log("WARNING", "job rows not counted: this process meters no usage (maas serve --keys)", consumer=consumer,
            model=model, version=version, rows=rows)
        return False
    meter.add(job_usage(consumer, model, version, rows))
    return True


def is_job_input(key: str) -> bool:
    """An input uploaded through the job API (``inputs/MODEL[:VERSION]/jobs/FILE``)."""
    return _JOB_INPUT.fullmatch(key) is not None


@cache
def _store(uri: str) -> ConsumerStore:
    from functions.consumers.store import open_store

    return open_store(uri)


def count_input_rows(bucket: ObjectMetadata, key: str, model: str, version: str, rows: int) -> str | None:
    """After an input's final report was written: add its ok rows to the consumer its upload named, in the store
    ``MAAS_KEYS`` names. The consumer counted to, or None (not a job input, no consumer, no store, nothing to
    count). Never raises: a failure is logged and the batch result stands."""
    uri = os.environ.get(ENV_KEYS)
    if not uri or rows <= 0 or not is_job_input(key):
        return None
    try:
        consumer = bucket.metadata(key).get(CONSUMER_METADATA)
        if not consumer:
            return None
        _store(uri).add_usage([job_usage(consumer, model, version, rows)])
    except Exception as exc:  # usage must never fail a batch result that is already written
        log("ERROR", "job rows not counted to their consumer", key=key, rows=rows,
            error=getattr(exc, "message", None) or repr(exc))
        return None
    log("INFO", "job rows counted", key=key, consumer=consumer, model=model, version=version, rows=rows)
    return consumer
