"""Fixtures for the console: the demo store with a drift report and a batch output, served by `maas serve`."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from functions.core import catalog
from functions.core.manifest import Manifest
from functions.core.store import LocalStore

ROOT = Path(__file__).resolve().parents[2]
DRIFT_MODEL, DRIFT_VERSION = "cancer-mlp", "1"
DRIFTED = {"mean radius": 0.31, "worst area": 0.17}  # PSI over the "act" and "watch" thresholds
PRUNED_MODEL, PRUNED_VERSION = "digits-cnn", "2"  # a hand-made pruned version (below); diabetes-mlp never prunes
BATCH_ROWS = "age,sex,bmi,bp,s1,s2,s3,s4,s5,s6\n50,1,27.5,95,190,115,45,4,4.6,92\n40,x,20,80,150,100,50,3,4,80\n"


@pytest.fixture(scope="session")
def console_store(built_store: LocalStore, tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    """The quick-built demo models, with one drift report next to cancer-mlp version 1 and a prod alias."""
    root = tmp_path_factory.mktemp("console") / "store"
    shutil.copytree(built_store.root, root)
    store = LocalStore(root)
    manifest = catalog.read_manifest(store, DRIFT_MODEL, DRIFT_VERSION)
    features = manifest.preprocessing.features
    report = {"created_at": "2026-11-25T20:00:00+00:00", "rows": 500,
              "features": [{"feature": f, "psi": DRIFTED.get(f, 0.01)} for f in features],
              "prediction": {"psi": 0.02}}
    store.put_bytes(f"{catalog.version_prefix(DRIFT_MODEL, DRIFT_VERSION)}/drift/2026-11-25.json", orjson.dumps(report))
    catalog.promote(store, "digits-cnn", "1", "prod")
    add_pruned_version(store, PRUNED_MODEL, "1", PRUNED_VERSION)
    return store


def pruning_record(fp32: dict[str, object]) -> dict[str, object]:
    """A manifest ``pruning`` record (schema of issue 31) for a CNN whose unpruned fp32 variant is ``fp32``:
    levels 0.25 and 0.5 pass, 0.5 is chosen, 0.75 is refused by the accuracy-drop gate."""
    metrics = fp32["metrics"]
    assert isinstance(metrics, dict) and isinstance(fp32["bytes"], int)
    widths = {"conv.0:channels": 16, "conv.3:channels": 32, "head.1:neurons": 64}

    def level(fraction: float, drop: float, passed: bool, reason: str) -> dict[str, object]:
        keep = 1 - fraction
        return {"level": fraction, "params": int(20_554 * keep * keep), "macs": int(650_000 * keep * keep),
                "kept": {k: round(w * keep) for k, w in widths.items()}, "bytes": int(fp32["bytes"] * keep * keep),
                "latency_ms_b1": metrics["latency_ms_b1"] * (0.5 + keep / 2),
                "latency_ms_b256": metrics["latency_ms_b256"] * keep, "metric": metrics["metric"] - drop,
                "parity_max_abs_diff": 4e-7, "passed": passed, "reason": reason}

    return {"method": "structured pruning (Torch-Pruning dependency graph), widths physically removed",
            "library": "torch-pruning 1.6.1", "criterion": "L2 magnitude", "units": ["channels", "neurons"],
            "recovery": "2 epochs, distilled from the unpruned model's logits", "params": 20_554, "macs": 650_000,
            "widths": widths,
            "levels": [level(0.25, 0.0, True, "passed the gates"), level(0.5, 0.004, True, "passed the gates"),
                       level(0.75, 0.12, False, "accuracy drop 0.1200 > 0.0200")],
            "chosen_level": 0.5, "reason": "0.5: the most pruned level that passed the gates"}


def add_pruned_version(store: LocalStore, name: str, source: str, target: str) -> Manifest:
    """Version ``target`` of ``name``: a copy of ``source`` as a pruning build would publish it (a ``pruning``
    record, the four pruned variants with pruned-fp32 shipped, a ``pruning.png`` plot), with no pruned build:
    the pruned-fp32 file is the fp32 graph and the plot is the training plot."""
    versions = store.root / "models" / name / "versions"
    shutil.copytree(versions / source, versions / target)
    folder = versions / target
    doc = orjson.loads((folder / "manifest.json").read_bytes())
    # a source built with pruning already has a record: replace it, its pruned variants and their files
    doc["variants"] = [v for v in doc["variants"] if not v["name"].startswith("pruned-")]
    doc["files"] = [f for f in doc["files"] if not f["path"].startswith(("model.pruned-", "pruning."))]
    doc["selected"] = {target: "fp32" if target == "cpu" else "fp16" for target in doc["selected"]}
    fp32 = next(v for v in doc["variants"] if v["name"] == "fp32")
    pruning = pruning_record(fp32)
    chosen = pruning["levels"][1]  # type: ignore[index]
    metrics = {k: chosen[k] for k in ("metric", "latency_ms_b1", "latency_ms_b256", "parity_max_abs_diff")}
    shutil.copyfile(folder / fp32["file"], folder / "model.pruned-fp32.onnx")
    shutil.copyfile(folder / "training.png", folder / "pruning.png")
    doc["variants"] += [
        {**fp32, "name": "pruned-fp32", "file": "model.pruned-fp32.onnx", "metrics": metrics,
         "reason": "level 0.5 pruned, exported with basic onnxruntime optimizations"},
        {"name": "pruned-int8-dynamic", "file": None, "precision": "int8", "target": "cpu", "metrics": None,
         "passed": False, "reason": "skipped: no faster than pruned-fp32"},
        {"name": "pruned-int8-static", "file": None, "precision": "int8", "target": "cpu", "metrics": None,
         "passed": False, "reason": "skipped: no faster than pruned-fp32"},
        {"name": "pruned-fp16", "file": None, "precision": "fp16", "target": "gpu", "metrics": None,
         "passed": False, "reason": "skipped: the CPU pick is fp32-only"}]
    doc["selected"]["cpu"] = "pruned-fp32"
    doc["selection_reason"] = "pruned-fp32: fastest variant that passed the gates (0.75x fp32 latency at batch 1)"
    for file in ("model.pruned-fp32.onnx", "pruning.png"):
        data = (folder / file).read_bytes()
        doc["files"].append({"path": file, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})
    doc["version"], doc["pruning"] = target, pruning
    manifest = Manifest.from_dict(doc)  # the record must be one the manifest accepts
    (folder / "manifest.json").write_bytes(orjson.dumps(manifest.to_dict(), option=orjson.OPT_INDENT_2))
    return manifest


@pytest.fixture(scope="session")
def batch_outputs(console_store: LocalStore, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with one `maas batch` output of diabetes-mlp: one good row, one bad row."""
    from functions.batch.local import run_local
    from functions.core.model_cache import ModelCache
    from functions.core.settings import Settings

    root = tmp_path_factory.mktemp("batch-outputs")
    source = root.parent / "rows.csv"
    source.write_text(BATCH_ROWS)
    cache = ModelCache(console_store, Settings(store=console_store.uri))
    run_local(cache, "diabetes-mlp", source, root / "diabetes-mlp" / "1" / "rows.csv")
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MaasServe:
    """`maas serve` in a subprocess on a free loopback port."""

    def __init__(self, store: LocalStore, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAAS_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "maas", "serve", "--store", store.uri, "--port", str(self.port), *extra],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def __enter__(self) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                stderr = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"maas serve exited: {stderr}")
            try:
                if httpx.get(f"{self.url}/v2/health/live", timeout=1).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("maas serve did not start")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        if self.process.stderr:
            self.process.stderr.close()


