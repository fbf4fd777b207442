"""BentoML serving the same ONNX file as maas (runs in bench/.venv, never in the project's environment).

    bench/.venv/bin/bentoml serve bench.peers.bento_service:Digits --port PORT    (BENCH_ONNX=model file)

Same request body ({"instances": [...]}) and the same response body as maas: label and per-label
probabilities. One worker process, onnxruntime with 1 intra-op thread, like the other servers.
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
import numpy as np

LABELS = [str(digit) for digit in range(10)]


@bentoml.service(workers=1)
class Digits:
    def __init__(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(os.environ["BENCH_ONNX"], options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    @bentoml.api(route="/v1/models/digits-cnn/predict")
    def predict(self, instances: list[Any]) -> dict[str, Any]:
        batch = np.asarray(instances, dtype=np.float32).reshape(-1, 1, 8, 8) / 16.0
        probabilities = self.session.run(None, {self.input: batch})[0]
        return {"model": "digits-cnn", "predictions": [
            {"label": LABELS[int(row.argmax())], "probabilities": dict(zip(LABELS, row.tolist(), strict=True))}
            for row in probabilities]}
