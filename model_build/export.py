"""Export to a single self-contained ONNX file with a dynamic batch axis, and check parity with PyTorch."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from functions.core.manifest import Task
from model_build.contracts import OUTPUT_NAMES as OUTPUT_NAMES


class ServingHead(nn.Module):
    """What is exported: the trained module plus softmax (classifiers) or de-standardization (regressors)."""

    def __init__(self, model: nn.Module, task: Task, target_mean: float = 0.0, target_std: float = 1.0) -> None:
        super().__init__()
        self.model = model
        self.task = task
        self.register_buffer("target_mean", torch.tensor(target_mean, dtype=torch.float32))
        self.register_buffer("target_std", torch.tensor(target_std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if self.task == "classification":
            return torch.softmax(out, dim=-1)
        scaled: torch.Tensor = out * self.target_std + self.target_mean
        return scaled


def export_onnx(module: nn.Module, example: npt.NDArray[Any], input_name: str, output_name: str,
                exporter: Literal["dynamo", "torchscript"], path: Path, dynamic_sequence: bool = False) -> None:
    """Write ``module`` to ``path`` as one ONNX file (no external data) with a dynamic batch axis (and a
    dynamic sequence axis 1 when ``dynamic_sequence``)."""
    module.eval()
    args = (torch.as_tensor(example),)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if exporter == "dynamo" and not dynamic_sequence:
            torch.onnx.export(
                module, args, str(path), dynamo=True, input_names=[input_name], output_names=[output_name],
                dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False, verbose=False,
            )
        else:
            torch.onnx.export(
                module, args, str(path), dynamo=False, input_names=[input_name], output_names=[output_name],
                dynamic_axes={input_name: {0: "batch", 1: "sequence"} if dynamic_sequence else {0: "batch"},
                              output_name: {0: "batch"}}, opset_version=17,
            )
    if path.with_name(path.name + ".data").exists():
        raise RuntimeError(f"exporter wrote external data next to {path}; expected one self-contained file")
    _drop_value_info(path)


def _drop_value_info(path: Path) -> None:
    """Remove intermediate shape annotations: the dynamo exporter can leave ones that contradict onnx's own
    shape inference (which the quantizers run), and nothing downstream needs them."""
    import onnx

    model = onnx.load(str(path))
    del model.graph.value_info[:]
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


@torch.no_grad()
def torch_predict(module: nn.Module, x: npt.NDArray[Any], batch: int = 1024) -> npt.NDArray[np.float32]:
    """Reference outputs from PyTorch in eval mode."""
    module.eval()
    parts = [module(torch.as_tensor(x[i:i + batch])).numpy() for i in range(0, len(x), batch)]
    return np.concatenate(parts).astype(np.float32)
