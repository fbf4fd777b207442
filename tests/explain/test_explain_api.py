"""POST /v1/models/{name}/explain over uvicorn: answers per kind with additivity, the same validation and
errors as predict, caps as 422 naming the setting, versions without a background as 422 no_background."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from functions.core.explain.background import NUMERIC_FILE, TEXT_FILE, load_background
from functions.core.explain.explainer import CHUNK_ROWS, coalition_values, explain, masker_for
from functions.core.inference import predict, run_model
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from functions.core.store import LocalStore
from tests.api.samples import CANCER_ROW, DIABETES_ROW, DIGIT_ZERO, TEXTS
from tests.explain.conftest import LiveServer
from tests.pinned import pinned_copy

ADDITIVITY = 1e-4


def additive(answer: dict[str, Any]) -> float:
    values = answer["attributions"]
    total = sum(values.values()) if isinstance(values, dict) else float(np.sum(values))
    return abs(answer["base_value"] + total - answer["output"])


def explained(prediction: dict[str, Any]) -> float:
    """The number an explanation attributes: the value, or the predicted label's (6-decimal) probability."""
    return float(prediction["value"] if "value" in prediction else prediction["probabilities"][prediction["label"]])


@pytest.mark.parametrize(("name", "instances"), [("diabetes-mlp", [DIABETES_ROW]), ("cancer-mlp", [CANCER_ROW]),
                                                  ("digits-cnn", [DIGIT_ZERO]), ("text-lstm", TEXTS)])
def test_every_kind_is_explained_additively(explain_client: httpx.Client, name: str, instances: list[Any]) -> None:
    response = explain_client.post(f"/v1/models/{name}/explain", json={"instances": instances})
    assert response.status_code == 200, response.text
    body = response.json()
    predicted = explain_client.post(f"/v1/models/{name}/predict", json={"instances": instances}).json()
    assert body["version"] == predicted["version"] and len(body["explanations"]) == len(instances)
    for answer, prediction in zip(body["explanations"], predicted["predictions"], strict=True):
        assert additive(answer) < ADDITIVITY
        assert answer.get("label") == prediction.get("label")
        assert answer["output"] == pytest.approx(explained(prediction), abs=1e-6)  # the prediction it explains
    first = body["explanations"][0]
    if name == "digits-cnn":
        assert np.asarray(first["attributions"]).shape == (8, 8)
    elif name == "text-lstm":
        text = instances[0]
        assert len(first["tokens"]) == len(first["attributions"])
        assert all(text[t["start"]:t["end"]] == t["text"] for t in first["tokens"])
        assert [t["text"] for t in first["tokens"]][:2] == ["The", "striker"]
    else:
        features = list(DIABETES_ROW) if name == "diabetes-mlp" else None
        assert features is None or list(first["attributions"]) == features


def test_a_dynamically_quantized_model_explains_the_output_it_predicts(built_store: LocalStore,
                                                                       tmp_path: Path) -> None:
    """int8-dynamic quantizes activations with scales computed over each run's whole batch, so an instance's
    output moves with the rows beside it (about 1e-2): the explanation still attributes the predicted output."""
    store = pinned_copy(built_store, tmp_path / "store", "int8-dynamic", ["cancer-mlp"])
    settings = Settings(store=store.uri, explain_max_instances=8)
    model = ModelCache(store, settings).get("cancer-mlp")
    assert model.variant.name == "int8-dynamic" and not model.joinable
    [answer] = explain(model, [CANCER_ROW], settings)
    [prediction] = predict(model, [CANCER_ROW])
    assert answer["label"] == prediction["label"] and additive(answer) < ADDITIVITY
    assert answer["output"] == pytest.approx(explained(prediction), abs=1e-6)


@pytest.mark.parametrize(("name", "instance"), [("diabetes-mlp", DIABETES_ROW), ("cancer-mlp", CANCER_ROW),
                                              ("digits-cnn", DIGIT_ZERO), ("text-lstm", TEXTS[0])])
