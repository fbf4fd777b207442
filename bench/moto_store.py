"""A model version published to S3 on moto's standalone server (loopback HTTP), for cold starts from S3."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

BUCKET = "maas-bench"
STORE_URI = f"s3://{BUCKET}/store"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


@contextlib.contextmanager
def s3_store_with(name: str, version_dir: Path) -> Iterator[str]:
    """Start moto, publish ``version_dir`` as model ``name`` under STORE_URI; yields the endpoint URL.
    AWS_ENV is set in this process's environment (children inherit it)."""
    import boto3
    from moto.server import ThreadedMotoServer

    from functions.core.store import S3Store

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        os.environ.update(AWS_ENV)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        S3Store(BUCKET, "store", endpoint_url=endpoint).publish(
            f"models/{name}/versions/{version_dir.name}", {p.name: p for p in version_dir.iterdir()}, "manifest.json")
        yield endpoint
    finally:
        server.stop()
