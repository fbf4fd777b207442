"""Lambda entry point for batch predictions: S3 notifications delivered through SQS (partial batch responses)
or directly from S3. Built once per container at import."""

from __future__ import annotations

from typing import Any

import orjson

from functions.batch.dispatch import AwsBatchDispatcher, Dispatcher
from functions.batch.events import PoisonMessageError, objects_in
from functions.batch.local import for_batch
from functions.batch.objects import data_bucket_factory
from functions.batch.process import Processor
from functions.batch.routing import after_deadline, receive_count, router_from
from functions.core.errors import DeadlineError
from functions.core.model_cache import model_cache_from
from functions.core.settings import Settings, get_settings
from functions.core.telemetry import log


def build_processor(settings: Settings, dispatcher: Dispatcher | None = None) -> Processor:
    """The processor a batch container uses: more intra-op threads than the API, dispatch if configured."""
    settings = for_batch(settings)
    if dispatcher is None and settings.batch_job_queue and settings.batch_job_definition:
        dispatcher = AwsBatchDispatcher(settings.batch_job_queue, settings.batch_job_definition,
                                        output_format=settings.batch_output_format)
    router = router_from(settings)  # routes by estimated work; replaces the bytes threshold when configured
    return Processor(model_cache_from(settings), data_bucket_factory(settings.s3_endpoint_url), dispatcher,
                     0 if router else settings.batch_dispatch_bytes, router=router)


_settings = get_settings()
processor = build_processor(_settings)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any] | None:
    """SQS: returns ``{"batchItemFailures": [...]}`` naming only the messages to retry. S3: raises to retry."""
    records = event.get("Records") or []
    if records and records[0].get("eventSource") == "aws:sqs":
        return {"batchItemFailures": [{"itemIdentifier": i} for i in handle_sqs(records, context)]}
    for item in objects_in(event):
        processor.process(item, _deadline(context))
    return None


def handle_sqs(records: list[dict[str, Any]], context: Any) -> list[str]:
    """Process each message; return the ids of those that failed or were not reached in time."""
    out_of_time = _deadline(context)
    failed: list[str] = []
    for record in records:
        message_id = str(record.get("messageId"))
        if out_of_time():
            failed.append(message_id)  # hand back untouched: nothing of it was written
            continue
        try:
            for item in objects_in(orjson.loads(record.get("body") or "")):
                try:
                    outcome = processor.process(item, out_of_time)
                except DeadlineError:  # handed back only if a fresh Lambda can finish it; else re-routed or reported
                    rerouted = after_deadline(processor, item, receive_count(record))
                    if rerouted is None:
                        raise
                    outcome = rerouted
                log("INFO", "batch input processed", key=item.key, etag=item.etag, outcome=outcome,
                    message_id=message_id)
        except (PoisonMessageError, orjson.JSONDecodeError) as exc:
            log("ERROR", "poison message", message_id=message_id, error=str(exc))
            failed.append(message_id)
        except Exception as exc:  # transient: the message is retried, then goes to the DLQ
            log("ERROR", "batch input failed", message_id=message_id, error=str(exc), type=type(exc).__name__)
            failed.append(message_id)
    return failed


def _deadline(context: Any) -> Any:
    margin = _settings.batch_safety_ms
    if context is None or not hasattr(context, "get_remaining_time_in_millis"):
        return lambda: False
    return lambda: context.get_remaining_time_in_millis() < margin
