"""Send an input where its estimated work fits, and never hand a message back to the fate it just met.

``Router.route`` plans an input (functions/batch/plan.py), records ``plan.json`` in its output folder and,
for the fan-out and AWS Batch routes, starts the fan-out state machine (``StartExecution``, one execution
name per output folder, so duplicate deliveries start it once). ``after_deadline`` handles an input whose
Lambda ran out of time: it is re-routed to the fan-out or AWS Batch, or, when neither is configured, gets a
failure report that says why; its message is not handed back to run out of time again until the DLQ.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING, Any, Protocol, cast

import orjson

from functions.batch.objects import InputObject
from functions.batch.plan import ENV_FANOUT_STATE_MACHINE, SPLIT_BY, Limits, Plan, choose, choose_batch, estimate
from functions.batch.process import output_format_of, output_prefix, parse_key
from functions.batch.ranges import S3Source
from functions.core.manifest import Manifest
from functions.core.store import S3Store

if TYPE_CHECKING:
    from functions.batch.process import Processor

PLAN_FILE = "plan.json"


class Launcher(Protocol):
    """Starts one run of the fan-out state machine and returns its execution id."""

    def start(self, name: str, payload: dict[str, Any]) -> str:
        """Start (idempotent by name)."""


class StepFunctionsLauncher:
    """StartExecution on the fan-out state machine; an execution of the same name means it already ran."""

    def __init__(self, state_machine_arn: str, client: Any = None, endpoint_url: str | None = None) -> None:
        self.arn = state_machine_arn
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client("stepfunctions", endpoint_url=endpoint_url,
                                  config=Config(retries={"mode": "standard", "max_attempts": 5}))
        self._client = client

    def start(self, name: str, payload: dict[str, Any]) -> str:
        try:
            response = self._client.start_execution(stateMachineArn=self.arn, name=name,
                                                    input=orjson.dumps(payload).decode())
        except self._client.exceptions.ExecutionAlreadyExists:
            return f"{self.arn.replace(':stateMachine:', ':execution:')}:{name}"
        return str(response["executionArn"])


def execution_name(prefix: str) -> str:
    """A valid, deterministic execution name for one output folder."""
    return "maas-" + hashlib.sha256(prefix.encode()).hexdigest()[:40]


class Router:
    """Plans inputs and starts the fan-out for those too big for one Lambda."""

    def __init__(self, limits: Limits, launcher: Launcher | None) -> None:
        self.limits = limits
        self.launcher = launcher

    def plan(self, bucket: S3Store, item: InputObject, fmt: str, manifest: Manifest, force: bool = False,
             only_batch: str | None = None) -> Plan:
        """The plan for one input. ``only_batch``: why only AWS Batch can run it (one job, or an array job when
        the fan-out is configured); UnreadableInputError then if a Parquet footer does not decode."""
        source = S3Source(bucket._client, item.bucket, item.key, item.etag, item.size)
        work = estimate(source, fmt, manifest, self.limits)
        has_gpu = manifest.selected.get("gpu") is not None
        if only_batch:
            can_split = self.launcher is not None and self.limits.fanout and self.limits.batch
            return choose_batch(work, self.limits, has_gpu, fmt, only_batch, can_split)
        plan = choose(work, self.limits, has_gpu=has_gpu, force=force)
        return plan if plan.route == "lambda" else dataclasses.replace(plan, split_by=SPLIT_BY.get(fmt))

    def route(self, bucket: S3Store, item: InputObject, fmt: str, manifest: Manifest, prefix: str,
              force: bool = False, only_batch: str | None = None, output_format: str = "jsonl",
              **record: Any) -> tuple[Plan, str | None]:
        """(plan, outcome): outcome ``fanout`` or ``batch`` once started, None if one Lambda should run it (or,
        with ``only_batch``, one AWS Batch job). ``output_format`` goes to the AWS Batch array children (their
        job definition's environment may differ from this function's)."""
        plan = self.plan(bucket, item, fmt, manifest, force, only_batch)
        execution = None
        if plan.route != "lambda" and (plan.parts > 1 or not only_batch) and self.launcher is not None:
            execution = self.launcher.start(execution_name(prefix), {
                "route": plan.route, "bucket": item.bucket, "key": item.key, "etag": item.etag,
                "version": manifest.version, "part_bytes": plan.part_bytes, "output_format": output_format})
        bucket.put_bytes(f"{prefix}/{PLAN_FILE}", orjson.dumps(
            {**plan.as_dict(), "execution": execution, **record}, option=orjson.OPT_INDENT_2))
        return plan, (plan.route if execution else None)


def router_from(settings: Any, env: Any = None) -> Router | None:
    """The router a batch Lambda uses: None when neither the fan-out nor AWS Batch is configured."""
    import os

    env = os.environ if env is None else env
    limits = Limits.from_env(env, batch=False, safety_ms=settings.batch_safety_ms)
    if not limits.fanout:
        return None
    launcher = StepFunctionsLauncher(env[ENV_FANOUT_STATE_MACHINE], endpoint_url=settings.s3_endpoint_url)
    return Router(Limits(**{**limits.__dict__, "batch": bool(settings.batch_job_queue)}), launcher)


def receive_count(record: dict[str, Any]) -> int:
    """ApproximateReceiveCount of an SQS record (1 when absent)."""
    try:
        return int(record.get("attributes", {}).get("ApproximateReceiveCount", 1))
    except (TypeError, ValueError):
        return 1


def after_deadline(processor: Processor, item: InputObject, receives: int) -> str | None:
    """An input ran out of time in one Lambda. None (hand the message back) only if the plan says one Lambda
    can finish it and this is not the last receive before the DLQ (the time went to the other messages of
    the batch); otherwise start the fan-out (``fanout``/``batch``) or write a failure report naming the plan
    and the receive count (``failed``)."""
    router: Router | None = getattr(processor, "router", None)
    bucket = cast(S3Store, processor.data(item.bucket))  # the data buckets are S3 (ranged reads)
    ref = parse_key(item.key)
    version = ref.version or processor.cache.resolve(ref.name, ref.alias)
    manifest = processor.cache.manifest(ref.name, version)
    prefix = output_prefix(ref.name, version, ref.path, item.etag)
    fmt = "." + item.key.rsplit(".", 1)[-1].lower()
    limits = router.limits if router else Limits.from_env(safety_ms=processor.cache.settings.batch_safety_ms)
    router = router or Router(limits, None)
    if router.plan(bucket, item, fmt, manifest).fits and receives < limits.max_receives - 1:
        return None
    output_format = output_format_of(item.key) or processor.cache.settings.batch_output_format
    plan, outcome = router.route(bucket, item, fmt, manifest, prefix, force=True, output_format=output_format,
                                 receive_count=receives, after_deadline=True)
    if outcome:
        return outcome
    reason = (f"ran out of time in one Lambda (receive {receives} of at most {limits.max_receives}): "
              f"{plan.estimate.seconds:.0f} s estimated for {plan.estimate.rows:,} rows against a budget of "
              f"{plan.budget_seconds:.0f} s; no fan-out or AWS Batch is configured to take it")
    processor._fail(bucket, item, {"bucket": item.bucket, "key": item.key, "etag": item.etag, "bytes": item.size,
                                   "plan": f"{prefix}/{PLAN_FILE}"}, reason)
    return "failed"

