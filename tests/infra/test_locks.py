"""The committed locks implement pyproject.toml: every runtime requirement locked within its specifier, nothing
unexplained, hashes for every pin; the GPU lock is the Lambda lock's worker subset with onnxruntime-gpu."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.locking import (
    GPU_RUNTIME,
    GPU_TARGET,
    LAMBDA_TARGETS,
    LockError,
    LockTarget,
    Pin,
    gpu_requirements,
    imported_distributions,
    lock_problems,
    read_lock,
)
from infra.project import runtime_requirements

GPU_REPLACES = {GPU_RUNTIME: "onnxruntime"}


@pytest.mark.parametrize("target", LAMBDA_TARGETS, ids=lambda t: t.path.name)
def test_each_lambda_lock_agrees_with_pyproject(target: LockTarget) -> None:
    pins = read_lock(target.path)
    assert lock_problems(runtime_requirements(), pins) == []
    assert "huggingface-hub" not in pins and "click" not in pins and "torch" not in pins


def test_the_gpu_lock_is_the_worker_subset_of_the_lambda_lock() -> None:
    gpu = read_lock(GPU_TARGET.path)
    lambda_x86 = read_lock(LockTarget("x86_64", GPU_TARGET.python_version).path)
    assert lock_problems(gpu_requirements(), gpu, GPU_REPLACES) == []
    assert GPU_RUNTIME in gpu and "onnxruntime" not in gpu
    assert "pyarrow" in gpu and "pyarrow" not in lambda_x86  # Parquet: the image only (over the bundle budget)
    shared = set(gpu) - {GPU_RUNTIME, "pyarrow"}
    assert shared <= set(lambda_x86)
    assert all(gpu[name] == lambda_x86[name] for name in shared), "a shared package differs from the Lambda's"
    assert gpu[GPU_RUNTIME].version == lambda_x86["onnxruntime"].version


def test_gpu_requirements_are_what_the_worker_imports() -> None:
    names = {r.split("=")[0].split(">")[0].split("<")[0] for r in gpu_requirements()}
    assert {GPU_RUNTIME, "tokenizers", "numpy", "boto3", "orjson", "pyarrow"} <= names  # tokenizers: MiniLM inputs
    assert not names & {"onnxruntime", "fastapi", "mangum", "starlette", "click", "rich"}
    assert {"fastapi", "mangum"} <= imported_distributions("functions.api.handler")


def test_a_requirement_outside_the_locked_version_is_reported() -> None:
    pins = read_lock(LAMBDA_TARGETS[0].path)
    tightened = [r if not r.startswith("numpy") else "numpy>=9" for r in runtime_requirements()]
    problems = lock_problems(tightened, pins)
    assert len(problems) == 1 and "numpy==" in problems[0] and "numpy>=9" in problems[0]


def test_a_missing_or_unexplained_package_is_reported() -> None:
    pins = dict(read_lock(LAMBDA_TARGETS[0].path))
    del pins["tokenizers"]
    pins["requests"] = Pin("requests", "2.32.0", ("0" * 64,))
    problems = lock_problems(runtime_requirements(), pins)
    assert any("tokenizers is required" in p for p in problems)
    assert any("requests==2.32.0 is locked but nothing" in p for p in problems)


def test_a_pin_without_hash_or_exact_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("numpy==2.4.6\n")
    with pytest.raises(LockError, match="no hash"):
        read_lock(tmp_path / "a.txt")
    (tmp_path / "b.txt").write_text(f"numpy>=2 --hash=sha256:{'a' * 64}\n")
    with pytest.raises(LockError, match="not an exact pin"):
        read_lock(tmp_path / "b.txt")
