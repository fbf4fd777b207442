"""A deliberately broken recipe: the optimiser never moves (learning rate 0), so no variant can pass."""

from __future__ import annotations

from model_build.recipes.base import TrainingConfig
from model_build.recipes.cancer_mlp import CancerMLP


class DegradedCancerMLP(CancerMLP):
    name = "degraded-mlp"
    description = "cancer-mlp that never trains; must fail its gates."
    training = TrainingConfig(epochs=2, quick_epochs=2, learning_rate=0.0)
