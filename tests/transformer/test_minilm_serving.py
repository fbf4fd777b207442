"""Raw text through the Lambda handler (v1 and Open Inference Protocol BYTES), bad text inputs, and
batch predictions of a .jsonl of texts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from functions.api.app import create_app
from functions.core.manifest import Manifest
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from functions.core.store import LocalStore
from tests.events import LambdaContext, http_api_event

MAX_INSTANCES = 16


@pytest.fixture(scope="module")
def invoke(minilm_store: tuple[LocalStore, Manifest]) -> Any:
    from mangum import Mangum

    store, _ = minilm_store
    settings = Settings(store=store.uri, max_instances=MAX_INSTANCES)
    handler = Mangum(create_app(settings, ModelCache(store, settings)), lifespan="off")

    def call(path: str, body: Any) -> tuple[int, Any]:
        response = handler(http_api_event("POST", path, json.dumps(body).encode()), LambdaContext())
        return response["statusCode"], json.loads(response["body"])

    return call


def test_v1_embeds_raw_text_as_unit_vectors_that_rank_the_right_document(invoke: Any) -> None:
    texts = ["How do I reset my password?", "To change your password, open Settings and use the reset link.",
             "The home team won the championship.", "東京は日本の首都です。 🍕"]
    status, body = invoke("/v1/models/minilm-embed/predict", {"instances": texts})
    assert status == 200, body
    vectors = np.array([p["embedding"] for p in body["predictions"]])
    assert vectors.shape == (4, 384)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0] * 4, abs=1e-3)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2
    assert body["variant"] in ("int8-dynamic", "fp32")


def test_oip_bytes_tensor_gives_the_same_embeddings_as_v1(invoke: Any) -> None:
    texts = ["A café in Zürich", "rain tomorrow"]
    _, v1 = invoke("/v1/models/minilm-embed/predict", {"instances": texts})
    status, body = invoke("/v2/models/minilm-embed/infer",
                          {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": texts}]})
    assert status == 200, body
    (output,) = body["outputs"]
    assert output["name"] == "embedding" and output["shape"] == [2, 384] and output["datatype"] == "FP32"
    np.testing.assert_allclose(np.array(output["data"]).reshape(2, 384),
                               np.array([p["embedding"] for p in v1["predictions"]]), atol=1e-5)


@pytest.mark.parametrize(("instances", "reason"), [
    ([""], "empty text"),
    (["   \n\t"], "empty text"),
    (["fine", "x" * 20_001], "longer than 20000 characters"),
    (["fine", 42], "expected a string"),
    ([["nested"]], "expected a string"),
    ([None], "expected a string"),
    (["t"] * (MAX_INSTANCES + 1), "limit"),
])
def test_bad_text_inputs_are_422_naming_the_problem(invoke: Any, instances: list[Any], reason: str) -> None:
    status, body = invoke("/v1/models/minilm-embed/predict", {"instances": instances})
    assert status in (413, 422), body
    assert reason in body["error"]


def test_batch_jsonl_of_texts_predicts_good_lines_and_reports_bad_ones(
        minilm_store: tuple[LocalStore, Manifest], tmp_path: Path) -> None:
    from functions.batch.local import run_local

    store, _ = minilm_store
    lines = [orjson.dumps(t) for t in ("first text", "", 7, "second text 🍕", "third")]
    source = tmp_path / "texts.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\nnot json\n")
    settings = Settings(store=store.uri)
    stats = run_local(ModelCache(store, settings), "minilm-embed", source, tmp_path / "out")
    predictions = [orjson.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_bytes().splitlines()]
    errors = [orjson.loads(line) for line in (tmp_path / "out" / "errors.jsonl").read_bytes().splitlines()]
    assert [p["line"] for p in predictions] == [1, 4, 5]
    assert all(len(p["embedding"]) == 384 for p in predictions)
    assert sorted(e["line"] for e in errors) == [2, 3, 6]
    assert stats.rows_ok + stats.rows_failed == 6
