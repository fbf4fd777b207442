"""Hugging Face model folders: ``config.json``, ``model.safetensors`` and ``tokenizer.json``, loaded with
transformers from the folder only (``local_files_only=True``: nothing is ever fetched from a hub).

Two kinds of model, told apart by ``architectures`` in ``config.json`` (``--task`` overrides):

- ``*ForSequenceClassification``: a text classifier, served as probabilities (softmax of the logits), labels
  from ``id2label`` (``--labels`` overrides them, with the same count); one output and
  ``problem_type: regression`` makes a regressor. Multi-label heads are refused.
- a bare encoder (``BertModel``, a sentence-transformers folder, or any supported folder with
  ``--task embedding``): sentence embeddings, mean pooling under the attention mask and L2 normalisation,
  exactly the ``minilm-embed`` module (``MeanPooledEncoder``); a sentence-transformers folder that pools
  otherwise is refused.

Pickled weights (``pytorch_model.bin``) are refused: unpickling runs code. The export, the transformer
optimizer's fusion and the int8 search are ``minilm-embed``'s (``model_build.pretrained``); the text is
tokenized at serve time by the folder's own ``tokenizer.json``.
"""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from functions.core.errors import InvalidSourceError
from functions.core.manifest import Task, TokenizerInput, TokenizerPreprocessing
from functions.core.preprocessing import TokenizerPreprocessor
from model_build.contracts import OUTPUT_NAMES, PretrainedEncoder
from model_build.importers.source import CandidateMaker, Feeds, ImportedSource, ImportOptions, file_sha256
from model_build.pretrained import LATENCY_BATCH, TOKENIZER_FILE, export_encoder, make_candidates
from model_build.recipes.minilm_embed import MeanPooledEncoder, MiniLMEmbed
from model_build.variants import Candidate

SUPPORTED_MODEL_TYPES = ("bert", "distilbert", "roberta", "xlm-roberta")
"""Encoders whose export onnxruntime's transformer optimizer fuses (``model_type="bert"``)."""
POSITION_OFFSET = {"roberta": 2, "xlm-roberta": 2}
"""Position embeddings RoBERTa reserves (padding index + 1): usable length is max_position_embeddings - 2."""
EXPORTED_FILE = "folder.onnx"
WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
MAX_CHARS = 20_000
REFERENCE_BATCH = 64
SEARCH_ROWS = 64


def load(path: Path, options: ImportOptions, work_dir: Path) -> ImportedSource:
    """Check the folder, load the model, export it and hand it over with its tokenizer."""
    config = _read_json(path / "config.json", path)
    model_type = str(config.get("model_type", ""))
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise InvalidSourceError(f"{path.name}: model_type {model_type or '(none)'!r} is not supported; maas imports "
                                 f"{', '.join(SUPPORTED_MODEL_TYPES)} encoders")
    if options.input_kind not in (None, "text"):
        raise InvalidSourceError(f"{path.name}: a Hugging Face folder takes text, not --input-kind "
                                 f"{options.input_kind}")
    _check_weights(path)
    if not (path / TOKENIZER_FILE).is_file():
        raise InvalidSourceError(f"{path.name}: no {TOKENIZER_FILE} in the folder (maas serves text with the fast "
                                 "tokenizer's file: save it with AutoTokenizer.from_pretrained(...)"
                                 ".save_pretrained(folder))")
    task, architecture = _task(path, config, options)
    if task == "embedding":
        _check_pooling(path)
    tokenizer_json = (path / TOKENIZER_FILE).read_bytes()
    module, labels, inputs = _load_module(path, task, options)
    spec = TokenizerPreprocessing(tokenizer_file=TOKENIZER_FILE, max_length=_max_length(path, config, tokenizer_json),
                                  max_chars=MAX_CHARS, inputs=inputs)
    try:
        tokenizer = TokenizerPreprocessor(spec, tokenizer_json, inputs[0])
    except Exception as exc:  # tokenizers raises its own exception types on a malformed file
        raise InvalidSourceError(f"{path.name}: {TOKENIZER_FILE} is not a readable tokenizers file "
                                 f"({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__})") from None
    texts = [*MiniLMEmbed.SAMPLES, *MiniLMEmbed.DOCUMENTS, *MiniLMEmbed.QUERIES]
    exported = work_dir / EXPORTED_FILE
    export_encoder(module, tokenizer.encode(texts[:2]), exported, inputs, OUTPUT_NAMES[task])

    def reference(feeds: Feeds) -> list[npt.NDArray[Any]]:
        return [_run_module(module, feeds, inputs)]

    heads, hidden = _attention_shape(config)
    what = {"classification": f"text classifier, {len(labels or [])} labels", "regression": "text regressor",
            "embedding": "sentence embeddings: mean pooling, L2-normalised"}[task]
    return ImportedSource(
        kind="huggingface", path=path, sha256=file_sha256(path), onnx_path=exported, reference=reference,
        reference_runtime=f"PyTorch {torch.__version__.split('+')[0]} running transformers' {architecture}"
                          + (" with mean pooling" if task == "embedding" else ""),
        task=task, labels=labels, input_kind="text", preprocessing=spec, files={TOKENIZER_FILE: tokenizer_json},
        texts=texts, make_candidates=_candidate_maker(heads, hidden, search=not options.quick),
        latency_batch=LATENCY_BATCH,
        description=f"Imported from the Hugging Face folder {path.name} ({model_type}, {what}).",
        notes=[f"exported by maas with the TorchScript exporter ({architecture}"
               + (" + mean pooling + L2 normalisation" if task == "embedding" else "")
               + (" + softmax" if task == "classification" else "") + f"), max {spec.max_length} tokens"])


