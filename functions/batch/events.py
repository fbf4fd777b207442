"""S3 event notifications (direct, or in SQS message bodies) -> input objects to process."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from functions.batch.objects import INPUTS, InputObject


class PoisonMessageError(ValueError):
    """A message that is not an S3 event notification."""


def objects_in(notification: Any) -> list[InputObject]:
    """Created objects under inputs/ named by an S3 notification; test events and others yield nothing."""
    if not isinstance(notification, dict):
        raise PoisonMessageError("message body is not a JSON object")
    if notification.get("Event") == "s3:TestEvent":
        return []
    records = notification.get("Records")
    if not isinstance(records, list):
        raise PoisonMessageError("message body has no S3 'Records'")
    found = []
    for record in records:
        try:
            created = str(record.get("eventName", "")).startswith("ObjectCreated")
            if record.get("eventSource") != "aws:s3" or not created:
                continue
            s3 = record["s3"]
            key = unquote_plus(s3["object"]["key"])
            item = InputObject(bucket=s3["bucket"]["name"], key=key, etag=str(s3["object"].get("eTag", "")).strip('"'),
                               size=int(s3["object"].get("size", 0)))
        except (AttributeError, KeyError, TypeError, ValueError):
            raise PoisonMessageError("malformed S3 event record") from None
        if item.key.startswith(INPUTS):
            found.append(item)
    return found
