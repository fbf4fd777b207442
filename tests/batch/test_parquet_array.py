"""Parquet in S3 split across AWS Batch array children by row groups (issue 30): the batch Lambda, which has no
pyarrow, decodes the footer itself (functions/batch/footer.py), plans the split and starts the fan-out; its split
step writes row-group ranges; each array child (run here in-process with its index, pyarrow present) runs its
row groups; the merge equals one worker's run, and a duplicate event or merge counts nothing."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.stub import ANY, Stubber

from functions.batch.dispatch import AwsBatchDispatcher
from functions.batch.footer import decode, row_groups
from functions.batch.objects import InputObject
from functions.batch.plan import Limits, estimate
from functions.batch.process import Processor, id_column_of, output_format_of
from functions.batch.ranges import FileSource, split
from functions.batch.routing import Router, StepFunctionsLauncher
from functions.core.errors import UnreadableInputError
from functions.core.settings import Settings, get_settings
from functions.core.store import LocalStore
from tests.batch.conftest import DataBucket
from tests.batch.test_fanout_routing import executions, state_machine  # noqa: F401 (a fixture)
from tests.batch.test_parquet import _diabetes
from tests.events import load_event

MODEL = "diabetes-mlp"


def _pyarrow_groups(path: Path) -> list[tuple[int, int]]:
    """The reference: what pyarrow's metadata says each row group holds and where it starts."""
    metadata = pq.ParquetFile(path).metadata
    groups = []
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        starts = [c.dictionary_page_offset if c.has_dictionary_page and c.dictionary_page_offset else
                  c.data_page_offset for c in (group.column(i) for i in range(group.num_columns))]
        groups.append((group.num_rows, min(starts)))
    return groups


def test_the_footer_decoded_without_pyarrow_agrees_with_pyarrow(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    tables = {
        "dictionary": (pa.table({"a": rng.normal(size=400), "b": [f"s{i % 7}" for i in range(400)]}),
                       {"row_group_size": 60}),
        "plain": (pa.table({"t": [f"text {i}" for i in range(300)]}), {"row_group_size": 41, "use_dictionary": False}),
        "nested": (pa.table({"image": [list(range(64))] * 90, "s": pa.array([{"x": 1, "y": "z"}] * 90),
                             "m": pa.array([[("k", 1)]] * 90, pa.map_(pa.string(), pa.int64()))}),
                   {"row_group_size": 20}),
        "statistics": (pa.table({"a": rng.integers(0, 10**12, size=900), "b": [True, False] * 450}),
                       {"row_group_size": 100, "compression": "zstd", "write_page_index": True,
                        "sorting_columns": [pq.SortingColumn(0)]}),
        "wide": (pa.table({f"c{i}": rng.normal(size=40) for i in range(150)}), {"row_group_size": 4}),  # > 64 KiB
    }
    for name, (table, options) in tables.items():
        path = tmp_path / f"{name}.parquet"
        pq.write_table(table, path, **options)
        assert row_groups(FileSource(path)) == _pyarrow_groups(path), name
    assert pq.ParquetFile(tmp_path / "wide.parquet").metadata.serialized_size > 64 * 1024


def test_a_bad_footer_is_unreadable_input_never_a_crash(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"a": np.arange(300.0), "t": [f"x{i}" for i in range(300)]}), buffer, row_group_size=30)
    data = buffer.getvalue()
    for bad, reason in ((data[:-1], "PAR1"), (data[:-4] + b"PARE", "encrypted"), (data[:8], "too short"),
                        (data[:-8] + (10**6).to_bytes(4, "little") + b"PAR1", "does not fit")):
        path = tmp_path / "bad.parquet"
        path.write_bytes(bad)
        with pytest.raises(UnreadableInputError, match=reason):
            row_groups(FileSource(path))
    length = int.from_bytes(data[-8:-4], "little")
    footer = data[-8 - length:-8]
    chance = random.Random(5)
    for _ in range(400):  # damaged footers: decoded or refused, nothing else
        damaged = bytearray(footer)
        for _ in range(chance.randint(1, 4)):
            damaged[chance.randrange(len(damaged))] = chance.randrange(256)
        with contextlib.suppress(UnreadableInputError):
            decode(bytes(damaged[:chance.randrange(len(damaged))] if chance.random() < 0.2 else damaged))
    deep = bytes([0x1C]) * 100_000  # struct within struct ...: bounded nesting, not a RecursionError
    with pytest.raises(UnreadableInputError, match="nested too deep"):
        decode(deep)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _i64(field_delta: int, value: int) -> bytes:
    """A struct field of type i64 (compact protocol: zigzag varint) ``field_delta`` after the one before."""
    return bytes([field_delta << 4 | 6]) + _varint((value << 1) ^ (value >> 63) if value >= 0 else (-value << 1) - 1)


