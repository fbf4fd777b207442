"""``maas build``: train, export, verify, quantize, measure, gate, document and publish one model version."""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from functions.core.integrity import vet_onnx
from functions.core.manifest import (
    Manifest,
    Provenance,
    TextVocabPreprocessing,
    TokenizerPreprocessing,
)
from functions.core.names import check_model_name
from functions.core.preprocessing import make_preprocessor
from functions.core.settings import get_settings
from functions.core.store import Store
from model_build import card, evaluate, explain_build, gates, profile_build, provenance, tail, variants
from model_build.contracts import Dataset, Fitted, PruningConfig, Recipe
from model_build.export import OUTPUT_NAMES, ServingHead, export_onnx, torch_predict
from model_build.pruning import search
from model_build.reporting import Reporter as Reporter
from model_build.train import History, train

CALIBRATION_ROWS = 256


@dataclass
class _Encoded:
    x_train: npt.NDArray[Any]
    x_val: npt.NDArray[Any]
    x_test: npt.NDArray[Any]


def build(recipe: Recipe, store: Store, *, quick: bool = False, reporter: Reporter | None = None) -> Manifest:
    """Run the whole pipeline and publish a new version; raises BuildFailedError (nothing published) on a gate."""
    reporter = reporter or Reporter()
    started = time.perf_counter()
    check_model_name(recipe.name)
    torch.manual_seed(recipe.seed)
    np.random.seed(recipe.seed)

    reporter.stage("loading data")
    data = recipe.load_data(quick)
    fitted = recipe.fit_preprocessing(data)
    encoded = _encode(recipe, fitted, data)
    y_mean, y_std = _target_scaling(recipe, data)

    reporter.stage("training")
    torch.manual_seed(recipe.seed)
    model = recipe.build_model(fitted)
    history = train(model, recipe.task, encoded.x_train, _scaled(recipe, data.y_train, y_mean, y_std),
                    encoded.x_val, _scaled(recipe, data.y_val, y_mean, y_std), recipe.training, quick=quick,
                    seed=recipe.seed, target_scale=y_std, on_epoch=reporter.epoch)
    head = ServingHead(model, recipe.task, y_mean, y_std).eval()

    with tempfile.TemporaryDirectory(prefix="maas-build-") as tmp:
        work = Path(tmp)
        reporter.stage("exporting to ONNX")
        exported = work / "exported.onnx"
        export_onnx(head, encoded.x_train[: recipe.example_batch_size()], recipe.input_name,
                    OUTPUT_NAMES[recipe.task], recipe.exporter, exported, recipe.dynamic_sequence)

        reporter.stage("optimizing and quantizing")
        candidates = variants.candidate_set(exported, work, recipe.input_name, encoded.x_train[:CALIBRATION_ROWS])

        reporter.stage("measuring variants")
        reference = torch_predict(head, encoded.x_test)
        measured, outputs = _measure(candidates, encoded.x_test, data.y_test, reference, recipe, quick)
        fp32 = measured["fp32"]
        parity = gates.check_parity(fp32, recipe.gates)
        trivial = evaluate.trivial_metric(recipe.task, data.y_train, data.y_test)
        pruned = None
        if recipe.pruning is not None:
            reporter.stage("pruning")
            pruned = _prune(recipe, recipe.pruning, model, data, encoded, (y_mean, y_std), fp32, trivial, quick, work)
            candidates += pruned.candidates
            measured.update(pruned.measured)
            outputs.update(pruned.outputs)
        variant_gates = {name: gates.quality_gates(recipe.task, recipe.gates, m, fp32, trivial, quick)
                         for name, m in measured.items()}
        for name, extra in (pruned.gates if pruned else {}).items():
            variant_gates[name] = [*extra, *variant_gates[name]]
        selection = tail.select(recipe.name, measured, variant_gates, extra_gates=[parity])

        reporter.stage("writing the model card")
        draft = tail.draft_manifest(
            recipe.name, exported, candidates, measured, selection, recipe.latency_batch,
            task=recipe.task, description=recipe.description, preprocessing=fitted.spec, labels=recipe.labels,
            metric_name="accuracy" if recipe.task == "classification" else "rmse",
            baselines=recipe.baselines(data, quick), reference_stats=_reference_stats(data, fitted),
            pruning=pruned.record if pruned else None,
            provenance=Provenance(recipe=recipe.name, git_commit=provenance.git_commit(),
                                  libraries=provenance.library_versions(),
                                  data_sha256=provenance.data_sha256(data.x_train, data.y_train, data.x_val,
                                                                     data.y_val, data.x_test, data.y_test),
                                  seed=recipe.seed, quick=quick, build_seconds=0.0),
        )
        selected = selection.targets["cpu"]
        plots = _plots(work, recipe, history, draft, outputs[selected], data.y_test)
        extras = explain_build.add_explanations(draft, data, fitted, work / f"model.{selected}.onnx", outputs[selected],
                                                work, recipe.seed, quick)
        draft, plots = extras.manifest, plots + extras.plots
        files = tail.shipped_files(candidates, selection, work, plots, fitted.files)
        files[profile_build.PROFILE_FILE] = profile_build.write_profile(work, recipe, fitted, data,
                                                                        outputs[selection.targets["cpu"]])
        files.update(extras.files)
        return tail.publish(store, draft, files, work, data.source, plots, reporter, started)


