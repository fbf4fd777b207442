"""What every concern shares: the stack's KMS key, the server access log bucket, and how buckets and log
groups are made, so each bucket gets the same protections."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import StageConfig

RETENTION = {1: logs.RetentionDays.ONE_DAY, 3: logs.RetentionDays.THREE_DAYS, 7: logs.RetentionDays.ONE_WEEK,
             14: logs.RetentionDays.TWO_WEEKS, 30: logs.RetentionDays.ONE_MONTH,
             90: logs.RetentionDays.THREE_MONTHS, 180: logs.RetentionDays.SIX_MONTHS,
             365: logs.RetentionDays.ONE_YEAR}


class Foundation(Construct):
    """The customer-managed key (rotated yearly) and the access log bucket; factories for the rest."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.removal = RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY
        self.key = kms.Key(self, "Key", enable_key_rotation=True, removal_policy=self.removal,
                           description=f"maas {config.stage}: buckets, queues and the alarm topic")
        # Server access logs can only be delivered to a bucket encrypted with S3-managed keys.
        self.access_logs = s3.Bucket(
            self, "AccessLogs", encryption=s3.BucketEncryption.S3_MANAGED, enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED, versioned=True, removal_policy=self.removal,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365),
                                              noncurrent_version_expiration=Duration.days(30))])

    def secure_bucket(self, scope: Construct, construct_id: str, log_prefix: str) -> s3.Bucket:
        """Versioned, KMS-encrypted, public access blocked, TLS only, access-logged, retained on delete."""
        return s3.Bucket(
            scope, construct_id, encryption=s3.BucketEncryption.KMS, encryption_key=self.key, bucket_key_enabled=True,
            enforce_ssl=True, minimum_tls_version=1.2, block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED, versioned=True, removal_policy=self.removal,
            server_access_logs_bucket=self.access_logs, server_access_logs_prefix=f"{log_prefix}/",
            lifecycle_rules=[s3.LifecycleRule(noncurrent_version_expiration=Duration.days(90),
                                              abort_incomplete_multipart_upload_after=Duration.days(7))])

    def log_group(self, scope: Construct, construct_id: str) -> logs.LogGroup:
        """A log group with the stage's retention, encrypted with the stage key."""
        self._allow_logs()
        return logs.LogGroup(scope, construct_id, retention=RETENTION[self.config.log_retention_days],
                             removal_policy=self.removal, encryption_key=self.key)

    def _allow_logs(self) -> None:
        """Let CloudWatch Logs use the key, for this account's log groups only (once)."""
        if getattr(self, "_logs_allowed", False):
            return
        self._logs_allowed = True
        stack = Stack.of(self)
        self.key.add_to_resource_policy(iam.PolicyStatement(
            actions=["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey",
                     "kms:GenerateDataKeyWithoutPlaintext", "kms:DescribeKey"],
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")], resources=["*"],
            conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                    f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:*"}}))

    def allow_service(self, service: str) -> None:
        """Let an AWS service (S3 notifications, CloudWatch alarms) encrypt messages with the key."""
        self.key.add_to_resource_policy(iam.PolicyStatement(
            actions=["kms:GenerateDataKey", "kms:Decrypt"], principals=[iam.ServicePrincipal(service)],
            resources=["*"], conditions={"StringEquals": {"aws:SourceAccount": self.key.stack.account}}))
