"""The model store: the bucket `maas build --store s3://...` publishes to and the functions read from."""

from __future__ import annotations

import jsii
from aws_cdk import IStableListProducer, Lazy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.access import grant_objects
from infra.foundation import Foundation

MODELS = "models"


@jsii.implements(IStableListProducer)
class _Arns:
    """Principals exempt from the write guard: filled while the stack is built, read at synth."""

    def __init__(self, first: str) -> None:
        self.values = [first]

    def produce(self) -> list[str]:
        return self.values


class ModelStore(Construct):
    """A secure bucket that only the publisher role may write; readers get ``models/`` read-only."""

    def __init__(self, scope: Construct, construct_id: str, *, foundation: Foundation) -> None:
        super().__init__(scope, construct_id)
        self.key = foundation.key
        self.bucket: s3.Bucket = foundation.secure_bucket(self, "Bucket", "models")
        self.publisher = iam.Role(
            self, "Publisher", assumed_by=iam.AccountRootPrincipal(),
            description=f"maas {foundation.config.stage}: publishes model versions and moves aliases")
        grant_objects(self.publisher, self.bucket, self.key, MODELS, write=True)
        self._writers = _Arns(self.publisher.role_arn)
        # Writes by any other principal are refused by the bucket itself, whatever their IAM policies say.
        self.bucket.add_to_resource_policy(iam.PolicyStatement(
            effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
            actions=["s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectAcl"],
            resources=[self.bucket.arn_for_objects("*")],
            conditions={"ArnNotEquals": {"aws:PrincipalArn": Lazy.list(self._writers)}}))

    @property
    def uri(self) -> str:
        """The ``MAAS_STORE`` value for this bucket."""
        return f"s3://{self.bucket.bucket_name}"

    def grant_read(self, grantee: iam.IGrantable) -> None:
        """Read-only access to published models (and the key to decrypt them)."""
        grant_objects(grantee, self.bucket, self.key, MODELS)

    def allow_writer(self, role_arn: str) -> None:
        """Exempt another role from the write guard (its own IAM policy still bounds what it may write)."""
        self._writers.values.append(role_arn)
