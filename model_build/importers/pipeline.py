"""``maas import``: an existing model -> a gated, quantized, carded version, published like ``maas build``'s.

source kind (``load_source``) -> vet -> signature (inputs, task, served output, labels) -> served graph ->
variants -> every variant run on the check rows (``--sample`` or generated within the signature) and compared
with the ORIGINAL runtime -> gates -> the shared tail (``model_build.tail``: select, manifest, card, publish),
with the profile and background from ``--sample`` and the evaluation from ``--eval``.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from functions.core import catalog
from functions.core.errors import InvalidInputError, InvalidSourceError
from functions.core.integrity import vet_onnx
from functions.core.manifest import (
    GateResult,
    ImagePreprocessing,
    ImportedFrom,
    Manifest,
    Preprocessing,
    Provenance,
    TabularPreprocessing,
    Task,
    TextVocabPreprocessing,
    TokenizerPreprocessing,
)
from functions.core.names import check_model_name
from functions.core.preprocessing import make_preprocessor
from functions.core.profile import input_matrix
from functions.core.settings import get_settings
from functions.core.store import Store
from model_build import card, evaluate, explain_build, gates, profile_build, provenance, quality, tail, variants
from model_build.contracts import Dataset, Fitted, GateConfig
from model_build.importers import rows, signature
from model_build.importers.graph import inspect_graph, write_served
from model_build.importers.onnx_file import vet
from model_build.importers.source import Feeds, ImportedSource, ImportOptions, load_source
from model_build.reporting import Reporter
from model_build.variants import Candidate

RECIPE = "maas import"
SEED = 0
CHECK_ROWS = {False: 1000, True: 200}
"""Rows every variant is compared with the original on (sample rows first, else generated ones)."""
CALIBRATION_ROWS = 256
LATENCY_BATCH = 256
PARITY_TOLERANCE = 1e-4
"""fp32 vs the original: max |difference| over the check rows, times max(1, max |original output|)."""
PARITY_MIN_COSINE = 0.9999
VARIANT_MIN_COSINE = 0.99
MIN_AGREEMENT = 0.99
"""Quantized classifiers: the share of check rows whose top class matches the original's."""
MAX_RELATIVE_ERROR = 0.05
"""Quantized regressors: RMS(variant - original) / std(original) over the check rows."""
EVAL_GATES = GateConfig()


@dataclass
class _Checked:
    """A variant's outputs and comparison with the original."""

    outputs: npt.NDArray[np.float32]
    agreement: float
    """classification: top-1 agreement; regression: relative RMS error; embedding: min cosine."""
    max_abs_diff: float


