"""What the build adds for explanations: a checksummed background in the version (verified on load, never
served), global importance and the extra evaluation metrics in the manifest and the card."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from functions.core import catalog
from functions.core.errors import ModelUnavailableError
from functions.core.explain.background import MAX_ROWS, NUMERIC_FILE, TEXT_FILE
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from functions.core.store import LocalStore, sha256_file


def version_dir(store: LocalStore, name: str) -> Path:
    return store.root / "models" / name / "versions" / "1"


@pytest.mark.parametrize(("name", "file", "rows"), [("diabetes-mlp", NUMERIC_FILE, MAX_ROWS),
                                                     ("cancer-mlp", NUMERIC_FILE, MAX_ROWS),
                                                     ("digits-cnn", NUMERIC_FILE, 20), ("text-lstm", TEXT_FILE, 0)])
def test_background_is_listed_with_its_checksum(built_store: LocalStore, name: str, file: str, rows: int) -> None:
    manifest = catalog.read_manifest(built_store, name, "1")
    path = version_dir(built_store, name) / file
    assert manifest.file(file).sha256 == sha256_file(path)
    if file == NUMERIC_FILE:
        sample = np.load(io.BytesIO(path.read_bytes()), allow_pickle=False)
        assert sample.dtype == np.float64 and 10 <= len(sample) <= rows + 10 and np.isfinite(sample).all()


def test_a_tampered_background_is_refused_like_any_model_file(built_store: LocalStore, tmp_path: Path) -> None:
    root = tmp_path / "store"
    shutil.copytree(built_store.root, root)
    path = root / "models" / "cancer-mlp" / "versions" / "1" / NUMERIC_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    store = LocalStore(root)
    with pytest.raises(ModelUnavailableError, match="background"):
        ModelCache(store, Settings(store=store.uri)).get("cancer-mlp")


def test_no_route_serves_the_background(explain_client: httpx.Client) -> None:
    for path in ("/v1/models/diabetes-mlp/versions/1/background.npy", "/v1/models/diabetes-mlp/background.npy",
                 "/v1/models/text-lstm/versions/1/background.json"):
        assert explain_client.get(path).status_code == 404
    described = explain_client.get("/v1/models/diabetes-mlp").text
    assert "background" not in described


def test_classifier_evaluation_and_importance(built_store: LocalStore) -> None:
    manifest = catalog.read_manifest(built_store, "cancer-mlp", "1")
    report = manifest.evaluation
    assert report is not None and set(report["per_class"]) == {"malignant", "benign"}
    for row in [*report["per_class"].values(), report["macro"]]:
        assert all(0.0 <= row[key] <= 1.0 for key in ("precision", "recall", "f1"))
    assert report["macro"]["f1"] == pytest.approx(np.mean([r["f1"] for r in report["per_class"].values()]), abs=1e-6)
    assert 0.5 < report["roc_auc"] <= 1.0
    assert manifest.importance is not None and len(manifest.importance) == 30
    assert all(v >= 0 for v in manifest.importance.values())
    card = (version_dir(built_store, "cancer-mlp") / "card.md").read_text()
    assert "## Evaluation" in card and "macro average" in card and "ROC AUC" in card
    assert "![importance.png](importance.png)" in card
    assert manifest.file("importance.png").bytes > 1000


def test_regressor_evaluation_and_image_and_text_importance(built_store: LocalStore) -> None:
    diabetes = catalog.read_manifest(built_store, "diabetes-mlp", "1")
    assert diabetes.evaluation is not None and diabetes.evaluation["mae"] > 0 and diabetes.evaluation["r2"] < 1
    assert "R²" in (version_dir(built_store, "diabetes-mlp") / "card.md").read_text()
    digits = catalog.read_manifest(built_store, "digits-cnn", "1")
    assert digits.importance is not None and len(digits.importance) == 64 and "r7c7" in digits.importance
    assert "roc_auc" not in (digits.evaluation or {})
    text = catalog.read_manifest(built_store, "text-lstm", "1")
    assert text.importance is not None and 0 < len(text.importance) <= 20


def test_metric_helpers_on_known_answers() -> None:
    from model_build.quality import classification_report, evaluation, roc_auc

    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.8, 0.2]])
    y = np.array([0, 0, 1, 1])
    report = classification_report(probabilities, y, ["a", "b"])
    assert report["per_class"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert report["roc_auc"] == pytest.approx(0.75)
    assert roc_auc(np.array([0.5, 0.5]), np.array([True, False])) == 0.5
    regression = evaluation("regression", np.array([[1.0], [2.0], [3.0]]), np.array([1.0, 2.0, 4.0]), None)
    assert regression["mae"] == pytest.approx(1 / 3, abs=1e-6)
    assert regression["r2"] == pytest.approx(1 - 1 / (14 / 3), abs=1e-6)


def test_importance_plot_of_words_the_font_lacks_is_drawn_without_warnings(tmp_path) -> None:
    """Imported text models may rank CJK words: the plot draws boxes for them and raises nothing."""
    import warnings
    from types import SimpleNamespace

    from model_build.explain_build import plot_importance

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_importance({"日本語": 1.0, "words": 0.5}, SimpleNamespace(spec=None), tmp_path / "importance.png")
    assert (tmp_path / "importance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
