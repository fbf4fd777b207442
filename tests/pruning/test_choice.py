"""Which pruning level the pruned variants come from, which variant the GPU worker gets, and the wording of
the choice at the recipe's latency batch."""

from __future__ import annotations

from model_build import gates, tail


def test_the_most_pruned_passing_level_is_chosen_and_failures_are_named() -> None:
    level, reason = gates.choose_pruning_level([0.25, 0.5], [0.25, 0.5, 0.75])
    assert level == 0.5 and "most pruned" in reason and "0.75 failed" in reason
    level, reason = gates.choose_pruning_level([0.75], [0.25, 0.5, 0.75])  # accuracy need not be monotonic
    assert level == 0.75 and "0.25, 0.5 failed" in reason
    level, reason = gates.choose_pruning_level([], [0.5])
    assert level is None and "no level passed" in reason


def test_gpu_gets_pruned_fp16_only_when_a_pruned_variant_won_on_cpu() -> None:
    passed = {"fp32", "fp16", "pruned-fp32", "pruned-fp16"}
    assert tail.gpu_variant("pruned-fp32", passed) == "pruned-fp16"
    assert tail.gpu_variant("pruned-int8-static", passed) == "pruned-fp16"
    assert tail.gpu_variant("fp32", passed) == "fp16"
    assert tail.gpu_variant("pruned-fp32", {"fp16", "pruned-fp32"}) == "fp16"  # pruned-fp16 failed its gates
    assert tail.gpu_variant("fp32", {"fp32"}) is None


def test_the_selection_reason_names_the_recipes_latency_batch() -> None:
    fp32 = gates.Measurement("fp32", 0.9, 1.0, 10.0, 0.0)
    pruned = gates.Measurement("pruned-fp32", 0.9, 0.5, 4.0, 0.0)
    _, reason = gates.choose_cpu_variant([fp32, pruned], fp32)
    worded = tail.at_batch(reason, 32)
    assert "0.40x at batch 32" in worded and "at b1/b32: fp32 1.00x/1.00x" in worded and "256" not in worded
