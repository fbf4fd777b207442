"""Offline model building: recipes, training, ONNX export, quantization, gates, model cards, publishing."""

from __future__ import annotations

import logging

EXPORTER_REGISTRY_LOGGER = "torch.onnx._internal.exporter._registration"


class _NoMissingTorchvisionNotice(logging.Filter):
    """Drops torch's "torchvision is not installed. Skipping torchvision::..." warnings (one per op, on every
    export): no recipe uses torchvision ops, and the lines look like errors. Every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("torchvision is not installed")


logging.getLogger(EXPORTER_REGISTRY_LOGGER).addFilter(_NoMissingTorchvisionNotice())
