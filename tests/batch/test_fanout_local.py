"""``maas batch --workers N`` runs the split, parts and merge in processes; the output equals one worker's.

The equality holds for row-independent graphs, so these tests use ``fp32_store``: a dynamically quantized
variant (which a build serves where it measured fastest) scales activations over each run, so its numbers move
with the chunks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from functions.core.store import LocalStore
from tests.batch.conftest import DIABETES_ROW, csv_bytes
from tests.batch.test_local_cli import maas_batch


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_workers_csv_output_equals_one_worker(fp32_store: LocalStore, tmp_path: Path) -> None:
    rows: list[list[object]] = [[*DIABETES_ROW[:2], 20 + i % 13, *DIABETES_ROW[3:]] for i in range(700)]
    rows[10] = ["bad", *DIABETES_ROW[1:]]
    rows[650] = DIABETES_ROW[:3]
    source = tmp_path / "in.csv"
    source.write_bytes(csv_bytes(rows))
    one = maas_batch(fp32_store, "diabetes-mlp", "--input", str(source), "--output", str(tmp_path / "one"))
    two = maas_batch(fp32_store, "diabetes-mlp", "--input", str(source), "--output", str(tmp_path / "two"),
                     "--workers", "3")
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    assert "rows in 700, predicted 698, failed 2" in two.stdout
    first, second = outputs(tmp_path / "one"), outputs(tmp_path / "two")
    assert sorted(second) == ["errors.jsonl", "predictions.jsonl", "report.json"]
    assert second["predictions.jsonl"] == first["predictions.jsonl"]
    assert second["errors.jsonl"] == first["errors.jsonl"]
    report, single = json.loads(second["report.json"]), json.loads(first["report.json"])
    assert report["rows"] == single["rows"] == {"in": 700, "ok": 698, "failed": 2}
    assert report["workers"] == 3 and report["parts"]["total"] >= 3 and report["parts"]["failed"] == []


def test_workers_npy_output_equals_one_worker(fp32_store: LocalStore, tmp_path: Path) -> None:
    source = tmp_path / "digits.npy"
    np.save(source, np.random.default_rng(1).integers(0, 17, size=(333, 8, 8)).astype(np.float32))
    one = maas_batch(fp32_store, "digits-cnn", "--input", str(source), "--output", str(tmp_path / "one"))
    two = maas_batch(fp32_store, "digits-cnn", "--input", str(source), "--output", str(tmp_path / "two"),
                     "--workers", "2")
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    first, second = outputs(tmp_path / "one"), outputs(tmp_path / "two")
    lines = [json.loads(line)["line"] for line in second["predictions.jsonl"].splitlines()]
    assert lines == list(range(1, 334))
    assert second["predictions.jsonl"] == first["predictions.jsonl"]


def test_workers_keep_records_with_quoted_newlines_whole(fp32_store: LocalStore, tmp_path: Path) -> None:
    import csv
    import io

    header = ["customer", "age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for i in range(600):
        writer.writerow([f'c{i}\n"x",\n' if i % 4 == 0 else f"c{i}", *DIABETES_ROW])
    source = tmp_path / "multi.csv"
    source.write_bytes(out.getvalue().encode())
    args = ("--input", str(source), "--id-column", "customer")
    one = maas_batch(fp32_store, "diabetes-mlp", *args, "--output", str(tmp_path / "one"))
    three = maas_batch(fp32_store, "diabetes-mlp", *args, "--output", str(tmp_path / "three"), "--workers", "3")
    assert one.returncode == 0 and three.returncode == 0, three.stderr
    assert "rows in 600, predicted 600, failed 0" in three.stdout
    first, second = outputs(tmp_path / "one"), outputs(tmp_path / "three")
    assert second["predictions.jsonl"] == first["predictions.jsonl"] and second["errors.jsonl"] == b""
    ids = [json.loads(line)["id"] for line in second["predictions.jsonl"].splitlines()]
    assert ids[:2] == ['c0\n"x",\n', "c1"] and len(set(ids)) == 600
