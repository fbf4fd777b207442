"""The shadow report: comparison records of a live version and a shadow candidate, aggregated; and the
promotion gate's verdict on it.

Comparison records are JSON lines carrying ``"maas_shadow": 1`` (``functions.core.shadow`` writes them): locally
under ``CAPTURE_DIR/_shadow/NAME/VERSION/DAY.jsonl``, deployed in the data bucket under
``shadow/NAME/VERSION/DAY/`` (Firehose objects, plain or gzipped, maybe without an extension). Every reader
here accepts a folder (searched recursively), a single file or ``s3://BUCKET/PREFIX``.

"agreement" is one number in [0, 1] for every task, over the rows the candidate answered: classifiers, the
share of rows whose labels agree; regressors, the share with a relative difference of at most 1 % (or an
absolute one of at most 1e-6); embedding models, the share with a cosine of at least 0.99. Requests the
candidate failed are counted as errors, not as compared.

Pure and light (no numpy unless drift is asked for, boto3 only for s3:// sources): the console calls it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from functions.core.errors import MaasError, UnreadableInputError
from functions.core.records import marked_lines

if TYPE_CHECKING:
    from functions.core.settings import Settings
    from functions.core.store import Store

MARKER = "maas_shadow"
_MARKER_BYTES = b'"maas_shadow"'
SHADOW_FOLDER = "_shadow"
"""Comparison records' folder inside a local capture folder (model names cannot start with "_")."""
SHADOW_PREFIX = "shadow"
"""Comparison records' prefix in the data bucket."""
DEFAULT_CAPTURE_DIR = "./.maas/capture"
REL_TOLERANCE = 0.01
ABS_TOLERANCE = 1e-6
COSINE_AGREES = 0.99
DEFAULT_MIN_COMPARED = 100


def default_source(name: str, settings: Settings | None = None, env: Mapping[str, str] | None = None) -> str:
    """Where ``name``'s comparison records are by default: the data bucket's ``shadow/NAME/`` when the settings
    name one, else ``MAAS_CAPTURE_DIR/_shadow/NAME``, else ``./.maas/capture/_shadow/NAME``."""
    import os

    env = os.environ if env is None else env
    if settings is not None and settings.data_bucket:
        return f"s3://{settings.data_bucket}/{SHADOW_PREFIX}/{name}/"
    from functions.core.capture import ENV_CAPTURE_DIR

    return str(Path(env.get(ENV_CAPTURE_DIR) or DEFAULT_CAPTURE_DIR) / SHADOW_FOLDER / name)


# ---------------------------------------------------------------------------------------------------- reading


def read_comparisons(source: str, name: str, alias: str | None = None, *, endpoint_url: str | None = None,
                     limit: int | None = None) -> list[dict[str, Any]]:
    """The comparison records of model ``name`` (and ``alias``, if given) from a folder, a file or an
    ``s3://BUCKET/PREFIX``, oldest first. With ``limit``, files are read newest first until that many records
    are found, and the newest ``limit`` are kept. UnreadableInputError for a local path that does not exist or
    a bucket that cannot be read."""
    batches = _s3_lines(source, endpoint_url) if source.startswith("s3://") else _local_lines(Path(source), name)
    records: list[dict[str, Any]] = []
    for lines in batches:
        records += comparisons(lines, name, alias)
        if limit is not None and len(records) >= limit:
            break
    records.sort(key=lambda r: str(r.get("time", "")))
    if limit is not None:
        records = records[-limit:] if limit > 0 else []
    return records


def comparisons(lines: Iterable[bytes], name: str, alias: str | None = None) -> list[dict[str, Any]]:
    """The comparison records among ``lines`` of model ``name`` (and ``alias``); other lines (capture records,
    garbage, other models) are left out."""
    return [record for record in marked_lines(lines, _MARKER_BYTES) if is_comparison(record)
            and record.get("model") == name and (alias is None or record.get("alias") == alias)]


def is_comparison(record: Any) -> bool:
    """A comparison record: a JSON object carrying ``"maas_shadow": 1``."""
    return isinstance(record, dict) and record.get(MARKER) == 1


