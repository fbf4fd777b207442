"""Gate arithmetic and the choice of the shipped variant."""

from __future__ import annotations

import pytest

from model_build.gates import BuildFailedError, Measurement, check_parity, choose_cpu_variant, quality_gates
from model_build.recipes.base import GateConfig


def _m(name: str, metric: float, b1: float = 1.0, b256: float = 10.0, parity: float = 0.0) -> Measurement:
    return Measurement(name, metric, b1, b256, parity)


def test_accuracy_drop_over_one_point_fails() -> None:
    fp32 = _m("fp32", 0.95)
    ok = quality_gates("classification", GateConfig(), _m("int8", 0.941), fp32, trivial=0.1, quick=False)
    bad = quality_gates("classification", GateConfig(), _m("int8", 0.935), fp32, trivial=0.1, quick=False)
    assert all(g.passed for g in ok)
    assert [g.name for g in bad if not g.passed] == ["accuracy_drop"]


def test_regression_error_increase_over_five_percent_fails() -> None:
    fp32 = _m("fp32", 50.0)
    ok = quality_gates("regression", GateConfig(), _m("int8", 52.4), fp32, trivial=80.0, quick=False)
    bad = quality_gates("regression", GateConfig(), _m("int8", 53.0), fp32, trivial=80.0, quick=False)
    assert all(g.passed for g in ok)
    assert [g.name for g in bad if not g.passed] == ["error_increase"]


def test_a_model_no_better_than_trivial_fails_even_in_quick_mode() -> None:
    results = quality_gates("classification", GateConfig(), _m("fp32", 0.3), _m("fp32", 0.3), trivial=0.3, quick=True)
    assert [g.name for g in results if not g.passed] == ["beats_trivial"]


def test_absolute_floor_applies_only_to_full_builds() -> None:
    config = GateConfig(min_metric=0.9)
    full = quality_gates("classification", config, _m("fp32", 0.8), _m("fp32", 0.8), trivial=0.1, quick=False)
    quick = quality_gates("classification", config, _m("fp32", 0.8), _m("fp32", 0.8), trivial=0.1, quick=True)
    assert [g.name for g in full if not g.passed] == ["min_accuracy"]
    assert all(g.passed for g in quick)


def test_parity_failure_stops_the_build() -> None:
    with pytest.raises(BuildFailedError, match="parity"):
        check_parity(_m("fp32", 0.9, parity=1e-2), GateConfig())
    assert check_parity(_m("fp32", 0.9, parity=1e-6), GateConfig()).passed


def test_fastest_passing_variant_ships_only_when_faster_at_both_batch_sizes() -> None:
    fp32 = _m("fp32", 0.9, b1=1.0, b256=10.0)
    faster = _m("int8-static", 0.9, b1=0.8, b256=7.0)
    faster_b1_only = _m("int8-dynamic", 0.9, b1=0.5, b256=12.0)
    assert choose_cpu_variant([fp32, faster, faster_b1_only], fp32)[0] == "int8-static"
    assert choose_cpu_variant([fp32, faster_b1_only], fp32)[0] == "fp32"
    assert choose_cpu_variant([fp32, _m("int8-static", 0.9, b1=0.97, b256=9.8)], fp32)[0] == "fp32"


def test_no_passing_variant_fails() -> None:
    with pytest.raises(BuildFailedError):
        choose_cpu_variant([], _m("fp32", 0.5))
