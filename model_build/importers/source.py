"""The contract between a source kind and the shared import tail, and the dispatch from a path to its kind.

A source kind is one module with one function, ``load(path, options, work_dir) -> ImportedSource``:

========================  =======================================  ==========================================
path                      module                                   ``ImportedSource.kind``
========================  =======================================  ==========================================
``*.onnx``                ``model_build.importers.onnx_file``      ``"onnx"``
``*.pt2`` / ``*.pt``      ``model_build.importers.torch_program``  ``"torch-export"`` / ``"torchscript"``
folder with config.json   ``model_build.importers.hf_folder``      ``"huggingface"``
========================  =======================================  ==========================================

What a source kind hands over (``ImportedSource``), and what the shared tail does with it:

- ``onnx_path``: one self-contained fp32 ONNX file in ``work_dir`` (the user's file, or maas's own export of a
  program), no external data. The tail vets it (operator domains), infers the signature (inputs, outputs,
  dtypes, batch axis), normalizes it into the served graph (first output = probabilities [batch, classes] for
  classifiers, values for regressors, vectors for embeddings; a ZipMap is removed, a label output dropped once
  it is checked to agree with the probabilities, batch axes named ``batch``) and makes the variants from that.
- ``reference``: the ORIGINAL runtime (PyTorch for programs and folders, onnxruntime fp32 on the user's file
  for ``.onnx``) run on encoded input tensors (the names of ``onnx_path``'s inputs). It returns one array per
  graph output of ``onnx_path``, in that order; a sequence-of-maps output (ZipMap) comes back as a float array
  [batch, classes], columns in the map's class order. Every variant is gated against it.
- ``task`` / ``labels`` / ``input_kind`` / ``features``: only what the source itself makes unambiguous (e.g.
  ``id2label`` of a Hugging Face config); None lets the tail infer them from the graph, the options and the
  sample, or stop with an ``InvalidSourceError`` naming the option to pass. Explicit options always win, and
  a contradiction (e.g. 3 labels for 4 outputs) is an ``InvalidSourceError``.
- ``preprocessing`` + ``files``: a manifest preprocessing spec and the auxiliary files it names (e.g. a
  ``TokenizerPreprocessing`` and ``{"tokenizer.json": ...}``). None: the tail derives tabular or image
  preprocessing from the graph's input and the options.
- ``texts``: sample texts used when the user gives no ``--sample`` for a text model (the tail generates
  tabular and image inputs itself, within the signature).
- ``make_candidates``: how to make the variants from the served fp32 graph, when the generic set (basic
  optimizations, dynamic int8, static int8, fp16; each skipped with a reason when it cannot apply) is not
  right, e.g. the transformer optimizer + int8 search of ``model_build.pretrained.make_candidates``.
  Called as ``make_candidates(served_onnx, work_dir, calibration_feeds)``; it must return a candidate named
  ``fp32`` with a file, and write its files under ``work_dir`` (``model.NAME.onnx`` by convention).
- ``notes``: lines for the card about what the source kind did (exporter, parity of its own export, ...).

A source kind raises ``InvalidSourceError`` (one line naming the problem) for anything the user's file or
options cause; nothing is published then. It writes only under ``work_dir`` (a temporary folder the tail
removes). Adding fields to these records is fine; renaming or removing them is not.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy.typing as npt

from functions.core.errors import InvalidSourceError
from functions.core.manifest import Preprocessing, Task
from functions.core.store import sha256_file
from model_build.variants import Candidate

SourceKind = Literal["onnx", "torch-export", "torchscript", "huggingface"]
InputKind = Literal["tabular", "image", "text"]
Feeds = dict[str, npt.NDArray[Any]]
"""Encoded input tensors by graph input name (what a preprocessor's ``encode`` returns)."""
Reference = Callable[[Feeds], list[npt.NDArray[Any]]]
CandidateMaker = Callable[[Path, Path, list[Feeds]], list[Candidate]]

SOURCE_MODULES: dict[str, str] = {
    "onnx": "model_build.importers.onnx_file",
    "torch": "model_build.importers.torch_program",
    "huggingface": "model_build.importers.hf_folder",
}


@dataclass(frozen=True)
class ImportOptions:
    """The ``maas import`` options, parsed (None: not given)."""

    name: str
    task: Task | None = None
    labels: tuple[str, ...] | None = None
    features: tuple[str, ...] | None = None
    input_kind: InputKind | None = None
    sample: Path | None = None
    """csv (with a header), jsonl or npy of raw inputs: gates, profile and background."""
    eval: Path | None = None
    """csv or jsonl of labelled rows (raw inputs plus the ``target`` column)."""
    target: str | None = None
    example: Path | None = None
    """A PyTorch program's example input (.npy, or .npz for several inputs)."""
    quick: bool = False


@dataclass
class ImportedSource:
    """What a source kind hands to the shared tail (see the module docstring)."""

    kind: SourceKind
    path: Path
    sha256: str
    onnx_path: Path
    reference: Reference
    reference_runtime: str
    """The original runtime in words, for the card: "onnxruntime 1.31.1 fp32 on the original file"."""
    task: Task | None = None
    labels: list[str] | None = None
    input_kind: InputKind | None = None
    features: list[str] | None = None
    preprocessing: Preprocessing | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    texts: list[str] | None = None
    make_candidates: CandidateMaker | None = None
    latency_batch: int | None = None
    """The larger batch size variants are timed at (None: the tail's default)."""
    description: str | None = None
    notes: list[str] = field(default_factory=list)


class SourceLoader(Protocol):
    def __call__(self, path: Path, options: ImportOptions, work_dir: Path) -> ImportedSource: ...


def source_kind(path: Path) -> str:
    """Which module handles ``path`` (a key of ``SOURCE_MODULES``); InvalidSourceError when none does."""
    if path.is_dir():
        if (path / "config.json").is_file():
            return "huggingface"
        raise InvalidSourceError(f"{path}: a folder without config.json is not a Hugging Face model folder")
    if not path.is_file():
        raise InvalidSourceError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix in (".pt2", ".pt"):
        return "torch"
    raise InvalidSourceError(f"{path}: unsupported model type {suffix or '(no suffix)'!r}; maas imports .onnx "
                             "files, PyTorch programs (.pt2, .pt) and Hugging Face model folders")


def load_source(path: Path, options: ImportOptions, work_dir: Path) -> ImportedSource:
    """Pick the source kind of ``path`` and load it."""
    kind = source_kind(path)
    try:
        module = importlib.import_module(SOURCE_MODULES[kind])
    except ModuleNotFoundError as exc:
        if exc.name != SOURCE_MODULES[kind]:
            raise
        raise InvalidSourceError(f"{path}: importing {kind} sources is not supported yet") from None
    loader: SourceLoader = module.load
    return loader(path, options, work_dir)


def file_sha256(path: Path) -> str:
    """sha256 of a file; of a folder, sha256 over its sorted "relative path  sha256" lines."""
    if path.is_file():
        return sha256_file(path)
    lines = [f"{p.relative_to(path).as_posix()}  {sha256_file(p)}\n" for p in sorted(path.rglob("*")) if p.is_file()]
    return hashlib.sha256("".join(lines).encode()).hexdigest()
