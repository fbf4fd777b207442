"""Environment variable names (all in one place) and typed settings validated once at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import lru_cache

ENV_STORE = "MAAS_STORE"
ENV_S3_ENDPOINT_URL = "MAAS_S3_ENDPOINT_URL"
ENV_CACHE_DIR = "MAAS_CACHE_DIR"
ENV_ALLOWED_OP_DOMAINS = "MAAS_ALLOWED_OP_DOMAINS"
ENV_INTRA_OP_THREADS = "MAAS_INTRA_OP_THREADS"
ENV_MAX_BODY_BYTES = "MAAS_MAX_BODY_BYTES"
ENV_MAX_INSTANCES = "MAAS_MAX_INSTANCES"
ENV_MAX_BATCH_ROWS = "MAAS_MAX_BATCH_ROWS"
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
ENV_BATCH_BUCKETING = "MAAS_BATCH_BUCKETING"
ENV_BATCH_OUTPUT_FORMAT = "MAAS_BATCH_OUTPUT_FORMAT"
ENV_BATCH_HOST_PROCESSES = "MAAS_BATCH_HOST_PROCESSES"
ENV_REQUEST_BUDGET_SECONDS = "MAAS_REQUEST_BUDGET_SECONDS"
ENV_BATCH_OUTPUTS = "MAAS_BATCH_OUTPUTS"  # where the console reads batch outputs (folder or s3://); not a setting
ENV_EXPLAIN_MAX_EVALUATIONS = "MAAS_EXPLAIN_MAX_EVALUATIONS"
ENV_EXPLAIN_MAX_INSTANCES = "MAAS_EXPLAIN_MAX_INSTANCES"
ENV_DATA_BUCKET = "MAAS_DATA_BUCKET"
ENV_DATA_KEY_ARN = "MAAS_DATA_KEY_ARN"
ENV_JOBS_MAX_BYTES = "MAAS_JOBS_MAX_BYTES"
ENV_JOBS_UPLOAD_SECONDS = "MAAS_JOBS_UPLOAD_SECONDS"
ENV_JOBS_DOWNLOAD_SECONDS = "MAAS_JOBS_DOWNLOAD_SECONDS"
ENV_SHADOW_BUDGET_SECONDS = "MAAS_SHADOW_BUDGET_SECONDS"
# API keys (functions/consumers): read by the key gate and the authorizer, not settings of the prediction service
ENV_AUTH = "MAAS_AUTH"  # "apiKey": the API function admits requests by the authorizer's verdict
ENV_KEYS = "MAAS_KEYS"  # the key store: a SQLite file or dynamodb://TABLE
ENV_KEYS_CACHE_SECONDS = "MAAS_KEYS_CACHE_SECONDS"  # how long a key lookup is reused

DEFAULT_STORE = "file://./.maas/store"
MAX_HOST_PROCESSES = 256
OUTPUT_FORMATS = ("jsonl", "parquet")
DEFAULT_ALLOWED_OP_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Settings shared by every command and handler (checked when made; change one with dataclasses.replace)."""

    store: str = DEFAULT_STORE
    s3_endpoint_url: str | None = None
    cache_dir: str = "/tmp/maas-cache"
    allowed_op_domains: tuple[str, ...] = DEFAULT_ALLOWED_OP_DOMAINS
    intra_op_threads: int = 1
    max_body_bytes: int = 1024 * 1024
    max_instances: int = 256
    max_batch_rows: int = 64
    """rows concurrent requests may join into one session run (dynamic batching); 1 turns joining off"""
    alias_ttl_seconds: float = 30.0
    model_memory_mb: int = 1024
    preload: tuple[str, ...] = ()
    log_payloads: bool = False
    batch_chunk_rows: int = 1024
    batch_threads: int = 0
    """cores batch work uses; 0 = all cores"""
    batch_lanes: int = 1
    """session runs a batch keeps going at once (set by ``for_batch``, not from the environment)"""
    batch_dispatch_bytes: int = 256 * 1024 * 1024
    batch_job_queue: str | None = None
    batch_job_definition: str | None = None
    batch_safety_ms: int = 20_000
    batch_max_line_bytes: int = 1024 * 1024
    batch_bucketing: bool = True
    """text models padded per batch run length-homogeneous batches (functions/batch/bucketing.py); off: one run
    per chunk, padded to its longest text"""
    batch_output_format: str = "jsonl"
    """predictions as ``jsonl`` or ``parquet`` (S3 inputs and the AWS Batch worker; ``maas batch`` has a flag)"""
    batch_host_processes: int | None = None
    """worker processes that encode and format batch chunks beside the session (functions/batch/hostwork.py);
    0: threads only; None (``auto``): ``for_batch`` chooses (some on a GPU, none on the CPU)"""
    request_budget_seconds: float = 20.0
    """The longest a request may wait on the model store; S3 timeouts and retries derive from it (must stay
    below the API function's 29 s timeout, see docs/reliability.md)."""
    explain_max_evaluations: int = 262_144
    """model rows (coalitions x background rows) per explained instance"""
    explain_max_instances: int = 16
    data_bucket: str | None = None
    """the data bucket behind asynchronous jobs (deployed API); jobs are off without it on an S3 store"""
    data_key_arn: str | None = None
    """the data bucket's KMS key: job uploads must be encrypted with it"""
    jobs_max_bytes: int = 5 * 1024**3
    """the largest job input (one presigned POST takes at most 5 GiB)"""
    jobs_upload_seconds: int = 900
    jobs_download_seconds: int = 3600
    shadow_budget_seconds: float = 5.0
    """The longest a shadow candidate may take (load and run) after a live answer before it counts as a timeout"""

    def __post_init__(self) -> None:
        if not self.store.startswith(("file://", "s3://")):
            raise ValueError(f"{ENV_STORE} must start with file:// or s3://, got {self.store!r}")
        for name, (low, high) in _BOUNDS.items():
            value = getattr(self, name)
            if value < low or (high is not None and value > high):
                bound = f">= {low}" if high is None else f"between {low} and {high}"
                raise ValueError(f"{_ENV_NAMES.get(name, name)} must be {bound}, got {value}")
        if self.batch_host_processes is not None and not 0 <= self.batch_host_processes <= MAX_HOST_PROCESSES:
            raise ValueError(f"{ENV_BATCH_HOST_PROCESSES} must be auto or between 0 and {MAX_HOST_PROCESSES}, "
                             f"got {self.batch_host_processes}")
        if self.batch_output_format not in OUTPUT_FORMATS:
            raise ValueError(f"{ENV_BATCH_OUTPUT_FORMAT} must be one of {', '.join(OUTPUT_FORMATS)}, "
                             f"got {self.batch_output_format!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from environment variables (names defined in this module); ValueError names the
        variable whose value is not valid."""
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
        types = {f.name: f.type for f in fields(cls)}
        for name, field in _ENV_FIELDS.items():
            if env.get(name):
                values[field] = _convert(name, env[name], str(types[field]))
        if env.get(ENV_BATCH_HOST_PROCESSES):
            values["batch_host_processes"] = parse_host_processes(env[ENV_BATCH_HOST_PROCESSES])
        if env.get(ENV_PRELOAD):
            values["preload"] = tuple(m.strip() for m in env[ENV_PRELOAD].split(",") if m.strip())
        return cls(**values)  # type: ignore[arg-type]


_ENV_FIELDS = {
    ENV_INTRA_OP_THREADS: "intra_op_threads", ENV_MAX_BODY_BYTES: "max_body_bytes", ENV_MAX_INSTANCES: "max_instances",
    ENV_MAX_BATCH_ROWS: "max_batch_rows",
    ENV_ALIAS_TTL_SECONDS: "alias_ttl_seconds", ENV_MODEL_MEMORY_MB: "model_memory_mb",
    ENV_LOG_PAYLOADS: "log_payloads", ENV_BATCH_CHUNK_ROWS: "batch_chunk_rows", ENV_BATCH_THREADS: "batch_threads",
    ENV_BATCH_DISPATCH_BYTES: "batch_dispatch_bytes", ENV_BATCH_JOB_QUEUE: "batch_job_queue",
    ENV_BATCH_JOB_DEFINITION: "batch_job_definition", ENV_BATCH_SAFETY_MS: "batch_safety_ms",
    ENV_BATCH_MAX_LINE_BYTES: "batch_max_line_bytes", ENV_BATCH_BUCKETING: "batch_bucketing",
    ENV_BATCH_OUTPUT_FORMAT: "batch_output_format", ENV_REQUEST_BUDGET_SECONDS: "request_budget_seconds",
    ENV_EXPLAIN_MAX_EVALUATIONS: "explain_max_evaluations", ENV_EXPLAIN_MAX_INSTANCES: "explain_max_instances",
    ENV_DATA_BUCKET: "data_bucket", ENV_DATA_KEY_ARN: "data_key_arn", ENV_JOBS_MAX_BYTES: "jobs_max_bytes",
    ENV_JOBS_UPLOAD_SECONDS: "jobs_upload_seconds", ENV_JOBS_DOWNLOAD_SECONDS: "jobs_download_seconds",
    ENV_SHADOW_BUDGET_SECONDS: "shadow_budget_seconds",
}
_ENV_NAMES = {field: env for env, field in _ENV_FIELDS.items()}
_BOUNDS: dict[str, tuple[float, float | None]] = {
    "intra_op_threads": (1, 64), "max_body_bytes": (1024, None), "max_instances": (1, None),
    "max_batch_rows": (1, 4096),
    "alias_ttl_seconds": (0, None), "model_memory_mb": (1, None), "batch_chunk_rows": (1, None),
    "batch_threads": (0, None), "batch_dispatch_bytes": (0, None), "batch_safety_ms": (0, None),
    "batch_max_line_bytes": (16, None), "request_budget_seconds": (1, 900),
    "explain_max_evaluations": (1, None), "explain_max_instances": (1, None),
    "jobs_max_bytes": (1, 5 * 1024**3), "jobs_upload_seconds": (60, 7 * 86400),
    "jobs_download_seconds": (60, 7 * 86400), "shadow_budget_seconds": (0.01, 900),
}
_TRUE = {"1", "true", "yes", "on", "t", "y"}
_FALSE = {"0", "false", "no", "off", "f", "n"}


def _convert(env_name: str, raw: str, kind: str) -> object:
    """An environment string as the setting's type (``kind`` is the field's annotation text)."""
    text = raw.strip()
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise ValueError(f"{env_name} must be a {'whole ' if kind == 'int' else ''}number, got {raw!r}") from None
    if kind == "bool":
        return parse_flag(env_name, raw)
    return raw


def parse_flag(env_name: str, raw: str) -> bool:
    """An on/off environment string (true/false, on/off, 1/0, yes/no); ValueError naming the setting else."""
    text = raw.strip().lower()
    if text not in _TRUE | _FALSE:
        raise ValueError(f"{env_name} must be true or false (on or off), got {raw!r}")
    return text in _TRUE


def parse_host_processes(raw: str) -> int | None:
    """``auto`` (None) or a whole number of batch host processes (0: threads only); ValueError naming the
    setting else (bounds are checked by ``Settings``)."""
    text = raw.strip().lower()
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{ENV_BATCH_HOST_PROCESSES} must be auto or a whole number of processes (0: threads "
                         f"only), got {raw!r}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, validated once."""
    return Settings.from_env()
