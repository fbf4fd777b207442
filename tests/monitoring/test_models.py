"""Reference profiles of the quick-built demo models, drift of their held-out splits and of shifted copies,
through the library and the ``maas drift`` command."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from functions.core import catalog
from functions.core.integrity import verify_bytes
from functions.core.model_cache import ModelCache
from functions.core.profile import PROFILE_FILE, DriftTracker, input_matrix, prediction_column, read_profile
from functions.core.settings import Settings
from functions.core.store import LocalStore
from maas.drift import DRIFT_EXIT_CODE
from model_build.recipes import load_recipe
from tests.conftest import DEMO_RECIPES
from tests.monitoring.conftest import OLD_VERSION

OUT_OF_DOMAIN = [f"zorblat {w} quintessa vexillum {w}plon draxis" for w in
                 ("ferro", "mulch", "snorp", "glint", "wabe", "tove", "borogove", "jabber")] * 5


def _drift(store: LocalStore, name: str, instances: Any) -> dict[str, Any]:
    model = ModelCache(store, Settings(store=store.uri)).get(name, None, None)
    profile = read_profile(store, model.manifest)
    assert profile is not None
    tracker = DriftTracker(profile)
    tracker.add_inputs(input_matrix(model.manifest.preprocessing, instances, model.preprocessor))
    output = model.session.run(None, model.preprocessor.encode(instances))[0]
    tracker.add_predictions(prediction_column(model.manifest.task, output, profile.prediction))
    return tracker.report()


@pytest.mark.parametrize("name", DEMO_RECIPES)
def test_every_build_ships_a_checksummed_json_profile(monitor_store: LocalStore, name: str) -> None:
    manifest = catalog.read_manifest(monitor_store, name, "1")
    entry = manifest.file(PROFILE_FILE)
    data = monitor_store.get_bytes(f"{catalog.version_prefix(name, '1')}/{PROFILE_FILE}")
    verify_bytes(data, entry)
    profile = orjson.loads(data)
    assert profile["features"] and all(len(f["proportions"]) == len(f["edges"]) + 1 for f in profile["features"])
    assert sum(profile["prediction"]["column"]["proportions"]) == pytest.approx(1.0, abs=1e-4)
    expected = {"digits-cnn": "label", "cancer-mlp": "label", "text-lstm": "label", "diabetes-mlp": "value"}
    assert profile["prediction"]["kind"] == expected[name]


@pytest.mark.parametrize("name", DEMO_RECIPES)
def test_held_out_split_shows_no_drift(monitor_store: LocalStore, name: str) -> None:
    data = load_recipe(name).load_data(True)
    report = _drift(monitor_store, name, list(data.x_test) if name == "text-lstm" else np.asarray(data.x_test))
    assert report["status"] in ("ok", "watch"), report
    assert report["features_over_threshold"] == [] and report["prediction_drift"] != "drift"


def _cancer(shift: bool = False) -> tuple[list[str], np.ndarray]:
    recipe = load_recipe("cancer-mlp")
    data = recipe.load_data(True)
    names = list(recipe.fit_preprocessing(data).spec.features)  # type: ignore[union-attr]
    x = np.asarray(data.x_test, dtype=np.float64).copy()
    if shift:
        x[:, names.index("worst area")] *= 2.0
        x[:, names.index("mean texture")] += 1.5 * x[:, names.index("mean texture")].std()
    return names, x


def test_scaled_and_offset_features_are_flagged_exactly(monitor_store: LocalStore) -> None:
    _, x = _cancer(shift=True)
    report = _drift(monitor_store, "cancer-mlp", x)
    assert report["status"] == "drift"
    assert sorted(report["features_over_threshold"]) == ["mean texture", "worst area"]


def test_changed_label_mix_is_flagged_as_prediction_drift(monitor_store: LocalStore) -> None:
    data = load_recipe("cancer-mlp").load_data(True)
    x = np.concatenate([np.asarray(data.x_test), np.asarray(data.x_val)])
    y = np.concatenate([data.y_test, data.y_val])
    malignant = x[y == 0]  # label 0 is malignant in load_breast_cancer
    report = _drift(monitor_store, "cancer-mlp", np.concatenate([malignant, malignant, x[y == 1][:10]]))
    assert report["prediction_drift"] == "drift"
    assert report["prediction"]["worst_bins"][0]["bin"] in ("malignant", "benign")


def test_text_model_flags_out_of_domain_text(monitor_store: LocalStore) -> None:
    report = _drift(monitor_store, "text-lstm", OUT_OF_DOMAIN)
    unknown = next(f for f in report["features"] if f["name"] == "unknown_rate")
    assert unknown["verdict"] == "drift" and "unknown_rate" in report["features_over_threshold"]
    in_domain = _drift(monitor_store, "text-lstm", list(load_recipe("text-lstm").load_data(True).x_test))
    assert next(f for f in in_domain["features"] if f["name"] == "unknown_rate")["verdict"] == "ok"


def _maas(store: LocalStore, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MAAS_STORE": store.uri}
    return subprocess.run([sys.executable, "-m", "maas", *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def _csv(path: Path, names: list[str], x: np.ndarray) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(names)
        writer.writerows(x.tolist())
    return path


def test_cli_table_json_and_exit_codes(monitor_store: LocalStore, tmp_path: Path) -> None:
    names, x = _cancer()
    ok = _maas(monitor_store, "drift", "cancer-mlp", "--version", "1", "--input",
               str(_csv(tmp_path / "a.csv", names, x)))
    assert ok.returncode == 0, ok.stderr
    assert "mean texture" in ok.stdout and "prediction: predicted label" in ok.stdout
    _, shifted = _cancer(shift=True)
    bad = _maas(monitor_store, "drift", "cancer-mlp", "--input", str(_csv(tmp_path / "b.csv", names, shifted)),
                "--json")
    assert bad.returncode == DRIFT_EXIT_CODE, bad.stderr
    report = orjson.loads(bad.stdout)
    assert sorted(report["features_over_threshold"]) == ["mean texture", "worst area"]
    worst = next(f for f in report["features"] if f["name"] == "worst area")["worst_bins"][0]
    assert worst["current"] > worst["reference"]


def test_versions_without_a_profile_report_no_reference(monitor_store: LocalStore, tmp_path: Path) -> None:
    names, x = _cancer(shift=True)
    result = _maas(monitor_store, "drift", "cancer-mlp", "--version", OLD_VERSION, "--input",
                   str(_csv(tmp_path / "c.csv", names, x)))
    assert result.returncode == 0 and "no reference" in result.stdout
    missing = _maas(monitor_store, "drift", "cancer-mlp", "--input", str(tmp_path / "absent.csv"))
    assert missing.returncode == 10 and "absent.csv" in missing.stderr


def test_batch_report_carries_the_drift_summary_of_its_rows(monitor_store: LocalStore, tmp_path: Path) -> None:
    from functions.batch.local import run_local

    names, shifted = _cancer(shift=True)
    source = _csv(tmp_path / "rows.csv", names, shifted)
    with source.open("a") as f:
        f.write(",".join(["oops"] * len(names)) + "\n")  # a bad row: reported, not profiled
    settings = Settings(store=monitor_store.uri, batch_chunk_rows=16)  # several chunks
    run_local(ModelCache(monitor_store, settings), "cancer-mlp", source, tmp_path / "out")
    report = orjson.loads((tmp_path / "out" / "report.json").read_bytes())
    assert report["rows"] == {"in": len(shifted) + 1, "ok": len(shifted), "failed": 1}
    assert report["drift"]["rows"] == len(shifted)
    assert sorted(report["drift"]["features_over_threshold"]) == ["mean texture", "worst area"]
    old = run_local(ModelCache(monitor_store, settings), "cancer-mlp", source, tmp_path / "old", version=OLD_VERSION)
    assert old.rows_ok == len(shifted)
    assert orjson.loads((tmp_path / "old" / "report.json").read_bytes())["drift"]["status"] == "no_reference"
