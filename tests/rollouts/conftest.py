"""A small store for rollouts: cancer-mlp from the session's quick-built demo store, version 1 copied as
versions 2 and 3 (3 without a reference profile), prod -> 1; and comparison records made to order."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from functions.core import catalog
from functions.core.store import LocalStore

MODEL = "cancer-mlp"
NO_PROFILE = "3"


@pytest.fixture
def rollout_store(built_store: LocalStore, tmp_path: Path) -> LocalStore:
    root = tmp_path / "store"
    versions = root / "models" / MODEL / "versions"
    shutil.copytree(built_store.root / "models" / MODEL / "versions" / "1", versions / "1")
    for version in ("2", NO_PROFILE):
        shutil.copytree(versions / "1", versions / version)
        manifest = orjson.loads((versions / version / "manifest.json").read_bytes())
        manifest["version"] = version
        if version == NO_PROFILE:
            (versions / version / "profile.json").unlink()
            manifest["files"] = [f for f in manifest["files"] if f["path"] != "profile.json"]
        (versions / version / "manifest.json").write_bytes(orjson.dumps(manifest))
    store = LocalStore(root)
    catalog.promote(store, MODEL, "1", "prod")
    return store


def comparison(*, version: str = "1", candidate: str = "2", task: str = "classification", time: str = "10:00:00.000",
               model: str = MODEL, alias: str = "prod", error: str | None = None, live_ms: float = 1.0,
               candidate_ms: float | None = 1.0, **rows: Any) -> dict[str, Any]:
    """One comparison record as ``functions.core.shadow`` writes it (``version``: the live one); ``rows`` are its
    per-row fields (agree, abs_diff, rel_diff, cosine, inputs, live, candidate_outputs)."""
    count = max((len(v) for v in rows.values()), default=1)
    record: dict[str, Any] = {
        "maas_shadow": 1, "model": model, "alias": alias, "version": version, "candidate": candidate, "task": task,
        "day": "2026-12-04", "time": f"2026-12-04T{time}Z", "request_id": f"req-{time}", "rows": count,
        "live_ms": live_ms, "candidate_ms": None if error else candidate_ms, "candidate_error": error,
        "inputs": rows.pop("inputs", [{}] * count), "live": rows.pop("live", [{}] * count),
        "candidate_outputs": None if error else rows.pop("candidate_outputs", [{}] * count)}
    if not error:
        record |= rows
    return record


def lines(records: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records)