@pytest.fixture(scope="session")
def console_url(console_store: LocalStore, batch_outputs: Path) -> Iterator[str]:
    with MaasServe(console_store, "--batch-outputs", str(batch_outputs)) as url:
        yield url


@pytest.fixture(scope="session")
def console_client(console_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=console_url, timeout=30) as client:
        yield client


# ---- rollouts: a shadow on cancer-mlp's prod (1 -> candidate 2) and a split on diabetes-mlp's prod (25% to 2) -----

SHADOW_MODEL, SPLIT_MODEL = "cancer-mlp", "diabetes-mlp"
SHADOW_RATE, SPLIT_PERCENT = 0.5, 25.0
DAY = "2026-12-04"


def copy_version(root: Path, name: str, source: str, target: str) -> None:
    """A second version of a model: a copy of ``source`` whose manifest names ``target``."""
    versions = root / "models" / name / "versions"
    shutil.copytree(versions / source, versions / target)
    manifest = versions / target / "manifest.json"
    manifest.write_text(manifest.read_text().replace(f'"version": "{source}"', f'"version": "{target}"'))


def comparison(i: int, **fields: object) -> dict[str, object]:
    """A comparison record of cancer-mlp's prod (live 1, candidate 2): two rows, both labels agreeing."""
    rows = [{"label": "benign"}, {"label": "malignant"}]
    return {"maas_shadow": 1, "model": SHADOW_MODEL, "alias": "prod", "version": "1", "candidate": "2",
            "task": "classification", "day": DAY, "time": f"{DAY}T10:00:{i:02d}.000Z", "request_id": f"r{i}",
            "rows": 2, "live_ms": 2.0, "candidate_ms": 1.0, "candidate_error": None, "inputs": [{}, {}],
            "live": rows, "candidate_outputs": rows, "agree": [True, True], **fields}


