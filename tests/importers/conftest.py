"""Source models made inside the tests (a PyTorch module exported with torch.onnx.export, scikit-learn models
converted with skl2onnx), their sample files, and a store holding their quick imports."""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from click.testing import CliRunner

from functions.api.front import create_front
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from functions.core.store import LocalStore
from maas.cli import main
from tests.api.conftest import LiveServer
from tests.pinned import pin_variant

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_LABELS = ["setosa", "versicolor", "virginica"]


@dataclass
class Sources:
    folder: Path
    cancer_x: npt.NDArray[np.float32]
    cancer_features: list[str]
    iris_x: npt.NDArray[np.float32]
    iris_y: npt.NDArray[np.int64]

    def __getitem__(self, name: str) -> Path:
        return self.folder / name


def export_mlp(path: Path, inputs: int = 30, dynamic: bool = True, seed: int = 0) -> None:
    """A small PyTorch classifier (logits out) exported with torch.onnx.export."""
    import torch

    torch.manual_seed(seed)
    module = torch.nn.Sequential(torch.nn.Linear(inputs, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(4, inputs),), str(path), dynamo=False, input_names=["x"],
                          output_names=["logits"], opset_version=17,
                          dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}} if dynamic else None)
    torch.save(module, path.with_suffix(".module"))


def export_cnn(path: Path) -> None:
    """A small PyTorch CNN over 8 x 8 single-channel images (10 logits), exported with torch.onnx.export."""
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                 torch.nn.Linear(256, 10)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.rand(2, 1, 8, 8),), str(path), dynamo=False, input_names=["image"],
                          output_names=["logits"], opset_version=17,
                          dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}})
    torch.save(module, path.with_suffix(".module"))


def torch_logits(path: Path, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The PyTorch module's own outputs (saved beside its export)."""
    import torch

    module = torch.load(path.with_suffix(".module"), weights_only=False)
    with torch.no_grad():
        out: npt.NDArray[np.float32] = module(torch.from_numpy(x)).numpy()
    return out


@pytest.fixture(scope="session")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Sources:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folder = tmp_path_factory.mktemp("sources")
    iris = load_iris()
    x, y = iris.data.astype(np.float32), iris.target
    iris_model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(x, y)
    (folder / "iris.onnx").write_bytes(to_onnx(iris_model, x[:1], target_opset=17).SerializeToString())
    with (folder / "iris.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*IRIS_FEATURES, "species"])
        writer.writerows([*map(float, row), IRIS_LABELS[t]] for row, t in zip(x, y, strict=True))

    cancer = load_breast_cancer()
    cx = cancer.data.astype(np.float32)
    cancer_model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(cx, cancer.target)
    (folder / "cancer.onnx").write_bytes(
        to_onnx(cancer_model, cx[:1], target_opset=17, options={"zipmap": False}).SerializeToString())
    export_mlp(folder / "mlp.onnx")
    export_cnn(folder / "cnn.onnx")
    digits = load_digits()
    np.save(folder / "digits.npy", digits.images[:120].astype(np.float32))
    diabetes = load_diabetes()
    dx = diabetes.data.astype(np.float32)
    (folder / "diabetes.onnx").write_bytes(
        to_onnx(LinearRegression().fit(dx, diabetes.target), dx[:1], target_opset=17).SerializeToString())
    with (folder / "diabetes.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*diabetes.feature_names, "target"])
        writer.writerows([*map(float, row), float(t)] for row, t in zip(dx, diabetes.target, strict=True))
    np.save(folder / "cancer.npy", cx[:200])
    features = [f.replace(" ", "_") for f in cancer.feature_names]
    return Sources(folder, cx, features, x, y)


def assert_refused(store: Path, result: tuple[int, str, str], code: int, words: str) -> None:
    """A refused ``maas import``: exit ``code``, one error line containing ``words``, no traceback, nothing
    printed on stdout and no model ``bad`` in ``store``."""
    status, out, err = result
    assert status == code, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and words in errors[0], err
    assert "Traceback" not in err and out == ""
    assert not (store / "models" / "bad").exists()


def run_cli(*args: str | Path) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``maas ARGS`` run in-process."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="session")
def imported(tmp_path_factory: pytest.TempPathFactory, sources: Sources) -> LocalStore:
    """iris (ZipMap, with --sample and --eval), cancer (zipmap=False, no sample), mlp (PyTorch export, logits),
    cnn (PyTorch export over images), diabetes (a regressor, with --eval)."""
    store = LocalStore(tmp_path_factory.mktemp("imported") / "store")
    runs = [
        ["import", sources["iris.onnx"], "--name", "iris", "--labels", ",".join(IRIS_LABELS),
         "--sample", sources["iris.csv"], "--eval", sources["iris.csv"], "--target", "species"],
        ["import", sources["cancer.onnx"], "--name", "cancer", "--features", ",".join(sources.cancer_features)],
        ["import", sources["mlp.onnx"], "--name", "mlp", "--task", "classification", "--labels", "no,yes",
         "--features", ",".join(sources.cancer_features), "--sample", sources["cancer.npy"]],
        ["import", sources["cnn.onnx"], "--name", "cnn", "--task", "classification", "--sample",
         sources["digits.npy"]],
        ["import", sources["diabetes.onnx"], "--name", "diabetes", "--sample", sources["diabetes.csv"], "--eval",
         sources["diabetes.csv"], "--target", "target"],
    ]
    return import_each(store, runs)


def import_each(store: LocalStore, runs: list[list[str | Path]]) -> LocalStore:
    """Run each ``maas import`` (quick) into ``store``; each must print ``NAME 1``. The versions are then pinned
    to fp32, so comparisons are exact whichever variant this machine's speed gate chose (the gates checked them all)."""
    for args in runs:
        code, out, err = run_cli(*args, "--quick", "--store", store.uri)
        assert code == 0, err
        assert out.strip() == f"{args[3]} 1"
    pin_variant(store, "fp32")
    return store


@contextmanager
def served(store: LocalStore) -> Iterator[httpx.Client]:
    """A client of the fast front over ``store``, served by uvicorn on loopback."""
    settings = Settings(store=store.uri, alias_ttl_seconds=30)
    with LiveServer(create_front(settings, ModelCache(store, settings))) as url, \
            httpx.Client(base_url=url, timeout=60) as client:
        yield client