def _footer(num_rows: int | None, groups: list[tuple[int, int]], raw_rows: bytes | None = None) -> bytes:
    """A crafted ``FileMetaData``: num_rows (field 3) and row_groups (field 4), each with one column chunk whose
    first data page is at the given offset; ``raw_rows`` replaces the first group's row-count varint."""
    body = _i64(3, num_rows) if num_rows is not None else b""
    body += bytes([(1 if num_rows is not None else 4) << 4 | 9]) + bytes([0xF0 | 12]) + _varint(len(groups))
    for index, (rows, offset) in enumerate(groups):
        meta_data = _i64(9, offset) + b"\x00"  # ColumnMetaData: data_page_offset (field 9)
        columns = bytes([0x19, 0x1C, 0x3C]) + meta_data + b"\x00"  # columns: [ColumnChunk{meta_data (field 3)}]
        count = bytes([0x26]) + raw_rows if raw_rows is not None and index == 0 else _i64(2, rows)
        body += columns + count + b"\x00"
    return body + b"\x00"


def _file(tmp_path: Path, footer: bytes, data_bytes: int = 4000) -> FileSource:
    path = tmp_path / "crafted.parquet"
    path.write_bytes(b"PAR1" + bytes(data_bytes) + footer + len(footer).to_bytes(4, "little") + b"PAR1")
    return FileSource(path)


def test_crafted_footers_are_refused_never_split_wrong(tmp_path: Path) -> None:
    """A footer that decodes but cannot be split safely, or holds numbers no Parquet file has, is unreadable:
    the input then runs whole (one job), never split into parts that lose or repeat rows, never a crash."""
    good = [(10, 4), (20, 1000), (30, 2000), (40, 3000)]
    assert row_groups(_file(tmp_path, _footer(100, good))) == good
    assert [r.first_line for r in split(_file(tmp_path, _footer(100, good)), ".parquet", 900)] == [1, 11, 31, 61]
    cases = {
        "not in file order": _footer(100, [(10, 4), (20, 2000), (30, 1000), (40, 3000)]),
        "do not add up": _footer(99, good),
        "do not add up to the file's None": _footer(None, good),
        "over 64 bits": _footer(100, good, raw_rows=b"\xff" * 9 + b"\x7f"),
        "too long": _footer(100, good, raw_rows=b"\x80" * 10 + b"\x01"),
        "no valid row count": _footer(100, [(-10, 4), (110, 1000)]),
        "a list is longer": _i64(3, 100) + bytes([0x29, 0xF6]) + _varint(2**62) + b"\x00",
    }
    for reason, footer in cases.items():
        with pytest.raises(UnreadableInputError, match=reason):
            split(_file(tmp_path, footer), ".parquet", 900)
    inside_footer = _footer(100, [*good[:3], (40, 4000 + 6)])  # starts in the footer's own bytes
    with pytest.raises(UnreadableInputError, match="starts past its data"):
        row_groups(_file(tmp_path, inside_footer))
    doubles = _footer(100, good)[:-1] + bytes([0xA9, 0xF7]) + _varint(1_000_000) + bytes(8_000_000) + b"\x00"
    assert row_groups(_file(tmp_path, doubles)) == good  # a long list of fixed-width values is skipped at once


