"""The maas CLI as users run it: real processes, a local store and moto's S3 server over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from functions.core import catalog
from functions.core.store import LocalStore, S3Store

ROOT = Path(__file__).resolve().parents[2]


def maas(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "maas", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_build_to_s3_then_list_promote_and_rollback(moto_endpoint: str, s3_bucket: str) -> None:
    env = {"MAAS_STORE": f"s3://{s3_bucket}/prod-store", "MAAS_S3_ENDPOINT_URL": moto_endpoint}
    first = maas("build", "cancer-mlp", "--quick", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "cancer-mlp 1"
    assert "upload" in first.stderr
    assert "torchvision" not in first.stderr  # torch's exporter notices are filtered at their logger
    second = maas("build", "cancer-mlp", "--quick", env=env)
    assert second.stdout.strip() == "cancer-mlp 2"

    store = S3Store(s3_bucket, "prod-store", endpoint_url=moto_endpoint)
    manifest = catalog.read_manifest(store, "cancer-mlp", "2")
    assert manifest.version == "2"
    first_manifest = catalog.read_manifest(store, "cancer-mlp", "1")  # the same seed: the same pruned weights
    assert manifest.pruning is not None and first_manifest.pruning is not None
    assert [(lvl.params, lvl.macs, lvl.kept, lvl.bytes, lvl.metric, lvl.parity_max_abs_diff, lvl.passed)
            for lvl in manifest.pruning.levels] == [
        (lvl.params, lvl.macs, lvl.kept, lvl.bytes, lvl.metric, lvl.parity_max_abs_diff, lvl.passed)
        for lvl in first_manifest.pruning.levels]
    assert manifest.variant("pruned-fp32").sha256 == first_manifest.variant("pruned-fp32").sha256 is not None
    assert manifest.preprocessing.kind == "tabular"
    assert "mean radius" in manifest.preprocessing.features  # type: ignore[union-attr]

    listing = maas("models", "--json", env=env)
    rows = json.loads(listing.stdout)
    assert [(r["name"], r["versions"]) for r in rows] == [("cancer-mlp", ["1", "2"])]

    assert maas("promote", "cancer-mlp", "1", "--alias", "prod", env=env).returncode == 0
    promoted = maas("promote", "cancer-mlp", "2", "--alias", "prod", env=env)
    assert promoted.stdout.strip() == "cancer-mlp prod -> 2 (was 1)"
    assert maas("rollback", "cancer-mlp", "--alias", "prod", env=env).stdout.strip() == "cancer-mlp prod -> 1"
    assert catalog.resolve(store, "cancer-mlp") == "1"

    refused = maas("promote", "cancer-mlp", "9", "--alias", "prod", env=env)
    assert refused.returncode == 3
    assert "no version '9'" in refused.stderr


def test_degraded_recipe_fails_its_gate_and_publishes_nothing(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    result = maas("build", str(ROOT / "tests/recipes/degraded_recipe.py"), "--quick", "--store", f"file://{store_dir}")
    assert result.returncode == 4, result.stderr
    assert "no variant passed its quality gates" in result.stderr
    assert "beats_trivial" in result.stderr
    assert result.stdout == ""
    store = LocalStore(store_dir)
    assert catalog.list_versions(store, "degraded-mlp") == []
    leftovers = [p for p in store_dir.rglob("*") if p.is_file()] if store_dir.exists() else []
    assert leftovers == []


def test_bring_your_own_recipe_from_one_file(tmp_path: Path) -> None:
    result = maas("build", str(ROOT / "docs/examples/iris_recipe.py"), "--quick", "--store", f"file://{tmp_path}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "iris-mlp 1"
    manifest = catalog.read_manifest(LocalStore(tmp_path), "iris-mlp", "1")
    assert manifest.labels == ["setosa", "versicolor", "virginica"]


@pytest.mark.parametrize(("args", "code", "message"), [
    (["build", "no-such-recipe"], 2, "unknown recipe 'no-such-recipe'"),
    (["build", "missing.py"], 2, "does not exist"),
    (["promote", "cancer-mlp", "1", "--alias", "prod"], 3, "no version '1'"),
    (["rollback", "cancer-mlp", "--alias", "prod"], 3, "no alias 'prod'"),
    (["promote", "../etc", "1", "--alias", "prod"], 3, "invalid model name"),
    (["promote", "cancer-mlp", "1", "--alias", "Prod!"], 3, "invalid alias"),
])
def test_errors_have_clear_messages_and_exit_codes(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    result = maas(*args, "--store", f"file://{tmp_path}")
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_store_fails_before_training() -> None:
    result = maas("build", "cancer-mlp", "--quick", env={"MAAS_STORE": "s3://some-bucket/x",
                                                         "MAAS_S3_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert result.returncode == 5, result.stderr
    assert "unreachable" in result.stderr
    assert "training" not in result.stderr


def test_empty_store_lists_nothing(tmp_path: Path) -> None:
    result = maas("models", "--store", f"file://{tmp_path}")
    assert result.returncode == 0
    assert "no models" in result.stderr
