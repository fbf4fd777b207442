"""A user recipe that asks for pruning on a graph the pruning library cannot prune: its first Linear feeds an
LSTM, whose input width Torch-Pruning cannot follow. The build must still publish the unpruned variants, with a
pruning record that says why no level was tried."""

from __future__ import annotations

import torch
from torch import nn

from model_build.recipes.base import Fitted, PruningConfig
from model_build.recipes.cancer_mlp import CancerMLP


class LinearLSTM(nn.Module):
    """Features -> Linear -> a one-step LSTM -> class logits."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.project = nn.Linear(features, 24)
        self.lstm = nn.LSTM(24, 16, batch_first=True)
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(torch.relu(self.project(x)).unsqueeze(1))
        return self.head(hidden[-1])  # type: ignore[no-any-return]


class UnprunableLSTM(CancerMLP):
    name = "unprunable-lstm"
    description = "cancer-mlp's data through an LSTM: pruning is asked for but cannot be done."
    exporter = "torchscript"  # nn.LSTM with a dynamic batch (see text-lstm)
    pruning = PruningConfig(units=("neurons",))

    def build_model(self, fitted: Fitted) -> nn.Module:
        return LinearLSTM(30)
