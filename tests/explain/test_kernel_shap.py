"""The numpy Kernel SHAP against the Shapley formula itself, on value tables small enough to enumerate."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from functions.core.explain import kernel_shap


def shapley_by_formula(value: dict[tuple[int, ...], float], players: int) -> np.ndarray:
    phi = np.zeros(players)
    for i in range(players):
        for coalition in itertools.product((0, 1), repeat=players):
            if coalition[i]:
                continue
            size = sum(coalition)
            weight = math.factorial(size) * math.factorial(players - size - 1) / math.factorial(players)
            joined = tuple(1 if j == i else c for j, c in enumerate(coalition))
            phi[i] += weight * (value[joined] - value[coalition])
    return phi


def table(players: int, seed: int) -> dict[tuple[int, ...], float]:
    rng = np.random.default_rng(seed)
    return {c: float(rng.normal()) for c in itertools.product((0, 1), repeat=players)}


def fit(design: kernel_shap.Design, value: dict[tuple[int, ...], float], players: int) -> np.ndarray:
    values = np.array([value[tuple(int(b) for b in row)] for row in design.masks])
    return kernel_shap.solve(design, values, value[(0,) * players], value[(1,) * players])


@pytest.mark.parametrize("players", [1, 2, 5, 8])
def test_exact_design_gives_the_shapley_values_of_any_game(players: int) -> None:
    value = table(players, seed=players)
    phi = fit(kernel_shap.exact_design(players), value, players)
    np.testing.assert_allclose(phi, shapley_by_formula(value, players), atol=1e-10)


def test_sampled_design_keeps_efficiency_and_recovers_an_additive_game() -> None:
    players = 20
    weights = np.random.default_rng(3).normal(size=players)
    design = kernel_shap.sampled_design(players, budget=300)
    assert not design.exact and len(design.masks) <= 300
    values = design.masks.astype(float) @ weights + 1.5
    phi = kernel_shap.solve(design, values, base=1.5, full=1.5 + weights.sum())
    assert abs(phi.sum() - weights.sum()) < 1e-10  # efficiency holds exactly
    np.testing.assert_allclose(phi, weights, atol=1e-8)  # an additive game is fitted exactly from any sample


def test_sampled_design_is_deterministic_and_switches_to_exact_when_the_budget_allows() -> None:
    a, b = kernel_shap.sampled_design(16, 500), kernel_shap.sampled_design(16, 500)
    assert np.array_equal(a.masks, b.masks) and np.array_equal(a.weights, b.weights)
    assert kernel_shap.sampled_design(6, 62).exact and not kernel_shap.sampled_design(6, 61).exact
    sizes = a.masks.sum(axis=1)
    assert {1, 15} <= set(sizes.tolist())  # the extreme sizes are enumerated whole
    assert np.isclose(a.weights.sum(), sum((16 - 1) / (s * (16 - s)) for s in range(1, 16)))  # all kernel mass
