"""The batch fan-out state machine in the synthesized template: its steps, item shapes, limits, role,
logging and alarms (properties, not logical ids)."""

from __future__ import annotations

import json
from typing import Any

from infra.config import StageConfig
from tests.events import load_event
from tests.infra.conftest import Synthesized


def definition(synth: Synthesized) -> dict[str, Any]:
    """The state machine's ASL with every CloudFormation token replaced by a placeholder."""
    parts = synth.one("AWS::StepFunctions::StateMachine")["DefinitionString"]["Fn::Join"][1]
    return dict(json.loads("".join(p if isinstance(p, str) else "TOKEN" for p in parts)))


def statements_of(synth: Synthesized, role: dict[str, Any]) -> list[dict[str, Any]]:
    """Statements of the policies attached to ``role`` (a Ref or GetAtt of the role)."""
    role_id = role.get("Ref") or role["Fn::GetAtt"][0]
    return [s for props in synth.resources("AWS::IAM::Policy").values() if {"Ref": role_id} in props["Roles"]
            for s in props["PolicyDocument"]["Statement"]]


def state_machine_statements(synth: Synthesized) -> list[dict[str, Any]]:
    return statements_of(synth, synth.one("AWS::StepFunctions::StateMachine")["RoleArn"])


def function_with(synth: Synthesized, handler: str) -> dict[str, Any]:
    return next(f for f in synth.resources("AWS::Lambda::Function").values() if f["Handler"] == handler)


def test_split_then_distributed_map_or_array_job_then_merge(dev: Synthesized) -> None:
    states = definition(dev)["States"]
    assert definition(dev)["StartAt"] == "Split" and states["Split"]["Next"] == "Route"
    assert states["Route"]["Choices"] == [{"Variable": "$.route", "StringEquals": "batch", "Next": "ArrayJob"}]
    parts = states["Parts"]
    assert parts["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert parts["MaxConcurrency"] == StageConfig().fanout_max_concurrency
    assert parts["ItemReader"]["ReaderConfig"] == {"InputType": "JSON"}
    assert parts["ItemReader"]["Parameters"]["Key.$"] == "$.split.ranges_key"
    assert parts["ItemSelector"] == load_event("fanout-item-selector")  # the shape the tests feed children
    assert parts["ToleratedFailurePercentage"] == 100 and parts["ResultPath"] is None
    child = parts["ItemProcessor"]["States"]["Part"]
    assert "Parameters" not in child  # the selected item is the payload, as tests/events/fanout-part.json
    assert {"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 5, "MaxAttempts": 2,
            "BackoffRate": 2} in child["Retry"]  # a failed part is retried alone
    assert parts["Next"] == "Merge" and states["Merge"]["End"] is True
    assert states["Merge"]["Parameters"]["Payload"] == {**{k: v for k, v in load_event("fanout-merge").items()
                                                           if k == "mode"},
                                                        **{f"{k}.$": f"$.{k}" for k in
                                                           ("bucket", "key", "etag", "version")}}


def test_array_job_children_get_the_documented_command_and_environment(dev: Synthesized) -> None:
    array = definition(dev)["States"]["ArrayJob"]
    assert array["Resource"].endswith(":states:::batch:submitJob.sync")  # waits for every child
    assert array["Parameters"]["ArrayProperties"] == {"Size.$": "$.split.parts"}
    child = load_event("batch-array-child")
    overrides = array["Parameters"]["ContainerOverrides"]
    assert overrides["Command"] == child["command"]
    assert sorted(e["Name"] for e in overrides["Environment"]) == sorted(
        k for k in child["environment"] if k.startswith("MAAS_FANOUT_"))
    assert array["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.array_error", "Next": "Merge"}]


