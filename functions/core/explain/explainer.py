"""``explain``: Kernel SHAP attributions per instance, in the same validation and errors as predict.

Each answer holds the prediction (label and probabilities, or value), the explained output (the predicted
class's probability, or the value), the base value (that output averaged over the background, or on the fully
masked text) and one attribution per player; base value + sum(attributions) = explained output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from functions.core.errors import InvalidInputError
from functions.core.explain import kernel_shap
from functions.core.explain.background import NoBackgroundError, load_background
from functions.core.explain.maskers import Masker, NumericMasker, TextMasker, numeric_masker, split_words
from functions.core.inference import run_model, shape_predictions
from functions.core.model_cache import LoadedModel
from functions.core.preprocessing import TabularPreprocessor, TextVocabPreprocessor, TokenizerPreprocessor
from functions.core.settings import ENV_EXPLAIN_MAX_EVALUATIONS, ENV_EXPLAIN_MAX_INSTANCES, Settings

TARGET_COALITIONS = {"tabular": 2048, "image": 256, "text": 512}
"""Coalitions per instance aimed at (exact below this), before the evaluation cap."""
CHUNK_ROWS = {"tabular": 16384, "image": 4096, "text": 64}
"""Model rows per ``session.run`` call."""


class ExplainLimitError(InvalidInputError):
    """A request over an explanation cap (422 ``explain_limit``, naming the setting)."""

    code = "explain_limit"


class NotExplainableError(InvalidInputError):
    """A model whose outputs have no single value to attribute (embeddings)."""

    code = "not_explainable"


def explain(model: LoadedModel, instances: Sequence[Any], settings: Settings) -> list[dict[str, Any]]:
    """Validate like predict, then attribute each instance's explained output to its players."""
    if len(instances) > settings.explain_max_instances:
        raise ExplainLimitError(f"{len(instances)} instances exceed the limit of {settings.explain_max_instances} "
                                f"per explain request ({ENV_EXPLAIN_MAX_INSTANCES})")
    if model.manifest.task not in ("classification", "regression"):
        raise NotExplainableError(f"model {model.name} is an {model.manifest.task} model: only classifiers and "
                                  "regressors can be explained")
    outputs = run_model(model, instances)  # validates exactly as predict does
    background = load_background(model.manifest, model.files)
    answers = shape_predictions(model, outputs)
    for index, (instance, answer, output) in enumerate(zip(instances, answers, outputs, strict=True)):
        column = int(np.argmax(output)) if model.manifest.task == "classification" else 0
        pre = model.preprocessor
        if isinstance(pre, TextVocabPreprocessor | TokenizerPreprocessor):
            text = TextMasker(pre, instance, split_words(instance))
            answer.update(_attribute(model, text, "text", float(output[column]), column, index, settings))
            answer["tokens"] = [{"text": w.text, "start": w.start, "end": w.end} for w in text.words]
            continue
        if background.rows is None:
            raise NoBackgroundError(f"model {model.name} version {model.version} has no numeric background")
        names = pre.features if isinstance(pre, TabularPreprocessor) else None
        numeric = numeric_masker(pre, instance, background.rows, names)
        answer.update(_attribute(model, numeric, "tabular" if names else "image", float(output[column]), column,
                                 index, settings))
        answer["attributions"] = dict(zip(names, answer["attributions"], strict=True)) if names else \
            _pixel_map(answer["attributions"], numeric)
    return answers


def _attribute(model: LoadedModel, masker: Masker, kind: str, predicted: float, column: int, index: int,
               settings: Settings) -> dict[str, Any]:
    """Attributions of ``predicted`` (the instance's output as predict returns it) against the base value.

    The explained output is the prediction itself, not the all-present coalition's value: that value comes from a
    large batched run, where padding (text) and float32 kernels move it in the 4th decimal, and a dynamically
    quantized model's activation scales (computed over the whole batch) move it by about 1e-2."""
    players, per_coalition = masker.players, masker.background_rows
    cap = settings.explain_max_evaluations
    budget = min(TARGET_COALITIONS[kind], cap // per_coalition - 2)
    if players == 0:
        raise InvalidInputError("no words to explain", index)
    if budget < 2 * players:
        raise ExplainLimitError(
            f"explaining {players} {'words' if kind == 'text' else 'players'} needs at least "
            f"{(2 * players + 2) * per_coalition} model evaluations, over the limit of {cap} per instance "
            f"({ENV_EXPLAIN_MAX_EVALUATIONS})", index)
    design = kernel_shap.sampled_design(players, budget)
    nothing = np.zeros((1, players), dtype=bool)
    values = _values(model, masker, np.concatenate([nothing, design.masks]), column, CHUNK_ROWS[kind])
    base = float(values[0])
    attributions = kernel_shap.solve(design, values[1:], base, predicted)
    return {"output": predicted, "base_value": base, "attributions": attributions.tolist(),
            "method": "exact" if design.exact else "sampled",
            "evaluations": (len(design.masks) + 1) * per_coalition + 1}


def _values(model: LoadedModel, masker: Masker, masks: npt.NDArray[np.bool_], column: int,
            chunk_rows: int) -> npt.NDArray[np.float64]:
    """The explained output of every coalition, averaged over the background, in a few batched runs."""
    per_coalition = masker.background_rows
    step = max(1, chunk_rows // per_coalition)
    parts = []
    for start in range(0, len(masks), step):
        out = model.session.run(None, masker.inputs(masks[start:start + step]))[0]
        out = np.asarray(out, dtype=np.float64).reshape(-1, per_coalition, out.shape[-1] if out.ndim > 1 else 1)
        parts.append(out[:, :, column].mean(axis=1))
    return np.concatenate(parts)


def _pixel_map(superpixels: list[float], masker: NumericMasker) -> list[list[float]]:
    """Each superpixel's attribution shared evenly by its pixels, as the image's 2-D map (sums unchanged)."""
    groups = masker.groups
    values = np.asarray(superpixels)
    counts = np.bincount(groups)
    pixels: list[list[float]] = (values[groups] / counts[groups]).reshape(masker.shape).tolist()
    return pixels