def _local_lines(root: Path, name: str) -> Iterator[Iterator[bytes]]:
    """Each file's lines, newest file first; a capture folder is narrowed to its ``_shadow/NAME``."""
    from functions.drift.records import file_lines

    if not root.exists():
        raise UnreadableInputError(f"comparison records: {root} does not exist")
    if root.is_dir() and (root / SHADOW_FOLDER).is_dir():
        root = root / SHADOW_FOLDER
    if root.is_dir() and root.name == SHADOW_FOLDER and (root / name).is_dir():
        root = root / name
    paths = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]
    paths.sort(key=lambda p: (p.stat().st_mtime, str(p)), reverse=True)
    for path in paths:
        yield file_lines([path])


def _s3_lines(source: str, endpoint_url: str | None) -> Iterator[Iterator[bytes]]:
    """Each object's lines under ``s3://BUCKET/PREFIX``, newest object first (gzip detected by its bytes)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from functions.drift.handler import CaptureBucket

    bucket, _, prefix = source[len("s3://"):].partition("/")
    client = boto3.client("s3", endpoint_url=endpoint_url)
    try:
        objects = [o for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                   for o in page.get("Contents", [])]
    except (BotoCoreError, ClientError) as exc:
        raise UnreadableInputError(f"comparison records: cannot list {source}: {exc}") from None
    objects.sort(key=lambda o: (o["LastModified"], o["Key"]), reverse=True)
    reader = CaptureBucket(bucket, client)
    for item in objects:
        yield reader.lines(item["Key"])


# ---------------------------------------------------------------------------------------------------- report


def shadow_report(records: Sequence[Mapping[str, Any]], *, name: str, alias: str | None, candidate: str | None,
                  live: str | None, store: Store | None = None) -> dict[str, Any]:
    """Aggregate the comparison records of ``candidate`` (None: the most recent candidate seen) against the live
    version ``live`` (None: any). With a ``store``, the compared inputs' drift against each version's profile."""
    mine = sorted((r for r in records if is_comparison(r) and r.get("model") == name
                   and (alias is None or r.get("alias") == alias)), key=lambda r: str(r.get("time", "")))
    if candidate is None and mine:
        candidate = str(mine[-1].get("candidate"))
    kept = [r for r in mine if str(r.get("candidate")) == candidate and (live is None or str(r.get("version")) == live)]
    lives = sorted({str(r.get("version")) for r in kept}, key=_version_key)
    live_version = str(kept[-1].get("version")) if kept else live
    task = str(kept[-1].get("task")) if kept else None
    errors = Counter(str(r["candidate_error"]) for r in kept if r.get("candidate_error"))
    answered = [r for r in kept if not r.get("candidate_error")]
    report: dict[str, Any] = {
        "model": name, "alias": alias, "live_version": live_version, "live_versions": lives, "candidate": candidate,
        "task": task, "requests": len(kept), "compared": len(answered),
        "first_time": kept[0].get("time") if kept else None, "last_time": kept[-1].get("time") if kept else None,
        "candidate_errors": {"count": sum(errors.values()), "rate": _share(sum(errors.values()), len(kept)),
                             "by_code": dict(sorted(errors.items()))},
        "latency": _latency(kept, answered),
    }
    if task == "classification":
        report |= _classification(answered)
    elif task == "regression":
        report |= _regression(answered)
    elif task == "embedding":
        report |= _embedding(answered)
    else:
        report |= {"rows_compared": 0, "agreement": None}
    if store is not None and kept and candidate is not None and live_version is not None:
        report["drift"] = {
            "live": version_drift(store, name, live_version,
                                  [r for r in kept if str(r.get("version")) == live_version], "live"),
            "candidate": version_drift(store, name, candidate, kept, "candidate_outputs")}
    return report


def _classification(answered: list[Mapping[str, Any]]) -> dict[str, Any]:
    rows = agree = 0
    confusion: dict[str, Counter[str]] = {}
    for record in answered:
        flags = _list(record.get("agree"))
        rows += len(flags)
        agree += sum(1 for flag in flags if flag is True)
        for mine, theirs in zip(_list(record.get("live")), _list(record.get("candidate_outputs")), strict=False):
            if isinstance(mine, dict) and isinstance(theirs, dict):
                confusion.setdefault(str(mine.get("label")), Counter())[str(theirs.get("label"))] += 1
    return {"rows_compared": rows, "agreement": _share(agree, rows),
            "confusion": {label: dict(sorted(row.items())) for label, row in sorted(confusion.items())}}


def _regression(answered: list[Mapping[str, Any]]) -> dict[str, Any]:
    absolute: list[float] = []
    relative: list[float] = []
    agree = 0
    for record in answered:
        pairs = zip(_numbers(record.get("abs_diff")), _numbers(record.get("rel_diff")), strict=False)
        for abs_diff, rel_diff in pairs:
            absolute.append(abs_diff)
            relative.append(rel_diff)
            agree += rel_diff <= REL_TOLERANCE or abs_diff <= ABS_TOLERANCE
    return {"rows_compared": len(absolute), "agreement": _share(agree, len(absolute)),
            "mae": _mean(absolute), "p99_abs_diff": percentile(absolute, 99),
            "mean_rel_diff": _mean(relative)}


def _embedding(answered: list[Mapping[str, Any]]) -> dict[str, Any]:
    cosines = [c for record in answered for c in _numbers(record.get("cosine"))]
    return {"rows_compared": len(cosines), "agreement": _share(sum(c >= COSINE_AGREES for c in cosines), len(cosines)),
            "mean_cosine": _mean(cosines), "p01_cosine": percentile(cosines, 1)}


def _latency(kept: list[Mapping[str, Any]], answered: list[Mapping[str, Any]]) -> dict[str, float | None]:
    live_ms = [v for r in kept for v in _numbers([r.get("live_ms")])]
    candidate_ms = [v for r in answered for v in _numbers([r.get("candidate_ms")])]
    live_p50, candidate_p50 = percentile(live_ms, 50), percentile(candidate_ms, 50)
    ratio = candidate_p50 / live_p50 if live_p50 and candidate_p50 is not None else None
    figures = {"live_p50_ms": live_p50, "candidate_p50_ms": candidate_p50, "ratio_p50": ratio,
               "live_p99_ms": percentile(live_ms, 99), "candidate_p99_ms": percentile(candidate_ms, 99)}
    return {key: None if value is None else round(value, 4) for key, value in figures.items()}


def version_drift(store: Store, name: str, version: str, records: Sequence[Mapping[str, Any]],
                  outputs_field: str) -> dict[str, Any]:
    """The drift summary of the records' inputs (and ``outputs_field``'s predictions) against ``version``'s
    reference profile: status, rows, max PSI, features over the threshold, prediction drift."""
    from functions.core import catalog
    from functions.core.profile import NO_REFERENCE, DriftTracker, read_profile
    from functions.drift.records import RecordFeeder

    try:
        manifest = catalog.read_manifest(store, name, version)
        profile = read_profile(store, manifest)
    except MaasError as exc:
        return {"version": version, "status": "unavailable", "detail": exc.message}
    if profile is None:
        return {"version": version, **NO_REFERENCE}
    tracker = DriftTracker(profile)
    feeder = RecordFeeder(tracker, manifest.preprocessing, name, version)
    for record in records:
        outputs = record.get(outputs_field)
        feeder.add_record({"model": name, "version": version, "inputs": record.get("inputs"),
                           "outputs": outputs if isinstance(outputs, list) else []})
    feeder.flush()
    full = tracker.report()
    return {"version": version, "records": feeder.records, "skipped_records": feeder.skipped,
            **{k: full[k] for k in ("status", "rows", "max_psi", "max_excess", "features_over_threshold",
                                    "prediction_drift")}}


# ---------------------------------------------------------------------------------------------------- the gate


def meets(report: Mapping[str, Any], require_agreement: float, min_compared: int) -> tuple[bool, str]:
    """The promotion gate: whether the report's agreement is at least ``require_agreement`` over at least
    ``min_compared`` compared requests, and a one-line reason with the figures."""
    agreement, compared = report.get("agreement"), int(report.get("compared") or 0)
    shown = "none" if agreement is None else f"{agreement:.4f}"
    figures = (f"candidate {report.get('candidate')} vs live {report.get('live_version')}: agreement {shown} over "
               f"{compared} compared requests (required: agreement >= {require_agreement:g} over >= {min_compared})")
    if compared < min_compared:
        return False, f"too few compared requests: {figures}"
    if agreement is None or agreement < require_agreement:
        return False, f"agreement too low: {figures}"
    return True, f"agreement met: {figures}"


# ---------------------------------------------------------------------------------------------------- helpers


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (linear between closest ranks, as numpy's default); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _share(part: float, whole: int) -> float | None:
    return part / whole if whole else None


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _numbers(value: Any) -> list[float]:
    return [float(v) for v in _list(value)
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)]


def _version_key(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if version.isdigit() else (1, version)