def _read_json(file: Path, folder: Path) -> dict[str, Any]:
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidSourceError(f"{folder.name}: {file.name} is not readable JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InvalidSourceError(f"{folder.name}: {file.name} is not a JSON object")
    return value


def _check_weights(path: Path) -> None:
    if any((path / name).is_file() for name in WEIGHTS):
        return
    pickled = next((name for name in PICKLED_WEIGHTS if (path / name).is_file()), None)
    if pickled:
        raise InvalidSourceError(
            f"{path.name}: refusing pickled weights {pickled} (unpickling runs code); convert them to "
            "model.safetensors where you trust the file: AutoModel.from_pretrained(folder)"
            ".save_pretrained(folder, safe_serialization=True)")
    raise InvalidSourceError(f"{path.name}: no weights in the folder (expected model.safetensors)")


def _task(path: Path, config: dict[str, Any], options: ImportOptions) -> tuple[Task, str]:
    """The task (``--task``, else from ``architectures``) and the architecture loaded for it."""
    architectures = [str(a) for a in config.get("architectures") or []]
    head = next((a for a in architectures if a.endswith("ForSequenceClassification")), None)
    if options.task == "embedding" or (options.task is None and head is None):
        base = next((a for a in architectures if a.endswith("Model")), None)
        sentence = (path / "modules.json").is_file()
        if options.task is None and base is None and not sentence:
            raise InvalidSourceError(
                f"{path.name}: architecture {', '.join(architectures) or '(none)'} is not supported; maas imports "
                "*ForSequenceClassification (classification) and bare encoders such as BertModel (sentence "
                "embeddings); pass --task embedding to mean-pool this folder's encoder")
        return "embedding", "AutoModel"
    if head is None:
        raise InvalidSourceError(f"{path.name}: --task {options.task} needs a *ForSequenceClassification "
                                 f"folder; this one is {', '.join(architectures) or 'a bare encoder'} (pass "
                                 "--task embedding)")
    problem = config.get("problem_type")
    if problem == "multi_label_classification":
        raise InvalidSourceError(f"{path.name}: multi-label classification heads are not supported (problem_type "
                                 "multi_label_classification)")
    regression = problem == "regression" or (problem is None and _num_labels(config) == 1)
    task: Task = "regression" if regression else "classification"
    if options.task is not None and options.task != task:
        raise InvalidSourceError(f"{path.name}: --task {options.task} contradicts the folder's {head} head "
                                 f"({'one output' if regression else f'{_num_labels(config)} labels'}: {task})")
    return task, head


def _num_labels(config: dict[str, Any]) -> int:
    id2label = config.get("id2label")
    return len(id2label) if isinstance(id2label, dict) and id2label else int(config.get("num_labels", 2))


def _check_pooling(path: Path) -> None:
    """A sentence-transformers folder must pool by the mean (what maas exports)."""
    pooling = path / "1_Pooling" / "config.json"
    if not pooling.is_file():
        return
    modes = [k.removeprefix("pooling_mode_") for k, v in _read_json(pooling, path).items()
             if k.startswith("pooling_mode_") and v]
    if modes != ["mean_tokens"]:
        raise InvalidSourceError(f"{path.name}: the folder pools with {', '.join(modes) or 'nothing'}; maas "
                                 "imports sentence embeddings with mean pooling only")


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report (e.g. the unused classification head of an embedding import) and its
    progress bars."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def _load_module(path: Path, task: Task,
                 options: ImportOptions) -> tuple[torch.nn.Module, list[str] | None, list[TokenizerInput]]:
    """The PyTorch module maas exports and gates against, its labels and the tokenizer outputs it takes."""
    from transformers import AutoModel, AutoModelForSequenceClassification

    loader = AutoModel if task == "embedding" else AutoModelForSequenceClassification
    try:
        with _quiet_transformers():
            # Eager attention exports to the subgraph onnxruntime's optimizer fuses (as minilm-embed).
            model = loader.from_pretrained(str(path), local_files_only=True, use_safetensors=True,
                                           attn_implementation="eager")
    except Exception as exc:  # transformers and safetensors raise many types for broken folders
        raise InvalidSourceError(f"{path.name}: transformers could not load the model "
                                 f"({type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc) else ''})"
                                 ) from None
    model.eval()
    parameters = inspect.signature(model.forward).parameters
    inputs: list[TokenizerInput] = ["input_ids", "attention_mask"]
    if "token_type_ids" in parameters:
        inputs.append("token_type_ids")
    if task == "embedding":
        return MeanPooledEncoder(model).eval(), None, inputs
    labels = None
    if task == "classification":
        id2label = model.config.id2label
        labels = [str(id2label[i]) for i in range(len(id2label))]
        if options.labels is not None:
            if len(options.labels) != len(labels):
                raise InvalidSourceError(f"{path.name}: --labels names {len(options.labels)} classes but the "
                                         f"classification head has {len(labels)} outputs")
            labels = list(options.labels)
    return _Head(model, softmax=task == "classification").eval(), labels, inputs


