"""The version manifest: what a published model version is, how to feed it, and how it was checked.

Frozen dataclasses read with ``Manifest.from_json`` (every field type-checked, unknown fields refused, errors
naming the field) and written with ``to_dict()``; the JSON on disk is unchanged from earlier releases. Values
that become store keys or cache paths (file names, sha256 digests) are checked when a record is made, and
``from_json`` checks the cross references (selected variants exist and are listed in ``files``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from functions.core.names import check_file_name, check_model_name, check_sha256, check_version
from functions.core.records import RecordError, parse_json, parse_record, to_plain

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"

Task = Literal["classification", "regression", "embedding"]
Target = Literal["cpu", "gpu"]
TokenizerInput = Literal["input_ids", "attention_mask", "token_type_ids"]


class _Record:
    """Shared ``to_dict`` of manifest records."""

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON values, as written on disk."""
        return to_plain(self)


@dataclass(frozen=True, kw_only=True)
class TensorSpec(_Record):
    """A named model input or output; string dims are dynamic axes."""

    name: str
    dtype: str
    shape: list[int | str]


@dataclass(frozen=True, kw_only=True)
class ImagePreprocessing(_Record):
    """Images as nested arrays of ``shape``, values in ``value_range``, divided by ``scale`` and given a channel."""

    kind: Literal["image"] = "image"
    shape: list[int]
    value_range: tuple[float, float]
    scale: float


@dataclass(frozen=True, kw_only=True)
class TabularPreprocessing(_Record):
    """Raw named features (dicts) or ordered arrays, standardized with training statistics."""

    kind: Literal["tabular"] = "tabular"
    features: list[str]
    mean: list[float]
    std: list[float]


@dataclass(frozen=True, kw_only=True)
class TextVocabPreprocessing(_Record):
    """Raw text, lower-cased and split into word tokens, mapped through a vocabulary file to padded ids."""

    kind: Literal["text_vocab"] = "text_vocab"
    vocab_file: str
    max_tokens: int
    max_chars: int
    lowercase: bool = True
    pad_id: int = 0
    unk_id: int = 1

    def __post_init__(self) -> None:
        _field("vocab_file", check_file_name, self.vocab_file)


@dataclass(frozen=True, kw_only=True)
class TokenizerPreprocessing(_Record):
    """Raw text through a Hugging Face ``tokenizers`` file shipped with the version: truncated to
    ``max_length`` tokens, padded to the longest text of the request; ``inputs`` names the model inputs fed
    (of input_ids, attention_mask, token_type_ids)."""

    kind: Literal["tokenizer"] = "tokenizer"
    tokenizer_file: str
    max_length: int
    max_chars: int
    inputs: list[TokenizerInput]

    def __post_init__(self) -> None:
        _field("tokenizer_file", check_file_name, self.tokenizer_file)


Preprocessing = ImagePreprocessing | TabularPreprocessing | TextVocabPreprocessing | TokenizerPreprocessing


@dataclass(frozen=True, kw_only=True)
class FileEntry(_Record):
    """A file of the version with its integrity data."""

    path: str
    sha256: str
    bytes: int

    def __post_init__(self) -> None:
        _field("path", check_file_name, self.path)
        _field("sha256", check_sha256, self.sha256)
        _field("bytes", _non_negative, self.bytes)


@dataclass(frozen=True, kw_only=True)
class VariantMetrics(_Record):
    """Held-out quality and measured speed of one variant on the build machine."""

    metric: float
    latency_ms_b1: float | None = None
    latency_ms_b256: float | None = None
    parity_max_abs_diff: float | None = None


@dataclass(frozen=True, kw_only=True)
class Variant(_Record):
    """One candidate ONNX file of the version, shipped or not, with the gate outcome."""

    name: str
    file: str | None
    precision: str
    target: Target
    sha256: str | None = None
    bytes: int | None = None
    metrics: VariantMetrics | None = None
    passed: bool
    reason: str

    def __post_init__(self) -> None:
        if self.file is not None:
            _field("file", check_file_name, self.file)
        if self.sha256 is not None:
            _field("sha256", check_sha256, self.sha256)
        if self.bytes is not None:
            _field("bytes", _non_negative, self.bytes)


