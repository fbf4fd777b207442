"""The API Gateway HTTP API (v2) event the benchmarks send: one digit image to digits-cnn."""

from __future__ import annotations

import json
from typing import Any

DIGIT_ZERO = [[0, 0, 5, 13, 9, 1, 0, 0], [0, 0, 13, 15, 10, 15, 5, 0], [0, 3, 15, 2, 0, 11, 8, 0],
              [0, 4, 12, 0, 0, 8, 8, 0], [0, 5, 8, 0, 0, 9, 8, 0], [0, 4, 11, 0, 1, 12, 7, 0],
              [0, 2, 14, 5, 10, 12, 0, 0], [0, 0, 6, 13, 10, 0, 0, 0]]


class LambdaContext:
    """The context attributes a handler may read."""

    aws_request_id = "8f5e3c1a-bench-4c1b-9c3e-3b7a1f0d2e11"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def predict_event(model: str = "digits-cnn", instances: list[Any] | None = None) -> dict[str, Any]:
    path = f"/v1/models/{model}/predict"
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {"accountId": "123456789012", "apiId": "api-id", "domainName": "id.execute-api.amazonaws.com",
                           "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                                    "userAgent": "bench"},
                           "requestId": "bench", "routeKey": "$default", "stage": "$default",
                           "timeEpoch": 1583348638390},
        "body": json.dumps({"instances": instances or [DIGIT_ZERO]}), "isBase64Encoded": False,
    }
