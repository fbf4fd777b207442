"""Environment variable names (all in one place) and typed settings validated once at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, field_validator

ENV_STORE = "MAAS_STORE"
ENV_S3_ENDPOINT_URL = "MAAS_S3_ENDPOINT_URL"
ENV_CACHE_DIR = "MAAS_CACHE_DIR"
ENV_ALLOWED_OP_DOMAINS = "MAAS_ALLOWED_OP_DOMAINS"
ENV_INTRA_OP_THREADS = "MAAS_INTRA_OP_THREADS"
ENV_MAX_BODY_BYTES = "MAAS_MAX_BODY_BYTES"
ENV_MAX_INSTANCES = "MAAS_MAX_INSTANCES"
ENV_ALIAS_TTL_SECONDS = "MAAS_ALIAS_TTL_SECONDS"
ENV_MODEL_MEMORY_MB = "MAAS_MODEL_MEMORY_MB"
ENV_PRELOAD = "MAAS_PRELOAD"
ENV_LOG_PAYLOADS = "MAAS_LOG_PAYLOADS"
ENV_BATCH_CHUNK_ROWS = "MAAS_BATCH_CHUNK_ROWS"
ENV_BATCH_THREADS = "MAAS_BATCH_THREADS"
ENV_BATCH_DISPATCH_BYTES = "MAAS_BATCH_DISPATCH_BYTES"
ENV_BATCH_JOB_QUEUE = "MAAS_BATCH_JOB_QUEUE"
ENV_BATCH_JOB_DEFINITION = "MAAS_BATCH_JOB_DEFINITION"
ENV_BATCH_SAFETY_MS = "MAAS_BATCH_SAFETY_MS"
ENV_BATCH_MAX_LINE_BYTES = "MAAS_BATCH_MAX_LINE_BYTES"

DEFAULT_STORE = "file://./.maas/store"
DEFAULT_ALLOWED_OP_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")


class Settings(BaseModel):
    """Settings shared by every command and handler."""

    model_config = ConfigDict(frozen=True)

    store: str = DEFAULT_STORE
    s3_endpoint_url: str | None = None
    cache_dir: str = Field(default="/tmp/maas-cache")
    allowed_op_domains: tuple[str, ...] = DEFAULT_ALLOWED_OP_DOMAINS
    intra_op_threads: int = Field(default=1, ge=1, le=64)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_instances: int = Field(default=256, ge=1)
    alias_ttl_seconds: float = Field(default=30.0, ge=0)
    model_memory_mb: int = Field(default=1024, ge=1)
    preload: tuple[str, ...] = ()
    log_payloads: bool = False
    batch_chunk_rows: int = Field(default=1024, ge=1)
    batch_threads: int = Field(default=0, ge=0, description="intra-op threads for batch work; 0 = all cores")
    batch_dispatch_bytes: int = Field(default=256 * 1024 * 1024, ge=0)
    batch_job_queue: str | None = None
    batch_job_definition: str | None = None
    batch_safety_ms: int = Field(default=20_000, ge=0)
    batch_max_line_bytes: int = Field(default=1024 * 1024, ge=16)

    @field_validator("store")
    @classmethod
    def _store_scheme(cls, value: str) -> str:
        if not value.startswith(("file://", "s3://")):
            raise ValueError(f"{ENV_STORE} must start with file:// or s3://, got {value!r}")
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from environment variables (names defined in this module)."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        if env.get(ENV_STORE):
            values["store"] = env[ENV_STORE]
        if env.get(ENV_S3_ENDPOINT_URL):
            values["s3_endpoint_url"] = env[ENV_S3_ENDPOINT_URL]
        if env.get(ENV_CACHE_DIR):
            values["cache_dir"] = env[ENV_CACHE_DIR]
        if ENV_ALLOWED_OP_DOMAINS in env:
            values["allowed_op_domains"] = tuple(d.strip() for d in env[ENV_ALLOWED_OP_DOMAINS].split(","))
        for name, field in ((ENV_INTRA_OP_THREADS, "intra_op_threads"), (ENV_MAX_BODY_BYTES, "max_body_bytes"),
                            (ENV_MAX_INSTANCES, "max_instances"), (ENV_ALIAS_TTL_SECONDS, "alias_ttl_seconds"),
                            (ENV_MODEL_MEMORY_MB, "model_memory_mb"), (ENV_LOG_PAYLOADS, "log_payloads"),
                            (ENV_BATCH_CHUNK_ROWS, "batch_chunk_rows"), (ENV_BATCH_THREADS, "batch_threads"),
                            (ENV_BATCH_DISPATCH_BYTES, "batch_dispatch_bytes"),
                            (ENV_BATCH_JOB_QUEUE, "batch_job_queue"),
                            (ENV_BATCH_JOB_DEFINITION, "batch_job_definition"),
                            (ENV_BATCH_SAFETY_MS, "batch_safety_ms"),
                            (ENV_BATCH_MAX_LINE_BYTES, "batch_max_line_bytes")):
            if env.get(name):
                values[field] = env[name]
        if env.get(ENV_PRELOAD):
            values["preload"] = tuple(m.strip() for m in env[ENV_PRELOAD].split(",") if m.strip())
        return cls.model_validate(values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, validated once."""
    return Settings.from_env()
