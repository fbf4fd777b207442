"""Drift arithmetic (numpy only): quantile bins, streaming bin counts and the population stability index.

Every monitored quantity (an input feature, a text statistic, a predicted label, a predicted value, a distance
to the reference centroid) is one numeric column cut into bins by edges: bin ``i`` holds the values in
``(edges[i-1], edges[i]]``, the first bin everything up to ``edges[0]``, the last everything above
``edges[-1]``. Labels are columns of class indices with edges at ``i + 0.5``.

PSI = sum((current - reference) * ln(current / reference)) over the bins, each share floored at ``FLOOR``
(current shares at ``0.5 / rows`` at least, so one empty bin of a small sample does not dominate).
Below ``WATCH`` (0.1) a distribution is stable, from ``WATCH`` to ``ACT`` (0.25) it moved and is worth a look,
from ``ACT`` on it moved enough to act (retrain, investigate the source).

Two samples of one distribution do not give PSI 0: with ``k`` bins, ``n`` current and ``m`` reference rows the
expected PSI is about ``(k - 1) (1/n + 1/m)`` (PSI is close to the chi-square statistic divided by the sample
size), 0.13 for 10 bins, 86 rows against 400. The verdict is taken on the PSI above that noise level
(``excess``), so a held-out split of a hundred rows is not reported as drift; with thousands of rows the noise
term is negligible and the verdict is the textbook one. Fewer than ``MIN_ROWS`` rows get no verdict.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

BINS = 10
WATCH = 0.1
ACT = 0.25
FLOOR = 1e-4
WORST_BINS = 2
MIN_ROWS = 20


def quantile_edges(values: npt.ArrayLike, bins: int = BINS) -> list[float]:
    """Inner edges at the reference's quantiles (duplicates removed, so discrete columns get fewer bins)."""
    column = np.asarray(values, dtype=np.float64).ravel()
    column = column[np.isfinite(column)]
    if column.size == 0:
        return []
    edges = np.unique(np.quantile(column, np.linspace(0, 1, bins + 1)[1:-1]))
    return [float(e) for e in edges.round(9)]


def label_edges(classes: int) -> list[float]:
    """Edges that put class index ``i`` alone in bin ``i``."""
    return [i + 0.5 for i in range(classes - 1)]


def bin_counts(values: npt.ArrayLike, edges: Sequence[float]) -> npt.NDArray[np.int64]:
    """How many finite values fall in each of the ``len(edges) + 1`` bins."""
    column = np.asarray(values, dtype=np.float64).ravel()
    column = column[np.isfinite(column)]
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), column, side="left")
    return np.bincount(index, minlength=len(edges) + 1).astype(np.int64)


def shares(counts: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Counts as proportions (zeros when empty)."""
    array = np.asarray(counts, dtype=np.float64)
    total = array.sum()
    return array / total if total else np.zeros_like(array)


def psi(reference: Sequence[float], current: Sequence[float] | npt.NDArray[Any], rows: int = 0) -> float:
    """Population stability index of ``current`` proportions (or counts) against ``reference`` proportions;
    ``rows`` (the current sample size) raises the floor of current shares to ``0.5 / rows``."""
    expected = np.maximum(np.asarray(reference, dtype=np.float64), FLOOR)
    actual = np.maximum(shares(current), max(FLOOR, 0.5 / rows) if rows else FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def noise(bins: int, rows: int, reference_rows: int) -> float:
    """Expected PSI between two samples of one distribution: ``(bins - 1) (1/rows + 1/reference_rows)``."""
    if rows <= 0:
        return 0.0
    return (bins - 1) * (1 / rows + (1 / reference_rows if reference_rows > 0 else 0.0))


def verdict(value: float | None) -> str:
    """ok below WATCH, watch below ACT, drift from ACT on (of the PSI in excess of the noise level)."""
    if value is None:
        return "no_data"
    return "drift" if value >= ACT else "watch" if value >= WATCH else "ok"


class Accumulator:
    """Bin counts of several columns, filled chunk by chunk: memory is the bins, not the rows."""

    def __init__(self, edges: Sequence[Sequence[float]]) -> None:
        self.edges = [np.asarray(e, dtype=np.float64) for e in edges]
        self.counts = [np.zeros(len(e) + 1, dtype=np.int64) for e in self.edges]
        self.rows = 0

    def add(self, matrix: npt.ArrayLike) -> None:
        """Add rows ``[N, columns]``; NaN cells (missing, masked, unreadable) are skipped."""
        array = np.asarray(matrix, dtype=np.float64)
        if array.ndim == 1:
            array = array.reshape(-1, 1)
        if array.shape[0] == 0:
            return
        self.rows += array.shape[0]
        finite = bool(np.isfinite(array).all())
        columns = np.ascontiguousarray(array.T)  # searchsorted on a strided column copies it first
        for column, edges in enumerate(self.edges):
            values = columns[column]
            if not finite:
                values = values[np.isfinite(values)]
            if values.size:
                self.counts[column] += np.bincount(np.searchsorted(edges, values), minlength=len(edges) + 1)

    def merge(self, other: Accumulator) -> None:
        """Add another accumulator's counts (same edges)."""
        self.rows += other.rows
        for mine, theirs in zip(self.counts, other.counts, strict=True):
            mine += theirs


def compare_column(name: str, edges: Sequence[float], reference: Sequence[float], counts: npt.NDArray[np.int64],
                   reference_rows: int, bin_names: Sequence[str] | None = None) -> dict[str, Any]:
    """PSI, noise level, excess, verdict and the bins that moved most (reference vs current share) of one column."""
    rows = int(counts.sum())
    if rows < MIN_ROWS:
        return {"name": name, "psi": None, "noise": None, "excess": None,
                "verdict": "no_data" if rows == 0 else "too_few_rows", "rows": rows, "worst_bins": []}
    value = psi(reference, counts, rows)
    occupied = int(np.count_nonzero(np.asarray(reference) > 0)) or 1
    level = noise(occupied, rows, reference_rows)
    excess = max(0.0, value - level)
    current = shares(counts)
    expected = np.asarray(reference, dtype=np.float64)
    moved = np.argsort(-np.abs(current - expected), kind="stable")[:WORST_BINS]
    names = list(bin_names) if bin_names is not None else bin_labels(edges)
    worst = [{"bin": names[i], "reference": round(float(expected[i]), 4), "current": round(float(current[i]), 4)}
             for i in moved]
    return {"name": name, "psi": round(value, 4), "noise": round(level, 4), "excess": round(excess, 4),
            "verdict": verdict(excess), "rows": rows, "worst_bins": worst}


def bin_labels(edges: Sequence[float]) -> list[str]:
    """Readable bin names: ``<= a``, ``(a, b]``, ``> z``."""
    if not edges:
        return ["all"]
    labels = [f"<= {edges[0]:.4g}"]
    labels += [f"({low:.4g}, {high:.4g}]" for low, high in itertools.pairwise(edges)]
    return [*labels, f"> {edges[-1]:.4g}"]
