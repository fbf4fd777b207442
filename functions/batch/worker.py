"""AWS Batch worker: the batch runner on one input object, on the GPU when there is one.

    python -m functions.batch.worker --bucket BUCKET --key inputs/NAME/file.npy [--etag ETAG]
                                     [--output-format jsonl|parquet] [--host-processes auto|N]

With CUDA available (onnxruntime-gpu) it uses the CUDA execution provider and the model's GPU variant when
the version has one; otherwise the CPU variant. Exit codes: 0 done or duplicate, 2 permanent failure (a
report was written; the job must not be retried), 1 anything else (AWS Batch may retry).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys

from functions.batch.local import for_batch
from functions.batch.objects import InputObject, data_bucket_factory
from functions.batch.process import Processor
from functions.core.model_cache import ModelCache
from functions.core.settings import (
    ENV_BATCH_HOST_PROCESSES,
    OUTPUT_FORMATS,
    Settings,
    get_settings,
    parse_host_processes,
)
from functions.core.store import open_store


def execution_providers() -> tuple[str, list[str]]:
    """(variant target, providers): CUDA first when onnxruntime offers it."""
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):
        with contextlib.suppress(Exception):  # no CUDA libraries: stay on the CPU
            ort.preload_dlls()
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return "gpu", ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return "cpu", ["CPUExecutionProvider"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--etag", default=None, help="process only this version of the object")
    parser.add_argument("--output-format", choices=OUTPUT_FORMATS, default=None,
                        help="predictions as jsonl or parquet (default: MAAS_BATCH_OUTPUT_FORMAT, else jsonl)")
    parser.add_argument("--host-processes", default=None, metavar="auto|N",
                        help="processes that encode and format beside the session (default: "
                             "MAAS_BATCH_HOST_PROCESSES, else auto: on a GPU every core but two; 0: threads only)")
    args = parser.parse_args(argv)
    if args.host_processes is not None:
        try:
            Settings(batch_host_processes=parse_host_processes(args.host_processes))
        except ValueError as exc:
            parser.error(str(exc).replace(ENV_BATCH_HOST_PROCESSES, "--host-processes"))
    settings, cache = worker_cache(args.output_format, args.host_processes)
    data = data_bucket_factory(settings.s3_endpoint_url)
    etag, size = args.etag, 0
    head = data(args.bucket).head(args.key)
    etag, size = etag or head[0], head[1]
    processor = Processor(cache, data, job_id=os.environ.get("AWS_BATCH_JOB_ID"))
    outcome = processor.process(InputObject(args.bucket, args.key, etag, size))
    print(f"{args.key}: {outcome} (providers {', '.join(cache.providers)})", file=sys.stderr)
    return 2 if outcome == "failed" else 0


def worker_cache(output_format: str | None = None, host_processes: str | None = None
                 ) -> tuple[Settings, ModelCache]:
    """Settings with all cores for batch work, and a model cache on the GPU variant when CUDA is there;
    ``output_format`` and ``host_processes`` (``auto`` or a number), when given, replace the environment's."""
    settings = get_settings()
    if host_processes is not None:
        settings = dataclasses.replace(settings, batch_host_processes=parse_host_processes(host_processes))
    target, providers = execution_providers()
    settings = for_batch(settings, gpu=target == "gpu")
    if output_format:
        settings = dataclasses.replace(settings, batch_output_format=output_format)
    cache = ModelCache(open_store(settings.store, endpoint_url=settings.s3_endpoint_url), settings,
                       target=target, providers=providers)  # type: ignore[arg-type]
    return settings, cache


if __name__ == "__main__":
    sys.exit(main())
