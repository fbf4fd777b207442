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
from functions.core.explain.background import Background, NoBackgroundError, load_background
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
        masker, kind = masker_for(model, instance, background)
        answer.update(_attribute(model, masker, kind, float(np.ravel(output)[column]), column, index, settings))
        if isinstance(masker, TextMasker):
            answer["tokens"] = [{"text": w.text, "start": w.start, "end": w.end} for w in masker.words]
        elif isinstance(model.preprocessor, TabularPreprocessor):
            answer["attributions"] = dict(zip(model.preprocessor.features, answer["attributions"], strict=True))
        elif isinstance(masker, NumericMasker):
            answer["attributions"] = _pixel_map(answer["attributions"], masker)
    return answers


def masker_for(model: LoadedModel, instance: Any, background: Background) -> tuple[Masker, str]:
    """The instance's masker and its kind (``tabular``, ``image`` or ``text``)."""
    pre = model.preprocessor
    if isinstance(pre, TextVocabPreprocessor | TokenizerPreprocessor):
        return TextMasker(pre, instance, split_words(instance)), "text"
    if background.rows is None:
        raise NoBackgroundError(f"model {model.name} version {model.version} has no numeric background")
    names = pre.features if isinstance(pre, TabularPreprocessor) else None
    return numeric_masker(pre, instance, background.rows, names), "tabular" if names else "image"


def _attribute(model: LoadedModel, masker: Masker, kind: str, predicted: float, column: int, index: int,
               settings: Settings) -> dict[str, Any]:
    """Attributions of ``predicted`` (the instance's output as predict answers the same instances) against the
    base value; the instance plus every coalition but the full one are run (``per_coalition`` rows each).

    The explained output is the prediction itself, not the full coalition's value inside the large batched runs:
    there a subword model pads to the longest text, and a dynamically quantized model scales its activations over
    the whole run, which moves a probability by about 1e-2."""
    players, per_coalition = masker.players, masker.background_rows
    cap = settings.explain_max_evaluations
    budget = min(TARGET_COALITIONS[kind], (cap - 1) // per_coalition - 1)
    if players == 0:
        raise InvalidInputError("no words to explain", index)
    if budget < 2 * players:
        raise ExplainLimitError(
            f"explaining {players} {'words' if kind == 'text' else 'players'} needs at least "
            f"{(2 * players + 1) * per_coalition + 1} model evaluations, over the limit of {cap} per instance "
            f"({ENV_EXPLAIN_MAX_EVALUATIONS})", index)
    design = kernel_shap.sampled_design(players, budget)
    nothing = np.zeros((1, players), dtype=bool)
    values = coalition_values(model, masker, np.concatenate([nothing, design.masks]), column, CHUNK_ROWS[kind])
    base = float(values[0])
    attributions = kernel_shap.solve(design, values[1:], base, predicted)
    return {"output": predicted, "base_value": base, "attributions": attributions.tolist(),
            "method": "exact" if design.exact else "sampled",
            "evaluations": (len(design.masks) + 1) * per_coalition + 1}


def coalition_values(model: LoadedModel, masker: Masker, masks: npt.NDArray[np.bool_], column: int,
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
