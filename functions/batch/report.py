"""The batch report: what was read, with which model, how many rows went where, and how long it took."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from functions.batch.runner import RunStats
from functions.core.model_cache import LoadedModel


def model_info(model: LoadedModel) -> dict[str, Any]:
    """Name, version, variant, checksum and execution providers of the model that produced the output."""
    entry = model.manifest.file(str(model.variant.file))
    return {"name": model.name, "version": model.version, "variant": model.variant.name, "sha256": entry.sha256,
            "providers": model.providers}


def make_report(status: str, source: dict[str, Any], model: dict[str, Any] | None = None,
                stats: RunStats | None = None, outputs: dict[str, str] | None = None,
                error: str | None = None, **extra: Any) -> bytes:
    """The report as JSON bytes. ``status`` is ok, failed or dispatched."""
    body: dict[str, Any] = {"status": status, "input": source, "model": model,
                            "rows": None if stats is None else {"in": stats.rows_in, "ok": stats.rows_ok,
                                                                "failed": stats.rows_failed},
                            "timings_s": None if stats is None else {
                                "total": round(stats.seconds_total, 4), "inference": round(stats.seconds_inference, 4)},
                            "outputs": outputs, "error": error,
                            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"), **extra}
    if stats is not None and "drift" in stats.extra:
        body["drift"] = stats.extra["drift"]
    return orjson.dumps(body, option=orjson.OPT_INDENT_2)
