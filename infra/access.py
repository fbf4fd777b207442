"""Least-privilege grants written out: named actions only, object ARNs under a named prefix, the key's ARN.

CDK's ``grant_read``/``grant_read_write`` add action wildcards (``s3:GetObject*``, ``s3:List*``,
``kms:GenerateDataKey*``, ``kms:ReEncrypt*``); these statements name each action the code calls.
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3

READ = ("s3:GetObject",)
WRITE = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload")


def grant_objects(grantee: iam.IGrantable, bucket: s3.IBucket, key: kms.IKey, prefix: str, *,
                  write: bool = False, delete: bool = True) -> None:
    """Read (or read and write) objects under ``prefix/`` and list the bucket (a HEAD of a missing key
    answers 404 instead of 403 only with ``s3:ListBucket``)."""
    grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
        actions=[a for a in (WRITE if write else READ) if delete or a != "s3:DeleteObject"],
        resources=[bucket.arn_for_objects(f"{prefix}/*")]))
    grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
        actions=["s3:ListBucket"], resources=[bucket.bucket_arn]))
    grant_key(grantee, key, encrypt=write)


def grant_key(grantee: iam.IGrantable, key: kms.IKey, *, encrypt: bool) -> None:
    """Decrypt with the key, and generate data keys to encrypt new objects when ``encrypt``."""
    actions = ["kms:Decrypt", "kms:GenerateDataKey"] if encrypt else ["kms:Decrypt"]
    grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(actions=actions, resources=[key.key_arn]))
