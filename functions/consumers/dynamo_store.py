"""The consumer store in one DynamoDB table (deployed): keys by hash, conditional counters, usage totals.

Items (partition key ``pk``, sort key ``sk``, TTL attribute ``expires``):

- key: ``key#<sha256>`` / ``key``, with ``key_id`` (a sparse index of that name lists keys and finds one by id);
- usage: ``usage#<consumer>`` / ``<day>#<model>#<version>``, numbers added with ``ADD``, kept 400 days;
- counters: ``quota#<consumer>`` / ``<day>`` and ``rate#<consumer>`` / ``<second>``, a conditional ``ADD``.

Calls are bounded (2 s connect and read, two attempts): a slow table answers within the request budget.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

from functions.consumers.keys import KeyRecord
from functions.consumers.usage import COUNTS, Usage
from functions.core.errors import AlreadyExistsError, KeyStoreUnavailableError, NotFoundError

KEY_INDEX = "key_id"
USAGE_DAYS = 400
_CONFIG = Config(connect_timeout=2, read_timeout=2, retries={"mode": "standard", "max_attempts": 2})
_CONDITION_FAILED = "ConditionalCheckFailedException"


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": str(Decimal(str(value)))}
    if isinstance(value, list | tuple):
        return {"L": [_value(v) for v in value]}
    return {"S": str(value)}


def _plain(value: dict[str, Any]) -> Any:
    if "S" in value:
        return value["S"]
    if "N" in value:
        number = Decimal(value["N"])
        return int(number) if number == number.to_integral_value() else float(number)
    if "L" in value:
        return [_plain(v) for v in value["L"]]
    if "BOOL" in value:
        return bool(value["BOOL"])
    return None


def _record(item: dict[str, Any]) -> KeyRecord:
    try:
        return KeyRecord.from_dict({name: _plain(value) for name, value in item.items()})
    except (KeyError, TypeError, ValueError, ArithmeticError):
        raise KeyStoreUnavailableError("the key table holds an unreadable key record") from None


class DynamoStore:
    """The consumer store in a DynamoDB table (``AWS_ENDPOINT_URL_DYNAMODB`` points it at moto in tests)."""

    def __init__(self, table: str, client: Any | None = None) -> None:
        self.table = table
        self.uri = f"dynamodb://{table}"
        self._client = client

    @property
    def client(self) -> Any:
        """The DynamoDB client, made on first use (off the cold start of a function that may never need it)."""
        if self._client is None:
            self._client = boto3.client("dynamodb", config=_CONFIG)
        return self._client

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = getattr(self.client, operation)(TableName=self.table, **kwargs)
            return result
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == _CONDITION_FAILED:
                raise
            error = exc.response.get("Error", {})
            if error.get("Code") == "ValidationException":  # a request the table can never accept
                raise ValueError(f"the key table {self.table} refused {operation}: {error.get('Message', '')}") \
                    from None
            raise KeyStoreUnavailableError(f"the key table {self.table} refused {operation}: "
                                        f"{error.get('Code', 'error')} {error.get('Message', '')}".rstrip()) from None
        except (ConnectTimeoutError, ReadTimeoutError):
            raise KeyStoreUnavailableError(f"the key table {self.table} did not answer {operation} in time") from None
        except BotoCoreError as exc:
            raise KeyStoreUnavailableError(f"the key table {self.table} cannot be reached: {exc}") from None

    @staticmethod
    def _key_item(record: KeyRecord) -> dict[str, Any]:
        item = {"pk": _value(f"key#{record.key_hash}"), "sk": _value("key")}
        item.update({name: _value(value) for name, value in record.to_dict().items() if value is not None})
        return item

    def put_key(self, record: KeyRecord) -> None:
        if self.find_key(record.key_id) is not None:
            raise AlreadyExistsError(f"key maas_{record.key_id} already exists")
        try:
            self._call("put_item", Item=self._key_item(record), ConditionExpression="attribute_not_exists(pk)")
        except ClientError:
            raise AlreadyExistsError(f"key maas_{record.key_id} already exists") from None

    def get_key(self, key_hash: str) -> KeyRecord | None:
        item = self._call("get_item", Key={"pk": _value(f"key#{key_hash}"), "sk": _value("key")}).get("Item")
        return _record(item) if item else None

    def find_key(self, key_id: str) -> KeyRecord | None:
        items = self._call("query", IndexName=KEY_INDEX, KeyConditionExpression="key_id = :id",
                           ExpressionAttributeValues={":id": _value(key_id)}).get("Items", [])
        return _record(items[0]) if items else None

    def list_keys(self) -> list[KeyRecord]:
        records = [_record(item) for item in self._pages("scan", IndexName=KEY_INDEX)]
        return sorted(records, key=lambda r: (r.consumer, r.key_id))

    def update_key(self, record: KeyRecord) -> None:
        try:
            self._call("put_item", Item=self._key_item(record), ConditionExpression="attribute_exists(pk)")
        except ClientError:
            raise NotFoundError(f"no key maas_{record.key_id}") from None

    def take(self, counter: str, window: str, limit: int, expires_at: float) -> int | None:
        if limit < 1:
            return None
        try:
            result = self._call(
                "update_item", Key={"pk": _value(counter), "sk": _value(window)},
                UpdateExpression="ADD #n :one SET #e = if_not_exists(#e, :expires)",
                ConditionExpression="attribute_not_exists(#n) OR #n < :limit",
                ExpressionAttributeNames={"#n": "count", "#e": "expires"},
                ExpressionAttributeValues={":one": _value(1), ":limit": _value(limit),
                                           ":expires": _value(int(expires_at))},
                ReturnValues="UPDATED_NEW")
        except ClientError:
            return None
        count = result.get("Attributes", {}).get("count")
        if not isinstance(count, dict) or "N" not in count:
            raise KeyStoreUnavailableError(f"the key table {self.table} answered a counter update without its count")
        return int(_plain(count))

    def add_usage(self, rows: Sequence[Usage]) -> None:
        for row in rows:
            expires = int(datetime.strptime(row.day, "%Y-%m-%d").timestamp()) + USAGE_DAYS * 86400
            counts = {name: getattr(row, name) for name in COUNTS}
            labels = {"consumer": row.consumer, "model": row.model, "version": row.version, "day": row.day,
                      "expires": expires}
            self._call("update_item", Key={"pk": _value(f"usage#{row.consumer}"),
                                           "sk": _value(f"{row.day}#{row.model}#{row.version}")},
                       UpdateExpression=f"ADD {', '.join(f'#{name} :{name}' for name in counts)} "
                                        f"SET {', '.join(f'#{name} = :{name}' for name in labels)}",
                       ExpressionAttributeNames={f"#{name}": name for name in (*counts, *labels)},
                       ExpressionAttributeValues={f":{name}": _value(value)
                                                  for name, value in (*counts.items(), *labels.items())})

    def usage(self, consumer: str | None = None, model: str | None = None,
              since: str | None = None) -> list[Usage]:
        if consumer is not None:
            condition, values = "pk = :pk", {":pk": _value(f"usage#{consumer}")}
            if since is not None:
                condition += " AND sk >= :since"
                values[":since"] = _value(since)
            items = self._pages("query", KeyConditionExpression=condition, ExpressionAttributeValues=values)
        else:
            condition, values = "begins_with(pk, :usage)", {":usage": _value("usage#")}
            if since is not None:
                condition += " AND sk >= :since"
                values[":since"] = _value(since)
            items = self._pages("scan", FilterExpression=condition, ExpressionAttributeValues=values)
        rows = []
        for item in items:
            data = {name: _plain(value) for name, value in item.items()}
            if model is not None and data.get("model") != model:
                continue
            row = Usage(str(data["consumer"]), str(data["model"]), str(data["version"]), str(data["day"]))
            for name in COUNTS:
                setattr(row, name, (float if name == "latency_ms" else int)(data.get(name) or 0))
            rows.append(row)
        return sorted(rows, key=lambda r: (r.day, r.consumer, r.model, r.version))

    def _pages(self, operation: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        start: dict[str, Any] | None = None
        while True:
            page = self._call(operation, **kwargs, **({"ExclusiveStartKey": start} if start else {}))
            yield from page.get("Items", [])
            start = page.get("LastEvaluatedKey")
            if not start:
                return
