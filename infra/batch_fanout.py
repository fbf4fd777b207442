"""Batch fan-out: a Step Functions state machine that splits one big input into line-aligned byte ranges,
runs one child per range (Distributed Map over Lambda, or an AWS Batch array job for GPU work), and merges
the part reports into report.json. One Lambda function serves the split, part and merge steps (a mode in
the event); the batch function starts executions when an input's estimated work does not fit one Lambda.

Event shapes: docs/batch.md and tests/events/fanout-*.json."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, Size, Stack, Token
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.access import grant_key
from infra.batch_events import MAX_RECEIVE_COUNT, BatchEvents
from infra.foundation import Foundation
from infra.gpu_batch import GpuBatch
from infra.lambda_function import service_function
from infra.model_store import ModelStore

PART_RETRIES = 2  # a failed part is retried alone, then reported by the merge with its range
EXECUTION_FIELDS = ("bucket", "key", "etag", "version")
ARRAY_FIELDS = (*EXECUTION_FIELDS, "output_format")  # the array children's MAAS_FANOUT_* environment
ITEM_SELECTOR = {
    # "$" is the map state's input (the execution input), the item one entry of ranges.json ({"part",
    # "range"}); the child gets functions/batch/part.py's event (tests/events/fanout-item-selector.json).
    "mode": "part", "bucket.$": "$.bucket", "key.$": "$.key", "etag.$": "$.etag", "version.$": "$.version",
    "part.$": "$$.Map.Item.Value.part", "range.$": "$$.Map.Item.Value.range",
}


def _paths(selector: Mapping[str, object]) -> dict[str, object]:
    """``{"name.$": "$.path"}`` -> CDK's ``{"name": JsonPath.string_at("$.path")}`` (rendered back verbatim)."""
    return {name.removesuffix(".$"): sfn.JsonPath.string_at(str(value)) if name.endswith(".$") else value
            for name, value in selector.items()}


