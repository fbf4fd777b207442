"""AWS Batch array child: one part of a fanned-out input, picked by ``AWS_BATCH_JOB_ARRAY_INDEX``.

    python -m functions.batch.array_worker [--bucket B --key inputs/NAME/file.npy --etag E --version V]
                                           [--output-format jsonl|parquet]

The state machine submits the array job with the input in the environment (MAAS_FANOUT_BUCKET, _KEY, _ETAG,
_VERSION, and _OUTPUT_FORMAT: the output format of the function that started it), which the flags default to;
an input key's ``@output=`` suffix still decides first.

It reads ``PREFIX/ranges.json`` (written by the split step), takes the entry at its array index, and runs
the same part code as the Lambda children, on the GPU when there is one. Exit codes as the worker's:
0 done, duplicate or failed part (its report is written; the merge reports it), 1 transient (Batch retries).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import cast

from functions.batch.merge import RANGES_FILE, read_ranges
from functions.batch.objects import data_bucket_factory
from functions.batch.part import PartItem, process_part
from functions.batch.process import output_prefix, parse_key
from functions.core.settings import OUTPUT_FORMATS
from functions.core.store import S3Store

ENV_ARRAY_INDEX = "AWS_BATCH_JOB_ARRAY_INDEX"
ENV_PREFIX = "MAAS_FANOUT_"
COMMAND = ["python", "-m", "functions.batch.array_worker"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("bucket", "key", "etag", "version"):
        env_name = f"{ENV_PREFIX}{name.upper()}"
        parser.add_argument(f"--{name}", default=os.environ.get(env_name), help=f"default: ${env_name}")
    parser.add_argument("--output-format", choices=OUTPUT_FORMATS, default=os.environ.get(f"{ENV_PREFIX}OUTPUT_FORMAT")
                        or None, help=f"default: ${ENV_PREFIX}OUTPUT_FORMAT, else MAAS_BATCH_OUTPUT_FORMAT")
    args = parser.parse_args(argv)
    missing = [name for name in ("bucket", "key", "etag", "version") if not getattr(args, name)]
    if missing:
        parser.error(f"missing {', '.join(missing)} (flags or {ENV_PREFIX}* variables)")
    index = int(os.environ.get(ENV_ARRAY_INDEX, "0"))
    from functions.batch.worker import worker_cache

    settings, cache = worker_cache(args.output_format)
    data = data_bucket_factory(settings.s3_endpoint_url)
    ref = parse_key(args.key)
    prefix = output_prefix(ref.name, args.version, ref.path, args.etag)
    ranges = read_ranges(cast(S3Store, data(args.bucket)).get_bytes(f"{prefix}/{RANGES_FILE}"))
    if not 0 <= index < len(ranges):
        print(f"array index {index} is outside the {len(ranges)} ranges", file=sys.stderr)
        return 2
    item = PartItem(args.bucket, args.key, args.etag, args.version, index, ranges[index])
    result = process_part(cache, data, item, job_id=os.environ.get("AWS_BATCH_JOB_ID"))
    print(f"{args.key} part {index}: {result['status']} (providers {', '.join(cache.providers)})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
