"""Kernel SHAP in numpy: Shapley values as a weighted least-squares fit over coalitions of players.

A coalition is a boolean row (player present or masked). Its value is the model output with the masked
players taken from the background. The Shapley kernel weights each coalition by its size; the efficiency
constraint (attributions sum to f(x) - base) is enforced exactly by eliminating the last player. Over all
2^M coalitions the fit is the exact Shapley values (Lundberg and Lee, 2017); with a budget, whole coalition
sizes are enumerated from the extremes inwards while they fit and the rest is sampled in complementary pairs
with a fixed seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np
import numpy.typing as npt

Masks = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]
SEED = 0


@dataclass(frozen=True)
class Design:
    """Coalitions to evaluate (empty and full ones excluded) and their regression weights."""

    masks: Masks
    weights: Floats
    exact: bool


def size_weight(players: int, size: int) -> float:
    """The Shapley kernel weight of one coalition of ``size`` players out of ``players``."""
    return (players - 1) / (comb(players, size) * size * (players - size))


def all_coalitions(players: int) -> Masks:
    """Every coalition but the empty and the full one, as a [2^M - 2, M] boolean array."""
    codes = np.arange(1, 2 ** players - 1, dtype=np.int64)
    return ((codes[:, None] >> np.arange(players)) & 1).astype(bool)


def exact_design(players: int) -> Design:
    """All coalitions with their kernel weights: the fit gives the exact Shapley values."""
    masks = all_coalitions(players)
    sizes = masks.sum(axis=1)
    weights = np.array([0.0, *(size_weight(players, s) for s in range(1, players)), 0.0])[sizes]
    return Design(masks, weights, exact=True)


def coalitions_needed(players: int) -> int:
    """Coalitions in the exact design with its two ends (the empty and the full one)."""
    return 2 ** players if players < 62 else 2 ** 62


def sampled_design(players: int, budget: int, seed: int = SEED) -> Design:
    """About ``budget`` coalitions: whole sizes 1 and M-1, 2 and M-2, ... while they fit, the remaining
    kernel mass sampled as random coalitions paired with their complements (duplicates merged)."""
    if coalitions_needed(players) - 2 <= budget:
        return exact_design(players)
    rng = np.random.default_rng(seed)
    mass = {s: (players - 1) / (s * (players - s)) for s in range(1, players)}
    rows: list[Masks] = []
    weights: list[Floats] = []
    left = budget
    remaining = sorted(mass)
    for size in range(1, players // 2 + 1):
        sizes = [size] if size == players - size else [size, players - size]
        count = sum(comb(players, s) for s in sizes)
        if count > left:
            break
        for s in sizes:
            block = _subsets_of_size(players, s)
            rows.append(block)
            weights.append(np.full(len(block), size_weight(players, s)))
            remaining.remove(s)
        left -= count
    pairs = left // 2
    if remaining and pairs:
        shares = np.array([mass[s] for s in remaining])
        total = float(shares.sum())
        drawn = rng.choice(np.array(remaining), size=pairs, p=shares / total)
        picks = np.zeros((pairs, players), dtype=bool)
        for row, size in zip(picks, drawn, strict=True):
            row[rng.choice(players, size=int(size), replace=False)] = True
        sampled = np.concatenate([picks, ~picks])
        unique, counts = np.unique(sampled, axis=0, return_counts=True)
        rows.append(unique)
        weights.append((counts * (total / (2 * pairs))).astype(np.float64))
    return Design(np.concatenate(rows), np.concatenate(weights).astype(np.float64), exact=False)


def _subsets_of_size(players: int, size: int) -> Masks:
    from itertools import combinations

    out = np.zeros((comb(players, size), players), dtype=bool)
    for row, chosen in zip(out, combinations(range(players), size), strict=True):
        row[list(chosen)] = True
    return out


def solve(design: Design, values: Floats, base: float, full: float) -> Floats:
    """Attributions from the coalition values: weighted least squares with sum(phi) = full - base exactly."""
    masks = design.masks.astype(np.float64)
    players = masks.shape[1]
    total = full - base
    if players == 1:
        return np.array([total])
    last = masks[:, -1:]
    target = (values - base) - last[:, 0] * total
    features = masks[:, :-1] - last
    weighted = features * design.weights[:, None]
    try:  # normal equations: an (M-1) x (M-1) system, far cheaper than an SVD of the whole design
        head = np.linalg.solve(weighted.T @ features, weighted.T @ target)
    except np.linalg.LinAlgError:
        root = np.sqrt(design.weights)[:, None]
        head, *_ = np.linalg.lstsq(features * root, target * root[:, 0], rcond=None)
    return np.append(head, total - head.sum())