@dataclass(frozen=True, kw_only=True)
class GateResult(_Record):
    """One quality gate: what was checked, the threshold and the measured value."""

    name: str
    variant: str
    passed: bool
    value: float
    threshold: float
    detail: str


@dataclass(frozen=True, kw_only=True)
class PruningLevel(_Record):
    """One pruning level tried by the build: the pruned model's size and cost, and its pruned-fp32 variant's
    measured speed, metric and gate outcome."""

    level: float
    """Fraction of each prunable layer's width removed (0.5 = half), before rounding to ``round_to``."""
    params: int
    """Parameters of the pruned PyTorch model."""
    macs: int
    """Multiply-accumulates of one forward pass on one example instance."""
    kept: dict[str, int]
    """Width kept per prunable layer (same keys as ``Pruning.widths``)."""
    bytes: int | None = None
    """Size of the level's pruned-fp32 ONNX file (None when it could not be made)."""
    latency_ms_b1: float | None = None
    latency_ms_b256: float | None = None
    """At the manifest's ``latency_batch`` (the name is kept from the variant records)."""
    metric: float | None = None
    """Held-out metric of the level's pruned-fp32 ONNX file."""
    parity_max_abs_diff: float | None = None
    """max |onnxruntime - pruned torch| on the test split."""
    passed: bool
    reason: str

    def __post_init__(self) -> None:
        if not 0.0 < self.level < 1.0:
            raise RecordError("level", f"{self.level} is not a fraction between 0 and 1")
        for name in ("params", "macs", "bytes"):
            if getattr(self, name) is not None:
                _field(name, _non_negative, getattr(self, name))
        for label, width in self.kept.items():
            _field(f"kept.{label}", _non_negative, width)


@dataclass(frozen=True, kw_only=True)
class Pruning(_Record):
    """Structured pruning searched by ``maas build``: how, what the unpruned model had, every level tried, and
    which level the ``pruned-*`` variants were made from."""

    method: str
    library: str
    """The pruning library and its version, e.g. ``torch-pruning 1.6.1``."""
    criterion: str
    units: list[str]
    """What may be pruned: neurons, channels, heads, ffn."""
    recovery: str
    """The recovery fine-tune after pruning, in words (epochs, distillation)."""
    params: int
    macs: int
    """Of the unpruned model, counted like each level's."""
    widths: dict[str, int]
    """Width of each prunable layer of the unpruned model (neurons, channels, heads or FFN width)."""
    levels: list[PruningLevel]
    chosen_level: float | None
    """The level the ``pruned-*`` variants were made from; None when no level passed its gates."""
    reason: str

    def __post_init__(self) -> None:
        _field("params", _non_negative, self.params)
        _field("macs", _non_negative, self.macs)
        for label, width in self.widths.items():
            _field(f"widths.{label}", _non_negative, width)
        if self.chosen_level is not None and not any(
                lvl.level == self.chosen_level and lvl.passed for lvl in self.levels):
            raise RecordError("chosen_level", f"{self.chosen_level} is not a level that passed")


@dataclass(frozen=True, kw_only=True)
class ImportedFrom(_Record):
    """``maas import``: the source model a version was made from (file name only, never a path)."""

    kind: str
    """onnx, torch-export, torchscript or huggingface."""
    file: str
    sha256: str
    """Of the source file; of a folder, of its sorted (relative path, sha256) listing."""
    reference: str
    """The original runtime every variant was checked against."""

    def __post_init__(self) -> None:
        _field("sha256", check_sha256, self.sha256)


@dataclass(frozen=True, kw_only=True)
class Provenance(_Record):
    """Where the version came from."""

    recipe: str
    git_commit: str | None
    libraries: dict[str, str]
    data_sha256: str
    seed: int
    quick: bool
    build_seconds: float
    imported_from: ImportedFrom | None = None
    """Set by ``maas import`` only."""


