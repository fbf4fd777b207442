"""Hand large inputs to AWS Batch: one job per input object, running ``python -m functions.batch.worker``."""

from __future__ import annotations

import hashlib
import re
from typing import Any, Protocol


class Dispatcher(Protocol):
    """Submits a worker job for one input object and returns the job id."""

    def submit(self, bucket: str, key: str, etag: str) -> str:
        """Submit the job."""


class AwsBatchDispatcher:
    """SubmitJob on the configured queue and job definition."""

    def __init__(self, queue: str, definition: str, client: Any = None, output_format: str | None = None) -> None:
        self.queue = queue
        self.definition = definition
        self.output_format = output_format
        """Passed to the worker (``--output-format``): the job writes what the dispatching function would."""
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client("batch", config=Config(retries={"mode": "standard", "max_attempts": 5}))
        self._client = client

    def submit(self, bucket: str, key: str, etag: str) -> str:
        digest = hashlib.sha256(f"{bucket}/{key}/{etag}".encode()).hexdigest()[:12]
        stem = re.sub(r"[^A-Za-z0-9_-]", "-", key.rsplit("/", 1)[-1])[:100]
        response = self._client.submit_job(
            jobName=f"maas-{stem}-{digest}", jobQueue=self.queue, jobDefinition=self.definition,
            containerOverrides={"command": ["python", "-m", "functions.batch.worker", "--bucket", bucket,
                                            "--key", key, "--etag", etag,
                                            *(["--output-format", self.output_format] if self.output_format
                                              else [])]})
        return str(response["jobId"])
