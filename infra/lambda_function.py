"""One way to make the project's Lambda functions: the locally bundled code, an own role and log group."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from aws_cdk import BundlingOptions, DockerImage, Duration, ILocalBundling, Size, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.bundling import LocalPipBundling, source_hash
from infra.config import StageConfig
from infra.foundation import Foundation
from infra.project import PROJECT_ROOT

RUNTIMES = {"3.12": lambda_.Runtime.PYTHON_3_12, "3.13": lambda_.Runtime.PYTHON_3_13}
ARCHITECTURES = {"arm64": lambda_.Architecture.ARM_64, "x86_64": lambda_.Architecture.X86_64}
_CODE_ATTRIBUTE = "_maas_lambda_code"


def bundled_code(scope: Construct, config: StageConfig) -> lambda_.Code:
    """The code asset (runtime dependencies + functions/), bundled without Docker; one per stack, shared by
    its functions (CDK binds an asset to a single stack)."""
    stack = Stack.of(scope)
    code: lambda_.Code | None = getattr(stack, _CODE_ATTRIBUTE, None)
    if code is None:
        code = lambda_.Code.from_asset(
            str(PROJECT_ROOT / "functions"),
            asset_hash=source_hash(config.architecture, config.python_version),
            bundling=BundlingOptions(
                # Never pulled: the local bundling below always succeeds or stops the synth.
                image=DockerImage.from_registry(f"public.ecr.aws/sam/build-python{config.python_version}"),
                local=cast(ILocalBundling, LocalPipBundling(config.architecture, config.python_version,
                                                            config.bundle_budget_mb))))
        setattr(stack, _CODE_ATTRIBUTE, code)
    return code


def service_function(scope: Construct, construct_id: str, *, foundation: Foundation, handler: str,
                     description: str, memory_mb: int, timeout: Duration,
                     environment: Mapping[str, str], **options: object) -> lambda_.Function:
    """A function of this project: bundled code, arm64 by default, X-Ray, its own role and log group."""
    config = foundation.config
    log_group = foundation.log_group(scope, f"{construct_id}Logs")
    role = iam.Role(scope, f"{construct_id}Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                    description=f"maas {config.stage}: {description}")
    role.add_to_policy(iam.PolicyStatement(actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                                           resources=[log_group.log_group_arn]))
    return lambda_.Function(
        scope, construct_id, code=bundled_code(scope, config), handler=handler, runtime=RUNTIMES[config.python_version],
        architecture=ARCHITECTURES[config.architecture], memory_size=memory_mb, timeout=timeout,
        description=description, role=role, log_group=log_group, tracing=lambda_.Tracing.ACTIVE,
        environment={"MAAS_CACHE_DIR": "/tmp/maas-cache", **environment},
        ephemeral_storage_size=options.pop("ephemeral_storage_size", Size.mebibytes(512)),  # type: ignore[arg-type]
        **options)  # type: ignore[arg-type]

