"""What the console may show of a version: a summary of its manifest, and its card and plots.

Only ``card.md`` and ``*.png`` files listed in the manifest are documents; every other file of a version
(ONNX variants, tokenizer, vocabulary, background sample, reference profile) is never returned. Documents are
read through the model cache's verified fetch, so their size and sha256 match the manifest.
"""

from __future__ import annotations

import re
from typing import Any

from functions.core import catalog
from functions.core.errors import NotFoundError
from functions.core.manifest import FileEntry, Manifest
from functions.core.model_cache import ModelCache

CARD_FILE = "card.md"
PRUNING_PLOT = "pruning.png"
_PLOT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.png$")
MEDIA_TYPES = {".md": "text/markdown; charset=utf-8", ".png": "image/png"}


def is_document(path: str) -> bool:
    """Whether a manifest file may be shown: the card, or a PNG plot at the top of the version."""
    return path == CARD_FILE or bool(_PLOT.fullmatch(path))


def documents(manifest: Manifest) -> dict[str, FileEntry]:
    """The version's documents by file name, from its manifest."""
    return {entry.path: entry for entry in manifest.files if is_document(entry.path)}


def read_document(cache: ModelCache, name: str, version: str, file: str) -> tuple[bytes, str]:
    """Verified bytes and media type of a document; NotFoundError for anything else, whatever its name."""
    manifest = cache.manifest(name, version)
    entry = documents(manifest).get(file)
    if entry is None:
        raise NotFoundError(f"model {name} version {version} has no document {file[:80]!r} (only {CARD_FILE} "
                            "and the PNG plots listed in its manifest are served)")
    data = cache.fetch_file(name, version, entry)
    return data, MEDIA_TYPES[entry.path[entry.path.rfind("."):]]


def version_summary(cache: ModelCache, name: str, version: str) -> dict[str, Any]:
    """The manifest as the console shows it: no file checksums beyond the variants', no file paths of models."""
    manifest = cache.manifest(name, version)
    aliases = {alias: record.version for alias, record in catalog.list_aliases(cache.store, name).items()}
    prep = manifest.preprocessing
    return {
        "name": manifest.name, "version": manifest.version, "created_at": manifest.created_at,
        "task": manifest.task, "description": manifest.description, "labels": manifest.labels,
        "aliases": sorted(alias for alias, target in aliases.items() if target == manifest.version),
        "inputs": [_tensor(t) for t in manifest.inputs], "outputs": [_tensor(t) for t in manifest.outputs],
        "preprocessing": _preprocessing(prep),
        "metric_name": manifest.metric_name, "latency_batch": manifest.latency_batch,
        "baselines": dict(manifest.baselines),
        "variants": [{"name": v.name, "precision": v.precision, "target": v.target, "bytes": v.bytes,
                      "passed": v.passed, "reason": v.reason,
                      "shipped": sorted(t for t, chosen in manifest.selected.items() if chosen == v.name),
                      "metrics": None if v.metrics is None else {
                          "metric": v.metrics.metric, "latency_ms_b1": v.metrics.latency_ms_b1,
                          "latency_ms_b256": v.metrics.latency_ms_b256,
                          "parity_max_abs_diff": v.metrics.parity_max_abs_diff}}
                     for v in manifest.variants],
        "selected": dict(manifest.selected), "selection_reason": manifest.selection_reason,
        "gates": [{"name": g.name, "variant": g.variant, "passed": g.passed, "value": g.value,
                   "threshold": g.threshold, "detail": g.detail} for g in manifest.gates],
        "reference_stats": {key: list(values) for key, values in manifest.reference_stats.items()},
        "provenance": _provenance(manifest),
        "global_importance": _plain(getattr(manifest, "importance", None)),  # added by the explain build step
        "pruning": _pruning(manifest),
        "documents": sorted(documents(manifest)),
    }


def _pruning(manifest: Manifest) -> dict[str, Any] | None:
    """The levels of structured pruning the build tried, and its ``pruning.png`` plot when the manifest lists it;
    None for versions built without pruning."""
    if manifest.pruning is None:
        return None
    plot = PRUNING_PLOT if PRUNING_PLOT in documents(manifest) else None
    return {**manifest.pruning.to_dict(), "plot": plot}


def _tensor(spec: Any) -> dict[str, Any]:
    return {"name": spec.name, "dtype": spec.dtype, "shape": list(spec.shape)}


def _preprocessing(prep: Any) -> dict[str, Any]:
    """The kind and what a form needs (feature names, image shape and range, text length); no file names."""
    out: dict[str, Any] = {"kind": prep.kind}
    for field in ("features", "shape", "value_range", "max_chars", "max_tokens", "max_length"):
        value = getattr(prep, field, None)
        if value is not None:
            out[field] = list(value) if isinstance(value, list | tuple) else value
    return out


def _provenance(manifest: Manifest) -> dict[str, Any]:
    p = manifest.provenance
    return {"recipe": p.recipe, "git_commit": p.git_commit, "libraries": dict(p.libraries),
            "data_sha256": p.data_sha256, "seed": p.seed, "quick": p.quick, "build_seconds": p.build_seconds,
            "imported_from": None if p.imported_from is None else p.imported_from.to_dict()}


def _plain(value: Any) -> Any:
    """JSON-ready copy of an optional manifest field (mappings, sequences, numbers, dataclasses, pydantic)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if hasattr(value, "model_dump"):
        return _plain(value.model_dump())
    if hasattr(value, "__dataclass_fields__"):
        return {key: _plain(getattr(value, key)) for key in value.__dataclass_fields__}
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return str(value)