def test_output_format_key_suffix() -> None:
    assert output_format_of("inputs/m/jobs/abc@output=parquet@id=customer.csv") == "parquet"
    assert output_format_of("inputs/m/day@output=jsonl.parquet") == "jsonl"
    assert id_column_of("inputs/m/jobs/abc@output=parquet@id=customer.csv") == "customer"  # the id comes last
    assert output_format_of("inputs/m/day@output=csv.csv") is None
    assert output_format_of("inputs/m/day.parquet") is None
    odd = {  # key: (output format, id column)
        "inputs/m/a@id=customer@output=parquet.csv": ("parquet", "customer"),  # either order
        "inputs/m/a@output=jsonl@output=parquet.jsonl": ("parquet", None),  # named twice: the last one
        "inputs/m/a@id=x@id=y.csv": (None, "y"),
        "inputs/m/a@output=parquet@id=customer.CSV": ("parquet", "customer"),  # the extension in any case
        "inputs/m/d@output=parquet@id=k/a.csv": (None, None),  # a folder's suffixes are part of the path
        "inputs/m/é@output=parquet@id=clé.csv": (None, None),  # not a column a suffix carries: no suffix
        "inputs/m/a@output=parquet@id=k.npy": ("parquet", None),  # .npy rows have no columns
        "inputs/m/a@output=parquet.csv\n": (None, None),  # not a .csv (input_format refuses it too)
        "inputs/m/a@output=parquet@id=a.b.parquet": ("parquet", "a.b"),
        "inputs/m/a@output=xml@id=k.csv": (None, "k"),
        "inputs/m/a@id=k@output=xml.csv": (None, None),
    }
    for key, expected in odd.items():
        assert (output_format_of(key), id_column_of(key)) == expected, key