def test_state_machine_logs_everything_encrypted_and_traces(dev: Synthesized) -> None:
    machine = dev.one("AWS::StepFunctions::StateMachine")
    assert machine["TracingConfiguration"] == {"Enabled": True}
    assert machine["LoggingConfiguration"]["Level"] == "ALL"
    assert machine["LoggingConfiguration"]["IncludeExecutionData"] is False
    destination = machine["LoggingConfiguration"]["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]
    group_id = destination["Fn::GetAtt"][0]
    assert "KmsKeyId" in dev.template["Resources"][group_id]["Properties"]  # encrypted with the stage key


def test_roles_name_each_resource(dev: Synthesized) -> None:
    machine_statements = state_machine_statements(dev)
    actions = {a for s in machine_statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert "lambda:InvokeFunction" in actions and "batch:SubmitJob" in actions and "s3:GetObject" in actions
    assert not {a for a in actions if a.endswith("*") or a.startswith("s3:Put") or a.startswith("s3:Delete")}
    invoke = [s for s in machine_statements if s["Action"] == "lambda:InvokeFunction"]
    fanout_function = next(
        lid for lid, f in dev.resources("AWS::Lambda::Function").items()
        if f["Handler"] == "functions.batch.fanout_handler.handler")
    assert invoke and all(fanout_function in json.dumps(s["Resource"]) for s in invoke)
    batch_role = function_with(dev, "functions.batch.handler.handler")["Role"]
    start = [s for s in statements_of(dev, batch_role) if s["Action"] == "states:StartExecution"]
    assert len(start) == 1 and start[0]["Resource"] == {"Ref": next(iter(
        lid for lid in dev.resources("AWS::StepFunctions::StateMachine")))}


def test_batch_function_plans_with_the_fanout_limits(dev: Synthesized) -> None:
    batch = function_with(dev, "functions.batch.handler.handler")
    env = batch["Environment"]["Variables"]
    assert "Ref" in env["MAAS_FANOUT_STATE_MACHINE"]
    assert env["MAAS_FANOUT_ROWS_PER_PART"] == str(StageConfig().fanout_rows_per_part)
    assert env["MAAS_BATCH_TIMEOUT_S"] == str(batch["Timeout"]) and env["MAAS_BATCH_MAX_RECEIVES"] == "4"
    fanout = function_with(dev, "functions.batch.fanout_handler.handler")
    assert fanout["Timeout"] == batch["Timeout"] and fanout["EphemeralStorage"] == {"Size": 4096}


def test_failed_executions_alarm_and_parts_on_the_dashboard(dev: Synthesized, prod: Synthesized) -> None:
    alarms = [a for a in dev.resources("AWS::CloudWatch::Alarm").values() if a.get("MetricName") == "ExecutionsFailed"]
    assert len(alarms) == 1 and alarms[0]["Namespace"] == "AWS/States" and alarms[0]["AlarmActions"]
    body = json.dumps(dev.one("AWS::CloudWatch::Dashboard")["DashboardBody"])
    assert "Fan-out parts" in body and "ConcurrentExecutions" in body and "parts running" in body
    assert definition(prod)["States"]["Parts"]["MaxConcurrency"] == 500  # cdk.json prod: fanoutMaxConcurrency


def test_state_machine_wildcards_are_only_cdks_run_time_names(dev: Synthesized) -> None:
    """Resources CDK's Step Functions integrations cannot name at deploy time: function versions, objects
    of the data bucket (ItemReader), job definition revisions, child executions; "*" only for log delivery
    and X-Ray, which have no resource-level permissions."""
    log_delivery = {"logs:CreateLogDelivery", "logs:DeleteLogDelivery", "logs:DescribeLogGroups",
                    "logs:DescribeResourcePolicies", "logs:GetLogDelivery", "logs:ListLogDeliveries",
                    "logs:PutResourcePolicy", "logs:UpdateLogDelivery", "xray:GetSamplingRules",
                    "xray:GetSamplingTargets", "xray:PutTelemetryRecords", "xray:PutTraceSegments"}
    for statement in state_machine_statements(dev):
        actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        assert not [a for a in actions if "*" in a]
        if statement["Resource"] == "*":
            assert set(actions) <= log_delivery, statement
            continue
        for resource in statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]:
            text = json.dumps(resource)
            assert "*" not in text or text.endswith((', ":*"]]}', '"/*"]]}', ':job-definition/*"]]}', '"/*:*"]]}',
                                                     '"]}]}, ":*"]]}')), text
