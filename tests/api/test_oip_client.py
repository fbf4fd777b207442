"""The v2 routes through a real Open Inference Protocol client (tritonclient[http]), JSON and binary tensors."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.api.samples import DIABETES_ROW, DIGIT_ZERO, TEXTS


@pytest.fixture(scope="module")
def oip(base_url: str) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=base_url.removeprefix("http://"))
    yield client
    client.close()


def test_health_and_readiness(oip: triton.InferenceServerClient) -> None:
    assert oip.is_server_live()
    assert oip.is_server_ready()
    assert oip.is_model_ready("digits-cnn")
    assert oip.is_model_ready("digits-cnn", "1")
    assert not oip.is_model_ready("cancer-mlp", "2")  # corrupted artifact
    assert oip.get_server_metadata()["name"] == "maas"


def test_model_metadata(oip: triton.InferenceServerClient) -> None:
    meta = oip.get_model_metadata("text-lstm")
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert [o["name"] for o in meta["outputs"]] == ["probabilities", "label"]
    assert oip.get_model_metadata("diabetes-mlp", "1")["inputs"][0]["shape"] == [-1, 10]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tabular_regression_matches_v1(oip: triton.InferenceServerClient, client: httpx.Client, binary: bool) -> None:
    features = triton.InferInput("features", [2, 10], "FP32")
    features.set_data_from_numpy(np.array([list(DIABETES_ROW.values())] * 2, dtype=np.float32), binary_data=binary)
    result = oip.infer("diabetes-mlp", [features], outputs=[triton.InferRequestedOutput("value", binary_data=binary)])
    value = result.as_numpy("value")
    assert value is not None and value.shape == (2, 1)
    v1 = client.post("/v1/models/diabetes-mlp/predict", json={"instances": [DIABETES_ROW]}).json()
    assert value[0, 0] == pytest.approx(v1["predictions"][0]["value"], rel=1e-5)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_text_bytes_tensor(oip: triton.InferenceServerClient, binary: bool) -> None:
    text = triton.InferInput("text", [2], "BYTES")
    text.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=np.object_), binary_data=binary)
    result = oip.infer("text-lstm", [text], model_version="1",
                       outputs=[triton.InferRequestedOutput("label", binary_data=binary),
                                triton.InferRequestedOutput("probabilities", binary_data=binary)])
    labels = result.as_numpy("label")
    probabilities = result.as_numpy("probabilities")
    assert labels is not None and probabilities is not None
    assert probabilities.shape == (2, 4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)
    assert [label.decode() if isinstance(label, bytes) else label for label in labels] == ["sports", "weather"]


def test_image_with_default_outputs(oip: triton.InferenceServerClient) -> None:
    image = triton.InferInput("image", [1, 8, 8], "FP32")
    image.set_data_from_numpy(np.array([DIGIT_ZERO], dtype=np.float32))
    result = oip.infer("digits-cnn", [image])
    probabilities = result.as_numpy("probabilities")
    assert probabilities is not None and int(probabilities.argmax()) == 0


def test_client_sees_the_servers_error_message(oip: triton.InferenceServerClient) -> None:
    image = triton.InferInput("image", [1, 8, 8], "FP32")
    image.set_data_from_numpy(np.full((1, 8, 8), 99, dtype=np.float32))
    with pytest.raises(InferenceServerException, match="pixel values must lie in"):
        oip.infer("digits-cnn", [image])