@pytest.fixture
def no_pyarrow(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The batch Lambda: pyarrow cannot be imported (and the processor knows it)."""
    import functions.batch.process as process

    monkeypatch.setattr(process, "pyarrow_available", lambda: False)
    for name in [m for m in sys.modules if m == "pyarrow" or m.startswith("pyarrow.")]:
        monkeypatch.setitem(sys.modules, name, None)  # `import pyarrow` raises ImportError
    yield


def _upload(bucket: DataBucket, key: str, body: bytes, consumer: str | None = None) -> InputObject:
    bucket.s3.put_object(Bucket=bucket.name, Key=key, Body=body,
                         **({"Metadata": {"maas-consumer": consumer}} if consumer else {}))
    head = bucket.s3.head_object(Bucket=bucket.name, Key=key)
    return InputObject(bucket.name, key, head["ETag"].strip('"'), head["ContentLength"])


def _run_children(count: int, item: InputObject, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each AWS Batch array child in this process, with its own index (the environment the job gets)."""
    from functions.batch.array_worker import main

    for name, value in {"MAAS_STORE": settings.store, "MAAS_S3_ENDPOINT_URL": str(settings.s3_endpoint_url),
                        "MAAS_CACHE_DIR": settings.cache_dir, "MAAS_BATCH_THREADS": "1",
                        "MAAS_FANOUT_BUCKET": item.bucket, "MAAS_FANOUT_KEY": item.key,
                        "MAAS_FANOUT_ETAG": item.etag, "MAAS_FANOUT_VERSION": "1"}.items():
        monkeypatch.setenv(name, value)
    try:
        for index in range(count):
            monkeypatch.setenv("MAAS_BATCH_HOST_PROCESSES", "1" if index == 1 else "0")  # the GPU worker's way
            monkeypatch.setenv("AWS_BATCH_JOB_ARRAY_INDEX", str(index))
            monkeypatch.setenv("AWS_BATCH_JOB_ID", f"job-array:{index}")
            get_settings.cache_clear()
            assert main([]) == 0
    finally:
        get_settings.cache_clear()


def test_parquet_in_s3_splits_across_array_children_by_row_groups(
        data_bucket: DataBucket, fp32_processor: Processor, batch_settings: Settings, fp32_store: LocalStore,
        moto_endpoint: str, state_machine: str, no_pyarrow: None,  # noqa: F811 (the fixture)
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from functions.batch.fanout_handler import split_step
    from functions.batch.merge import merge_s3

    source = _diabetes(tmp_path / "day.parquet", rows=240, row_group_size=30)  # 8 row groups, 7 null cells
    body = source.read_bytes()
    manifest = fp32_processor.cache.manifest(MODEL, "1")
    work = estimate(FileSource(source), ".parquet", manifest, Limits())
    assert (work.rows, work.row_groups) == (240, 8)
    limits = Limits(fanout=True, batch=True, batch_part_seconds=work.seconds / 3.5)  # work for 4 children
    client = boto3.client("batch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    keys = tmp_path / "keys.db"
    monkeypatch.setenv("MAAS_KEYS", str(keys))
    job_key = f"inputs/{MODEL}:1/jobs/{'a' * 32}.parquet"  # a job input: its rows count to its consumer
    with Stubber(client):  # no SubmitJob is expected: a split input goes through the state machine
        processor = Processor(fp32_processor.cache, fp32_processor.data, AwsBatchDispatcher("q", "d", client),
                              router=Router(limits, StepFunctionsLauncher(state_machine, endpoint_url=moto_endpoint)))
        item = _upload(data_bucket, job_key, body, consumer="team-p")
        assert processor.process(item) == "batch"
        assert processor.process(item) == "batch"  # a duplicate event: the same execution
    (execution,) = executions(moto_endpoint, state_machine)
    payload = json.loads(execution["input"])
    assert payload["route"] == "batch" and payload["key"] == job_key
    prefix = f"outputs/{MODEL}/1/jobs/{'a' * 32}.parquet.{item.etag}"
    plan = orjson.loads(data_bucket.get(f"{prefix}/plan.json"))
    assert plan["route"] == "batch" and plan["split_by"] == "row groups" and plan["parts"] == 4
    assert plan["estimate"]["rows"] == 240 and plan["estimate"]["row_groups"] == 8
    assert "pyarrow" in plan["reason"] and "array job of 4 GPU children split by row groups" in plan["reason"]
    assert plan["execution"] == execution["executionArn"]

    assert payload["output_format"] == "jsonl"  # the array children's MAAS_FANOUT_OUTPUT_FORMAT
    split_event = {k: payload.get(k, v) for k, v in load_event("fanout-split").items()}  # as the state machine
    split = split_step(processor.data, split_event)  # the Lambda's split step: still no pyarrow
    ranges = orjson.loads(data_bucket.get(split["ranges_key"]))
    assert split["parts"] == len(ranges) >= 3
    firsts = [r["range"]["first_line"] for r in ranges]
    assert firsts[0] == 1 and firsts == sorted(set(firsts)) and all(f % 30 == 1 for f in firsts)  # whole groups
    with pytest.raises(ImportError):
        import pyarrow.parquet  # noqa: F401
    monkeypatch.undo()  # the array children run in the AWS Batch image: pyarrow is there
    import functions.batch.runner as runner

    pools: list[int] = []
    real_pool = runner._host_pool
    monkeypatch.setattr(runner, "_host_pool", lambda n, *rest: pools.append(n) or real_pool(n, *rest))  # a spy
    _run_children(split["parts"], item, dataclasses.replace(batch_settings, store=fp32_store.uri), monkeypatch)
    assert pools == [0, 1] + [0] * (split["parts"] - 2)  # child 1 encoded and formatted in a host process
    monkeypatch.setenv("MAAS_KEYS", str(keys))
    event = {"mode": "merge", **{k: payload[k] for k in ("bucket", "key", "etag", "version")}}
    merged = merge_s3(processor.data, event)
    assert merge_s3(processor.data, event)["status"] == "duplicate"
    report = orjson.loads(data_bucket.get(f"{prefix}/report.json"))
    assert merged["status"] == report["status"] == "ok" and report["parts"]["total"] == len(ranges)
    assert report["rows"]["in"] == report["rows"]["ok"] + report["rows"]["failed"] == 240

    single = _upload(data_bucket, f"inputs/{MODEL}/one/day.parquet", body)  # one worker, pyarrow present
    assert fp32_processor.process(single) == "done"
    one = f"outputs/{MODEL}/1/one/day.parquet.{single.etag}"
    assert report["rows"] == orjson.loads(data_bucket.get(f"{one}/report.json"))["rows"] == {
        "in": 240, "ok": 233, "failed": 7}
    for name in ("predictions.jsonl", "errors.jsonl"):
        joined = b"".join(data_bucket.get(f"{prefix}/parts/{i:05d}/{name}") for i in range(len(ranges)))
        assert joined == data_bucket.get(f"{one}/{name}"), name
    from functions.consumers.sqlite_store import SqliteStore

    assert [(u.consumer, u.rows) for u in SqliteStore(keys).usage()] == [("team-p", 233)]  # counted once


def test_small_parquet_stays_one_aws_batch_job(data_bucket: DataBucket, processor: Processor, moto_endpoint: str,
                                               state_machine: str, no_pyarrow: None,  # noqa: F811
                                               tmp_path: Path) -> None:
    client = boto3.client("batch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    router = Router(Limits(fanout=True, batch=True), StepFunctionsLauncher(state_machine, endpoint_url=moto_endpoint))
    item = _upload(data_bucket, f"inputs/{MODEL}/small@output=parquet.parquet",
                   _diabetes(tmp_path / "s.parquet", rows=60, row_group_size=20).read_bytes())
    with Stubber(client) as stub:
        stub.add_response("submit_job", {"jobId": "job-1", "jobName": "n"}, {
            "jobName": ANY, "jobQueue": "q", "jobDefinition": "d", "containerOverrides": ANY})
        dispatching = Processor(processor.cache, processor.data, AwsBatchDispatcher("q", "d", client), router=router)
        assert dispatching.process(item) == "dispatched"
        assert dispatching.process(item) == "duplicate"
    assert executions(moto_endpoint, state_machine) == []
    prefix = f"outputs/{MODEL}/1/small@output=parquet.parquet.{item.etag}"
    plan = orjson.loads(data_bucket.get(f"{prefix}/plan.json"))
    assert plan["route"] == "batch" and plan["parts"] == 1 and plan["split_by"] is None
    assert "one AWS Batch job (too little work to split)" in plan["reason"] and plan["estimate"]["row_groups"] == 3
    assert orjson.loads(data_bucket.get(f"{prefix}/dispatch.json"))["job_id"] == "job-1"


def test_a_footer_the_lambda_cannot_read_goes_to_one_job(data_bucket: DataBucket, processor: Processor,
                                                         no_pyarrow: None) -> None:
    client = boto3.client("batch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    item = _upload(data_bucket, f"inputs/{MODEL}/broken.parquet", b"PAR1" + b"\x00" * 64)
    with Stubber(client) as stub:
        stub.add_response("submit_job", {"jobId": "job-2", "jobName": "n"}, {
            "jobName": ANY, "jobQueue": "q", "jobDefinition": "d", "containerOverrides": ANY})
        assert Processor(processor.cache, processor.data, AwsBatchDispatcher("q", "d", client)).process(
            item) == "dispatched"  # the worker, with pyarrow, writes its failure report
    plan = orjson.loads(data_bucket.get(f"outputs/{MODEL}/1/broken.parquet.{item.etag}/plan.json"))
    assert plan["parts"] == 1 and "footer could not be read here" in plan["reason"]



def test_with_pyarrow_a_broken_footer_gets_the_runners_failure_report(
        data_bucket: DataBucket, processor: Processor, moto_endpoint: str,
        state_machine: str) -> None:  # noqa: F811
    processor.router = Router(Limits(fanout=True), StepFunctionsLauncher(state_machine, endpoint_url=moto_endpoint))
    item = _upload(data_bucket, f"inputs/{MODEL}/torn.parquet", b"PAR1" + b"\x00" * 64)
    assert processor.process(item) == "failed"  # planning could not read it; neither could the runner
    (key,) = data_bucket.keys("outputs/_failed/")
    assert "Parquet" in orjson.loads(data_bucket.get(key))["error"]
    assert executions(moto_endpoint, state_machine) == []
