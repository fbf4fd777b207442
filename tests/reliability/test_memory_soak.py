"""Memory stays flat under every kind of request: a few thousand requests per kind, Python allocations measured.

Each configuration runs in its own process (``bench/soak.py``: the Lambda handler with events one after another,
with capture on, over a stalled store, and `maas serve` with dynamic batching and concurrent clients). After a
warm-up, a kind may keep at most ``FIXED_BYTES`` plus ``BYTES_PER_REQUEST`` a request over its smallest round: a
broken version used to keep about 10 KB a request (every request's frames on one re-raised exception), more than
a hundred times the bound. Memory is not a timing: the bound does not depend on the machine's speed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench import soak
from functions.core.store import LocalStore

FIXED_BYTES = 64 * 1024
BYTES_PER_REQUEST = 32
REQUESTS = {"lambda": 600, "lambda-capture": 600, "lambda-stalled": 600, "serve": 400}
ROUNDS = 2
WARMUP = 100


@pytest.fixture(scope="module")
def soak_store(built_store: LocalStore, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quick-built demo models, the broken cancer-mlp version 2 and an imported skl2onnx classifier."""
    root = tmp_path_factory.mktemp("soak") / "store"
    shutil.copytree(built_store.root, root)
    soak.add_broken_version(root)
    soak.add_imported_model(root)
    soak.add_rollouts(root)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("config", soak.CONFIGS)
def test_memory_is_flat_for_every_request_kind(config: str, soak_store: Path) -> None:
    rows = soak.soak(config, soak_store, REQUESTS[config], ROUNDS, WARMUP, timeout=600)
    assert [row["kind"] for row in rows] == [kind.name for kind in soak.KINDS[config]]
    for row in rows:
        assert set(row["statuses"]) == {str(row["expected_status"])}, (row["kind"], row["statuses"])
        bound = FIXED_BYTES + BYTES_PER_REQUEST * row["requests_per_round"]
        assert min(row["retained_bytes"]) < bound, (
            f"{config} / {row['kind']}: {row['retained_bytes']} bytes kept per round of "
            f"{row['requests_per_round']} requests (bound {bound})")
