"""``maas drift NAME --input FILE-or-capture-folder-or-URI``: a version's drift against its reference profile.

Exit codes: 0 no drift (every column under the threshold, or the version has no reference profile),
20 drift (a feature or the prediction at or over ``--threshold``, 0.25 by default); the CLI's usual codes
otherwise (3 unknown model or version, 10 unreadable input, ...).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from functions.core import drift
from maas.common import store_option

DRIFT_EXIT_CODE = 20


@click.command("drift")
@click.argument("name")
@click.option("--input", "source", required=True, metavar="FILE|DIR|URI",
              help="Batch-style input (.csv, .jsonl, .npy), a capture folder or file, or s3://BUCKET/PREFIX "
                   "of capture records.")
@click.option("--version", "model_version", default=None, help="Explicit version (default: the alias).")
@click.option("--alias", default=None, help="Alias to resolve (default: prod, else latest).")
@click.option("--threshold", default=drift.ACT, show_default=True, type=float,
              help="Exit with code 20 when a column's PSI above the noise level reaches this.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@store_option
def drift_command(name: str, source: str, model_version: str | None, alias: str | None, threshold: float,
                  as_json: bool, store_uri: str | None) -> None:
    """PSI per input feature and prediction drift of NAME's version against its build-time reference."""
    import orjson

    report = drift_report(name, source, model_version, alias, store_uri)
    if as_json:
        click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(render(report))
    if over_threshold(report, threshold):
        sys.exit(DRIFT_EXIT_CODE)


def over_threshold(report: dict[str, Any], threshold: float) -> bool:
    columns = [*report.get("features", []), *([report["prediction"]] if report.get("prediction") else [])]
    return any(c.get("excess") is not None and c["excess"] >= threshold for c in columns)


def drift_report(name: str, source: str, version: str | None, alias: str | None,
                 store_uri: str | None) -> dict[str, Any]:
    """Resolve the version, read its profile and measure the input against it."""
    from functions.core import catalog
    from functions.core.model_cache import ModelCache
    from functions.core.names import check_model_name
    from functions.core.profile import NO_REFERENCE, DriftTracker, read_profile
    from functions.core.settings import get_settings
    from functions.core.store import open_store

    settings = get_settings()
    store = open_store(store_uri or settings.store, endpoint_url=settings.s3_endpoint_url)
    check_model_name(name)
    version = version or catalog.resolve(store, name, alias)
    manifest = catalog.read_manifest(store, name, version)
    base = {"model": name, "version": version, "input": source}
    profile = read_profile(store, manifest)
    if profile is None:
        return {**base, **NO_REFERENCE}
    tracker = DriftTracker(profile)
    with tempfile.TemporaryDirectory(prefix="maas-drift-") as tmp:
        path = _local(source, Path(tmp), settings.s3_endpoint_url)
        from functions.drift.records import RecordFeeder, capture_files, file_lines, is_capture_file

        if path.is_dir() or is_capture_file(path):
            feeder = RecordFeeder(tracker, manifest.preprocessing, name, version)
            feeder.add_lines(file_lines(capture_files(path)))
            extra: dict[str, Any] = {"records": feeder.records}
        else:
            cache = ModelCache(store, settings)
            model = cache.get(name, version, None)
            extra = _add_file(tracker, model, path, settings)
    return {**base, **extra, **tracker.report()}


def _add_file(tracker: Any, model: Any, path: Path, settings: Any) -> dict[str, Any]:
    """Batch-style input: good rows are profiled and predicted chunk by chunk; bad rows are counted."""
    from functions.batch.formats import UnreadableInputError, input_format, read_chunks
    from functions.core.errors import InvalidInputError
    from functions.core.profile import input_matrix, prediction_column

    if not path.is_file():
        raise UnreadableInputError(f"input {path} does not exist")
    spec = model.manifest.preprocessing
    bad = 0
    for chunk in read_chunks(path, input_format(path.name), spec, settings.batch_chunk_rows,
                             settings.batch_max_line_bytes):
        bad += len(chunk.bad)
        good = []
        for instance in chunk.instances:
            try:
                model.preprocessor.encode([instance])
                good.append(instance)
            except InvalidInputError:
                bad += 1
        if not good:
            continue
        tracker.add_inputs(input_matrix(spec, good, model.preprocessor))
        output = model.session.run(None, model.preprocessor.encode(good))[0]
        tracker.add_predictions(prediction_column(model.manifest.task, output, tracker.profile.prediction))
    return {"bad_rows": bad}


def _local(source: str, tmp: Path, endpoint_url: str | None) -> Path:
    """A local path for the input; ``s3://BUCKET/PREFIX`` objects are downloaded first."""
    if not source.startswith("s3://"):
        return Path(source)
    import boto3

    bucket, _, prefix = source[len("s3://"):].partition("/")
    client = boto3.client("s3", endpoint_url=endpoint_url)
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])]
    if len(keys) == 1 and keys[0] == prefix:  # a single object
        dest = tmp / Path(prefix).name
        client.download_file(bucket, prefix, str(dest))
        return dest
    for index, key in enumerate(keys):
        client.download_file(bucket, key, str(tmp / f"{index:06d}-{Path(key).name}"))
    return tmp


def render(report: dict[str, Any]) -> str:
    """The per-feature table: PSI, noise level, verdict, and the worst bins (reference -> current share)."""
    head = f"{report['model']} {report['version']}: "
    if report["status"] == "no_reference":
        return head + "no reference (this version was built without a profile); nothing to compare"
    rows = [("column", "PSI", "noise", "verdict", "worst bins (reference -> current)")]
    columns = list(report["features"])
    if report.get("prediction"):
        columns.append({**report["prediction"], "name": f"prediction: {report['prediction']['name']}"})
    for c in columns:
        worst = "; ".join(f"{b['bin']}: {b['reference']:.1%} -> {b['current']:.1%}" for b in c["worst_bins"])
        rows.append((c["name"], "-" if c["psi"] is None else f"{c['psi']:.3f}",
                     "-" if c["noise"] is None else f"{c['noise']:.3f}", c["verdict"], worst))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join([r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2].rjust(widths[2]),
                        r[3].ljust(widths[3]), r[4]]).rstrip() for r in rows]
    over = report["features_over_threshold"]
    summary = (f"{head}{report['status']} over {report['rows']} rows; max PSI {report['max_psi']}"
               + (f"; over {drift.ACT}: {', '.join(over)}" if over else "")
               + f"; prediction: {report.get('prediction_drift')}")
    return "\n".join([*lines, "", summary])