def failed(i: int, code: str) -> dict[str, object]:
    """A comparison record whose candidate failed: no candidate outputs and no per-row figures."""
    record = comparison(i, candidate_error=code, candidate_ms=None, candidate_outputs=None)
    del record["agree"]
    return record


def comparisons() -> list[dict[str, object]]:
    """Ten shadowed requests: six agreeing, two with one disagreeing row (benign -> malignant), two candidate
    errors; and records the report must leave out (another alias, another candidate, another live version)."""
    disagree = {"candidate_outputs": [{"label": "malignant"}, {"label": "malignant"}], "agree": [False, True]}
    records = [comparison(i) for i in range(6)] + [comparison(6 + i, **disagree) for i in range(2)]
    records += [failed(8, "timeout"), failed(9, "busy")]
    return [*records, comparison(10, alias="staging"), comparison(11, candidate="3"), comparison(12, version="3")]


@pytest.fixture(scope="session")
def rollout_store(console_store: LocalStore, tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    """The console store with version 2 of cancer-mlp (prod: shadowed by 2) and of diabetes-mlp (prod: split)."""
    from functions.core.rollout import new_shadow, new_split

    root = tmp_path_factory.mktemp("rollouts") / "store"
    shutil.copytree(console_store.root, root)
    store = LocalStore(root)
    for name in (SHADOW_MODEL, SPLIT_MODEL):
        copy_version(root, name, "1", "2")
        catalog.promote(store, name, "1", "prod")
    catalog.set_shadow(store, SHADOW_MODEL, "prod", new_shadow("2", SHADOW_RATE, catalog.now()))
    catalog.set_split(store, SPLIT_MODEL, "prod", new_split("2", SPLIT_PERCENT, catalog.now()))
    malformed = {"version": "1", "previous": [], "updated_at": catalog.now(),
                 "shadow": {"candidate": "2", "rate": 5, "started_at": catalog.now()}}
    store.put_bytes(catalog.alias_key(SPLIT_MODEL, "canary"), orjson.dumps(malformed))
    store.put_bytes(catalog.alias_key(SPLIT_MODEL, "broken"), b"{not json")
    return store


@pytest.fixture(scope="session")
def capture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `maas serve --capture` folder holding cancer-mlp's comparison records (and a capture record)."""
    root = tmp_path_factory.mktemp("capture")
    folder = root / "_shadow" / SHADOW_MODEL / "1"
    folder.mkdir(parents=True)
    lines = [orjson.dumps(r) for r in comparisons()]
    lines.insert(3, orjson.dumps({"maas_capture": 1, "model": SHADOW_MODEL, "version": "1", "day": DAY}))
    (folder / f"{DAY}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return root


@pytest.fixture(scope="session")
def rollout_url(rollout_store: LocalStore, capture_dir: Path) -> Iterator[str]:
    with MaasServe(rollout_store, "--capture", str(capture_dir)) as url:
        yield url



