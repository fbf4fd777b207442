"""The manifest's pruning record: optional (old manifests load and write unchanged), every field checked."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from functions.core.manifest import Manifest
from functions.core.records import RecordError
from tests.unit.test_records import manifest_dict


def pruning(**changes: Any) -> dict[str, Any]:
    level = {"level": 0.5, "params": 10, "macs": 20, "kept": {"0:neurons": 8}, "bytes": 100,
             "latency_ms_b1": 0.01, "latency_ms_b256": 1.0, "metric": 0.9, "parity_max_abs_diff": 1e-7,
             "passed": True, "reason": "passed the gates"}
    doc = {"method": "structured", "library": "torch-pruning 1.6.1", "criterion": "L2 magnitude",
           "units": ["neurons"], "recovery": "1 epoch", "params": 20, "macs": 40, "widths": {"0:neurons": 16},
           "levels": [level], "chosen_level": 0.5, "reason": "level 0.5"}
    doc.update(changes)
    return doc


def test_a_manifest_without_pruning_writes_no_pruning_key() -> None:
    manifest = Manifest.from_json(orjson.dumps(manifest_dict()))
    assert manifest.pruning is None and "pruning" not in manifest.to_dict()


def test_a_pruning_record_round_trips() -> None:
    doc = manifest_dict(pruning=pruning())
    manifest = Manifest.from_json(orjson.dumps(doc))
    assert manifest.pruning is not None and manifest.pruning.levels[0].kept == {"0:neurons": 8}
    assert manifest.to_dict() == doc


@pytest.mark.parametrize(("record", "problem"), [
    (pruning(chosen_level=0.75), "0.75 is not a level that passed"),
    (pruning(levels=[{**pruning()["levels"][0], "passed": False}]), "0.5 is not a level that passed"),
    (pruning(levels=[{**pruning()["levels"][0], "level": 1.5}]), "1.5 is not a fraction between 0 and 1"),
    (pruning(levels=[{**pruning()["levels"][0], "macs": -1}]), "-1 is negative"),
    (pruning(levels=[{**pruning()["levels"][0], "kept": {"0:neurons": -8}}]), "-8 is negative"),
    (pruning(widths={"0:neurons": "<b>16</b>"}), "expected an integer, got string"),
    (pruning(params="many"), "expected an integer, got string"),
    (pruning(extra=1), "unknown field"),
])
def test_pruning_errors_name_the_record_and_the_problem(record: dict[str, Any], problem: str) -> None:
    with pytest.raises(RecordError) as error:
        Manifest.from_json(orjson.dumps(manifest_dict(pruning=record)))
    assert error.value.field == "pruning" and problem in error.value.problem