class _Head(torch.nn.Module):
    """A sequence-classification model as served: probabilities (softmax of the logits) or the regression value."""

    def __init__(self, model: torch.nn.Module, softmax: bool) -> None:
        super().__init__()
        self.model = model
        self.softmax = softmax

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        types = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        logits: torch.Tensor = self.model(input_ids=input_ids, attention_mask=attention_mask, **types).logits
        return torch.softmax(logits, dim=-1) if self.softmax else logits


@torch.no_grad()
def _run_module(module: torch.nn.Module, feeds: Feeds, inputs: list[TokenizerInput]) -> npt.NDArray[np.float32]:
    rows = len(feeds[inputs[0]])
    parts = [module(*(torch.from_numpy(np.ascontiguousarray(feeds[name][i:i + REFERENCE_BATCH])) for name in inputs))
             for i in range(0, rows, REFERENCE_BATCH)]
    return torch.cat(parts).numpy().astype(np.float32)


def _max_length(path: Path, config: dict[str, Any], tokenizer_json: bytes) -> int:
    """Tokens per text: the tokenizer file's truncation, else sentence-transformers' max_seq_length, else the
    tokenizer config's model_max_length; never more than the model's positions."""
    positions = int(config.get("max_position_embeddings", 512)) - POSITION_OFFSET.get(str(config["model_type"]), 0)
    candidates: list[Any] = []
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        truncation = json.loads(tokenizer_json).get("truncation")
        if isinstance(truncation, dict):
            candidates.append(truncation.get("max_length"))
    for name, key in (("sentence_bert_config.json", "max_seq_length"), ("tokenizer_config.json", "model_max_length")):
        if (path / name).is_file():
            candidates.append(_read_json(path / name, path).get(key))
    chosen = next((int(c) for c in candidates if isinstance(c, int) and not isinstance(c, bool) and c > 0), positions)
    return min(chosen, positions)


def _attention_shape(config: dict[str, Any]) -> tuple[int, int]:
    """(heads, hidden size) for the transformer optimizer (DistilBERT names them n_heads and dim)."""
    heads = config.get("num_attention_heads", config.get("n_heads"))
    hidden = config.get("hidden_size", config.get("dim"))
    return int(heads or 0), int(hidden or 0)


def _candidate_maker(heads: int, hidden: int, search: bool) -> CandidateMaker:
    """``minilm-embed``'s variants for the served graph: fused fp32, int8 dynamic (with its search of which
    feed-forward MatMuls to keep in float against the cosine gate; ``--quick`` keeps them all in float when
    quantizing everything fails, without searching) and fp16. For a classifier the cosine is between
    probability vectors. The search runs on the first ``SEARCH_ROWS`` calibration rows."""

    class FolderEncoder(MiniLMEmbed):
        num_heads = heads
        hidden_size = hidden

    recipe: PretrainedEncoder = FolderEncoder()

    def make(served: Path, work_dir: Path, calibration: list[Feeds]) -> list[Candidate]:
        from model_build import evaluate

        def unit_rows(model: Path) -> npt.NDArray[np.float32]:
            session = evaluate.cpu_session(model)
            names = {i.name for i in session.get_inputs()}
            parts = [session.run(None, {k: v[:SEARCH_ROWS] for k, v in feeds.items() if k in names})[0]
                     for feeds in _first_rows(calibration, SEARCH_ROWS)]
            out: npt.NDArray[np.float32] = np.concatenate(parts).astype(np.float32).reshape(sum(map(len, parts)), -1)
            unit: npt.NDArray[np.float32] = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
            return unit

        return make_candidates(recipe, served, work_dir, unit_rows, search=search)

    return make


def _first_rows(batches: list[Feeds], rows: int) -> Iterator[Feeds]:
    """Leading batches holding about ``rows`` rows in all."""
    seen = 0
    for feeds in batches:
        if seen >= rows:
            return
        yield feeds
        seen += len(next(iter(feeds.values())))
