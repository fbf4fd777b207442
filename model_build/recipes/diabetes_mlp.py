"""diabetes-mlp: an MLP regressor (MSE loss) on scikit-learn's diabetes progression data."""

from __future__ import annotations

import numpy as np
from torch import nn

from functions.core.manifest import TabularPreprocessing
from model_build.recipes.base import Dataset, Fitted, GateConfig, Recipe, TrainingConfig, stratified_split


class DiabetesMLP(Recipe):
    name = "diabetes-mlp"
    task = "regression"
    description = "Disease progression one year after baseline, from 10 baseline variables (age, sex, BMI, ...)."
    input_name = "features"
    training = TrainingConfig(epochs=300, quick_epochs=30, batch_size=32, learning_rate=2e-3,
                              weight_decay=1e-3, patience=25)
    gates = GateConfig(max_metric=65.0)

    def load_data(self, quick: bool) -> Dataset:
        from sklearn.datasets import load_diabetes

        data = load_diabetes(scaled=False)
        x, y = data.data.astype("float64"), data.target.astype("float32")
        train, val, test = stratified_split(len(y), None, self.seed)
        return Dataset(x[train], y[train], x[val], y[val], x[test], y[test],
                       source="scikit-learn load_diabetes (442 patients, raw unscaled features)",
                       extra={"feature_names": [str(n) for n in data.feature_names]})

    def fit_preprocessing(self, data: Dataset) -> Fitted:
        x = np.asarray(data.x_train, dtype=np.float64)
        std = x.std(axis=0)
        return Fitted(TabularPreprocessing(features=data.extra["feature_names"], mean=x.mean(axis=0).tolist(),
                                           std=np.where(std > 0, std, 1.0).tolist()))

    def build_model(self, fitted: Fitted) -> nn.Module:
        assert isinstance(fitted.spec, TabularPreprocessing)
        return nn.Sequential(nn.Linear(len(fitted.spec.features), 32), nn.ReLU(), nn.Dropout(0.1),
                             nn.Linear(32, 1))
