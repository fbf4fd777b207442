"""Batch predictions from S3 events: the data bucket's ``inputs/`` notify an encrypted queue (with a DLQ)
that feeds the batch function with partial batch responses. Outputs under ``outputs/`` never trigger it."""

from __future__ import annotations

from aws_cdk import Duration, Size
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as notifications
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.access import grant_objects
from infra.foundation import Foundation
from infra.lambda_function import service_function
from infra.model_store import ModelStore

INPUTS = "inputs"
OUTPUTS = "outputs"
MAX_RECEIVE_COUNT = 4
VISIBILITY_FACTOR = 6  # AWS's guidance for SQS event sources: at least 6x the function timeout
BATCH_SIZE = 10


class BatchEvents(Construct):
    """Data bucket -> queue -> batch function; ``enable_dispatch`` lets it hand large inputs to AWS Batch."""

    def __init__(self, scope: Construct, construct_id: str, *, foundation: Foundation, store: ModelStore) -> None:
        super().__init__(scope, construct_id)
        config = foundation.config
        timeout = Duration.seconds(config.batch_timeout_seconds)
        self.key = foundation.key
        self.bucket: s3.Bucket = foundation.secure_bucket(self, "DataBucket", "data")
        # The queues have their own key: S3 notifications need a key policy naming the bucket, and the
        # bucket is encrypted with the stack key, which would make the two depend on each other.
        self.queue_key = kms.Key(self, "QueueKey", enable_key_rotation=True, removal_policy=foundation.removal,
                                 description=f"maas {config.stage}: batch input queues")
        self.dead_letters = sqs.Queue(
            self, "DeadLetters", encryption=sqs.QueueEncryption.KMS, encryption_master_key=self.queue_key,
            enforce_ssl=True, retention_period=Duration.days(14))
        self.queue = sqs.Queue(
            self, "Inputs", encryption=sqs.QueueEncryption.KMS, encryption_master_key=self.queue_key,
            enforce_ssl=True, visibility_timeout=Duration.seconds(config.batch_timeout_seconds * VISIBILITY_FACTOR),
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dead_letters, max_receive_count=MAX_RECEIVE_COUNT))
        self.bucket.add_event_notification(s3.EventType.OBJECT_CREATED, notifications.SqsDestination(self.queue),
                                           s3.NotificationKeyFilter(prefix=f"{INPUTS}/"))

        self.function = service_function(
            self, "Function", foundation=foundation, handler="functions.batch.handler.handler",
            description="batch predictions for objects under inputs/", memory_mb=config.batch_memory_mb,
            timeout=timeout, ephemeral_storage_size=Size.gibibytes(4),
            reserved_concurrent_executions=config.batch_max_concurrency,
            environment={"MAAS_STORE": store.uri, "MAAS_BATCH_DISPATCH_BYTES": str(config.batch_dispatch_bytes)})
        store.grant_read(self.function)
        self.grant_batch_io(self.function)
        self.function.add_event_source(sources.SqsEventSource(
            self.queue, batch_size=BATCH_SIZE, report_batch_item_failures=True,
            max_concurrency=config.batch_max_concurrency))

    def grant_batch_io(self, grantee: iam.IGrantable, *, delete: bool = True) -> None:
        """Read inputs; read, write and (for the dispatch marker, unless ``delete`` is off) delete outputs."""
        grant_objects(grantee, self.bucket, self.key, INPUTS)
        grant_objects(grantee, self.bucket, self.key, OUTPUTS, write=True, delete=delete)

    def enable_dispatch(self, job_queue_arn: str, job_definition_arn: str) -> None:
        """Inputs over the threshold become AWS Batch jobs: SubmitJob on exactly this queue and definition."""
        self.function.add_environment("MAAS_BATCH_JOB_QUEUE", job_queue_arn)
        self.function.add_environment("MAAS_BATCH_JOB_DEFINITION", job_definition_arn)
        self.function.add_to_role_policy(iam.PolicyStatement(
            actions=["batch:SubmitJob"], resources=[job_queue_arn, job_definition_arn]))
