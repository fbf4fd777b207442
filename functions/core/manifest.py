"""The version manifest: what a published model version is, how to feed it, and how it was checked."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"

Task = Literal["classification", "regression", "embedding"]
Target = Literal["cpu", "gpu"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TensorSpec(_Model):
    """A named model input or output; string dims are dynamic axes."""

    name: str
    dtype: str
    shape: list[int | str]


class ImagePreprocessing(_Model):
    """Images as nested arrays of ``shape``, values in ``value_range``, divided by ``scale`` and given a channel."""

    kind: Literal["image"] = "image"
    shape: list[int]
    value_range: tuple[float, float]
    scale: float


class TabularPreprocessing(_Model):
    """Raw named features (dicts) or ordered arrays, standardized with training statistics."""

    kind: Literal["tabular"] = "tabular"
    features: list[str]
    mean: list[float]
    std: list[float]


class TextVocabPreprocessing(_Model):
    """Raw text, lower-cased and split into word tokens, mapped through a vocabulary file to padded ids."""

    kind: Literal["text_vocab"] = "text_vocab"
    vocab_file: str
    max_tokens: int
    max_chars: int
    lowercase: bool = True
    pad_id: int = 0
    unk_id: int = 1


class TokenizerPreprocessing(_Model):
    """Raw text through a Hugging Face ``tokenizers`` file shipped with the version: truncated to
    ``max_length`` tokens, padded to the longest text of the request; ``inputs`` names the model inputs fed
    (of input_ids, attention_mask, token_type_ids)."""

    kind: Literal["tokenizer"] = "tokenizer"
    tokenizer_file: str
    max_length: int
    max_chars: int
    inputs: list[Literal["input_ids", "attention_mask", "token_type_ids"]]


Preprocessing = Annotated[
    ImagePreprocessing | TabularPreprocessing | TextVocabPreprocessing | TokenizerPreprocessing,
    Field(discriminator="kind"),
]


class FileEntry(_Model):
    """A file of the version with its integrity data."""

    path: str
    sha256: str
    bytes: int


class VariantMetrics(_Model):
    """Held-out quality and measured speed of one variant on the build machine."""

    metric: float
    latency_ms_b1: float | None = None
    latency_ms_b256: float | None = None
    parity_max_abs_diff: float | None = None


class Variant(_Model):
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


class GateResult(_Model):
    """One quality gate: what was checked, the threshold and the measured value."""

    name: str
    variant: str
    passed: bool
    value: float
    threshold: float
    detail: str


class Provenance(_Model):
    """Where the version came from."""

    recipe: str
    git_commit: str | None
    libraries: dict[str, str]
    data_sha256: str
    seed: int
    quick: bool
    build_seconds: float


class Manifest(_Model):
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
    baselines: dict[str, float] = Field(default_factory=dict)
    variants: list[Variant]
    selected: dict[Target, str]
    selection_reason: str
    gates: list[GateResult]
    reference_stats: dict[str, list[float]]
    files: list[FileEntry]
    provenance: Provenance

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
