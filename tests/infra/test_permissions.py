"""Each function's role allows exactly the AWS calls its code makes (derived statically), on its own data."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

from infra.permissions import FUNCTIONS, Access, check_all, code_calls, coverage_problems, grants, role_of
from tests.infra.conftest import Synthesized

API = next(a for a in FUNCTIONS if a.name == "api")


def test_every_function_role_covers_its_calls_and_nothing_more(dev: Synthesized, prod: Synthesized) -> None:
    assert check_all(dev.template) == []
    assert check_all(prod.template) == []


def test_calls_are_derived_from_the_code() -> None:
    api = code_calls("functions.api.handler")
    assert {"s3:GetObject", "s3:ListBucket", "kms:Decrypt"} <= set(api)
    assert not {"s3:DeleteObject", "batch:SubmitJob"} & set(api)
    # The API writes only for jobs: their records (put_new) and the presigned uploads it signs.
    assert "functions.api.s3_jobs:S3Jobs.create" in api["s3:PutObject"]
    assert API.writes == ("BatchEventsDataBucket/jobs/*", "BatchEventsDataBucket/inputs/*/jobs/*")
    batch = code_calls("functions.batch.handler")
    assert "functions.batch.dispatch:AwsBatchDispatcher.submit" in batch["batch:SubmitJob"]
    assert "s3:PutObject" in batch and "kms:GenerateDataKey" in batch
    assert "batch:SubmitJob" not in code_calls("functions.batch.worker")  # the worker never dispatches


def _without(template: dict[str, Any], role: str, action: str) -> dict[str, Any]:
    changed = copy.deepcopy(template)
    for resource in changed["Resources"].values():
        if resource["Type"] != "AWS::IAM::Policy" or role not in str(resource["Properties"]["Roles"]):
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            statement["Action"] = [a for a in actions if a != action] or ["sts:GetCallerIdentity"]
    return changed


def test_removing_a_permission_fails_the_check(dev: Synthesized) -> None:
    role = role_of(dev.template, API.role)
    assert any(g.action == "s3:GetObject" for g in grants(dev.template, role))
    problems = check_all(_without(dev.template, role, "s3:GetObject"), [API])
    assert any("s3:GetObject on ModelStoreBucket/models/* is needed by functions." in p
               for p in problems), problems
    worker = next(a for a in FUNCTIONS if a.name == "gpu-worker")
    problems = check_all(_without(dev.template, role_of(dev.template, worker.role), "s3:PutObject"), [worker])
    assert any("s3:PutObject on BatchEventsDataBucket/outputs/*" in p for p in problems), problems


def test_a_wider_statement_fails_the_check(dev: Synthesized) -> None:
    template = copy.deepcopy(dev.template)
    role = role_of(template, API.role)
    (policy,) = [r for r in template["Resources"].values()
                 if r["Type"] == "AWS::IAM::Policy" and role in str(r["Properties"]["Roles"])]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    models = {"Fn::Join": ["", [{"Fn::GetAtt": ["ModelStoreBucket9405F36E", "Arn"]}, "/models/*"]]}
    statements.append({"Effect": "Allow", "Action": "s3:PutObject", "Resource": models})
    statements.append({"Effect": "Allow", "Action": "s3:*", "Resource": "*"})
    problems = " | ".join(coverage_problems(API, template, code_calls(API.entry)))
    # The API writes job records and uploads, never the model store.
    assert "allows s3:PutObject on ModelStoreBucket9405F36E/models/*, outside what it writes" in problems
    assert "allows s3:* on *" in problems


def test_a_new_call_in_the_code_needs_its_permission(tmp_path: Path, dev: Synthesized) -> None:
    """A handler that starts deleting model files: the API's role does not allow it, and the check says so."""
    package = tmp_path / "functions" / "api"
    package.mkdir(parents=True)
    (tmp_path / "functions" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "handler.py").write_text(textwrap.dedent("""
        import boto3

        client = boto3.client("s3")

        def handler(event, context):
            client.delete_object(Bucket="b", Key="models/x")
    """))
    calls = code_calls("functions.api.handler", root=tmp_path)
    assert set(calls) == {"s3:DeleteObject"}
    problems = coverage_problems(Access("api", "functions.api.handler", API.role, reads=API.reads,
                                        platform=API.platform), dev.template, calls)
    assert any("s3:DeleteObject" in p and "does not allow it" in p for p in problems)


def test_non_object_actions_are_checked_on_their_resources(dev: Synthesized) -> None:
    batch = next(a for a in FUNCTIONS if a.name == "batch")
    template = copy.deepcopy(dev.template)
    role = role_of(template, batch.role)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::IAM::Policy" and role in str(resource["Properties"]["Roles"]):
            for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                if statement["Action"] == "batch:SubmitJob":
                    statement["Resource"] = [statement["Resource"][0], {"Ref": "SomeOtherJobDefinition"}]
    problems = " | ".join(coverage_problems(batch, template, code_calls(batch.entry)))
    assert "batch:SubmitJob on GpuBatchWorker is needed by functions.batch.dispatch" in problems
    assert "allows batch:SubmitJob on SomeOtherJobDefinition, not one of GpuBatchQueue, GpuBatchWorker" in problems


def test_table_calls_count_in_the_consumer_package_through_its_call_helper(tmp_path: Path) -> None:
    """DynamoDB operations named to ``_call``, only in functions/consumers; a method is reached by attribute, a
    class named only in an annotation is not in use."""
    files = {
        "api/handler.py": """
            from functions.consumers.store import Lookup, Store

            def handler(event, context):
                usage = event["usage"]  # a variable named like Store.usage: calls nothing
                Store().take()
                return event.query("x")  # a query string, not a table query
        """,
        "consumers/store.py": """
            import boto3

            class Lookup:
                def get(self):
                    return boto3.client("dynamodb").get_item(TableName="t", Key={})

            class Store:
                def __init__(self, lookup: Lookup | None = None):
                    self.client = boto3.client("dynamodb")

                def _call(self, operation, **kwargs):
                    return getattr(self.client, operation)(TableName="t", **kwargs)

                def take(self):
                    return self._call("update_item", Key={})

                def usage(self):
                    return self._call("scan")
        """,
    }
    for name, text in {"__init__.py": "", "api/__init__.py": "", "consumers/__init__.py": "", **files}.items():
        path = tmp_path / "functions" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    calls = code_calls("functions.api.handler", ("dynamodb",), root=tmp_path)
    assert set(calls) == {"dynamodb:UpdateItem", "kms:Decrypt"}, calls  # the table is encrypted with the stage key
    assert calls["dynamodb:UpdateItem"] == {"functions.consumers.store:Store.take"}