def import_model(path: Path, options: ImportOptions, store: Store, reporter: Reporter | None = None) -> Manifest:
    """Import ``path`` and publish a new version of ``options.name``; nothing is published on any error."""
    reporter = reporter or Reporter()
    started = time.perf_counter()
    check_model_name(options.name)
    if (options.eval is None) != (options.target is None):
        raise InvalidSourceError("--eval FILE and --target COLUMN go together")
    catalog.list_versions(store, options.name)  # fail fast on an unreachable store
    with tempfile.TemporaryDirectory(prefix="maas-import-") as tmp:
        work = Path(tmp)
        reporter.stage(f"reading {path.name}")
        source = load_source(path, options, work)
        vet(source.onnx_path.read_bytes(), source.onnx_path.name)
        facts = inspect_graph(source.onnx_path)
        spec, input_name = signature.input_spec(facts, source, options)
        sample = rows.read_rows(options.sample, spec, "--sample")[0] if options.sample else None
        spec = signature.with_value_range(spec, sample)
        preprocessor = make_preprocessor(spec, input_name, source.files)
        if sample is not None and options.sample is not None and not _is_text(spec):
            encoded = _encode(preprocessor, sample, f"--sample {options.sample.name}")[input_name]
            sample = _numeric_rows(spec, encoded)  # every row checked; feature dicts become ordered rows
        instances = _check_instances(spec, source, sample, options.quick)
        feeds = _encode(preprocessor, instances, "--sample" if sample is not None else "generated inputs")

        reporter.stage("inferring the signature")
        reference = source.reference(feeds)
        served = signature.serve(facts, source, options, reference)
        expected = signature.served_reference(served, facts, reference)
        served_path = work / "served.onnx"
        write_served(source.onnx_path, served_path, facts, served.plan)
        evaluation_rows = _eval_rows(options, spec, preprocessor, served)

        reporter.stage("optimizing and quantizing")
        calibration = [{k: v[:CALIBRATION_ROWS] for k, v in feeds.items()}]
        make = source.make_candidates or default_candidates
        candidates = make(served_path, work, calibration)

        reporter.stage("measuring variants against the original")
        latency_batch = source.latency_batch or LATENCY_BATCH
        checked, measured = _measure(candidates, feeds, expected, served.task, evaluation_rows, latency_batch,
                                     options.quick)
        if "fp32" not in checked:
            raise InvalidSourceError("onnxruntime cannot run the served fp32 graph")
        variant_gates = _gates(served, checked, measured, expected, signature.label_indices(served, facts, reference),
                               source.reference_runtime, evaluation_rows is not None)
        selection = tail.select(options.name, measured, variant_gates, required="fp32")

        reporter.stage("writing the model card")
        selected = selection.targets["cpu"]
        draft = tail.draft_manifest(
            options.name, served_path, candidates, measured, selection, latency_batch,
            task=served.task, description=_description(source, served),
            preprocessing=spec, labels=served.labels, metric_name=_metric_name(served.task, evaluation_rows),
            reference_stats=_reference_stats(spec, sample),
            provenance=Provenance(
                recipe=RECIPE, git_commit=provenance.git_commit(), libraries=provenance.library_versions(),
                data_sha256=provenance.data_sha256(*feeds.values()), seed=SEED, quick=options.quick,
                build_seconds=0.0,
                imported_from=ImportedFrom(kind=source.kind, file=path.name, sha256=source.sha256,
                                           reference=source.reference_runtime)))
        card.plot_variants(draft, work / card.VARIANTS_PLOT)
        plots = [card.VARIANTS_PLOT]
        if evaluation_rows is not None:
            eval_out = evaluation_rows.outputs[selected]
            draft = _replace(draft, evaluation=quality.evaluation(served.task, eval_out, evaluation_rows.y,
                                                                  draft.labels))
            outcome = "confusion.png" if served.task == "classification" else "residuals.png"
            card.plot_outcome(served.task, eval_out, evaluation_rows.y, draft.labels, work / outcome)
            plots.append(outcome)
        monitored = sample if sample is not None else (instances if _is_text(spec) else None)
        shipped = next(c for c in candidates if c.name == selected and c.path is not None)
        draft, plots, extra_files = _monitoring(draft, plots, spec, input_name, source, monitored,
                                                checked[selected].outputs, shipped, work, options.quick)
        files = tail.shipped_files(candidates, selection, work, plots, source.files)
        files.update(extra_files)
        return tail.publish(store, draft, files, work, _data_line(path, source, sample, options), plots, reporter,
                            started)


def _monitoring(draft: Manifest, plots: list[str], spec: Preprocessing, input_name: str, source: ImportedSource,
                monitored: Any, outputs: npt.NDArray[np.float32], shipped: Candidate, work: Path,
                quick: bool) -> tuple[Manifest, list[str], dict[str, Path]]:
    """With sample rows (``monitored``): the background sample and global importance (not for embeddings) and
    the reference profile, from the rows and the shipped variant's ``outputs`` on them. Without: nothing, so
    drift answers ``no_reference`` and explain ``no_background``."""
    files: dict[str, Path] = {}
    if monitored is None:
        return draft, plots, files
    rows_used = monitored[: len(outputs)]
    if draft.task != "embedding":
        y = outputs.argmax(axis=1) if draft.task == "classification" else outputs.reshape(-1)
        data = Dataset(x_train=rows_used, y_train=y, x_val=rows_used, y_val=y, x_test=rows_used, y_test=y,
                       source="--sample")
        assert shipped.path is not None
        extras = explain_build.add_background(draft, data, Fitted(spec=spec, files=source.files), shipped.path, work,
                                              SEED, quick)
        draft, plots = extras.manifest, plots + extras.plots
        files.update(extras.files)
    profile = profile_build.make_profile(spec, input_name, source.files, draft.task, draft.labels, rows_used, outputs)
    files[profile_build.PROFILE_FILE] = work / profile_build.PROFILE_FILE
    files[profile_build.PROFILE_FILE].write_bytes(profile.to_json())
    return draft, plots, files


