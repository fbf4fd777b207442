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

DEFAULT_STORE = "file://./.maas/store"
DEFAULT_ALLOWED_OP_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")


class Settings(BaseModel):
    """Settings shared by every command and handler."""

    model_config = ConfigDict(frozen=True)

    store: str = DEFAULT_STORE
    s3_endpoint_url: str | None = None
    cache_dir: str = Field(default="/tmp/maas-cache")
    allowed_op_domains: tuple[str, ...] = DEFAULT_ALLOWED_OP_DOMAINS

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
        return cls.model_validate(values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, validated once."""
    return Settings.from_env()
