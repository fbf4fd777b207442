"""The cold-start floor: numpy, onnxruntime, one session and one run; no web stack, no validation.

A Lambda handler on the same ONNX file (``BENCH_ONNX``) that answers the benchmarks' predict event with the same
body as the other handlers: what any onnxruntime handler pays before its own code.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort

LABELS = [str(digit) for digit in range(10)]

_options = ort.SessionOptions()
_options.intra_op_num_threads = 1
_session = ort.InferenceSession(os.environ["BENCH_ONNX"], _options, providers=["CPUExecutionProvider"])
_input = _session.get_inputs()[0].name


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    instances = json.loads(event["body"])["instances"]
    x = np.asarray(instances, dtype=np.float32).reshape(-1, 1, 8, 8) / 16.0
    probabilities = _session.run(None, {_input: x})[0]
    predictions = [{"label": LABELS[int(row.argmax())], "probabilities": dict(zip(LABELS, row.tolist(), strict=True))}
                   for row in probabilities]
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps({"model": "digits-cnn", "predictions": predictions})}