def default_candidates(served: Path, work: Path, calibration: list[Feeds]) -> list[Candidate]:
    """Basic-optimized fp32, dynamic int8, static int8 (one input only), fp16; each skipped with a reason when it
    cannot apply to the graph."""
    feeds = calibration[0] if calibration else {}
    candidates = [
        _guarded("fp32", "fp32", "cpu", lambda: variants.optimize_fp32(served, work / "model.fp32.onnx")),
        _guarded("int8-dynamic", "int8", "cpu",
                 lambda: variants.quantize_dynamic_int8(served, work / "model.int8-dynamic.onnx"))]
    if len(feeds) == 1:
        (name, x), = feeds.items()
        candidates.append(_guarded("int8-static", "int8", "cpu", lambda: variants.quantize_static_int8(
            served, work / "model.int8-static.onnx", name, x)))
    else:
        candidates.append(Candidate("int8-static", "int8", "cpu", None, "skipped: static int8 calibrates one input"))
    candidates.append(_guarded("fp16", "fp16", "gpu", lambda: variants.convert_fp16(served, work / "model.fp16.onnx")))
    return candidates


def _guarded(name: str, precision: str, target: Any, make: Callable[[], Candidate]) -> Candidate:
    try:
        return make()
    except Exception as exc:  # optimizers and quantizers raise many types on graphs they do not handle
        if name == "fp32":
            raise InvalidSourceError(f"onnxruntime cannot optimize the served graph ({str(exc)[:200]})") from None
        return Candidate(name, precision, target, None, f"skipped: {type(exc).__name__}: {str(exc)[:160]}")


def _check_instances(spec: Preprocessing, source: ImportedSource, sample: Any, quick: bool) -> Any:
    if sample is not None:
        return sample[: CHECK_ROWS[quick]]
    if _is_text(spec):
        if not source.texts:
            raise InvalidInputError("text models need --sample (a .jsonl or .csv of texts) to be checked on")
        return source.texts
    return rows.generated(spec, CHECK_ROWS[quick], SEED)


