"""Build-time explanation data: the version's background sample, global importance (mean |attribution| over
held-out instances, explained with the serving code itself) and its plot, plus the extra evaluation metrics."""

from __future__ import annotations

import dataclasses
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from functions.core.explain import background as bg
from functions.core.manifest import (
    ImagePreprocessing,
    Manifest,
    TextVocabPreprocessing,
    TokenizerPreprocessing,
)
from functions.core.settings import get_settings
from model_build import quality
from model_build.contracts import Dataset, Fitted

IMPORTANCE_PLOT = "importance.png"
IMAGE_BACKGROUND_ROWS = 20
"""Images: 2 per digit class; every coalition is averaged over these, so fewer keeps a CNN explanation fast."""
IMPORTANCE_INSTANCES = {False: 40, True: 8}
"""Held-out instances explained for global importance, full and quick builds."""
TOP_WORDS = 20


@dataclass
class ExplainArtifacts:
    """What the build adds: manifest fields, files to publish and plots for the card."""

    manifest: Manifest
    files: dict[str, Path]
    plots: list[str]


def background_sample(data: Dataset, fitted: Fitted, classification: bool, seed: int) -> tuple[str, bytes]:
    """(file name, content): a stratified sample of at most 100 raw training rows (20 images), or the masking
    rule for text."""
    if isinstance(fitted.spec, TextVocabPreprocessing | TokenizerPreprocessing):
        return bg.TEXT_FILE, orjson.dumps({"mask": "remove"})
    x = np.asarray(data.x_train, dtype=np.float64)
    size = IMAGE_BACKGROUND_ROWS if isinstance(fitted.spec, ImagePreprocessing) else bg.MAX_ROWS
    picks = stratified_rows(data.y_train if classification else None, len(x), size, seed)
    return bg.NUMERIC_FILE, bg.numeric_bytes(x[picks])


def stratified_rows(y: npt.NDArray[Any] | None, count: int, size: int, seed: int) -> npt.NDArray[np.int64]:
    """Up to ``size`` row indices, the same share of each class as in ``y`` (at least one each), fixed seed."""
    rng = np.random.default_rng(seed)
    if size >= count:
        return np.arange(count, dtype=np.int64)
    if y is None:
        return np.sort(rng.choice(count, size=size, replace=False)).astype(np.int64)
    classes, counts = np.unique(y, return_counts=True)
    quota = np.maximum(1, np.floor(counts * size / count)).astype(int)
    picks = [rng.choice(np.flatnonzero(y == c), size=min(q, n), replace=False)
             for c, q, n in zip(classes, quota, counts, strict=True)]
    return np.sort(np.concatenate(picks)).astype(np.int64)


def add_explanations(draft: Manifest, data: Dataset, fitted: Fitted, model_path: Path, outputs: npt.NDArray[Any],
                     work: Path, seed: int, quick: bool) -> ExplainArtifacts:
    """Background file, global importance and its plot, and the evaluation metrics, for one version."""
    extras = add_background(draft, data, fitted, model_path, work, seed, quick)
    evaluation = quality.evaluation(draft.task, outputs, data.y_test, draft.labels)
    return dataclasses.replace(extras, manifest=dataclasses.replace(extras.manifest, evaluation=evaluation))


def add_background(draft: Manifest, data: Dataset, fitted: Fitted, model_path: Path, work: Path, seed: int,
                   quick: bool) -> ExplainArtifacts:
    """Background file (from ``data.x_train``, stratified by ``data.y_train``), and global importance over
    ``data.x_test`` with its plot."""
    name, content = background_sample(data, fitted, draft.task == "classification", seed)
    (work / name).write_bytes(content)
    importance = global_importance(draft, fitted, model_path, {name: content},
                                   list(data.x_test)[: IMPORTANCE_INSTANCES[quick]])
    plot_importance(importance, fitted, work / IMPORTANCE_PLOT)
    manifest = dataclasses.replace(draft, importance=importance)
    return ExplainArtifacts(manifest, {name: work / name}, [IMPORTANCE_PLOT])


def global_importance(draft: Manifest, fitted: Fitted, model_path: Path, files: dict[str, bytes],
                      instances: list[Any]) -> dict[str, float]:
    """Mean |attribution| per input over ``instances``, explained exactly as the API explains them."""
    from functions.core.explain.explainer import explain
    from functions.core.model_cache import LoadedModel
    from functions.core.preprocessing import make_preprocessor
    from model_build.evaluate import cpu_session

    settings = get_settings()
    model = LoadedModel(manifest=draft, variant=draft.variant(draft.selected["cpu"]),
                        session=cpu_session(model_path),
                        preprocessor=make_preprocessor(fitted.spec, draft.inputs[0].name, fitted.files),
                        size_bytes=0, load_ms=0.0, files=files)
    natural = [x if isinstance(x, str) else np.asarray(x).tolist() for x in instances]
    answers: list[dict[str, Any]] = []
    for start in range(0, len(natural), settings.explain_max_instances):
        answers += explain(model, natural[start:start + settings.explain_max_instances], settings)
    totals: dict[str, list[float]] = defaultdict(list)
    for answer in answers:
        attributions = answer["attributions"]
        if "tokens" in answer:
            for token, value in zip(answer["tokens"], attributions, strict=True):
                totals[token["text"].lower()].append(abs(value))
        elif isinstance(attributions, dict):
            for feature, value in attributions.items():
                totals[feature].append(abs(value))
        else:
            for (row, col), value in np.ndenumerate(np.asarray(attributions)):
                totals[f"r{row}c{col}"].append(abs(float(value)))
    means = {key: round(float(np.mean(values)), 8) for key, values in totals.items()}
    if isinstance(fitted.spec, TextVocabPreprocessing | TokenizerPreprocessing):
        means = dict(sorted(means.items(), key=lambda kv: -kv[1])[:TOP_WORDS])
    return means


def plot_importance(importance: dict[str, float], fitted: Fitted, path: Path) -> None:
    """A heat map for images, else a ranked horizontal bar chart."""
    from model_build.card import _pyplot

    plt = _pyplot()
    if isinstance(fitted.spec, ImagePreprocessing):
        height, width = fitted.spec.shape
        grid = np.array([[importance.get(f"r{r}c{c}", 0.0) for c in range(width)] for r in range(height)])
        fig, axis = plt.subplots(figsize=(4, 3.6))
        shown = axis.imshow(grid, cmap="viridis")
        fig.colorbar(shown, ax=axis)
        axis.set(title="global importance: mean |SHAP| per pixel", xticks=[], yticks=[])
    else:
        ranked = sorted(importance.items(), key=lambda kv: kv[1])[-TOP_WORDS:]
        fig, axis = plt.subplots(figsize=(6, 0.5 + 0.28 * len(ranked)))
        axis.barh([k for k, _ in ranked], [v for _, v in ranked], color="tab:blue")
        axis.set(title="global importance: mean |SHAP attribution| (held-out)", xlabel="mean |attribution|")
        axis.tick_params(axis="y", labelsize=8)
    with warnings.catch_warnings():  # words in scripts the bundled font lacks are drawn as boxes, not errors
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        fig.tight_layout()
        fig.savefig(path, dpi=90)
    plt.close(fig)
