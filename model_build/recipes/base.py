"""The recipe interface: one Python file per model.

A recipe says where the data comes from, how natural instances are preprocessed (fitted on training data
only), which PyTorch module to train and which quality gates the build must pass. Everything else --
training loop, export, parity, quantization, measurement, gates, model card, publishing -- is shared.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
import torch

from functions.core.manifest import Preprocessing, Task

Instances = npt.NDArray[Any] | list[str]


@dataclass(frozen=True)
class TrainingConfig:
    """Optimiser and early-stopping settings; ``quick_epochs`` is used by ``--quick``."""

    epochs: int = 100
    quick_epochs: int = 3
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 8


@dataclass(frozen=True)
class GateConfig:
    """Quality gates. Accuracy drop is in points of accuracy (0.01 = 1 point); error increase is relative."""

    max_accuracy_drop: float = 0.01
    max_error_increase: float = 0.05
    min_gain_over_trivial: float = 0.1
    min_metric: float | None = None
    max_metric: float | None = None
    parity_tolerance: float = 1e-4


@dataclass
class Dataset:
    """Raw (natural) instances and targets, already split; targets are class ids or float values."""

    x_train: Instances
    y_train: npt.NDArray[Any]
    x_val: Instances
    y_val: npt.NDArray[Any]
    x_test: Instances
    y_test: npt.NDArray[Any]
    source: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Fitted:
    """Preprocessing fitted on the training split, with any files it needs shipped in the model package."""

    spec: Preprocessing
    files: dict[str, bytes] = field(default_factory=dict)


class Recipe(abc.ABC):
    """Subclass this in one file and point ``maas build`` at the file (or register it by name)."""

    name: ClassVar[str]
    task: ClassVar[Task]
    description: ClassVar[str]
    labels: ClassVar[list[str] | None] = None
    input_name: ClassVar[str] = "input"
    exporter: ClassVar[Literal["dynamo", "torchscript"]] = "dynamo"
    seed: ClassVar[int] = 0
    training: ClassVar[TrainingConfig] = TrainingConfig()
    gates: ClassVar[GateConfig] = GateConfig()
    dynamic_sequence: ClassVar[bool] = False
    """Export axis 1 as dynamic too (token ids padded to the longest text of a request)."""
    latency_batch: ClassVar[int] = 256
    """The larger batch size variants are timed at (smaller for heavy models)."""

    @abc.abstractmethod
    def load_data(self, quick: bool) -> Dataset:
        """Load and split the data with a fixed seed; ``quick`` may use a subset."""

    @abc.abstractmethod
    def fit_preprocessing(self, data: Dataset) -> Fitted:
        """Fit the preprocessing on ``data.x_train`` only."""

    @abc.abstractmethod
    def build_model(self, fitted: Fitted) -> torch.nn.Module:
        """A fresh module mapping preprocessed inputs to logits (classification) or one value (regression)."""

    def baselines(self, data: Dataset, quick: bool) -> dict[str, float]:
        """Other models' test metric on the same split, for the card (none by default)."""
        return {}

    def example_batch_size(self) -> int:
        """Batch size of the example input used for export tracing."""
        return 4


def stratified_split(n: int, y: npt.NDArray[Any] | None, seed: int, val: float = 0.15,
                     test: float = 0.15) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Index arrays for train/validation/test, stratified by class when ``y`` is given."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(n)
    train_val, test_idx = train_test_split(indices, test_size=test, random_state=seed, stratify=y)
    strat = None if y is None else y[train_val]
    train_idx, val_idx = train_test_split(train_val, test_size=val / (1 - test), random_state=seed, stratify=strat)
    return np.sort(train_idx), np.sort(val_idx), np.sort(test_idx)
