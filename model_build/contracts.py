"""The recipe contracts, trained (``Recipe``) and pretrained (``PretrainedEncoder``), in one place.

A trained recipe says where the data comes from, how natural instances are preprocessed (fitted on training
data only), which PyTorch module to train and which quality gates the build must pass. A pretrained encoder
says where its weights and tokenizer are and which texts check it. Each contract names, in ``pipeline``, the
function that builds it ("module:function"); ``model_build.builder.build_recipe`` runs it. Everything else --
training loop, export, parity, quantization, measurement, gates, model card, publishing -- is shared.
Importing this module does not import torch.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

import numpy.typing as npt

from functions.core.manifest import Preprocessing, Task

if TYPE_CHECKING:
    import torch

Instances = npt.NDArray[Any] | list[str]
OUTPUT_NAMES: dict[Task, str] = {"classification": "probabilities", "regression": "value", "embedding": "embedding"}
"""The served output's name per task (built and imported models alike)."""


@dataclass(frozen=True)
class TrainingConfig:
    """Optimiser and early-stopping settings; ``quick_epochs`` is used by ``--quick``."""

    epochs: int = 100
    quick_epochs: int = 3
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 8


@dataclass(frozen=True)
class GateConfig:
    """Quality gates. Accuracy drop is in points of accuracy (0.01 = 1 point); error increase is relative."""

    max_accuracy_drop: float = 0.01
    max_error_increase: float = 0.05
    min_gain_over_trivial: float = 0.1
    min_metric: float | None = None
    max_metric: float | None = None
    parity_tolerance: float = 1e-4


PruneUnit = Literal["neurons", "channels", "heads", "ffn"]
"""What structured pruning may remove: Linear neurons, Conv channels, attention heads, transformer FFN width."""


