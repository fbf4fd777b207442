"""The numpy explainer against the ``shap`` library (test-only dependency), same background, same model function:
exact Shapley values on diabetes-mlp (10 features), rank agreement on cancer-mlp (30 features)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from functions.core.explain.background import load_background
from functions.core.explain.explainer import explain
from functions.core.model_cache import LoadedModel, ModelCache
from functions.core.settings import Settings
from functions.core.store import LocalStore
from tests.api.samples import CANCER_ROW, DIABETES_ROW
from tests.pinned import pinned_copy

shap = pytest.importorskip("shap")


@pytest.fixture(scope="module")
def fp32_cache(built_store: LocalStore, explain_settings: Settings,
               tmp_path_factory: pytest.TempPathFactory) -> ModelCache:
    """fp32 whatever this machine's build serves: shap runs its own batches, and a dynamically quantized model's
    outputs move with the rows run beside them, so only a row-independent graph gives shap's numbers."""
    store = pinned_copy(built_store, tmp_path_factory.mktemp("fp32") / "store", "fp32", ["diabetes-mlp", "cancer-mlp"])
    return ModelCache(store, explain_settings)


def model_function(model: LoadedModel, column: int) -> Any:
    """Raw feature rows -> the explained output, through the version's own preprocessor and session."""
    def f(rows: np.ndarray) -> np.ndarray:
        tensors = model.preprocessor.encode(np.asarray(rows, dtype=np.float64))
        return np.asarray(model.session.run(None, tensors)[0], dtype=np.float64)[:, column]
    return f


def reference(model: LoadedModel, row: list[float], column: int, nsamples: int) -> np.ndarray:
    background = load_background(model.manifest, model.files).rows
    explainer = shap.KernelExplainer(model_function(model, column), background)
    np.random.seed(0)  # shap samples coalitions with numpy's global generator: a fixed reference
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = explainer.shap_values(np.asarray([row]), nsamples=nsamples, l1_reg=False, silent=True)
    return np.asarray(values, dtype=np.float64).reshape(-1)


def test_diabetes_exact_shapley_values_match_shaps_full_enumeration(fp32_cache: ModelCache,
                                                                     explain_settings: Settings) -> None:
    model = fp32_cache.get("diabetes-mlp")
    [answer] = explain(model, [DIABETES_ROW], explain_settings)
    assert answer["method"] == "exact" and answer["evaluations"] == (2 ** 10 - 1) * 100 + 1
    ours = np.array([answer["attributions"][f] for f in DIABETES_ROW])
    row = [DIABETES_ROW[f] for f in DIABETES_ROW]
    theirs = reference(model, row, 0, nsamples=2 ** 11)  # more than 2^10 - 2: shap enumerates every coalition
    np.testing.assert_allclose(ours, theirs, atol=1e-3)
    assert abs(answer["base_value"] + ours.sum() - answer["output"]) < 1e-4


def test_cancer_sampled_ranking_agrees_with_shaps_kernel_explainer(fp32_cache: ModelCache,
                                                                   explain_settings: Settings) -> None:
    from scipy.stats import spearmanr

    model = fp32_cache.get("cancer-mlp")
    [answer] = explain(model, [CANCER_ROW], explain_settings)
    assert answer["method"] == "sampled"
    column = model.manifest.labels.index(answer["label"])  # type: ignore[union-attr]
    ours = np.array(list(answer["attributions"].values()))
    theirs = reference(model, CANCER_ROW, column, nsamples=12_000)
    top = np.argsort(-np.abs(theirs))[:10]
    rho = spearmanr(ours[top], theirs[top]).statistic
    print(f"cancer-mlp: Spearman {rho:.3f} on shap's top 10 features")
    assert rho >= 0.9
    assert abs(answer["base_value"] + ours.sum() - answer["output"]) < 1e-4
