"""The recipe interface for recipe files: the trained contract (from ``model_build.contracts``) and a split helper.

A recipe file imports what it needs from here (or from ``model_build.contracts``); it never imports a pipeline.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from model_build.contracts import Dataset as Dataset
from model_build.contracts import Fitted as Fitted
from model_build.contracts import GateConfig as GateConfig
from model_build.contracts import Instances as Instances
from model_build.contracts import PruningConfig as PruningConfig
from model_build.contracts import Recipe as Recipe
from model_build.contracts import TrainingConfig as TrainingConfig


def stratified_split(n: int, y: npt.NDArray[Any] | None, seed: int, val: float = 0.15,
                     test: float = 0.15) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Index arrays for train/validation/test, stratified by class when ``y`` is given."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(n)
    train_val, test_idx = train_test_split(indices, test_size=test, random_state=seed, stratify=y)
    strat = None if y is None else y[train_val]
    train_idx, val_idx = train_test_split(train_val, test_size=val / (1 - test), random_state=seed, stratify=strat)
    return np.sort(train_idx), np.sort(val_idx), np.sort(test_idx)
