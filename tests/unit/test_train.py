"""The training loop: deterministic under a seed, early stopping, best weights restored."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from model_build.recipes.base import TrainingConfig
from model_build.train import History, train


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64)


def _fit(config: TrainingConfig, seed: int = 0) -> tuple[nn.Module, History]:
    torch.manual_seed(seed)
    model = nn.Linear(4, 2)
    x, y = _data()
    history = train(model, "classification", x[:150], y[:150], x[150:], y[150:], config, quick=False, seed=seed)
    return model, history


def test_training_learns_and_is_deterministic() -> None:
    config = TrainingConfig(epochs=30, batch_size=16, learning_rate=0.05, patience=30)
    first, history = _fit(config)
    second, _ = _fit(config)
    assert history.val_metric[-1] > 0.9
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_early_stopping_restores_the_best_epoch() -> None:
    # A huge learning rate makes validation loss bounce: training must stop early and restore the best epoch.
    config = TrainingConfig(epochs=200, batch_size=8, learning_rate=5.0, patience=3)
    model, history = _fit(config)
    assert history.stopped_early
    assert len(history.val_loss) < 200
    best = history.best_epoch
    assert history.val_loss[best - 1] == min(history.val_loss)
    x, y = _data()
    with torch.no_grad():
        restored = nn.functional.cross_entropy(model(torch.as_tensor(x[150:])), torch.as_tensor(y[150:]))
    assert abs(float(restored) - history.val_loss[best - 1]) < 1e-5


def test_quick_mode_uses_quick_epochs() -> None:
    torch.manual_seed(0)
    x, y = _data()
    history = train(nn.Linear(4, 2), "classification", x, y, x, y,
                    TrainingConfig(epochs=50, quick_epochs=2, patience=50), quick=True, seed=0)
    assert len(history.train_loss) == 2
