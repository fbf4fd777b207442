"""The shared training loop: mini-batch Adam, early stopping on validation loss, best weights restored."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from functions.core.manifest import Task
from model_build.recipes.base import TrainingConfig

EpochCallback = Callable[[int, int, float], None]
"""Called after each epoch with (epoch, total epochs, validation loss)."""


@dataclass
class History:
    """Per-epoch curves and where training stopped."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_metric: list[float] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False


def task_loss(task: Task) -> nn.Module:
    """The training loss of a task: cross-entropy for classes, MSE for standardized regression targets."""
    return nn.CrossEntropyLoss() if task == "classification" else nn.MSELoss()


def targets(task: Task, y: npt.NDArray[Any]) -> torch.Tensor:
    """Targets as the loss takes them: class ids (long), or regression values as a column."""
    if task == "classification":
        return torch.as_tensor(y, dtype=torch.long)
    return torch.as_tensor(y, dtype=torch.float32).reshape(-1, 1)


def train(model: nn.Module, task: Task, x_train: npt.NDArray[Any], y_train: npt.NDArray[Any],
          x_val: npt.NDArray[Any], y_val: npt.NDArray[Any], config: TrainingConfig, *, quick: bool, seed: int,
          target_scale: float = 1.0, on_epoch: EpochCallback | None = None) -> History:
    """Train ``model`` in place. Regression targets arrive standardized; ``target_scale`` turns RMSE back
    into natural units for the recorded validation metric."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    epochs = config.quick_epochs if quick else config.epochs
    loss_fn = task_loss(task)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    xt, yt = torch.as_tensor(x_train), targets(task, y_train)
    xv, yv = torch.as_tensor(x_val), targets(task, y_val)
    history = History()
    best_loss, best_state, waited = float("inf"), copy.deepcopy(model.state_dict()), 0
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(xt), generator=generator)
        total = 0.0
        for start in range(0, len(xt), config.batch_size):
            batch = order[start:start + config.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(xt[batch]), yt[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        val_loss, val_metric = _validate(model, task, loss_fn, xv, yv, target_scale)
        history.train_loss.append(total / len(xt))
        history.val_loss.append(val_loss)
        history.val_metric.append(val_metric)
        if on_epoch:
            on_epoch(epoch, epochs, val_loss)
        if val_loss < best_loss - 1e-6:
            best_loss, best_state, waited, history.best_epoch = val_loss, copy.deepcopy(model.state_dict()), 0, epoch
        else:
            waited += 1
            if waited >= config.patience:
                history.stopped_early = True
                break
    model.load_state_dict(best_state)
    model.eval()
    return history


@torch.no_grad()
def _validate(model: nn.Module, task: Task, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor,
              target_scale: float) -> tuple[float, float]:
    model.eval()
    out = model(x)
    loss = float(loss_fn(out, y))
    if task == "classification":
        return loss, float((out.argmax(dim=1) == y).float().mean())
    return loss, float(np.sqrt(loss)) * target_scale