def test_each_masker_with_every_player_present_rebuilds_the_instance(built_store: LocalStore, tmp_path: Path,
                                                                      name: str, instance: Any) -> None:
    """The explained output is the prediction, so the full coalition is never run: here it is, and it must predict
    what predict does (fp32, whose rows are independent). A masker that misplaced a feature, a pixel or a word
    would be silently absorbed by the attributions otherwise."""
    store = pinned_copy(built_store, tmp_path / "store", "fp32", [name])
    model = ModelCache(store, Settings(store=store.uri)).get(name)
    [output] = run_model(model, [instance])
    column = int(np.argmax(output)) if model.manifest.task == "classification" else 0
    masker, kind = masker_for(model, instance, load_background(model.manifest, model.files))
    everything = np.ones((1, masker.players), dtype=bool)
    [full] = coalition_values(model, masker, everything, column, CHUNK_ROWS[kind])
    assert full == pytest.approx(float(np.ravel(output)[column]), rel=1e-5, abs=1e-6)
    nothing = coalition_values(model, masker, ~everything, column, CHUNK_ROWS[kind])
    assert abs(nothing[0] - full) > 1e-3  # the check can tell a masked instance from the instance


class _FlatOutput:
    """A session whose regressor output is ``[batch]`` instead of ``[batch, 1]`` (both are valid graphs)."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def run(self, names: Any, feeds: Any) -> list[Any]:
        return [np.ravel(out) for out in self.session.run(names, feeds)]

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.session, attribute)


def test_a_regressor_with_a_flat_output_is_explained(explain_cache: ModelCache, explain_settings: Settings) -> None:
    model = explain_cache.get("diabetes-mlp")
    flat = dataclasses.replace(model, session=_FlatOutput(model.session))
    [answer] = explain(flat, [DIABETES_ROW], explain_settings)
    [expected] = explain(model, [DIABETES_ROW], explain_settings)
    assert answer["output"] == expected["output"] == answer["value"]
    assert answer["attributions"] == pytest.approx(expected["attributions"], abs=1e-9)


def test_kserve_explain_route_answers_as_the_plain_route(explain_client: httpx.Client) -> None:
    body = {"instances": [DIABETES_ROW]}
    plain = explain_client.post("/v1/models/diabetes-mlp/explain", json=body)
    kserve = explain_client.post("/v1/models/diabetes-mlp:explain", json=body)
    assert kserve.status_code == 200 and kserve.json() == plain.json()


def test_version_and_alias_routes(explain_client: httpx.Client) -> None:
    by_version = explain_client.post("/v1/models/diabetes-mlp/versions/1/explain", json={"instances": [DIABETES_ROW]})
    by_alias = explain_client.post("/v1/models/diabetes-mlp/explain", params={"alias": "prod"},
                                   json={"instances": [DIABETES_ROW]})
    assert by_version.status_code == 200 and by_alias.status_code == 200
    assert by_version.json()["explanations"] == by_alias.json()["explanations"]  # fixed seed: deterministic
    missing = explain_client.post("/v1/models/diabetes-mlp/explain", params={"alias": "nope"},
                                  json={"instances": [DIABETES_ROW]})
    assert missing.status_code == 404


BAD_BODIES: list[tuple[str, Any]] = [
    ("diabetes-mlp", {"instances": [{"age": 1}]}),
    ("diabetes-mlp", {"instances": [[1.0] * 9]}),
    ("cancer-mlp", {"instances": [[float("nan")] * 30]}),
    ("digits-cnn", {"instances": [[[99] * 8] * 8]}),
    ("text-lstm", {"instances": ["fine", ""]}),
    ("text-lstm", {"instances": [42]}),
    ("text-lstm", {"instances": []}),
    ("text-lstm", {"instances": "no list"}),
    ("text-lstm", {"instances": ["x"], "extra": 1}),
    ("text-lstm", [1, 2]),
    ("no-such-model", {"instances": ["x"]}),
    ("Bad..Name", {"instances": ["x"]}),
]


@pytest.mark.parametrize(("name", "body"), BAD_BODIES)
def test_bad_input_behaves_exactly_as_predict(explain_client: httpx.Client, name: str, body: Any) -> None:
    content = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY) if "nan" not in repr(body) else \
        b'{"instances": [[' + b",".join([b"NaN"] * 30) + b"]]}"
    headers = {"content-type": "application/json"}
    predicted = explain_client.post(f"/v1/models/{name}/predict", content=content, headers=headers)
    explained = explain_client.post(f"/v1/models/{name}/explain", content=content, headers=headers)
    assert 400 <= predicted.status_code < 500
    assert (explained.status_code, explained.json()) == (predicted.status_code, predicted.json())


def test_malformed_and_oversized_bodies_as_predict(explain_client: httpx.Client) -> None:
    for content, headers in ((b"{not json", {"content-type": "application/json"}),
                             (b'{"instances": ["x"]}', {"content-type": "text/plain"})):
        predicted = explain_client.post("/v1/models/text-lstm/predict", content=content, headers=headers)
        explained = explain_client.post("/v1/models/text-lstm/explain", content=content, headers=headers)
        assert (explained.status_code, explained.json()["code"]) == (predicted.status_code, predicted.json()["code"])


def test_instances_over_the_cap_are_a_422_naming_the_limit(explain_client: httpx.Client,
                                                          explain_settings: Settings) -> None:
    count = explain_settings.explain_max_instances + 1
    response = explain_client.post("/v1/models/text-lstm/explain", json={"instances": ["rain"] * count})
    assert response.status_code == 422
    assert response.json()["code"] == "explain_limit" and "MAAS_EXPLAIN_MAX_INSTANCES" in response.json()["error"]


def test_evaluations_over_the_cap_are_a_422_naming_the_limit(built_store: LocalStore) -> None:
    settings = Settings(store=built_store.uri, explain_max_evaluations=1000)  # < 2 * 10 features * 100 rows
    cache = ModelCache(built_store, settings)
    from functions.api.app import create_app

    with LiveServer(create_app(settings, cache)) as url, httpx.Client(base_url=url, timeout=60) as http:
        response = http.post("/v1/models/diabetes-mlp/explain", json={"instances": [DIABETES_ROW]})
        assert response.status_code == 422
        body = response.json()
        assert body["code"] == "explain_limit" and "MAAS_EXPLAIN_MAX_EVALUATIONS" in body["error"]
        assert body["instance"] == 0
        words = " ".join(["a"] * 600)  # 600 words (1,199 characters) need 1,202 evaluations
        response = http.post("/v1/models/text-lstm/explain", json={"instances": [words]})
        assert response.status_code == 422 and "MAAS_EXPLAIN_MAX_EVALUATIONS" in response.json()["error"]


def test_versions_without_a_background_answer_no_background(built_store: LocalStore, tmp_path: Path) -> None:
    """A version published before explanations existed: loads and predicts, explain is a clear 422."""
    root = tmp_path / "store"
    shutil.copytree(built_store.root, root)
    for name, file in (("diabetes-mlp", NUMERIC_FILE), ("text-lstm", TEXT_FILE)):
        version = root / "models" / name / "versions" / "1"
        manifest = orjson.loads((version / "manifest.json").read_bytes())
        manifest["files"] = [f for f in manifest["files"] if f["path"] != file]
        for optional in ("importance", "evaluation"):
            manifest.pop(optional, None)
        (version / "manifest.json").write_bytes(orjson.dumps(manifest))
        (version / file).unlink()
    store = LocalStore(root)
    settings = Settings(store=store.uri)
    from functions.api.app import create_app

    with LiveServer(create_app(settings, ModelCache(store, settings))) as url, \
            httpx.Client(base_url=url, timeout=60) as http:
        for name, instance in (("diabetes-mlp", DIABETES_ROW), ("text-lstm", "rain again")):
            assert http.post(f"/v1/models/{name}/predict", json={"instances": [instance]}).status_code == 200
            response = http.post(f"/v1/models/{name}/explain", json={"instances": [instance]})
            assert response.status_code == 422 and response.json()["code"] == "no_background"
            assert "no background" in response.json()["error"]
