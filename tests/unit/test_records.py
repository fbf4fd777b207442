"""Manifest, alias and settings records: same JSON as before, every field checked, errors naming the field."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from functions.core.catalog import AliasRecord
from functions.core.manifest import Manifest, TabularPreprocessing
from functions.core.records import RecordError
from functions.core.settings import Settings

SHA = "ab" * 32


def manifest_dict(**changes: Any) -> dict[str, Any]:
    """A minimal valid manifest document (as an earlier release wrote it)."""
    doc: dict[str, Any] = {
        "schema_version": 1, "name": "m", "version": "1", "created_at": "2026-01-01T00:00:00+00:00",
        "task": "classification", "description": "d",
        "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 2]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": ["batch", 2]}],
        "preprocessing": {"kind": "tabular", "features": ["a", "b"], "mean": [0.0, 0.0], "std": [1.0, 1.0]},
        "labels": ["no", "yes"], "metric_name": "accuracy", "latency_batch": 256, "baselines": {"majority": 0.5},
        "variants": [{"name": "fp32", "file": "model.fp32.onnx", "precision": "fp32", "target": "cpu",
                      "sha256": SHA, "bytes": 10, "metrics": {"metric": 0.9, "latency_ms_b1": 0.1,
                                                               "latency_ms_b256": None, "parity_max_abs_diff": None},
                      "passed": True, "reason": "r"}],
        "selected": {"cpu": "fp32"}, "selection_reason": "only one", "gates": [],
        "reference_stats": {"mean": [0.0]}, "files": [{"path": "model.fp32.onnx", "sha256": SHA, "bytes": 10}],
        "provenance": {"recipe": "m", "git_commit": None, "libraries": {}, "data_sha256": SHA, "seed": 0,
                       "quick": True, "build_seconds": 1.0},
    }
    doc.update(changes)
    return doc


def test_manifest_round_trips_to_the_same_json() -> None:
    doc = manifest_dict()
    manifest = Manifest.from_json(orjson.dumps(doc))
    assert manifest.to_dict() == doc
    assert list(manifest.to_dict()) == list(doc)  # same key order on disk
    assert isinstance(manifest.preprocessing, TabularPreprocessing)
    assert manifest.variant("fp32").file == "model.fp32.onnx"
    assert manifest.file("model.fp32.onnx").bytes == 10


@pytest.mark.parametrize(("changes", "field"), [
    ({"extra": 1}, "extra"),
    ({"version": 1}, "version"),
    ({"task": "ranking"}, "task"),
    ({"labels": "yes"}, "labels"),
    ({"preprocessing": {"kind": "audio"}}, "preprocessing.kind"),
    ({"preprocessing": {"kind": "tabular", "features": ["a"], "mean": [0], "std": ["x"]}}, "preprocessing.std[0]"),
    ({"files": [{"path": "model.fp32.onnx", "sha256": "../x", "bytes": 10}]}, "files[0].sha256"),
    ({"files": [{"path": "../model.fp32.onnx", "sha256": SHA, "bytes": 10}]}, "files[0].path"),
    ({"files": [{"path": "model.fp32.onnx", "sha256": SHA, "bytes": -1}]}, "files[0].bytes"),
    ({"files": [{"path": "model.fp32.onnx", "sha256": SHA, "bytes": True}]}, "files[0].bytes"),
    ({"selected": {"cpu": "int8"}}, "selected.cpu"),
    ({"files": []}, "selected.cpu"),
    ({"name": "../m"}, "name"),
])
def test_manifest_errors_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(RecordError) as caught:
        Manifest.from_json(orjson.dumps(manifest_dict(**changes)))
    assert caught.value.field == field


def test_missing_field_and_bad_json_are_record_errors() -> None:
    doc = manifest_dict()
    del doc["provenance"]
    with pytest.raises(RecordError, match="provenance: required field missing"):
        Manifest.from_json(orjson.dumps(doc))
    with pytest.raises(RecordError, match="not valid JSON"):
        Manifest.from_json(b'{"name": ')


def test_alias_record_refuses_a_non_version_and_ignores_unknown_keys() -> None:
    record = AliasRecord.from_json(b'{"version": "3", "previous": ["2"], "updated_at": "t", "by": "ci"}')
    assert record.to_dict() == {"version": "3", "previous": ["2"], "updated_at": "t"}
    with pytest.raises(RecordError, match="version"):
        AliasRecord.from_json(b'{"version": 3, "updated_at": "t"}')
    with pytest.raises(RecordError, match="previous"):
        AliasRecord.from_json(b'{"version": "3", "previous": ["../1"], "updated_at": "t"}')


def test_settings_from_env_converts_and_names_the_variable() -> None:
    settings = Settings.from_env({"MAAS_INTRA_OP_THREADS": "4", "MAAS_LOG_PAYLOADS": "true",
                                  "MAAS_ALIAS_TTL_SECONDS": "2.5", "MAAS_PRELOAD": "a, b@prod"})
    assert (settings.intra_op_threads, settings.log_payloads, settings.alias_ttl_seconds) == (4, True, 2.5)
    assert settings.preload == ("a", "b@prod")
    assert dataclasses.replace(settings, intra_op_threads=2).intra_op_threads == 2
    with pytest.raises(ValueError, match="MAAS_INTRA_OP_THREADS"):
        Settings.from_env({"MAAS_INTRA_OP_THREADS": "0"})
    with pytest.raises(ValueError, match="MAAS_MAX_BODY_BYTES"):
        Settings.from_env({"MAAS_MAX_BODY_BYTES": "lots"})
    with pytest.raises(ValueError, match="MAAS_STORE"):
        Settings(store="ftp://x")
