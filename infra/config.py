"""Deployment settings read from ``cdk.json`` context, validated once, with defaults that deploy as they are.

``cdk.json`` holds ``"stage"`` (the stage to synthesize, overridable with ``-c stage=prod``) and ``"stages"``,
a mapping of stage name to the settings below (camelCase keys) that differ from the defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class AuthConfig(_Camel):
    """How callers authenticate: IAM (SigV4) by default, a JWT issuer with required scopes, or API keys
    (``maas keys``) checked by a Lambda authorizer (docs/consumers.md)."""

    type: Literal["iam", "jwt", "apiKey"] = "iam"
    issuer: str | None = None
    audience: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    cache_seconds: int = Field(default=60, ge=0, le=3600)
    """apiKey: how long the HTTP API caches the authorizer's answer per key (0: no cache, and the key may also
    come as ``Authorization: Bearer``); a revoked key is refused at the latest this long after ``maas keys revoke``."""

    @model_validator(mode="after")
    def _jwt_needs_issuer(self) -> AuthConfig:
        if self.type == "jwt" and (not self.issuer or not self.audience):
            raise ValueError("auth type 'jwt' needs an issuer URL and at least one audience")
        if self.type == "jwt" and self.issuer and not self.issuer.startswith("https://"):
            raise ValueError(f"the JWT issuer must be an https:// URL, got {self.issuer!r}")
        if self.type != "jwt" and (self.issuer or self.audience or self.scopes):
            raise ValueError(f"issuer, audience and scopes are JWT settings; auth type is {self.type!r}")
        return self


class StageConfig(_Camel):
    """Everything a stage can set; each default is what `cdk deploy` uses when cdk.json says nothing."""

    stage: str = Field(default="dev", pattern=r"^[a-z][a-z0-9-]{0,19}$")
    account: str | None = Field(default=None, pattern=r"^\d{12}$")
    region: str | None = None
    architecture: Literal["arm64", "x86_64"] = "arm64"
    python_version: Literal["3.12", "3.13"] = "3.12"
    api_memory_mb: int = Field(default=2048, ge=128, le=10240)
    api_timeout_seconds: int = Field(default=29, ge=1, le=29)
    api_reserved_concurrency: int = Field(default=0, ge=0, le=10000)
    """Reserved concurrency of the API function; 0 leaves it unreserved (see docs/reliability.md)."""
    preload: tuple[str, ...] = ()
    warm_start: Literal["snapstart", "provisioned", "none"] = "snapstart"
    provisioned_concurrency: int = Field(default=0, ge=0)
    canary: bool = False
    auth: AuthConfig = AuthConfig()
    throttle_rate: float = Field(default=100.0, gt=0)
    throttle_burst: int = Field(default=200, ge=1)
    batch_memory_mb: int = Field(default=3008, ge=512, le=10240)
    batch_timeout_seconds: int = Field(default=600, ge=60, le=900)
    batch_max_concurrency: int = Field(default=2, ge=2, le=1000)
    batch_dispatch_bytes: int = Field(default=256 * 1024 * 1024, ge=0)
    gpu_instance_types: tuple[str, ...] = ("g5.xlarge", "g6.xlarge")
    gpu_max_vcpus: int = Field(default=16, ge=1)
    gpu_job_vcpus: int = Field(default=4, ge=1)
    gpu_job_memory_mib: int = Field(default=14336, ge=1024)
    gpu_job_timeout_minutes: int = Field(default=120, ge=1)
    nat_gateways: int = Field(default=1, ge=1, le=3)
    alarm_email: str | None = None
    alarm_topic_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:sns:")
    log_retention_days: Literal[1, 3, 7, 14, 30, 90, 180, 365] = 30
    bundle_budget_mb: int = Field(default=150, ge=1, le=250)
    retain_data: bool = True
    # "functionUrl": a Lambda Function URL (IAM auth) instead of the HTTP API: no per-request fee, but no JWT
    # authorizer, no stage throttling and no access logs (docs/cost.md).
    front_door: Literal["httpApi", "functionUrl"] = "httpApi"
    fanout_max_concurrency: int = Field(default=100, ge=1, le=10_000)
    fanout_rows_per_part: int = Field(default=200_000, ge=1)
    fanout_timeout_hours: int = Field(default=24, ge=1, le=8760)
    capture_rate: float = Field(default=0.01, ge=0.0, le=1.0)
    # Write capture records once the runtime has posted the response (false: inline, inside the handler).
    capture_after_response: bool = True
    capture_retention_days: int = Field(default=90, ge=1, le=3650)
    drift_schedule: str = Field(default="cron(30 0 * * ? *)", pattern=r"^(rate|cron)\(.+\)$")
    drift_memory_mb: int = Field(default=1024, ge=256, le=10240)
    drift_timeout_seconds: int = Field(default=900, ge=60, le=900)

    @model_validator(mode="after")
    def _consistent(self) -> StageConfig:
        if self.warm_start == "provisioned" and self.provisioned_concurrency < 1:
            raise ValueError("warmStart 'provisioned' needs provisionedConcurrency >= 1")
        if self.warm_start != "provisioned" and self.provisioned_concurrency:
            raise ValueError("provisionedConcurrency is set but warmStart is not 'provisioned' "
                             "(SnapStart and provisioned concurrency cannot be combined)")
        if self.front_door == "functionUrl" and self.auth.type != "iam":
            raise ValueError("frontDoor 'functionUrl' supports IAM auth only (JWT and API-key "
                             "authorizers need the HTTP API)")
        if self.gpu_job_vcpus > self.gpu_max_vcpus:
            raise ValueError("gpuJobVcpus exceeds gpuMaxVcpus: no job could ever be placed")
        return self


class ConfigError(ValueError):
    """cdk.json context that cannot be deployed; the message names the stage and the setting."""


def stage_config(context: Mapping[str, Any]) -> StageConfig:
    """The settings of the stage named by the ``stage`` context key (``dev`` when absent)."""
    stage = str(context.get("stage") or "dev")
    stages = context.get("stages") or {}
    if not isinstance(stages, Mapping):
        raise ConfigError("context 'stages' must be an object of stage name -> settings")
    overrides = stages.get(stage, {})
    if stage not in stages and stage != "dev":
        raise ConfigError(f"stage {stage!r} is not in cdk.json 'stages' (known: {', '.join(sorted(stages))})")
    try:
        return StageConfig.model_validate({**overrides, "stage": stage})
    except ValidationError as exc:
        raise ConfigError(f"cdk.json stage {stage!r}: {exc}") from exc
