"""Property-based run over the OpenAPI document (schemathesis + hypothesis) against the live server: no 5xx,
and every response matches the documented status codes, content types and schemas."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = 20


def _operations(base_url: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def test_every_operation_is_documented_and_fuzzed(base_url: str) -> None:
    operations = _operations(base_url)
    labels = {op.label for op in operations}
    assert "POST /v1/models/{name}/predict" in labels
    assert "POST /v2/models/{name}/versions/{version}/infer" in labels
    assert "GET /v1/models/{name}/rollouts" in labels
    assert len(operations) == 23  # 13 prediction routes + KServe :predict + 2 explain routes + KServe :explain
    # + 6 console routes
    failures = []
    calls: list[int] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            response = case.call(base_url=base_url)
            calls.append(response.status_code)
            case.validate_response(response, checks=CHECKS)

        try:
            run()
        except Exception as exc:  # collect every failing operation, then report them together
            failures.append(f"{operation.label}: {exc}")
    if failures:
        pytest.fail("\n\n".join(failures))
    assert len(calls) >= 5 * len(operations)
    assert {code // 100 for code in calls} >= {2, 4}  # both accepted and rejected requests were generated
