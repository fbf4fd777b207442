"""The shadow report from comparison records made to order: figures per task, errors, latency, the gate; the
readers over plain, gzipped and nested files and S3; capture readers leaving comparison records alone."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from functions.core.errors import UnreadableInputError
from functions.core.settings import Settings
from functions.core.shadow_report import default_source, meets, percentile, read_comparisons, shadow_report
from functions.core.store import LocalStore
from functions.drift.records import RecordFeeder, capture_files, file_lines, is_capture_file
from tests.rollouts.conftest import MODEL, NO_PROFILE, comparison, lines

A, B = {"label": "benign", "probability": 0.9}, {"label": "malignant", "probability": 0.8}


def _classification() -> list[dict[str, object]]:
    return [
        comparison(time="10:00:01.000", live=[A, A, B], candidate_outputs=[A, B, B], agree=[True, False, True],
                   live_ms=1.0, candidate_ms=2.0),
        comparison(time="10:00:02.000", live=[B], candidate_outputs=[B], agree=[True], live_ms=3.0,
                   candidate_ms=4.0),
        comparison(time="10:00:03.000", error="timeout", live_ms=2.0),
        comparison(time="10:00:04.000", error="busy", live_ms=2.0),
        comparison(time="10:00:05.000", error="timeout", live_ms=2.0),
    ]


def test_classification_figures() -> None:
    report = shadow_report(_classification(), name=MODEL, alias="prod", candidate=None, live=None)
    assert (report["candidate"], report["live_version"], report["live_versions"]) == ("2", "1", ["1"])
    assert (report["task"], report["requests"], report["compared"], report["rows_compared"]) == \
        ("classification", 5, 2, 4)
    assert report["agreement"] == 0.75
    assert report["confusion"] == {"benign": {"benign": 1, "malignant": 1}, "malignant": {"malignant": 2}}
    assert report["candidate_errors"] == {"count": 3, "rate": 0.6, "by_code": {"busy": 1, "timeout": 2}}
    latency = report["latency"]
    assert (latency["live_p50_ms"], latency["candidate_p50_ms"], latency["ratio_p50"]) == (2.0, 3.0, 1.5)
    assert latency["candidate_p99_ms"] == pytest.approx(float(np.percentile([2.0, 4.0], 99)))
    assert "drift" not in report  # no store given


def test_regression_agreement_counts_rows_within_one_percent_or_a_millionth() -> None:
    records = [comparison(task="regression", abs_diff=[0.5, 1e-6, 3.0], rel_diff=[0.01, 5.0, 0.02]),
               comparison(task="regression", time="10:00:01.000", abs_diff=[0.0], rel_diff=[0.0])]
    report = shadow_report(records, name=MODEL, alias="prod", candidate="2", live="1")
    assert report["rows_compared"] == 4 and report["agreement"] == 0.75
    assert report["mae"] == pytest.approx((0.5 + 1e-6 + 3.0) / 4)
    assert report["p99_abs_diff"] == pytest.approx(float(np.percentile([0.5, 1e-6, 3.0, 0.0], 99)))
    assert report["mean_rel_diff"] == pytest.approx((0.01 + 5.0 + 0.02) / 4)


def test_embedding_agreement_is_the_share_at_cosine_099_or_more() -> None:
    cosines = [1.0, 0.99, 0.5, 0.98]
    report = shadow_report([comparison(task="embedding", cosine=cosines)], name=MODEL, alias=None, candidate=None,
                           live=None)
    assert (report["rows_compared"], report["agreement"]) == (4, 0.5)
    assert report["mean_cosine"] == pytest.approx(np.mean(cosines))
    assert report["p01_cosine"] == pytest.approx(float(np.percentile(cosines, 1)))


def test_candidate_live_alias_and_model_select_records() -> None:
    records = [comparison(time="10:00:01.000", candidate="2", agree=[True]),
               comparison(time="10:00:02.000", candidate="3", agree=[False]),
               comparison(time="10:00:03.000", candidate="3", version="2", agree=[True]),
               comparison(time="10:00:04.000", candidate="3", alias="staging", agree=[True]),
               comparison(time="10:00:05.000", candidate="3", model="other", agree=[True]),
               {"maas_capture": 1, "model": MODEL, "version": "1"}]
    latest = shadow_report(records, name=MODEL, alias="prod", candidate=None, live=None)
    assert (latest["candidate"], latest["requests"], latest["live_versions"], latest["live_version"]) == \
        ("3", 2, ["1", "2"], "2")
    assert shadow_report(records, name=MODEL, alias="prod", candidate="3", live="1")["agreement"] == 0.0
    assert shadow_report(records, name=MODEL, alias="prod", candidate="2", live=None)["agreement"] == 1.0
    assert shadow_report(records, name=MODEL, alias=None, candidate="3", live=None)["requests"] == 3
    empty = shadow_report([], name=MODEL, alias="prod", candidate="2", live="1")
    assert (empty["requests"], empty["compared"], empty["agreement"], empty["candidate_errors"]["rate"]) == \
        (0, 0, None, None)


def test_meets_at_its_boundaries() -> None:
    report = {"candidate": "2", "live_version": "1", "agreement": 0.99, "compared": 100}
    assert meets(report, 0.99, 100)[0]
    ok, reason = meets(report, 0.995, 100)
    assert not ok and "0.9900" in reason and "100 compared" in reason and ">= 0.995" in reason
    ok, reason = meets(report, 0.9, 101)
    assert not ok and "too few compared requests" in reason and ">= 101" in reason
    assert not meets({**report, "agreement": None}, 0.0, 0)[0]
    assert meets({**report, "agreement": 99 / 100}, 0.99, 0)[0]  # computed shares compare like the literal


def test_percentile_matches_numpy() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 7.5]
    for q in (0, 1, 50, 90, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert percentile([], 50) is None


def _capture_folder(root: Path) -> None:
    """A capture folder as ``maas serve --capture`` leaves it: capture records, comparison records under
    ``_shadow`` (plain, and a gzipped Firehose-style object without extension in a nested folder)."""
    capture = root / MODEL / "1"
    capture.mkdir(parents=True)
    (capture / "2026-12-04.jsonl").write_text(
        '{"maas_capture":1,"model":"cancer-mlp","version":"1","inputs":[{}],"outputs":[{"label":"benign"}]}\n')
    shadow = root / "_shadow" / MODEL / "1"
    shadow.mkdir(parents=True)
    records = _classification()
    (shadow / "2026-12-04.jsonl").write_bytes(lines(records[:2]) + b"not json but \"maas_shadow\"\n")
    nested = shadow / "2026-12-05" / "deep"
    nested.mkdir(parents=True)
    (nested / "part-0001").write_bytes(gzip.compress(lines(records[2:])))
    os.utime(nested / "part-0001", (2_000_000_000, 2_000_000_000))  # the newest file


def test_read_comparisons_from_folders_files_gzip_and_limit(tmp_path: Path) -> None:
    _capture_folder(tmp_path)
    everything = read_comparisons(str(tmp_path), MODEL)
    assert [r["time"][11:19] for r in everything] == [f"10:00:0{i}" for i in range(1, 6)]
    assert read_comparisons(str(tmp_path / "_shadow"), MODEL, "prod") == everything
    assert read_comparisons(str(tmp_path), MODEL, "staging") == []
    assert read_comparisons(str(tmp_path), "other") == []
    single = tmp_path / "_shadow" / MODEL / "1" / "2026-12-05" / "deep" / "part-0001"
    assert [r["candidate_error"] for r in read_comparisons(str(single), MODEL)] == ["timeout", "busy", "timeout"]
    newest = read_comparisons(str(tmp_path), MODEL, limit=2)  # the newest file is read first, and is enough
    assert [r["time"][11:19] for r in newest] == ["10:00:04", "10:00:05"]
    with pytest.raises(UnreadableInputError, match="does not exist"):
        read_comparisons(str(tmp_path / "missing"), MODEL)


def test_read_comparisons_from_s3(moto_endpoint: str, s3_bucket: str) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=moto_endpoint)
    records = _classification()
    client.put_object(Bucket=s3_bucket, Key=f"shadow/{MODEL}/1/2026-12-04/part-1.gz",
                      Body=gzip.compress(lines(records[:3])))
    client.put_object(Bucket=s3_bucket, Key=f"shadow/{MODEL}/1/2026-12-04/part-2", Body=lines(records[3:]))
    client.put_object(Bucket=s3_bucket, Key=f"shadow/{MODEL}-other/1/2026-12-04/part-1", Body=lines(records))
    found = read_comparisons(f"s3://{s3_bucket}/shadow/{MODEL}/", MODEL, "prod", endpoint_url=moto_endpoint)
    assert found == sorted(records, key=lambda r: str(r["time"]))
    report = shadow_report(found, name=MODEL, alias="prod", candidate=None, live=None)
    assert (report["compared"], report["agreement"]) == (2, 0.75)
    with pytest.raises(UnreadableInputError, match="cannot list"):
        read_comparisons("s3://no-such-bucket-here/shadow/", MODEL, endpoint_url=moto_endpoint)


def test_default_source() -> None:
    assert default_source(MODEL, Settings(data_bucket="data"), env={}) == f"s3://data/shadow/{MODEL}/"
    assert default_source(MODEL, Settings(), env={"MAAS_CAPTURE_DIR": "/srv/cap"}) == f"/srv/cap/_shadow/{MODEL}"
    assert default_source(MODEL, None, env={}) == f".maas/capture/_shadow/{MODEL}"


def test_capture_readers_leave_comparison_records_alone(tmp_path: Path, rollout_store: LocalStore) -> None:
    """A comparison record whose inputs even carry the capture marker is neither a capture file nor a record
    fed to drift."""
    from functions.core import catalog
    from functions.core.profile import DriftTracker, read_profile

    _capture_folder(tmp_path)
    tricky = tmp_path / "_shadow" / MODEL / "1" / "tricky.jsonl"
    tricky.write_bytes(lines([comparison(inputs=[{"maas_capture": 1}], agree=[True])]))
    assert not is_capture_file(tricky)
    assert [p.relative_to(tmp_path).parts[0] for p in capture_files(tmp_path)] == [MODEL]
    manifest = catalog.read_manifest(rollout_store, MODEL, "1")
    profile = read_profile(rollout_store, manifest)
    assert profile is not None
    feeder = RecordFeeder(DriftTracker(profile), manifest.preprocessing, MODEL, "1")
    feeder.add_lines(file_lines([tricky, *capture_files(tmp_path)]))
    assert (feeder.records, feeder.skipped) == (1, 0)


def test_drift_of_the_compared_inputs_against_each_version(rollout_store: LocalStore) -> None:
    from sklearn.datasets import load_breast_cancer

    from functions.core import catalog

    features = catalog.read_manifest(rollout_store, MODEL, "1").preprocessing.features  # type: ignore[union-attr]
    data = load_breast_cancer()
    rows = [dict(zip(data.feature_names.tolist(), row, strict=True)) for row in data.data[:120].tolist()]
    assert set(rows[0]) == set(features)
    records = [comparison(time=f"10:{i // 60:02d}:{i % 60:02d}.000", inputs=rows[i:i + 4], live=[A] * 4,
                          candidate_outputs=[A, A, B, A], agree=[True, True, False, True])
               for i in range(0, 120, 4)]
    report = shadow_report(records, name=MODEL, alias="prod", candidate="2", live=None, store=rollout_store)
    live, candidate = report["drift"]["live"], report["drift"]["candidate"]
    assert (live["version"], live["records"], live["rows"]) == ("1", 30, 120)
    assert (candidate["version"], candidate["records"], candidate["rows"]) == ("2", 30, 120)
    assert live["status"] not in ("no_reference", "no_data") and candidate["prediction_drift"] is not None
    other = shadow_report(records, name=MODEL, alias="prod", candidate="2", live=None, store=rollout_store)
    assert other["drift"] == report["drift"]  # pure: the same records, the same figures
    no_profile = shadow_report([{**r, "candidate": NO_PROFILE} for r in records], name=MODEL, alias="prod",
                               candidate=NO_PROFILE, live=None, store=rollout_store)
    assert no_profile["drift"]["candidate"]["status"] == "no_reference"
    gone = shadow_report([{**r, "candidate": "9"} for r in records], name=MODEL, alias="prod", candidate="9",
                         live=None, store=rollout_store)
    assert gone["drift"]["candidate"]["status"] == "unavailable"
