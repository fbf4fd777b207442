"""minilm-classifier: fine-tuned MiniLM on the topic set, tested on paraphrases in unseen vocabulary, with
text-lstm on the same split in its card; served from raw text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from functions.api.app import create_app
from functions.core.manifest import Manifest, TokenizerPreprocessing
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from functions.core.store import LocalStore
from model_build.recipes.topic_corpus import paraphrase_sentences, topic_sentences
from tests.events import LambdaContext, http_api_event


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalStore, Manifest]:
    from model_build.pipeline import build
    from model_build.recipes import load_recipe

    store = LocalStore(tmp_path_factory.mktemp("classifier") / "store")
    return store, build(load_recipe("minilm-classifier"), store, quick=True)  # type: ignore[arg-type]


def test_paraphrases_share_no_content_word_with_the_training_sentences() -> None:
    train_words = {w.strip(".,").lower() for text in topic_sentences()[0] for w in text.split()}
    test_texts, labels = paraphrase_sentences()
    assert len(test_texts) == 40 and sorted(set(labels)) == [0, 1, 2, 3]
    shared = {w.strip(".,'").lower() for text in test_texts for w in text.split()} & train_words
    assert len(shared) < 40  # function words only ("the", "a", "and", ...), no topic vocabulary
    assert not shared & {"volley", "blizzard", "dough", "firmware", "kubernetes", "drizzle", "cricket"}


def test_card_compares_with_text_lstm_on_the_same_split(classifier: tuple[LocalStore, Manifest]) -> None:
    store, manifest = classifier
    assert manifest.task == "classification" and manifest.labels == ["sports", "weather", "cooking", "technology"]
    assert [i.name for i in manifest.inputs] == ["input_ids"] and manifest.inputs[0].shape == ["batch", "sequence"]
    assert isinstance(manifest.preprocessing, TokenizerPreprocessing)
    assert manifest.latency_batch == 32
    baseline = manifest.baselines["text-lstm, same split"]
    assert 0.0 <= baseline <= 1.0
    shipped = manifest.variant(manifest.selected["cpu"])
    assert shipped.metrics is not None and shipped.metrics.metric >= 0.7  # the recipe's floor, even in quick mode
    card = (Path(store.root) / "models" / "minilm-classifier" / "versions" / manifest.version / "card.md").read_text()
    assert "## Compared with" in card and "text-lstm, same split" in card


def test_pruning_removes_whole_heads_and_ffn_width(classifier: tuple[LocalStore, Manifest]) -> None:
    _, manifest = classifier
    pruning = manifest.pruning
    assert pruning is not None and pruning.units == ["heads", "ffn"] and pruning.recovery == "none (0 epochs)"
    [level] = pruning.levels  # --quick: one level
    assert pruning.widths["layer.0:heads"] == 12 and pruning.widths["layer.5:ffn"] == 1536
    assert level.kept["layer.0:heads"] == 6 and level.kept["layer.5:ffn"] == 768
    assert level.params < pruning.params and level.macs < 0.6 * pruning.macs
    fp32 = manifest.variant("fp32")
    assert level.bytes is not None and fp32.bytes is not None and level.bytes < fp32.bytes
    assert level.parity_max_abs_diff is not None and level.parity_max_abs_diff <= 1e-4
    assert [v.name for v in manifest.variants][4:] == ["pruned-fp32", "pruned-int8-dynamic", "pruned-int8-static",
                                                       "pruned-fp16"]


def test_serves_labels_with_probabilities_from_raw_text(classifier: tuple[LocalStore, Manifest]) -> None:
    from mangum import Mangum

    store, _ = classifier
    settings = Settings(store=store.uri)
    handler = Mangum(create_app(settings, ModelCache(store, settings)), lifespan="off")
    body = json.dumps({"instances": ["The goalkeeper saved a penalty.", "Snow is forecast for tonight."]}).encode()
    response = handler(http_api_event("POST", "/v1/models/minilm-classifier/predict", body), LambdaContext())
    assert response["statusCode"] == 200, response["body"]
    predictions = json.loads(response["body"])["predictions"]
    assert [set(p["probabilities"]) for p in predictions] == [{"sports", "weather", "cooking", "technology"}] * 2
    assert all(abs(sum(p["probabilities"].values()) - 1.0) < 1e-4 for p in predictions)
    bad = json.dumps({"instances": ["fine", ""]}).encode()
    response = handler(http_api_event("POST", "/v1/models/minilm-classifier/predict", bad), LambdaContext())
    assert response["statusCode"] == 422 and "empty text" in json.loads(response["body"])["error"]


def test_explains_each_word_as_written_with_the_models_own_tokenizer(classifier: tuple[LocalStore, Manifest]) -> None:
    """One attribution per word of the raw text (offsets into it), additive to the explained probability."""
    from mangum import Mangum

    store, _ = classifier
    settings = Settings(store=store.uri)
    handler = Mangum(create_app(settings, ModelCache(store, settings)), lifespan="off")
    text = "The goalkeeper saved a penalty, café crowd cheered."
    body = json.dumps({"instances": [text]}).encode()
    response = handler(http_api_event("POST", "/v1/models/minilm-classifier/explain", body), LambdaContext())
    assert response["statusCode"] == 200, response["body"]
    [answer] = json.loads(response["body"])["explanations"]
    assert [t["text"] for t in answer["tokens"]][:3] == ["The", "goalkeeper", "saved"]
    assert all(text[t["start"]:t["end"]] == t["text"] for t in answer["tokens"])
    assert len(answer["attributions"]) == len(answer["tokens"])
    assert abs(answer["base_value"] + sum(answer["attributions"]) - answer["output"]) < 1e-4
    assert answer["output"] == pytest.approx(answer["probabilities"][answer["label"]], abs=1e-6)  # the prediction