class BatchFanout(Construct):
    """The fan-out function, the state machine (encrypted logs, X-Ray) and its least-privilege role."""

    def __init__(self, scope: Construct, construct_id: str, *, foundation: Foundation, store: ModelStore,
                 batch_events: BatchEvents, gpu_batch: GpuBatch) -> None:
        super().__init__(scope, construct_id)
        config = foundation.config
        self.bucket = batch_events.bucket
        self.function = service_function(
            self, "Function", foundation=foundation, handler="functions.batch.fanout_handler.handler",
            description="batch fan-out: split, parts and merge", memory_mb=config.batch_memory_mb,
            timeout=Duration.seconds(config.batch_timeout_seconds), ephemeral_storage_size=Size.gibibytes(4),
            environment={"MAAS_STORE": store.uri})
        store.grant_read(self.function)
        batch_events.grant_batch_io(self.function, delete=False)  # parts and reports are write-once

        split = self._invoke("Split", {"mode": "split", "route.$": "$.route", "part_bytes.$": "$.part_bytes"},
                             result_selector={"ranges_key": sfn.JsonPath.string_at("$.Payload.ranges_key"),
                                              "parts": sfn.JsonPath.number_at("$.Payload.parts")},
                             result_path="$.split")
        merge = self._invoke("Merge", {"mode": "merge"}, result_selector={
            "status": sfn.JsonPath.string_at("$.Payload.status"), "prefix": sfn.JsonPath.string_at("$.Payload.prefix")})
        # The item (ItemSelector's output) is the whole payload: functions/batch/part.py's event.
        part = tasks.LambdaInvoke(self, "Part", lambda_function=self.function, payload_response_only=True)
        part.add_retry(errors=["States.TaskFailed"], interval=Duration.seconds(5), backoff_rate=2,
                       max_attempts=PART_RETRIES)
        self.parts = sfn.DistributedMap(
            self, "Parts", max_concurrency=config.fanout_max_concurrency,
            item_reader=sfn.S3JsonItemReader(bucket=batch_events.bucket,
                                             key=sfn.JsonPath.string_at("$.split.ranges_key")),
            item_selector=_paths(ITEM_SELECTOR), map_execution_type=sfn.StateMachineType.STANDARD,
            tolerated_failure_percentage=100,  # failed parts are reported by the merge, not fatal to the run
            result_path=sfn.JsonPath.DISCARD)
        self.parts.item_processor(part)
        array = gpu_batch.array_job(self, "ArrayJob", size=sfn.JsonPath.number_at("$.split.parts"),
                                    environment={f"MAAS_FANOUT_{f.upper()}": sfn.JsonPath.string_at(f"$.{f}")
                                                 for f in ARRAY_FIELDS})
        array.add_catch(merge, result_path="$.array_error")  # failed children are reported by the merge
        route = sfn.Choice(self, "Route").when(sfn.Condition.string_equals("$.route", "batch"), array.next(merge)) \
            .otherwise(self.parts.next(merge))

        self.log_group = foundation.log_group(self, "Logs")  # encrypted with the stage key
        self.state_machine = sfn.StateMachine(
            self, "StateMachine", definition_body=sfn.DefinitionBody.from_chainable(split.next(route)),
            tracing_enabled=True, timeout=Duration.hours(config.fanout_timeout_hours),
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            comment="maas batch fan-out: split -> parts (Distributed Map or AWS Batch array job) -> merge")
        self.state_machine.node.add_dependency(self.log_group)
        grant_key(self.state_machine, foundation.key, encrypt=False)  # ItemReader: ranges.json is KMS-encrypted

    def _invoke(self, name: str, fields: dict[str, object], **options: object) -> tasks.LambdaInvoke:
        payload = _paths({**fields, **{f"{f}.$": f"$.{f}" for f in EXECUTION_FIELDS}})
        task = tasks.LambdaInvoke(self, name, lambda_function=self.function,
                                  payload=sfn.TaskInput.from_object(payload), **options)  # type: ignore[arg-type]
        task.add_retry(errors=["States.TaskFailed"], interval=Duration.seconds(5), backoff_rate=2, max_attempts=3)
        return task

    def acknowledgments(self) -> dict[str, str]:
        """cdk-nag IAM5 findings of the state machine's role, one resource pattern at a time, with reasons."""
        stack = Stack.of(self)

        def logical(element: object) -> str:
            return str(stack.resolve(element.logical_id))  # type: ignore[attr-defined]

        function = logical(self.function.node.default_child)
        bucket = logical(self.bucket.node.default_child)
        machine = logical(self.state_machine.node.default_child)
        # cdk-nag prints a concrete region/account where the stack has one (`cdk synth` with AWS_DEFAULT_REGION).
        region = "<AWS::Region>" if Token.is_unresolved(stack.region) else stack.region
        account = "<AWS::AccountId>" if Token.is_unresolved(stack.account) else stack.account
        execution = (f"arn:<AWS::Partition>:states:{region}:{account}:execution:"
                     '{"Fn::Select":[6,{"Fn::Split":[":",{"Ref":"' + machine + '"}]}]}')
        iam5 = "AwsSolutions::AwsSolutions-IAM5[Resource::%s]"
        children = "Distributed Map child executions of this state machine (their names are made at run time)."
        return {
            iam5 % f"<{function}.Arn>:*": "CDK's LambdaInvoke grants the fan-out function and its versions; the "
                                           "state machine invokes only this function.",
            iam5 % f"arn:<AWS::Partition>:s3:::<{bucket}>/*": (
                "Distributed Map's ItemReader reads ranges.json, whose key is known at run time only; CDK grants "
                "s3:GetObject on the data bucket's objects (no other action)."),
            iam5 % f"arn:<AWS::Partition>:batch:{region}:{account}:job-definition/*": (
                "CDK's BatchSubmitJob grants SubmitJob on job-definition revisions; the queue is named, and the "
                "step only submits the GPU worker's definition."),
            iam5 % f"{execution}:*": children,
            iam5 % f"{execution}/*:*": children,
        }

    def enable_for(self, function: lambda_.Function, timeout_seconds: int, rows_per_part: int) -> None:
        """Let the batch function start executions (and only of this state machine) and plan with its limits."""
        function.add_environment("MAAS_FANOUT_STATE_MACHINE", self.state_machine.state_machine_arn)
        function.add_environment("MAAS_FANOUT_ROWS_PER_PART", str(rows_per_part))
        function.add_environment("MAAS_BATCH_TIMEOUT_S", str(timeout_seconds))
        function.add_environment("MAAS_BATCH_MAX_RECEIVES", str(MAX_RECEIVE_COUNT))
        function.add_to_role_policy(iam.PolicyStatement(actions=["states:StartExecution"],
                                                        resources=[self.state_machine.state_machine_arn]))
