"""cancer-mlp: an MLP binary classifier on scikit-learn's breast cancer data, fed raw named features."""

from __future__ import annotations

import numpy as np
from torch import nn

from functions.core.manifest import TabularPreprocessing
from model_build.recipes.base import (
    Dataset,
    Fitted,
    GateConfig,
    PruningConfig,
    Recipe,
    TrainingConfig,
    stratified_split,
)


class CancerMLP(Recipe):
    name = "cancer-mlp"
    task = "classification"
    description = "Breast tumour classifier (malignant vs benign) from 30 raw cell-nucleus measurements."
    labels = ["malignant", "benign"]
    input_name = "features"
    training = TrainingConfig(epochs=200, quick_epochs=5, batch_size=32, learning_rate=1e-3,
                              weight_decay=1e-4, patience=15)
    gates = GateConfig(min_metric=0.93)
    pruning = PruningConfig(units=("neurons",), recovery_epochs=30, quick_recovery_epochs=2)

    def load_data(self, quick: bool) -> Dataset:
        from sklearn.datasets import load_breast_cancer

        data = load_breast_cancer()
        x, y = data.data.astype("float64"), data.target.astype("int64")
        train, val, test = stratified_split(len(y), y, self.seed)
        return Dataset(x[train], y[train], x[val], y[val], x[test], y[test],
                       source="scikit-learn load_breast_cancer (569 samples, Wisconsin diagnostic breast cancer)",
                       extra={"feature_names": [str(n) for n in data.feature_names]})

    def fit_preprocessing(self, data: Dataset) -> Fitted:
        x = np.asarray(data.x_train, dtype=np.float64)
        std = x.std(axis=0)
        return Fitted(TabularPreprocessing(features=data.extra["feature_names"], mean=x.mean(axis=0).tolist(),
                                           std=np.where(std > 0, std, 1.0).tolist()))

    def build_model(self, fitted: Fitted) -> nn.Module:
        assert isinstance(fitted.spec, TabularPreprocessing)
        width = len(fitted.spec.features)
        return nn.Sequential(nn.Linear(width, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 16), nn.ReLU(),
                             nn.Linear(16, 2))
