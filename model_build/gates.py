"""Quality gates over measured variants, and the choice of the shipped CPU variant."""

from __future__ import annotations

from dataclasses import dataclass

from functions.core.errors import BuildFailedError as BuildFailedError
from functions.core.manifest import GateResult, Task
from model_build.recipes.base import GateConfig

SPEED_MARGIN = 0.95
"""A variant other than fp32 ships only if it is at least 5% faster at batch 1 and at batch 256."""


@dataclass
class Measurement:
    """What was measured for one variant on this machine."""

    name: str
    metric: float
    latency_ms_b1: float
    latency_ms_b256: float
    parity_max_abs_diff: float
    target: str = "cpu"


def higher_is_better(task: Task) -> bool:
    """Accuracy goes up, RMSE goes down."""
    return task == "classification"


def parity_gate(measurement: Measurement, config: GateConfig) -> GateResult:
    """ONNX Runtime must reproduce PyTorch on held-out inputs."""
    diff = measurement.parity_max_abs_diff
    return GateResult(name="parity", variant=measurement.name, passed=diff <= config.parity_tolerance, value=diff,
                      threshold=config.parity_tolerance, detail="max |onnxruntime - torch| on the test split")


def check_parity(measurement: Measurement, config: GateConfig) -> GateResult:
    """ONNX Runtime must reproduce PyTorch on held-out inputs; a failure stops the build."""
    result = parity_gate(measurement, config)
    diff = measurement.parity_max_abs_diff
    if not result.passed:
        raise BuildFailedError(f"parity gate failed: onnxruntime differs from torch by {diff:.3g} "
                               f"(tolerance {config.parity_tolerance:g})")
    return result


def quality_gates(task: Task, config: GateConfig, m: Measurement, fp32: Measurement, trivial: float,
                  quick: bool) -> list[GateResult]:
    """Gates every variant must pass: beat the trivial predictor, meet absolute floors, stay close to fp32."""
    results: list[GateResult] = []
    if higher_is_better(task):
        floor = trivial + config.min_gain_over_trivial * (1 - trivial)
        results.append(GateResult(name="beats_trivial", variant=m.name, passed=m.metric >= floor, value=m.metric,
                                  threshold=floor, detail=f"accuracy vs majority-class accuracy {trivial:.3f}"))
        if config.min_metric is not None and not quick:
            results.append(GateResult(name="min_accuracy", variant=m.name, passed=m.metric >= config.min_metric,
                                      value=m.metric, threshold=config.min_metric, detail="recipe's accuracy floor"))
        if m.name != fp32.name:
            drop = fp32.metric - m.metric
            results.append(GateResult(name="accuracy_drop", variant=m.name, passed=drop <= config.max_accuracy_drop,
                                      value=drop, threshold=config.max_accuracy_drop,
                                      detail="accuracy lost vs fp32 (fraction; 0.01 = 1 point)"))
    else:
        ceiling = (1 - config.min_gain_over_trivial) * trivial
        results.append(GateResult(name="beats_trivial", variant=m.name, passed=m.metric <= ceiling, value=m.metric,
                                  threshold=ceiling, detail=f"RMSE vs predicting the training mean ({trivial:.3f})"))
        if config.max_metric is not None and not quick:
            results.append(GateResult(name="max_rmse", variant=m.name, passed=m.metric <= config.max_metric,
                                      value=m.metric, threshold=config.max_metric, detail="recipe's RMSE ceiling"))
        if m.name != fp32.name:
            increase = m.metric / fp32.metric - 1 if fp32.metric > 0 else 0.0
            results.append(GateResult(name="error_increase", variant=m.name,
                                      passed=increase <= config.max_error_increase, value=increase,
                                      threshold=config.max_error_increase, detail="relative RMSE increase vs fp32"))
    return results


def choose_pruning_level(passed: list[float], tried: list[float]) -> tuple[float | None, str]:
    """The most pruned level whose pruned-fp32 passed its gates, and why. Fewest MACs among the levels that
    kept accuracy, chosen without timing noise; whether it is fast enough to ship is ``choose_cpu_variant``'s
    call, made on its variants like on any other."""
    if not passed:
        return None, (f"no level passed its gates (tried {', '.join(f'{lvl:g}' for lvl in tried)}): "
                      "no pruned variants")
    chosen = max(passed)
    failed = sorted(set(tried) - set(passed))
    note = f"; {', '.join(f'{lvl:g}' for lvl in failed)} failed" if failed else ""
    return chosen, (f"level {chosen:g}: the most pruned level whose pruned-fp32 passed the gates against the "
                    f"unpruned fp32{note}; the pruned-* variants are made from it")


def choose_cpu_variant(passed: list[Measurement], fp32: Measurement) -> tuple[str, str]:
    """The fastest passing variant (worst of its batch-1 and batch-256 ratios to fp32) and why."""
    if not passed:
        raise BuildFailedError("no variant passed its quality gates")

    def worst_ratio(m: Measurement) -> float:
        return max(m.latency_ms_b1 / fp32.latency_ms_b1, m.latency_ms_b256 / fp32.latency_ms_b256)

    ranked = sorted(passed, key=worst_ratio)
    best = ranked[0]
    fp32_passed = any(m.name == fp32.name for m in passed)
    if best.name != fp32.name and fp32_passed and worst_ratio(best) > SPEED_MARGIN:
        best = fp32
    b1, b256 = best.latency_ms_b1 / fp32.latency_ms_b1, best.latency_ms_b256 / fp32.latency_ms_b256
    others = ", ".join(f"{m.name} {m.latency_ms_b1 / fp32.latency_ms_b1:.2f}x/"
                       f"{m.latency_ms_b256 / fp32.latency_ms_b256:.2f}x" for m in ranked if m.name != best.name)
    others = others or "none"
    reason = (f"{best.name}: fastest variant that passed the gates ({b1:.2f}x fp32 latency at batch 1, "
              f"{b256:.2f}x at batch 256; other passing variants at b1/b256: {others}; a quantized or pruned "
              f"variant must be at least {1 - SPEED_MARGIN:.0%} faster at both batch sizes to replace fp32)")
    return best.name, reason