def _prune(recipe: Recipe, config: PruningConfig, model: torch.nn.Module, data: Dataset, encoded: _Encoded,
           scaling: tuple[float, float], fp32: gates.Measurement, trivial: float, quick: bool,
           work: Path) -> search.Outcome:
    y_mean, y_std = scaling

    def measure(candidates: list[variants.Candidate], reference: npt.NDArray[Any]) -> tuple[
            dict[str, gates.Measurement], dict[str, npt.NDArray[Any]]]:
        return _measure(candidates, encoded.x_test, data.y_test, reference, recipe, quick)

    return search.search(search.Context(
        recipe=recipe, config=config, model=model, target_mean=y_mean, target_std=y_std,
        x_train=encoded.x_train, y_train=_scaled(recipe, data.y_train, y_mean, y_std), x_val=encoded.x_val,
        y_val=_scaled(recipe, data.y_val, y_mean, y_std), x_test=encoded.x_test, y_test=data.y_test,
        calibration=encoded.x_train[:CALIBRATION_ROWS], fp32=fp32, trivial=trivial, quick=quick, work=work,
        measure=measure))


def _encode(recipe: Recipe, fitted: Fitted, data: Dataset) -> _Encoded:
    pre = make_preprocessor(fitted.spec, recipe.input_name, fitted.files)

    def encode(x: Any) -> npt.NDArray[Any]:
        return pre.encode(list(x))[recipe.input_name]

    return _Encoded(encode(data.x_train), encode(data.x_val), encode(data.x_test))


def _target_scaling(recipe: Recipe, data: Dataset) -> tuple[float, float]:
    if recipe.task != "regression":
        return 0.0, 1.0
    return float(np.mean(data.y_train)), float(np.std(data.y_train)) or 1.0


def _scaled(recipe: Recipe, y: npt.NDArray[Any], mean: float, std: float) -> npt.NDArray[Any]:
    return ((y - mean) / std).astype(np.float32) if recipe.task == "regression" else y


def _measure(candidates: list[variants.Candidate], x_test: npt.NDArray[Any], y_test: npt.NDArray[Any],
             reference: npt.NDArray[Any], recipe: Recipe,
             quick: bool) -> tuple[dict[str, gates.Measurement], dict[str, npt.NDArray[Any]]]:
    settings = get_settings()
    runs_b1, runs_b256 = (20, 3) if quick else (300, 30)
    measured, outputs = {}, {}
    for candidate in candidates:
        if candidate.path is None:
            continue
        vet_onnx(candidate.path.read_bytes(), settings.allowed_op_domains, candidate.path.name)
        session = evaluate.cpu_session(candidate.path)
        out = evaluate.run(session, x_test)
        outputs[candidate.name] = out
        cpu = candidate.target == "cpu"  # GPU variants: accuracy here, speed only on a GPU
        measured[candidate.name] = gates.Measurement(
            name=candidate.name, metric=evaluate.metric(recipe.task, out, y_test),
            latency_ms_b1=evaluate.latency_ms(session, x_test, 1, runs_b1) if cpu else math.nan,
            latency_ms_b256=evaluate.latency_ms(session, x_test, recipe.latency_batch, runs_b256) if cpu else math.nan,
            parity_max_abs_diff=float(np.max(np.abs(out - reference))), target=candidate.target)
    return measured, outputs


def _reference_stats(data: Dataset, fitted: Fitted) -> dict[str, list[float]]:
    if isinstance(fitted.spec, TextVocabPreprocessing | TokenizerPreprocessing):
        values = np.asarray([[len(str(t).split())] for t in data.x_train], dtype=np.float64)
    else:
        values = np.asarray(data.x_train, dtype=np.float64).reshape(len(data.y_train), -1)
    return {"mean": values.mean(axis=0).round(6).tolist(), "std": values.std(axis=0).round(6).tolist(),
            "min": values.min(axis=0).tolist(), "max": values.max(axis=0).tolist()}


def _plots(work: Path, recipe: Recipe, history: History, draft: Manifest, outputs: npt.NDArray[Any],
           y_test: npt.NDArray[Any]) -> list[str]:
    outcome = "confusion.png" if recipe.task == "classification" else "residuals.png"
    card.plot_training(history, draft.metric_name, work / card.TRAINING_PLOT)
    card.plot_outcome(recipe.task, outputs, y_test, recipe.labels, work / outcome)
    card.plot_variants(draft, work / card.VARIANTS_PLOT)
    if draft.pruning is None:
        return [card.TRAINING_PLOT, outcome, card.VARIANTS_PLOT]
    card.plot_pruning(draft, work / card.PRUNING_PLOT)
    return [card.TRAINING_PLOT, outcome, card.VARIANTS_PLOT, card.PRUNING_PLOT]
