"""``maas build``: train, export, verify, quantize, measure, gate, document and publish one model version."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import torch

from functions.core import catalog
from functions.core.errors import AlreadyExistsError, MaasError
from functions.core.integrity import vet_onnx
from functions.core.manifest import (
    MANIFEST_FILE,
    FileEntry,
    GateResult,
    Manifest,
    Provenance,
    Target,
    TensorSpec,
    TextVocabPreprocessing,
    TokenizerPreprocessing,
    Variant,
    VariantMetrics,
)
from functions.core.names import check_model_name
from functions.core.preprocessing import make_preprocessor
from functions.core.settings import get_settings
from functions.core.store import Store, sha256_file
from model_build import card, evaluate, gates, provenance, variants
from model_build.export import OUTPUT_NAMES, ServingHead, export_onnx, torch_predict
from model_build.recipes.base import Dataset, Fitted, Recipe
from model_build.train import History, train

CALIBRATION_ROWS = 256
PUBLISH_ATTEMPTS = 5


class Reporter:
    """Progress hooks; the CLI overrides them with progress bars. The default is silent."""

    def stage(self, text: str) -> None:
        """A new step started."""

    def epoch(self, epoch: int, total: int, val_loss: float) -> None:
        """A training epoch finished."""

    @contextlib.contextmanager
    def upload(self, total_bytes: int) -> Iterator[Callable[[int], None]]:
        """A byte-count callback for the duration of the upload."""
        yield lambda _n: None


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
        candidates = _make_candidates(recipe, exported, work, encoded.x_train[:CALIBRATION_ROWS])

        reporter.stage("measuring variants")
        reference = torch_predict(head, encoded.x_test)
        measured, outputs = _measure(candidates, encoded.x_test, data.y_test, reference, recipe, quick)
        fp32 = measured["fp32"]
        gate_results = [gates.check_parity(fp32, recipe.gates)]
        trivial = evaluate.trivial_metric(recipe.task, data.y_train, data.y_test)
        passed: list[gates.Measurement] = []
        variant_gates: dict[str, list[GateResult]] = {}
        for name, m in measured.items():
            variant_gates[name] = gates.quality_gates(recipe.task, recipe.gates, m, fp32, trivial, quick)
            gate_results += variant_gates[name]
            if all(g.passed for g in variant_gates[name]):
                passed.append(m)
        if not passed:
            failures = "; ".join(f"{g.variant} {g.name}: {g.value:.4g} vs threshold {g.threshold:.4g}"
                                 for g in gate_results if not g.passed)
            raise gates.BuildFailedError(f"{recipe.name}: no variant passed its quality gates ({failures})")
        selected, reason = gates.choose_cpu_variant([m for m in passed if m.target == "cpu"], fp32)
        targets: dict[Target, str] = {"cpu": selected}
        if any(m.name == "fp16" for m in passed):
            targets["gpu"] = "fp16"

        reporter.stage("writing the model card")
        session = evaluate.cpu_session(exported)
        draft = Manifest(
            name=recipe.name, version="0", created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            task=recipe.task, description=recipe.description,
            inputs=[_tensor_spec(i) for i in session.get_inputs()],
            outputs=[_tensor_spec(o) for o in session.get_outputs()],
            preprocessing=fitted.spec, labels=recipe.labels,
            metric_name="accuracy" if recipe.task == "classification" else "rmse", latency_batch=recipe.latency_batch,
            baselines=recipe.baselines(data, quick),
            variants=_variant_records(candidates, measured, variant_gates, {m.name for m in passed}),
            selected=targets, selection_reason=reason.replace("batch 256", f"batch {recipe.latency_batch}"),
            gates=gate_results,
            reference_stats=_reference_stats(data, fitted), files=[],
            provenance=Provenance(recipe=recipe.name, git_commit=provenance.git_commit(),
                                  libraries=provenance.library_versions(),
                                  data_sha256=provenance.data_sha256(data.x_train, data.y_train, data.x_val,
                                                                     data.y_val, data.x_test, data.y_test),
                                  seed=recipe.seed, quick=quick, build_seconds=0.0),
        )
        plots = _plots(work, recipe, history, draft, outputs[selected], data.y_test)
        shipped = {m.name for m in passed}
        files = {f"model.{c.name}.onnx": c.path for c in candidates if c.path and c.name in shipped}
        files.update({name: work / name for name in plots})
        for name, content in fitted.files.items():
            (work / name).write_bytes(content)
            files[name] = work / name
        draft = dataclasses.replace(draft, provenance=dataclasses.replace(
            draft.provenance, build_seconds=round(time.perf_counter() - started, 2)))
        return publish_version(store, draft, files, work, data.source, plots, reporter)


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


def _make_candidates(recipe: Recipe, exported: Path, work: Path,
                     calibration: npt.NDArray[Any]) -> list[variants.Candidate]:
    # Quantizers start from the exported graph: they run their own shape inference, which the value_info
    # left by onnxruntime's offline optimizer can contradict.
    return [variants.optimize_fp32(exported, work / "model.fp32.onnx"),
            variants.quantize_dynamic_int8(exported, work / "model.int8-dynamic.onnx"),
            variants.quantize_static_int8(exported, work / "model.int8-static.onnx", recipe.input_name, calibration),
            variants.convert_fp16(exported, work / "model.fp16.onnx")]


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


def _variant_records(candidates: list[variants.Candidate], measured: dict[str, gates.Measurement],
                     variant_gates: dict[str, list[GateResult]], passed: set[str]) -> list[Variant]:
    records = []
    for c in candidates:
        m = measured.get(c.name)
        metrics = None if m is None else VariantMetrics(
            metric=m.metric, latency_ms_b1=_rounded(m.latency_ms_b1), latency_ms_b256=_rounded(m.latency_ms_b256),
            parity_max_abs_diff=m.parity_max_abs_diff)
        failed = [g.name for g in variant_gates.get(c.name, []) if not g.passed]
        shipped = c.path is not None and c.name in passed
        note = c.note if not failed else f"{c.note}; failed gates: {', '.join(failed)} (not shipped)"
        records.append(Variant(
            name=c.name, file=f"model.{c.name}.onnx" if shipped else None, precision=c.precision, target=c.target,
            sha256=sha256_file(c.path) if c.path else None, bytes=c.path.stat().st_size if c.path else None,
            metrics=metrics, passed=c.name in passed, reason=note))
    return records


def _rounded(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def _tensor_spec(arg: Any) -> TensorSpec:
    dtype = str(arg.type).removeprefix("tensor(").removesuffix(")")
    return TensorSpec(name=arg.name, dtype="float32" if dtype == "float" else dtype,
                      shape=[d if isinstance(d, int) else str(d or "batch") for d in arg.shape])


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
    return [card.TRAINING_PLOT, outcome, card.VARIANTS_PLOT]


def publish_version(store: Store, draft: Manifest, files: dict[str, Path], work: Path, source: str, plots: list[str],
             reporter: Reporter) -> Manifest:
    entries = [FileEntry(path=name, sha256=sha256_file(path), bytes=path.stat().st_size)
               for name, path in files.items()]
    for _ in range(PUBLISH_ATTEMPTS):
        versions = catalog.list_versions(store, draft.name)
        version = str(int(versions[-1]) + 1) if versions else "1"
        manifest = dataclasses.replace(draft, version=version)
        card_path = work / "card.md"
        card_path.write_text(card.render_card(manifest, source, plots), encoding="utf-8")
        card_entry = FileEntry(path="card.md", sha256=sha256_file(card_path), bytes=card_path.stat().st_size)
        manifest = dataclasses.replace(manifest, files=[*entries, card_entry])
        manifest_path = work / MANIFEST_FILE
        manifest_path.write_bytes(orjson.dumps(manifest.to_dict(), option=orjson.OPT_INDENT_2))
        upload = {**files, "card.md": card_path, MANIFEST_FILE: manifest_path}
        reporter.stage(f"publishing version {version} to {store.uri}")
        try:
            with reporter.upload(sum(p.stat().st_size for p in upload.values())) as advance:
                store.publish(catalog.version_prefix(draft.name, version), upload, MANIFEST_FILE, advance)
        except AlreadyExistsError:
            continue  # another build took this version number: take the next one
        return manifest
    raise MaasError(f"could not allocate a new version of {draft.name} after {PUBLISH_ATTEMPTS} attempts")