def _numeric_rows(spec: Preprocessing, encoded: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """Raw numeric rows back from encoded ones: imported tabular and image specs do not rescale, so encoding
    only ordered the features (tabular) or added the channel axis (images)."""
    rows = np.asarray(encoded, dtype=np.float64)
    return rows[:, 0] if isinstance(spec, ImagePreprocessing) else rows


def _is_text(spec: Preprocessing) -> bool:
    return isinstance(spec, TextVocabPreprocessing | TokenizerPreprocessing)


def _encode(preprocessor: Any, instances: Any, what: str) -> Feeds:
    try:
        feeds: Feeds = preprocessor.encode(instances)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{what}: {exc.message}") from None
    return feeds


@dataclass
class _EvalRows:
    feeds: Feeds
    y: npt.NDArray[Any]
    outputs: dict[str, npt.NDArray[np.float32]]


def _eval_rows(options: ImportOptions, spec: Preprocessing, preprocessor: Any,
               served: signature.Served) -> _EvalRows | None:
    if options.eval is None or options.target is None:
        return None
    if served.task == "embedding":
        raise InvalidSourceError("--eval is for classifiers and regressors; embeddings are checked by cosine")
    instances, targets = rows.read_rows(options.eval, spec, "--eval", target=options.target)
    feeds = _encode(preprocessor, instances, f"--eval {options.eval.name}")
    if served.task == "regression":
        try:
            y = np.array([float(t) for t in targets], dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidInputError(f"--eval {options.eval.name}: column {options.target!r} holds non-numbers") \
                from None
        return _EvalRows(feeds, y, {})
    indices_named = [str(i) for i in range(served.plan.tail[0])]
    lookups = [{name: i for i, name in enumerate(n)} for n in (served.labels, served.class_values, indices_named) if n]
    indices = []
    for line, value in enumerate(targets, start=1):
        text = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value).strip()
        if text.endswith(".0") and text[:-2].lstrip("-").isdigit():
            text = text[:-2]
        index = next((lookup[text] for lookup in lookups if text in lookup), None)
        if index is None:
            known = ", ".join((served.labels or indices_named)[:10])
            raise InvalidInputError(f"--eval {options.eval.name} row {line}: {options.target} {str(value)[:40]!r} is "
                                    f"not one of the model's classes ({known})"
                                    + ("" if options.labels else "; pass --labels to name them"))
        indices.append(index)
    return _EvalRows(feeds, np.array(indices, dtype=np.int64), {})


def _measure(candidates: list[Candidate], feeds: Feeds, expected: npt.NDArray[np.float64], task: Task,
             evaluation_rows: _EvalRows | None, latency_batch: int,
             quick: bool) -> tuple[dict[str, _Checked], dict[str, gates.Measurement]]:
    settings = get_settings()
    runs_b1, runs_big = (20, 3) if quick else (200, 20)
    checked: dict[str, _Checked] = {}
    measured: dict[str, gates.Measurement] = {}
    for candidate in candidates:
        if candidate.path is None:
            continue
        vet_onnx(candidate.path.read_bytes(), settings.allowed_op_domains, candidate.path.name)
        session = evaluate.cpu_session(candidate.path)
        out = evaluate.run_feeds(session, feeds).reshape(expected.shape)
        checked[candidate.name] = result = _compare(task, out, expected)
        metric = result.agreement
        if evaluation_rows is not None:
            eval_out = evaluate.run_feeds(session, evaluation_rows.feeds)
            evaluation_rows.outputs[candidate.name] = eval_out
            metric = evaluate.metric(task, eval_out, evaluation_rows.y)
        cpu = candidate.target == "cpu"  # GPU variants: accuracy here, speed only on a GPU
        measured[candidate.name] = gates.Measurement(
            name=candidate.name, metric=metric,
            latency_ms_b1=evaluate.latency_ms_feeds(session, feeds, 1, runs_b1) if cpu else math.nan,
            latency_ms_b256=evaluate.latency_ms_feeds(session, feeds, latency_batch, runs_big) if cpu else math.nan,
            parity_max_abs_diff=result.max_abs_diff, target=candidate.target)
    return checked, measured


def _compare(task: Task, out: npt.NDArray[np.float32], expected: npt.NDArray[np.float64]) -> _Checked:
    diff = float(np.max(np.abs(out - expected))) if out.size else 0.0
    if task == "classification":
        return _Checked(out, float(np.mean(out.argmax(axis=1) == expected.argmax(axis=1))), diff)
    if task == "regression":
        spread = float(np.std(expected)) or 1.0
        return _Checked(out, float(np.sqrt(np.mean((out - expected) ** 2)) / spread), diff)
    a = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    b = expected / np.maximum(np.linalg.norm(expected, axis=1, keepdims=True), 1e-12)
    return _Checked(out, float(np.min(np.sum(a * b, axis=1))), diff)


def _gates(served: signature.Served, checked: dict[str, _Checked], measured: dict[str, gates.Measurement],
           expected: npt.NDArray[np.float64], labels: npt.NDArray[np.int64] | None, runtime: str,
           with_eval: bool) -> dict[str, list[GateResult]]:
    """Per variant: parity (fp32) or closeness (the others) to the original; the label output's agreement with
    the probabilities (fp32); with ``--eval``, the accuracy drop or error increase vs fp32."""
    task = served.task
    rows_checked = len(expected)
    results: dict[str, list[GateResult]] = {}
    for name, result in checked.items():
        found: list[GateResult] = []
        if name == "fp32":
            if task == "embedding":
                found.append(GateResult(name="parity", variant=name, passed=result.agreement >= PARITY_MIN_COSINE,
                                        value=result.agreement, threshold=PARITY_MIN_COSINE,
                                        detail=f"min cosine to {runtime} over {rows_checked} rows"))
            else:
                tolerance = PARITY_TOLERANCE * max(1.0, float(np.max(np.abs(expected))))
                found.append(GateResult(name="parity", variant=name, passed=result.max_abs_diff <= tolerance,
                                        value=result.max_abs_diff, threshold=tolerance,
                                        detail=f"max |difference| to {runtime} over {rows_checked} rows"))
            if labels is not None:
                agreement = float(np.mean(labels == expected.argmax(axis=1)))
                found.append(GateResult(name="label output = top class", variant=name, passed=agreement == 1.0,
                                        value=agreement, threshold=1.0,
                                        detail="share of rows where the original's label output is the class of "
                                               "highest probability (maas serves that class as the label)"))
        elif task == "classification":
            found.append(GateResult(name="agreement with the original", variant=name,
                                    passed=result.agreement >= MIN_AGREEMENT, value=result.agreement,
                                    threshold=MIN_AGREEMENT, detail=f"top-1 agreement over {rows_checked} rows"))
        elif task == "regression":
            found.append(GateResult(name="error vs the original", variant=name,
                                    passed=result.agreement <= MAX_RELATIVE_ERROR, value=result.agreement,
                                    threshold=MAX_RELATIVE_ERROR,
                                    detail=f"RMS difference / std of the original's outputs over {rows_checked} rows"))
        else:
            found.append(GateResult(name="cosine to the original", variant=name,
                                    passed=result.agreement >= VARIANT_MIN_COSINE, value=result.agreement,
                                    threshold=VARIANT_MIN_COSINE, detail=f"min over {rows_checked} rows"))
        if with_eval and name != "fp32":
            fp32, m = measured["fp32"], measured[name]
            if task == "classification":
                drop = fp32.metric - m.metric
                found.append(GateResult(name="accuracy_drop", variant=name, passed=drop <= EVAL_GATES.max_accuracy_drop,
                                        value=drop, threshold=EVAL_GATES.max_accuracy_drop,
                                        detail="--eval accuracy lost vs fp32 (fraction; 0.01 = 1 point)"))
            else:
                increase = m.metric / fp32.metric - 1 if fp32.metric > 0 else 0.0
                found.append(GateResult(name="error_increase", variant=name,
                                        passed=increase <= EVAL_GATES.max_error_increase, value=increase,
                                        threshold=EVAL_GATES.max_error_increase,
                                        detail="relative --eval RMSE increase vs fp32"))
        results[name] = found
    return results


def _metric_name(task: Task, evaluation_rows: _EvalRows | None) -> str:
    if evaluation_rows is not None:
        return "accuracy" if task == "classification" else "rmse"
    return {"classification": "agreement with the original", "regression": "relative error vs the original",
            "embedding": "min cosine to the original"}[task]


def _description(source: ImportedSource, served: signature.Served) -> str:
    notes = list(source.notes)
    if served.plan.softmax:
        notes.append("the graph outputs scores: maas appended a Softmax, so probabilities are served")
    if served.plan.binary:
        notes.append("the graph outputs one score per row: maas serves [1 - p, p] with p = "
                     + ("Sigmoid(score)" if served.plan.sigmoid else "the score"))
    if served.label_output:
        notes.append(f"the original's label output {served.label_output!r} is served as the class of highest "
                     "probability (checked to agree)")
    text = source.description or f"{served.task.capitalize()} model imported from {source.path.name} ({source.kind})."
    joined = "; ".join(notes)
    return text + (f" {joined[:1].upper()}{joined[1:]}." if joined else "")


def _reference_stats(spec: Preprocessing, sample: Any) -> dict[str, list[float]]:
    if sample is None or not isinstance(spec, TabularPreprocessing):
        return {}
    values = input_matrix(spec, sample)
    return {"mean": values.mean(axis=0).round(6).tolist(), "std": values.std(axis=0).round(6).tolist(),
            "min": values.min(axis=0).tolist(), "max": values.max(axis=0).tolist()}


def _data_line(path: Path, source: ImportedSource, sample: Any, options: ImportOptions) -> str:
    if sample is not None and options.sample:
        checked = f"{min(len(sample), CHECK_ROWS[options.quick])} rows of --sample {options.sample.name}"
    elif source.texts:
        checked = f"maas's {len(source.texts)} built-in English texts (no --sample given)"
    else:
        checked = "inputs generated within the signature"
    evaluated = f"; evaluated on --eval {options.eval.name} (target {options.target!r})" if options.eval else ""
    return f"imported from `{path.name}` ({source.kind}, sha256 {source.sha256[:16]}...); checked on {checked}" \
           + evaluated


def _replace(manifest: Manifest, **changes: Any) -> Manifest:
    import dataclasses

    return dataclasses.replace(manifest, **changes)
