"""``maas import`` of PyTorch programs: a module saved with ``torch.export`` (.pt2, with and without a dynamic batch
axis) and as TorchScript (.pt, with ``--example``), served through the API and checked against the module's own
outputs; and what it refuses (one line, exit code 13, nothing published)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import torch

from functions.core import catalog
from functions.core.errors import InvalidSourceError, exit_code
from functions.core.store import LocalStore
from tests.importers.conftest import assert_refused, import_each, run_cli, served

FEATURES = [f"f{i}" for i in range(6)]
CLASSES = ["low", "mid", "high"]
SOURCE = exit_code(InvalidSourceError("x"))


class Net(torch.nn.Module):
    """A small classifier returning logits (the served graph gets a softmax)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layers(features)
        return out


class FixedBatch(torch.nn.Module):
    """A program that bakes its example's batch size into a reshape."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(4, -1).sum(dim=1, keepdim=True)


class TwoInputs(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


@dataclass
class Programs:
    folder: Path
    classifier: torch.nn.Module
    regressor: torch.nn.Module
    binary: torch.nn.Module
    x: npt.NDArray[np.float32]

    def __getitem__(self, name: str) -> Path:
        return self.folder / name


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> Programs:
    folder = tmp_path_factory.mktemp("programs")
    torch.manual_seed(0)
    classifier = Net().eval()
    regressor = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).eval()
    binary = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1)).eval()  # one logit
    x = np.random.default_rng(0).normal(size=(64, 6)).astype(np.float32)
    # exported at a fixed batch of 4 (what most users do): maas re-exports with a dynamic batch axis
    torch.export.save(torch.export.export(classifier, (torch.from_numpy(x[:4]),)), folder / "net.pt2")
    torch.jit.save(torch.jit.script(classifier), str(folder / "net.pt"))
    np.save(folder / "example.npy", x[:3].astype(np.float64))  # float64, as numpy makes it: cast to float32
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(regressor, (torch.from_numpy(x[:4]),), dynamic_shapes=({0: batch},)),
                      folder / "reg.pt2")
    torch.export.save(torch.export.export(binary, (torch.from_numpy(x[:4]),)), folder / "binary.pt2")
    np.save(folder / "rows.npy", x)
    return Programs(folder, classifier, regressor, binary, x)


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory, programs: Programs) -> LocalStore:
    store = LocalStore(tmp_path_factory.mktemp("imported-torch") / "store")
    features = ",".join(FEATURES)
    runs = [
        ["import", programs["net.pt2"], "--name", "net-export", "--labels", ",".join(CLASSES), "--features", features],
        ["import", programs["net.pt"], "--name", "net-script", "--labels", ",".join(CLASSES), "--features", features,
         "--example", programs["example.npy"], "--sample", programs["rows.npy"]],
        ["import", programs["reg.pt2"], "--name", "reg-export", "--task", "regression", "--features", features,
         "--sample", programs["rows.npy"]],
        ["import", programs["binary.pt2"], "--name", "binary-export", "--labels", "no,yes", "--features", features],
    ]
    return import_each(store, runs)


@pytest.fixture(scope="module")
def http(imported: LocalStore) -> Iterator[httpx.Client]:
    with served(imported) as client:
        yield client


def _own(module: torch.nn.Module, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    with torch.no_grad():
        out: npt.NDArray[np.float32] = module(torch.from_numpy(x)).numpy()
    return out


@pytest.mark.parametrize("name", ["net-export", "net-script"])
def test_classifier_serves_the_modules_own_probabilities(name: str, http: httpx.Client, programs: Programs) -> None:
    rows = programs.x[5:16]  # 11 rows: neither the export's batch of 4 nor the example's 3
    expected = torch.softmax(torch.from_numpy(_own(programs.classifier, rows)), dim=1).numpy()
    instances = [dict(zip(FEATURES, map(float, row), strict=True)) for row in rows]
    answer = http.post(f"/v1/models/{name}/predict", json={"instances": instances})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert [p["label"] for p in predictions] == [CLASSES[i] for i in expected.argmax(axis=1)]
    served = [[p["probabilities"][c] for c in CLASSES] for p in predictions]
    np.testing.assert_allclose(served, expected, atol=1e-5)
    v2 = http.post(f"/v2/models/{name}/infer", json={"inputs": [
        {"name": "features", "shape": [len(rows), 6], "datatype": "FP32", "data": rows.ravel().tolist()}]})
    assert v2.status_code == 200, v2.text
    np.testing.assert_allclose(np.reshape(v2.json()["outputs"][0]["data"], expected.shape), expected, atol=1e-5)


def test_one_logit_per_row_serves_two_class_probabilities(http: httpx.Client, programs: Programs) -> None:
    rows = programs.x[:10]
    positive = torch.sigmoid(torch.from_numpy(_own(programs.binary, rows))).numpy().reshape(-1)
    predictions = http.post("/v1/models/binary-export/predict", json={"instances": rows.tolist()}).json()["predictions"]
    np.testing.assert_allclose([p["probabilities"]["yes"] for p in predictions], positive, atol=1e-5)
    np.testing.assert_allclose([p["probabilities"]["no"] for p in predictions], 1 - positive, atol=1e-5)
    assert [p["label"] for p in predictions] == ["yes" if v > 0.5 else "no" for v in positive]


def test_regressor_serves_the_modules_own_values(http: httpx.Client, programs: Programs) -> None:
    rows = programs.x[:9]
    answer = http.post("/v1/models/reg-export/predict", json={"instances": rows.tolist()})
    assert answer.status_code == 200, answer.text
    values = [p["value"] for p in answer.json()["predictions"]]
    np.testing.assert_allclose(values, _own(programs.regressor, rows).reshape(-1), atol=1e-5)


@pytest.mark.parametrize(("name", "file", "kind"), [("net-export", "net.pt2", "torch-export"),
                                                     ("net-script", "net.pt", "torchscript"),
                                                     ("reg-export", "reg.pt2", "torch-export")])
def test_manifest_names_the_source_and_every_shipped_variant_passed(name: str, file: str, kind: str,
                                                                    imported: LocalStore,
                                                                    programs: Programs) -> None:
    manifest = catalog.read_manifest(imported, name, "1")
    source = manifest.provenance.imported_from
    assert source is not None and source.kind == kind and source.file == file
    assert source.sha256 == hashlib.sha256(programs[file].read_bytes()).hexdigest()
    assert "PyTorch" in source.reference
    parity = next(g for g in manifest.gates if g.name == "parity")
    assert parity.passed and parity.value <= 1e-4
    shipped = {v.name for v in manifest.variants if v.file}
    assert "fp32" in shipped
    assert all(g.passed for g in manifest.gates if g.variant in shipped)


def _cut(programs: Programs, tmp: Path, name: str) -> Path:
    data = programs[name].read_bytes()
    (tmp / name).write_bytes(data[: len(data) // 2])
    return tmp / name


CASES: dict[str, tuple[str, str]] = {
    "truncated .pt2": ("cut-pt2", "net.pt2: not a readable torch.export archive"),
    "truncated .pt": ("cut-pt", "net.pt: not a readable TorchScript file"),
    "torch.save pickle as .pt": ("pickle", "pickled.pt: not a readable TorchScript file (maas never unpickles"),
    "label count vs outputs": ("labels", "--labels names 2 classes but the program returns 3 class scores"),
    "classifier without labels": ("no-labels", "pass --labels with 3 names"),
    "no task": ("no-task", "pass --task classification|regression|embedding"),
    "TorchScript without example": ("no-example", "a TorchScript file carries no example input; pass --example"),
    "batch size baked in": ("fixed", "the program only runs on a batch of 4"),
    "two inputs": ("two-inputs", "the program takes 2 inputs (a, b)"),
    "example .npz without the input": ("npz", "--example two.npz: holds 2 arrays (a, b) and none is named 'features'"),
}


def _args(case: str, programs: Programs, tmp: Path) -> list[str | Path]:
    features = ["--features", ",".join(FEATURES)]
    if case == "cut-pt2":
        return [_cut(programs, tmp, "net.pt2"), "--labels", ",".join(CLASSES)]
    if case == "cut-pt":
        return [_cut(programs, tmp, "net.pt"), "--labels", ",".join(CLASSES), "--example", programs["example.npy"]]
    if case == "pickle":
        torch.save(programs.classifier, tmp / "pickled.pt")
        return [tmp / "pickled.pt", "--labels", ",".join(CLASSES), "--example", programs["example.npy"]]
    if case == "labels":
        return [programs["net.pt2"], "--labels", "a,b", *features]
    if case == "no-labels":
        return [programs["net.pt2"], "--task", "classification", *features]
    if case == "no-task":
        return [programs["net.pt2"], *features]
    if case == "no-example":
        return [programs["net.pt"], "--labels", ",".join(CLASSES), *features]
    if case == "npz":
        np.savez(tmp / "two.npz", a=programs.x[:2], b=programs.x[:2])
        return [programs["net.pt"], "--labels", ",".join(CLASSES), "--example", tmp / "two.npz"]
    if case == "fixed":
        torch.export.save(torch.export.export(FixedBatch(), (torch.ones(4, 2, 3),)), tmp / "fixed.pt2")
        return [tmp / "fixed.pt2", "--task", "regression"]
    torch.export.save(torch.export.export(TwoInputs(), (torch.ones(2, 3), torch.ones(2, 3))), tmp / "two.pt2")
    return [tmp / "two.pt2", "--task", "regression"]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_program_is_one_line_and_publishes_nothing(case: str, programs: Programs, tmp_path: Path) -> None:
    kind, words = CASES[case]
    store = tmp_path / "store"
    assert_refused(store, run_cli("import", *_args(kind, programs, tmp_path), "--name", "bad", "--quick",
                                  "--store", f"file://{store}"), SOURCE, words)