@dataclass(frozen=True)
class PruningConfig:
    """Structured pruning searched as build variants (``pruned-fp32``, ``pruned-int8-dynamic``, ...).

    Each level removes that fraction of every prunable layer's width (the served input width and the output
    layer are never pruned), rounded to multiples of ``round_to``; each pruned model is fine-tuned for a few
    epochs to recover, distilled from the unpruned model, then exported and gated like a quantized variant.
    """

    levels: tuple[float, ...] = (0.25, 0.5, 0.75)
    """Fractions of width removed, each tried in turn."""
    quick_level: float = 0.5
    """The one level ``--quick`` tries."""
    units: tuple[PruneUnit, ...] = ("neurons", "channels")
    recovery_epochs: int = 10
    quick_recovery_epochs: int = 1
    learning_rate: float | None = None
    """Of the recovery fine-tune; None: the recipe's training learning rate."""
    distill: Literal["logits", "embeddings"] | None = "logits"
    """Distil from the unpruned model's logits, or from its ``embed(x)`` output (a model whose trained part is a
    head on frozen embeddings), or not at all (labels only)."""
    round_to: int = 8
    """Kept widths are rounded to a multiple of this when that still removes something (odd widths run slower
    on onnxruntime's CPU kernels)."""

    def __post_init__(self) -> None:
        from functions.core.errors import UnknownRecipeError  # a recipe that cannot be built: exit 2, one line

        def number(value: object) -> bool:
            return isinstance(value, int | float) and not isinstance(value, bool)

        if not isinstance(self.levels, tuple | list) or not isinstance(self.units, tuple | list):
            raise UnknownRecipeError("invalid PruningConfig: levels and units must be tuples, "
                                     "e.g. levels=(0.25, 0.5), units=('neurons',)")
        problems = [f"level {level!r} is not a fraction strictly between 0 and 1"
                    for level in (*self.levels, self.quick_level) if not number(level) or not 0.0 < level < 1.0]
        if not self.levels:
            problems.append("levels is empty")
        unknown = [unit for unit in self.units if unit not in get_args(PruneUnit)]
        if not self.units or unknown:
            problems.append(f"units {tuple(self.units)!r} must name some of {', '.join(get_args(PruneUnit))}")
        for name in ("recovery_epochs", "quick_recovery_epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                problems.append(f"{name} {value!r} is not a whole number >= 0")
        if not isinstance(self.round_to, int) or isinstance(self.round_to, bool) or self.round_to < 1:
            problems.append(f"round_to {self.round_to!r} is not a whole number >= 1")
        if self.learning_rate is not None and (not number(self.learning_rate) or not self.learning_rate > 0):
            problems.append(f"learning_rate {self.learning_rate!r} is not a positive number (or None)")
        if self.distill not in ("logits", "embeddings", None):
            problems.append(f"distill {self.distill!r} is not 'logits', 'embeddings' or None")
        if problems:
            raise UnknownRecipeError(f"invalid PruningConfig: {'; '.join(problems)}")


@dataclass
class Dataset:
    """Raw (natural) instances and targets, already split; targets are class ids or float values."""

    x_train: Instances
    y_train: npt.NDArray[Any]
    x_val: Instances
    y_val: npt.NDArray[Any]
    x_test: Instances
    y_test: npt.NDArray[Any]
    source: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Fitted:
    """Preprocessing fitted on the training split, with any files it needs shipped in the model package."""

    spec: Preprocessing
    files: dict[str, bytes] = field(default_factory=dict)


class Recipe(abc.ABC):
    """Subclass this in one file and point ``maas build`` at the file (or register it by name)."""

    pipeline: ClassVar[str] = "model_build.pipeline:build"
    """The function that builds this contract: train, export, quantize, then the shared tail."""
    name: ClassVar[str]
    task: ClassVar[Task]
    description: ClassVar[str]
    labels: ClassVar[list[str] | None] = None
    input_name: ClassVar[str] = "input"
    exporter: ClassVar[Literal["dynamo", "torchscript"]] = "dynamo"
    seed: ClassVar[int] = 0
    training: ClassVar[TrainingConfig] = TrainingConfig()
    gates: ClassVar[GateConfig] = GateConfig()
    pruning: ClassVar[PruningConfig | None] = None
    """Structured pruning variants (off unless set; see ``PruningConfig``)."""
    dynamic_sequence: ClassVar[bool] = False
    """Export axis 1 as dynamic too (token ids padded to the longest text of a request)."""
    latency_batch: ClassVar[int] = 256
    """The larger batch size variants are timed at (smaller for heavy models)."""

    @abc.abstractmethod
    def load_data(self, quick: bool) -> Dataset:
        """Load and split the data with a fixed seed; ``quick`` may use a subset."""

    @abc.abstractmethod
    def fit_preprocessing(self, data: Dataset) -> Fitted:
        """Fit the preprocessing on ``data.x_train`` only."""

    @abc.abstractmethod
    def build_model(self, fitted: Fitted) -> torch.nn.Module:
        """A fresh module mapping preprocessed inputs to logits (classification) or one value (regression)."""

    def baselines(self, data: Dataset, quick: bool) -> dict[str, float]:
        """Other models' test metric on the same split, for the card (none by default)."""
        return {}

    def example_batch_size(self) -> int:
        """Batch size of the example input used for export tracing."""
        return 4


class PretrainedEncoder(abc.ABC):
    """A pretrained text encoder published as a sentence-embedding model."""

    pipeline: ClassVar[str] = "model_build.pretrained:build_pretrained"
    """The function that builds this contract: export, fuse, quantize, then the shared tail."""
    name: ClassVar[str]
    description: ClassVar[str]
    source: ClassVar[str]
    num_heads: ClassVar[int]
    hidden_size: ClassVar[int]
    max_length: ClassVar[int] = 128
    max_chars: ClassVar[int] = 20_000
    parity_min_cosine: ClassVar[float] = 0.9999
    variant_min_cosine: ClassVar[float] = 0.99
    seed: ClassVar[int] = 0

    @abc.abstractmethod
    def load(self) -> tuple[torch.nn.Module, bytes]:
        """The PyTorch reference (taking input_ids, attention_mask, token_type_ids; returning unit-norm
        embeddings) and the tokenizer.json bytes, both from local files."""

    @abc.abstractmethod
    def sample_texts(self) -> list[str]:
        """Varied texts for parity and the cosine gates."""

    @abc.abstractmethod
    def retrieval_check(self) -> tuple[list[str], list[str], list[int]]:
        """(queries, documents, index of each query's right document) for the top-1 gate."""

    def int8_float_candidates(self, graph_nodes: list[tuple[str, str]]) -> list[str]:
        """Nodes the int8 search may keep in float when quantizing everything fails the cosine gate; by
        default none (then int8 is all or nothing)."""
        return []
