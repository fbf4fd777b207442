"""digits-cnn: a small CNN on scikit-learn's 8x8 handwritten digits."""

from __future__ import annotations

from torch import nn

from functions.core.manifest import ImagePreprocessing
from model_build.recipes.base import (
    Dataset,
    Fitted,
    GateConfig,
    PruningConfig,
    Recipe,
    TrainingConfig,
    stratified_split,
)


class DigitsCNN(Recipe):
    name = "digits-cnn"
    task = "classification"
    description = "Handwritten digit classifier (8x8 grayscale images, pixel values 0-16, 10 classes)."
    labels = [str(d) for d in range(10)]
    input_name = "image"
    training = TrainingConfig(epochs=60, quick_epochs=3, batch_size=64, learning_rate=2e-3, patience=8)
    gates = GateConfig(min_metric=0.95)
    pruning = PruningConfig(units=("neurons", "channels"), recovery_epochs=10, quick_recovery_epochs=1)

    def load_data(self, quick: bool) -> Dataset:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x, y = digits.images.astype("float32"), digits.target.astype("int64")
        train, val, test = stratified_split(len(y), y, self.seed)
        return Dataset(x[train], y[train], x[val], y[val], x[test], y[test],
                       source="scikit-learn load_digits (1,797 images of 8x8 pixels, UCI ML hand-written digits)")

    def fit_preprocessing(self, data: Dataset) -> Fitted:
        return Fitted(ImagePreprocessing(shape=[8, 8], value_range=(0.0, 16.0), scale=16.0))

    def build_model(self, fitted: Fitted) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.2), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10),
        )
