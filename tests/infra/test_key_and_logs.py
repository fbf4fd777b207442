"""Issue 13 infra: conditioned service-principal key grants, encrypted log groups, a bounded API function."""

from __future__ import annotations

from typing import Any

from tests.infra.conftest import Synthesized


def _service_statements(synth: Synthesized) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for key_id, key in synth.resources("AWS::KMS::Key").items():
        for statement in key["KeyPolicy"]["Statement"]:
            principal = statement.get("Principal")
            if isinstance(principal, dict) and "Service" in principal:
                found.append((key_id, statement))
    return found


def test_every_service_principal_key_grant_is_conditioned(dev: Synthesized) -> None:
    statements = _service_statements(dev)
    services = {str(s["Principal"]["Service"]) for _, s in statements}
    assert any("s3.amazonaws.com" in s for s in services) and any("events.amazonaws.com" in s for s in services)
    for key_id, statement in statements:
        condition = str(statement.get("Condition", {}))
        assert "aws:SourceAccount" in condition or "kms:EncryptionContext:aws:logs:arn" in condition, key_id
    s3_grants = [s for _, s in statements if s["Principal"]["Service"] == "s3.amazonaws.com"]
    assert s3_grants and all("aws:SourceArn" in str(s["Condition"]) for s in s3_grants)


def test_log_groups_are_encrypted_with_the_stage_key(dev: Synthesized) -> None:
    groups = dev.resources("AWS::Logs::LogGroup")
    assert groups
    for group_id, group in groups.items():
        assert group.get("KmsKeyId") == {"Fn::GetAtt": [_stage_key(dev), "Arn"]}, group_id


def test_api_function_concurrency_is_reserved_in_prod_only_by_setting(dev: Synthesized, prod: Synthesized) -> None:
    def api(synth: Synthesized) -> dict[str, Any]:
        (function,) = [f for f in synth.resources("AWS::Lambda::Function").values()
                       if f.get("Handler") == "functions.api.handler.handler"]
        return function

    assert api(prod)["ReservedConcurrentExecutions"] == 100
    assert "ReservedConcurrentExecutions" not in api(dev)  # dev: unreserved, bounded by the stage throttle


def _stage_key(synth: Synthesized) -> str:
    (key_id,) = [k for k, v in synth.resources("AWS::KMS::Key").items() if "buckets" in v.get("Description", "")]
    return key_id
