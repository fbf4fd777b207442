"""Pruning levels as build variants.

For each level (one with ``--quick``): prune a copy of the trained model, recover it, export it with the
recipe's exporter, then measure and gate its pruned-fp32 exactly like a variant (parity against the pruned
PyTorch model, accuracy drop or error increase against the unpruned fp32). The most pruned passing level
(``gates.choose_pruning_level``) gets the same quantization as the unpruned model: ``pruned-fp32``,
``pruned-int8-dynamic``, ``pruned-int8-static`` and ``pruned-fp16`` join the build's candidates, and the
unchanged gates and ``choose_cpu_variant`` decide whether one ships.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy.typing as npt
import torch
from torch import nn

from functions.core.manifest import GateResult, Pruning, PruningLevel
from model_build import gates, variants
from model_build.contracts import PruningConfig, Recipe
from model_build.export import OUTPUT_NAMES, ServingHead, export_onnx, torch_predict
from model_build.pruning import recovery, surgery

Measure = Callable[[list[variants.Candidate], npt.NDArray[Any]],
                   tuple[dict[str, gates.Measurement], dict[str, npt.NDArray[Any]]]]
"""Measures candidates against a PyTorch reference on the test split (the pipeline's own measurement)."""


@dataclass
class Context:
    """What the trained build hands to the search: the trained model, its splits (encoded, targets scaled
    like in training) and the unpruned fp32 measurement every level is gated against."""

    recipe: Recipe
    config: PruningConfig
    model: nn.Module
    target_mean: float
    target_std: float
    x_train: npt.NDArray[Any]
    y_train: npt.NDArray[Any]
    x_val: npt.NDArray[Any]
    y_val: npt.NDArray[Any]
    x_test: npt.NDArray[Any]
    y_test: npt.NDArray[Any]
    calibration: npt.NDArray[Any]
    fp32: gates.Measurement
    trivial: float
    quick: bool
    work: Path
    measure: Measure


@dataclass
class Outcome:
    """The pruning record, the four ``pruned-*`` candidates (made or skipped) with their measurements, and
    the gates that belong to them beyond the quality gates (the pruned-fp32 parity gate)."""

    record: Pruning
    candidates: list[variants.Candidate]
    measured: dict[str, gates.Measurement] = field(default_factory=dict)
    outputs: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    gates: dict[str, list[GateResult]] = field(default_factory=dict)


@dataclass
class _Tried:
    level: PruningLevel
    exported: Path | None = None
    measured: gates.Measurement | None = None
    output: npt.NDArray[Any] | None = None
    parity: GateResult | None = None


def search(ctx: Context) -> Outcome:
    """Try every level of the recipe's pruning config (the quick level only with ``--quick``)."""
    recipe, config = ctx.recipe, ctx.config
    example = torch.as_tensor(ctx.x_train[:1])
    epochs = config.quick_recovery_epochs if ctx.quick else config.recovery_epochs
    levels = [config.quick_level] if ctx.quick else sorted(set(config.levels))
    params, macs = 0, 0
    record_widths: dict[str, int] = {}
    try:
        try:
            params, macs = surgery.count(ctx.model, example)
            record_widths = surgery.widths(surgery.prunable_layers(ctx.model, example, config))
        except Exception as exc:  # the library's counter and tracer raise many types on graphs they cannot follow
            raise _UnprunableError(f"not tried: the model could not be traced ({_summary(exc)})") from exc
        if not record_widths:
            raise _UnprunableError(f"not tried: no layer has {' or '.join(config.units)} to prune (the input width "
                                   "and the output layer are never pruned)")
        failed = [g.name for g in gates.quality_gates(recipe.task, recipe.gates, ctx.fp32, ctx.fp32, ctx.trivial,
                                                      ctx.quick) if not g.passed]
        if failed:
            raise _UnprunableError(f"not tried: the unpruned fp32 failed {', '.join(failed)}")
        try:
            teacher = None if config.distill is None or epochs == 0 else \
                recovery.teacher_outputs(ctx.model, ctx.x_train, config.distill)
        except Exception as exc:  # e.g. distill="embeddings" on a model without embed(x)
            raise _UnprunableError(f"not tried: the distillation targets could not be computed "
                                   f"({_summary(exc)})") from exc
        tried = [_try(ctx, level, example, teacher, epochs, record_widths) for level in levels]
        chosen, reason = gates.choose_pruning_level([t.level.level for t in tried if t.level.passed], levels)
    except _UnprunableError as exc:
        tried, chosen, reason = [], None, f"{exc}: no pruned variants"
    record = Pruning(method="structured pruning (Torch-Pruning dependency graph): units physically removed",
                     library=surgery.library_version(), criterion=surgery.CRITERION, units=list(config.units),
                     recovery=recovery.describe(epochs, config.distill, recipe.task), params=params, macs=macs,
                     widths=record_widths, levels=[t.level for t in tried], chosen_level=chosen,
                     reason=reason)
    best = next((t for t in tried if t.level.level == chosen), None)
    if best is None or best.exported is None or best.measured is None or best.output is None:
        return Outcome(record, variants.skipped_set(variants.PRUNED, f"skipped: {reason}"))
    made = variants.candidate_set(best.exported, ctx.work, recipe.input_name, ctx.calibration, variants.PRUNED,
                                  static_int8=not ctx.quick)
    made = [c if c.path is None else dataclasses.replace(c, note=f"{c.note}; of the model pruned at level {chosen:g}")
            for c in made]
    fp32 = variants.PRUNED + "fp32"
    measured, outputs = ctx.measure([c for c in made if c.name != fp32], best.output)
    measured[fp32], outputs[fp32] = best.measured, best.output  # the level's own measurement of the same file
    assert best.parity is not None
    return Outcome(record, made, measured, outputs, {fp32: [best.parity]})


def _try(ctx: Context, level: float, example: torch.Tensor, teacher: torch.Tensor | None, epochs: int,
         widths: dict[str, int]) -> _Tried:
    recipe, config = ctx.recipe, ctx.config
    model = copy.deepcopy(ctx.model)
    try:
        pruned = surgery.prune(model, example, level, config)
    except Exception as exc:  # the library raises many types on graphs it cannot trace
        raise _UnprunableError(f"the model could not be pruned ({_summary(exc)})") from exc
    if all(pruned.kept[label] == width for label, width in widths.items()):
        return _Tried(PruningLevel(level=level, params=pruned.params, macs=pruned.macs, kept=pruned.kept,
                                   passed=False, reason="removes nothing (each width rounds back to its full size)"))
    directory = ctx.work / f"pruned-{level:g}"
    directory.mkdir()
    try:
        recovery.recover(model, recipe.task, ctx.x_train, ctx.y_train, ctx.x_val, ctx.y_val, teacher, epochs=epochs,
                         batch_size=recipe.training.batch_size,
                         learning_rate=config.learning_rate or recipe.training.learning_rate, seed=recipe.seed,
                         distill=config.distill)
        head = ServingHead(model, recipe.task, ctx.target_mean, ctx.target_std).eval()
        reference = torch_predict(head, ctx.x_test)
        exported = directory / "exported.onnx"
        export_onnx(head, ctx.x_train[: recipe.example_batch_size()], recipe.input_name, OUTPUT_NAMES[recipe.task],
                    recipe.exporter, exported, recipe.dynamic_sequence)
        candidate = variants.optimize_fp32(exported, directory / f"model.{variants.PRUNED}fp32.onnx")
        candidate = dataclasses.replace(candidate, name=variants.PRUNED + candidate.name)
        measured, outputs = ctx.measure([candidate], reference)
    except Exception as exc:  # recovery, exporters and onnxruntime raise many types
        shutil.rmtree(directory, ignore_errors=True)
        return _Tried(PruningLevel(level=level, params=pruned.params, macs=pruned.macs, kept=pruned.kept,
                                   passed=False, reason=f"failed after pruning ({_summary(exc)})"))
    m = measured[candidate.name]
    parity = gates.parity_gate(m, recipe.gates)
    results = [parity, *gates.quality_gates(recipe.task, recipe.gates, m, ctx.fp32, ctx.trivial, ctx.quick)]
    failed = [g for g in results if not g.passed]
    reason = "passed the gates" if not failed else "failed gates: " + "; ".join(
        f"{g.name} {g.value:.4g} vs threshold {g.threshold:.4g}" for g in failed)
    assert candidate.path is not None
    record = PruningLevel(level=level, params=pruned.params, macs=pruned.macs, kept=pruned.kept,
                          bytes=candidate.path.stat().st_size, latency_ms_b1=_rounded(m.latency_ms_b1),
                          latency_ms_b256=_rounded(m.latency_ms_b256), metric=m.metric,
                          parity_max_abs_diff=m.parity_max_abs_diff, passed=not failed, reason=reason)
    return _Tried(record, exported, m, outputs[candidate.name], parity)


class _UnprunableError(Exception):
    """The pruning library could not prune this model (no level is recorded)."""


def _summary(exc: BaseException) -> str:
    """An exception in one short line (library errors can span many lines), for the record and the card."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}{'...' if len(text) > 200 else ''}"


def _rounded(value: float) -> float:
    return round(value, 4)