@dataclass(frozen=True, kw_only=True)
class Manifest(_Record):
    """Everything serving needs to know about a version, and how it was verified."""

    schema_version: int = SCHEMA_VERSION
    name: str
    version: str
    created_at: str
    task: Task
    description: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    preprocessing: Preprocessing
    labels: list[str] | None = None
    metric_name: str
    latency_batch: int = 256
    baselines: dict[str, float] = field(default_factory=dict)
    variants: list[Variant]
    selected: dict[Target, str]
    selection_reason: str
    gates: list[GateResult]
    reference_stats: dict[str, list[float]]
    files: list[FileEntry]
    provenance: Provenance
    importance: dict[str, float] | None = None
    """Global importance: mean |SHAP attribution| per input over held-out instances (optional)."""
    evaluation: dict[str, Any] | None = None
    """Test-split per-class precision/recall/F1 and macro averages (+ ROC AUC), or MAE and R² (optional)."""
    pruning: Pruning | None = None
    """Structured pruning levels tried by the build (optional; absent when the recipe does not prune)."""

    def to_dict(self) -> dict[str, Any]:
        """As written on disk; the optional explanation and pruning fields only when set, so older manifests
        round-trip."""
        plain = to_plain(self)
        for name in ("importance", "evaluation", "pruning"):
            if plain[name] is None:
                del plain[name]
        if plain["provenance"]["imported_from"] is None:
            del plain["provenance"]["imported_from"]
        return plain

    @classmethod
    def from_json(cls, data: bytes | str) -> Manifest:
        """Parse and fully validate a manifest document (RecordError names the first problem)."""
        manifest = parse_json(cls, data)
        manifest.check()
        return manifest

    @classmethod
    def from_dict(cls, value: object) -> Manifest:
        """Like ``from_json``, from already-decoded JSON values."""
        manifest = parse_record(cls, value)
        manifest.check()
        return manifest

    def check(self) -> None:
        """Cross-field checks of a published manifest: valid name and version, every file named once, each
        selected variant listed in ``variants`` with a file listed in ``files``, auxiliary files listed too."""
        _field("name", check_model_name, self.name)
        _field("version", check_version, self.version)
        listed: set[str] = set()
        for i, entry in enumerate(self.files):
            if entry.path in listed:
                raise RecordError(f"files[{i}].path", f"{entry.path!r} is listed twice")
            listed.add(entry.path)
        names = {v.name for v in self.variants}
        if "cpu" not in self.selected:
            raise RecordError("selected", "no cpu variant selected")
        for target, chosen in self.selected.items():
            if chosen not in names:
                raise RecordError(f"selected.{target}", f"variant {chosen!r} is not in variants")
            file = self.variant(chosen).file
            if file is None or file not in listed:
                raise RecordError(f"selected.{target}", f"variant {chosen!r} has no file listed in files")
        aux = getattr(self.preprocessing, "vocab_file", None) or getattr(self.preprocessing, "tokenizer_file", None)
        if aux is not None and aux not in listed:
            raise RecordError("preprocessing", f"{aux!r} is not listed in files")
        if not self.inputs or not self.outputs:
            raise RecordError("inputs" if not self.inputs else "outputs", "at least one tensor required")

    def variant(self, name: str) -> Variant:
        """The variant called ``name``."""
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(name)

    def file(self, path: str) -> FileEntry:
        """The integrity entry of ``path``."""
        for entry in self.files:
            if entry.path == path:
                return entry
        raise KeyError(path)


def _non_negative(value: int) -> int:
    if value < 0:
        raise ValueError(f"{value} is negative")
    return value


def _field(name: str, check: Any, value: Any) -> None:
    try:
        check(value)
    except ValueError as exc:
        raise RecordError(name, str(exc)) from None
    except Exception as exc:  # names.check_* raise InvalidNameError (a NotFoundError) for names
        raise RecordError(name, getattr(exc, "message", str(exc))) from None
