"""Deletion tests over the held-out split: removing the k most positively attributed pixels (digits-cnn) or
words (text-lstm) lowers the predicted class's probability more than removing k random ones, on most
instances. The measured share is printed (``pytest -s``) and reported in docs/explanations.md."""

from __future__ import annotations

from typing import Any

import numpy as np

from functions.core.explain.explainer import explain
from functions.core.explain.maskers import encode_texts, split_words
from functions.core.inference import run_model
from functions.core.model_cache import LoadedModel, ModelCache
from functions.core.settings import Settings
from model_build.recipes import load_recipe

INSTANCES = 24
MOST_INSTANCES = 0.6


def held_out(name: str) -> list[Any]:
    data = load_recipe(name).load_data(quick=True)  # type: ignore[union-attr]
    return [x if isinstance(x, str) else np.asarray(x).tolist() for x in list(data.x_test)[:INSTANCES]]


def explained(model: LoadedModel, instances: list[Any], settings: Settings) -> list[dict[str, Any]]:
    step = settings.explain_max_instances
    return [a for i in range(0, len(instances), step) for a in explain(model, instances[i:i + step], settings)]


def share_beating_random(drops_top: list[float], drops_random: list[float]) -> float:
    return float(np.mean(np.asarray(drops_top) > np.asarray(drops_random)))


def test_digits_top_pixels_matter_more_than_random_ones(explain_cache: ModelCache,
                                                        explain_settings: Settings) -> None:
    model = explain_cache.get("digits-cnn")
    images = held_out("digits-cnn")
    answers = explained(model, images, explain_settings)
    rng = np.random.default_rng(0)
    k = 8
    drops_top, drops_random = [], []
    for image, answer in zip(images, answers, strict=True):
        column = model.manifest.labels.index(answer["label"])  # type: ignore[union-attr]
        pixels = np.asarray(image, dtype=np.float64).reshape(-1)
        top = np.argsort(-np.asarray(answer["attributions"]).reshape(-1))[:k]
        chosen = rng.choice(64, size=k, replace=False)
        variants = [pixels.copy(), pixels.copy()]
        variants[0][top] = 0.0  # blank pixels: no ink
        variants[1][chosen] = 0.0
        probs = run_model(model, [v.reshape(8, 8).tolist() for v in variants])[:, column]
        drops_top.append(answer["output"] - float(probs[0]))
        drops_random.append(answer["output"] - float(probs[1]))
    share = share_beating_random(drops_top, drops_random)
    print(f"digits-cnn: top-{k} pixels beat {k} random pixels on {share:.0%} of {len(images)} held-out images")
    assert share >= MOST_INSTANCES


def test_text_top_words_matter_more_than_random_ones(explain_cache: ModelCache, explain_settings: Settings) -> None:
    model = explain_cache.get("text-lstm")
    texts = held_out("text-lstm")
    answers = explained(model, texts, explain_settings)
    rng = np.random.default_rng(0)
    k = 2
    drops_top, drops_random = [], []
    for text, answer in zip(texts, answers, strict=True):
        column = model.manifest.labels.index(answer["label"])  # type: ignore[union-attr]
        words = split_words(text)
        assert [(w.start, w.end) for w in words] == [(t["start"], t["end"]) for t in answer["tokens"]]
        assert all(text[t["start"]:t["end"]] == t["text"] for t in answer["tokens"])
        top = set(np.argsort(-np.asarray(answer["attributions"]))[:k].tolist())
        chosen = set(rng.choice(len(words), size=min(k, len(words)), replace=False).tolist())
        kept = [" ".join(w.text for i, w in enumerate(words) if i not in drop) for drop in (top, chosen)]
        tensors = encode_texts(model.preprocessor, kept)  # type: ignore[arg-type]
        probs = np.asarray(model.session.run(None, tensors)[0])[:, column]
        drops_top.append(answer["output"] - float(probs[0]))
        drops_random.append(answer["output"] - float(probs[1]))
    share = share_beating_random(drops_top, drops_random)
    print(f"text-lstm: top-{k} words beat {k} random words on {share:.0%} of {len(texts)} held-out texts")
    assert share >= MOST_INSTANCES
