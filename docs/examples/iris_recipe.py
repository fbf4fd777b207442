"""Bring your own model: a complete recipe in one file.

    maas build docs/examples/iris_recipe.py --quick

Iris ships with scikit-learn, so this builds offline. The recipe only says where the data comes from,
how raw instances are preprocessed (fitted on the training split), which module to train and which gates
to pass; maas does the rest (training loop, ONNX export, parity, quantization, gates, card, publishing).
"""

from __future__ import annotations

import numpy as np
from torch import nn

from functions.core.manifest import TabularPreprocessing
from model_build.recipes.base import Dataset, Fitted, GateConfig, Recipe, TrainingConfig, stratified_split


class IrisMLP(Recipe):
    name = "iris-mlp"
    task = "classification"
    description = "Iris species from four flower measurements (cm)."
    labels = ["setosa", "versicolor", "virginica"]
    input_name = "features"
    training = TrainingConfig(epochs=150, quick_epochs=20, batch_size=16, learning_rate=1e-2, patience=15)
    gates = GateConfig(min_metric=0.9)

    def load_data(self, quick: bool) -> Dataset:
        from sklearn.datasets import load_iris

        data = load_iris()
        x, y = data.data.astype("float64"), data.target.astype("int64")
        train, val, test = stratified_split(len(y), y, self.seed, val=0.2, test=0.2)
        return Dataset(x[train], y[train], x[val], y[val], x[test], y[test],
                       source="scikit-learn load_iris (150 flowers)",
                       extra={"features": ["sepal_length", "sepal_width", "petal_length", "petal_width"]})

    def fit_preprocessing(self, data: Dataset) -> Fitted:
        x = np.asarray(data.x_train)
        return Fitted(TabularPreprocessing(features=data.extra["features"], mean=x.mean(0).tolist(),
                                           std=x.std(0).tolist()))

    def build_model(self, fitted: Fitted) -> nn.Module:
        return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
