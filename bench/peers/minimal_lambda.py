"""The minimal FastAPI + Mangum + onnxruntime handler (bench/peers/handlers.py) as a Lambda handler module:
built at import, as Lambda's runtime client loads it (``python -m awslambdaric bench.peers.minimal_lambda.handler``)."""

from __future__ import annotations

from bench.peers.handlers import minimal_handler

handler = minimal_handler()
