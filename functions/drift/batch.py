"""Drift of a batch input's rows against the model version's reference, accumulated chunk by chunk (bin
counts only, so memory stays flat) and summarized in the batch ``report.json``."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from functions.batch.formats import Chunk
from functions.core.errors import MaasError
from functions.core.model_cache import LoadedModel
from functions.core.profile import NO_REFERENCE, DriftTracker, input_matrix, prediction_column, read_profile
from functions.core.store import Store


class BatchDrift:
    """The tracker of one batch run; a version without a profile (or an unreadable one) is summarized as such."""

    def __init__(self, model: LoadedModel, tracker: DriftTracker | None, problem: dict[str, Any] | None = None):
        self.model = model
        self.tracker = tracker
        self.problem = problem or NO_REFERENCE

    @property
    def tracked(self) -> bool:
        """Whether there is a reference to count against (else the inputs need not be measured)."""
        return self.tracker is not None

    def add_chunk(self, chunk: Chunk, good_lines: list[int], output: npt.NDArray[Any]) -> None:
        """The chunk's good rows (those predicted) and their outputs."""
        if self.tracker is None:
            return
        instances = good_instances(chunk.lines, chunk.instances, good_lines)
        self.add(input_matrix(self.model.manifest.preprocessing, instances, self.model.preprocessor), output)

    def add(self, inputs: npt.NDArray[Any], output: npt.NDArray[Any]) -> None:
        """A chunk's measured inputs (``input_matrix`` of its good rows, computed where it was encoded) and the
        outputs of those rows."""
        if self.tracker is None:
            return
        self.tracker.add_inputs(inputs)
        self.tracker.add_predictions(prediction_column(self.model.manifest.task, output,
                                                       self.tracker.profile.prediction))

    def summary(self) -> dict[str, Any]:
        return dict(self.problem) if self.tracker is None else self.tracker.report()


def good_instances(lines: list[int], instances: Any, good_lines: list[int]) -> Any:
    """The instances of ``good_lines`` among a chunk's (an array stays an array)."""
    if len(good_lines) == len(lines):
        return instances
    keep = set(good_lines)
    kept = [i for line, i in zip(lines, instances, strict=True) if line in keep]
    return np.asarray(kept) if isinstance(instances, np.ndarray) else kept


def batch_drift(store: Store, model: LoadedModel) -> BatchDrift:
    """A tracker for ``model`` (never raises: a profile that cannot be read leaves the batch untouched)."""
    try:
        profile = read_profile(store, model.manifest)
    except (MaasError, OSError) as exc:
        return BatchDrift(model, None, {"status": "error", "detail": f"reference profile unreadable: {exc}"})
    return BatchDrift(model, None if profile is None else DriftTracker(profile))
