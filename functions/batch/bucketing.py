"""Length bucketing for text models whose tokenizer pads a batch to its longest text.

Padding a chunk to its longest text makes every short text pay for the longest one. With bucketing, a chunk's
texts (the window) are tokenized once, grouped by their length rounded up to a multiple of ``GRID`` tokens, and
each group runs as one session run padded to exactly that length; the outputs are put back in input order.

With a row-independent variant (fp32, fp16, int8-static) each row's output is mathematically the one a run
without bucketing gives, but not always bit for bit: onnxruntime's kernels sum in another order for another
batch shape (more or fewer padded positions, more or fewer rows), so a float32 may differ in its last place
(minilm-embed fp32: identical for 512 mixed texts, up to 6e-8 for one-row runs; docs/batch.md). The same
already happens without bucketing between chunk sizes, worker counts and fan-out parts. With int8-dynamic,
activations are quantized with scales computed over each session run, so a row's numbers move with the rows
bucketed beside it (about 0.01 in a probability), as they already move with the rows of its chunk.

Models with fixed-length inputs (word-vocabulary models such as text-lstm, padded to ``max_tokens`` whatever
the batch) and numeric models are not bucketed: their runs already are length-homogeneous, and their output
bytes are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from functions.core.model_cache import LoadedModel
from functions.core.preprocessing import Tensors, TokenizerPreprocessor

GRID = 8
"""Padded lengths are multiples of this many tokens."""


def bucketable(model: LoadedModel) -> bool:
    """Whether the model's inputs are padded per batch (a tokenizer), so bucketing saves padding."""
    return isinstance(model.preprocessor, TokenizerPreprocessor)


def padded_length(tokens: int) -> int:
    """The length a text of ``tokens`` tokens is padded to: the next multiple of GRID (at least GRID)."""
    return max(GRID, -(-tokens // GRID) * GRID)


@dataclass
class Buckets:
    """A window's rows as length-homogeneous batches: ``batches[i]`` holds the rows ``rows[i]`` (positions in
    the window), in the order the outputs are concatenated."""

    batches: list[Tensors]
    rows: list[npt.NDArray[np.intp]]

    def restore(self, outputs: Sequence[npt.NDArray[Any]]) -> npt.NDArray[Any]:
        """The batches' outputs as one array in the window's order."""
        merged = np.concatenate(outputs) if len(outputs) > 1 else outputs[0]
        order = np.concatenate(self.rows) if len(self.rows) > 1 else self.rows[0]
        restored = np.empty_like(merged)
        restored[order] = merged
        return restored


def bucket(preprocessor: TokenizerPreprocessor, texts: Sequence[str]) -> Buckets:
    """Tokenize ``texts`` (already checked) once and group them by padded length, shortest first."""
    return group(preprocessor, preprocessor.tokenize(texts))


def group(preprocessor: TokenizerPreprocessor, encodings: Sequence[Any]) -> Buckets:
    """Unpadded encodings (``tokenize``) grouped by padded length, shortest first."""
    lengths = np.fromiter((padded_length(len(e)) for e in encodings), dtype=np.intp, count=len(encodings))
    order = np.argsort(lengths, kind="stable")
    edges, starts = np.unique(lengths[order], return_index=True)
    batches, rows = [], []
    for edge, members in zip(edges.tolist(), np.split(order, starts[1:]), strict=True):
        batches.append(preprocessor.pad([encodings[i] for i in members.tolist()], edge))
        rows.append(members)
    return Buckets(batches, rows)
