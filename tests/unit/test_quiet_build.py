"""Builds are quiet: torch's missing-torchvision notices are dropped at their logger, nothing else is."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

import model_build
from model_build.export import export_onnx


def test_torchvision_notices_are_dropped_and_other_warnings_kept(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger(model_build.EXPORTER_REGISTRY_LOGGER)
    with caplog.at_level(logging.WARNING, logger=model_build.EXPORTER_REGISTRY_LOGGER):
        logger.warning("torchvision is not installed. Skipping %s", "torchvision::nms")
        logger.warning("some other exporter warning")
    assert [r.getMessage() for r in caplog.records] == ["some other exporter warning"]


def test_an_export_prints_no_torchvision_notice(capfd: pytest.CaptureFixture[str]) -> None:
    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Softmax(dim=1)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(module, np.zeros((2, 3), dtype=np.float32), "features", "probabilities", "dynamo",
                    Path(tmp) / "m.onnx", False)
    out, err = capfd.readouterr()
    assert "torchvision" not in out + err
