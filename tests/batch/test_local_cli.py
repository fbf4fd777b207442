"""``maas batch`` on local files, with the same runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from functions.core.store import LocalStore
from tests.batch.conftest import DIABETES_ROW, csv_bytes

ROOT = Path(__file__).resolve().parents[2]


def maas_batch(store: LocalStore, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "maas", "batch", *args, "--store", store.uri], cwd=ROOT,
                          env={**os.environ, "MAAS_BATCH_CHUNK_ROWS": "50"}, capture_output=True, text=True,
                          timeout=300, check=False)


def test_maas_batch_writes_predictions_errors_and_report(built_store: LocalStore, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    rows: list[list[object]] = [DIABETES_ROW] * 120
    rows.insert(60, ["bad", *DIABETES_ROW[1:]])
    source.write_bytes(csv_bytes(rows))
    result = maas_batch(built_store, "diabetes-mlp", "--input", str(source), "--output", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "rows in 121, predicted 120, failed 1" in result.stdout
    assert "rows" in result.stderr  # the progress display
    predictions = (tmp_path / "out/predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 120 and json.loads(predictions[0])["line"] == 2
    assert json.loads((tmp_path / "out/errors.jsonl").read_text())["line"] == 62
    report = json.loads((tmp_path / "out/report.json").read_text())
    assert report["rows"] == {"in": 121, "ok": 120, "failed": 1}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["errors.jsonl", "predictions.jsonl", "report.json"]

    again = maas_batch(built_store, "diabetes-mlp", "--input", str(source), "--output", str(tmp_path / "out"))
    assert again.returncode == 6 and "already holds" in again.stderr
    assert "ETA" not in again.stderr  # refused before a progress bar is drawn


def test_maas_batch_text_and_npy(built_store: LocalStore, tmp_path: Path) -> None:
    texts = tmp_path / "texts.jsonl"
    texts.write_text('"The striker scored twice."\n"Heavy rain tonight."\n')
    assert maas_batch(built_store, "text-lstm", "--input", str(texts), "--output", str(tmp_path / "t")).returncode == 0
    labels = [json.loads(line)["label"] for line in (tmp_path / "t/predictions.jsonl").read_text().splitlines()]
    assert len(labels) == 2
    images = tmp_path / "images.npy"
    np.save(images, np.zeros((10, 8, 8)))
    result = maas_batch(built_store, "digits-cnn", "--input", str(images), "--output", str(tmp_path / "i"))
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "i/predictions.jsonl").read_text().splitlines()) == 10


def test_maas_batch_unknown_model_and_format(built_store: LocalStore, tmp_path: Path) -> None:
    source = tmp_path / "x.csv"
    source.write_bytes(csv_bytes([DIABETES_ROW]))
    unknown = maas_batch(built_store, "nope", "--input", str(source), "--output", str(tmp_path / "o"))
    assert unknown.returncode == 3 and "no published version" in unknown.stderr
    sheet = tmp_path / "x.xlsx"
    sheet.write_bytes(b"PK")
    bad = maas_batch(built_store, "diabetes-mlp", "--input", str(sheet), "--output", str(tmp_path / "o"))
    assert bad.returncode != 0 and "unsupported input format" in bad.stderr
    parquet = tmp_path / "x.parquet"
    parquet.write_bytes(b"PAR1")
    broken = maas_batch(built_store, "diabetes-mlp", "--input", str(parquet), "--output", str(tmp_path / "o"))
    assert broken.returncode == 10 and "not a readable Parquet file" in broken.stderr
    assert not (tmp_path / "o").exists()
