"""The shared end of every build: gates -> select -> card -> publish, for trained and pretrained recipes alike.

A pipeline measures its candidate variants and gates each one (its own gates), then hands over here:
``select`` fails the build or picks the shipped variants, ``draft_manifest`` fills the fields every manifest
shares, ``publish`` writes the card and publishes a new immutable version.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from functions.core import catalog
from functions.core.errors import AlreadyExistsError, BuildFailedError, MaasError
from functions.core.manifest import (
    MANIFEST_FILE,
    FileEntry,
    GateResult,
    Manifest,
    Target,
    TensorSpec,
    Variant,
    VariantMetrics,
)
from functions.core.store import Store, sha256_file
from model_build import card, evaluate, gates
from model_build.reporting import Reporter
from model_build.variants import PRUNED, Candidate

PUBLISH_ATTEMPTS = 5


@dataclass(frozen=True)
class Selection:
    """The outcome of the gates: what passed, what ships for each target, and why."""

    passed: list[gates.Measurement]
    targets: dict[Target, str]
    reason: str
    gates: list[GateResult]
    variant_gates: dict[str, list[GateResult]]

    @property
    def shipped(self) -> set[str]:
        """Names of the variants that passed their gates (their files are published)."""
        return {m.name for m in self.passed}


def select(recipe_name: str, measured: dict[str, gates.Measurement], variant_gates: dict[str, list[GateResult]],
           extra_gates: list[GateResult] | None = None, required: str | None = None) -> Selection:
    """Fail the build (``BuildFailedError``, nothing published) when no variant passed, or ``required`` did
    not; else choose the CPU variant (the fastest passing one) and the GPU variant (``gpu_variant``)."""
    all_gates = [*(extra_gates or []), *(g for name in measured for g in variant_gates.get(name, []))]
    passed = [m for name, m in measured.items() if all(g.passed for g in variant_gates.get(name, []))]
    if not passed or (required is not None and not any(m.name == required for m in passed)):
        failures = "; ".join(f"{g.variant} {g.name}: {g.value:.5g} vs threshold {g.threshold:.5g}"
                             for g in all_gates if not g.passed)
        what = f"the {required} export failed its gates" if required else "no variant passed its quality gates"
        raise BuildFailedError(f"{recipe_name}: {what} ({failures})")
    selected, reason = gates.choose_cpu_variant([m for m in passed if m.target == "cpu"], measured["fp32"])
    targets: dict[Target, str] = {"cpu": selected}
    gpu = gpu_variant(selected, {m.name for m in passed})
    if gpu is not None:
        targets["gpu"] = gpu
    return Selection(passed, targets, reason, all_gates, variant_gates)


def gpu_variant(cpu: str, passed: set[str]) -> str | None:
    """fp16 for the GPU worker; ``pruned-fp16`` instead when the CPU pick is a pruned variant and pruned-fp16
    passed its gates, so batch jobs answer with the same pruned network as the API (GPU speed is not measured
    at build time: the pruned model earned its place by the CPU speed rule)."""
    if cpu.startswith(PRUNED) and f"{PRUNED}fp16" in passed:
        return f"{PRUNED}fp16"
    return "fp16" if "fp16" in passed else None


def at_batch(reason: str, latency_batch: int) -> str:
    """``choose_cpu_variant``'s reason with its batch-256 wording at the recipe's latency batch (32 for MiniLM)."""
    return reason.replace("batch 256", f"batch {latency_batch}").replace("b1/b256", f"b1/b{latency_batch}")


def draft_manifest(name: str, exported: Path, candidates: list[Candidate], measured: dict[str, gates.Measurement],
                   selection: Selection, latency_batch: int, **fields: Any) -> Manifest:
    """A manifest (version "0", no files yet) with the fields every build shares, plus the pipeline's own."""
    session = evaluate.cpu_session(exported)
    return Manifest(
        name=name, version="0", created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        inputs=[tensor_spec(i) for i in session.get_inputs()],
        outputs=[tensor_spec(o) for o in session.get_outputs()], latency_batch=latency_batch,
        variants=variant_records(candidates, measured, selection.variant_gates, selection.shipped),
        selected=selection.targets,
        selection_reason=at_batch(selection.reason, latency_batch),
        gates=selection.gates, files=[], **fields)


def shipped_files(candidates: list[Candidate], selection: Selection, work: Path, plots: list[str],
                  extra: dict[str, bytes]) -> dict[str, Path]:
    """The files of a version: passing variants' ONNX files, the plots, and the pipeline's extra files."""
    files = {f"model.{c.name}.onnx": c.path for c in candidates if c.path and c.name in selection.shipped}
    files.update({name: work / name for name in plots})
    for name, content in extra.items():
        (work / name).write_bytes(content)
        files[name] = work / name
    return files


def publish(store: Store, draft: Manifest, files: dict[str, Path], work: Path, source: str, plots: list[str],
            reporter: Reporter, started: float) -> Manifest:
    """Record the build time, write the card and publish ``files`` as the next free version number."""
    draft = dataclasses.replace(draft, provenance=dataclasses.replace(
        draft.provenance, build_seconds=round(time.perf_counter() - started, 2)))
    return publish_version(store, draft, files, work, source, plots, reporter)


def variant_records(candidates: list[Candidate], measured: dict[str, gates.Measurement],
                    variant_gates: dict[str, list[GateResult]], passed: set[str]) -> list[Variant]:
    """One manifest record per candidate (skipped ones included), with its numbers and gate outcome."""
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


def tensor_spec(arg: Any) -> TensorSpec:
    """A manifest tensor spec from an onnxruntime input or output description."""
    dtype = str(arg.type).removeprefix("tensor(").removesuffix(")")
    return TensorSpec(name=arg.name, dtype="float32" if dtype == "float" else dtype,
                      shape=[d if isinstance(d, int) else str(d or "batch") for d in arg.shape])


def publish_version(store: Store, draft: Manifest, files: dict[str, Path], work: Path, source: str, plots: list[str],
                    reporter: Reporter) -> Manifest:
    """Write card.md and manifest.json for the next version number and publish; retry on a lost race."""
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
