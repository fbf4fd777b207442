"""The console's routes over HTTP against `maas serve`: documents only from the manifest (verified), never a
model file, drift reports, batch outputs (local and S3), static assets and the offline /docs page."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import boto3
import httpx
import orjson
import pytest

from functions.console import STATIC_DIR
from functions.console.reports import open_outputs, recent_outputs
from functions.core import catalog
from functions.core.store import LocalStore
from tests.console.conftest import DRIFT_MODEL, DRIFT_VERSION, DRIFTED, PRUNED_MODEL, PRUNED_VERSION, MaasServe

DEMO = ["cancer-mlp", "diabetes-mlp", "digits-cnn", "text-lstm"]
SWAGGER = STATIC_DIR / "vendor" / "swagger-ui"


def version_dir(store: LocalStore, name: str, version: str = "1") -> Path:
    return store.root / "models" / name / "versions" / version


@pytest.mark.parametrize("name", DEMO)
def test_card_and_plots_are_served_verified_from_the_manifest(console_client: httpx.Client,
                                                              console_store: LocalStore, name: str) -> None:
    manifest = catalog.read_manifest(console_store, name, "1")
    summary = console_client.get(f"/v1/models/{name}/versions/1").json()
    plots = [f.path for f in manifest.files if f.path.endswith(".png")]
    assert plots and summary["documents"] == sorted(["card.md", *plots])
    card = console_client.get(f"/v1/models/{name}/versions/1/card")
    assert card.status_code == 200 and card.headers["content-type"].startswith("text/markdown")
    assert card.content == (version_dir(console_store, name) / "card.md").read_bytes()
    for plot in plots:
        response = console_client.get(f"/v1/models/{name}/versions/1/files/{plot}")
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        assert hashlib.sha256(response.content).hexdigest() == manifest.file(plot).sha256


@pytest.mark.parametrize("name", DEMO)
def test_no_model_file_is_ever_returned(console_client: httpx.Client, console_store: LocalStore, name: str) -> None:
    manifest = catalog.read_manifest(console_store, name, "1")
    private = [f.path for f in manifest.files if not f.path.endswith((".png", ".md"))]
    assert any(p.endswith(".onnx") for p in private)
    for path in [*private, "manifest.json", "../1/card.md", "..%2Fmanifest.json", "%2e%2e", "card.md%00.png",
                 "CARD.MD", "x.png", "drift"]:
        response = console_client.get(f"/v1/models/{name}/versions/1/files/{path}")
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/json"
        assert response.json()["code"] in ("not_found", "invalid_name")
    body = console_client.get(f"/v1/models/{name}/versions/1").text
    for path in private:
        assert path not in body  # not even the names of model files


def test_a_tampered_plot_is_a_503_and_nothing_else_breaks(console_store: LocalStore, tmp_path: Path) -> None:
    root = tmp_path / "store"
    shutil.copytree(console_store.root, root)
    plot = version_dir(LocalStore(root), "digits-cnn") / "training.png"
    data = bytearray(plot.read_bytes())
    data[100] ^= 1
    plot.write_bytes(bytes(data))
    with MaasServe(LocalStore(root)) as url, httpx.Client(base_url=url, timeout=30) as client:
        broken = client.get("/v1/models/digits-cnn/versions/1/files/training.png")
        assert broken.status_code == 503 and "sha256" in broken.json()["error"]
        assert str(root) not in broken.text  # no store location in error bodies
        assert client.get("/v1/models/digits-cnn/versions/1/card").status_code == 200
        configured = client.get("/v1/batch/outputs").json()
        assert configured == {"configured": False, "outputs": []}


def test_unknown_and_invalid_names_are_404(console_client: httpx.Client) -> None:
    for path in ["/v1/models/nope/versions/1", "/v1/models/cancer-mlp/versions/9/card",
                 "/v1/models/cancer-mlp/versions/01/drift", "/v1/models/..%2F..%2Fetc/versions/1/card",
                 "/v1/models/cancer-mlp/versions/1/files/"]:
        response = console_client.get(path)
        assert response.status_code == 404, path
        assert set(response.json()) >= {"error", "code"}


def test_version_summary_carries_what_the_pages_need(console_client: httpx.Client) -> None:
    body = console_client.get("/v1/models/digits-cnn/versions/1").json()
    assert body["aliases"] == ["prod"] and body["task"] == "classification"
    assert body["preprocessing"]["kind"] == "image" and body["preprocessing"]["shape"] == [8, 8]
    assert body["selected"]["cpu"] in {v["name"] for v in body["variants"]}
    assert all({"name", "passed", "shipped", "metrics"} <= set(v) for v in body["variants"])
    assert body["gates"] and body["provenance"]["recipe"] == "digits-cnn"
    tabular = console_client.get("/v1/models/diabetes-mlp/versions/1").json()
    assert len(tabular["preprocessing"]["features"]) == len(tabular["reference_stats"]["mean"]) == 10
    assert tabular["pruning"] is None  # a recipe that does not prune: no pruning record


def test_version_summary_carries_the_pruning_levels_and_plot(console_client: httpx.Client,
                                                            console_store: LocalStore) -> None:
    manifest = catalog.read_manifest(console_store, PRUNED_MODEL, PRUNED_VERSION)
    assert manifest.pruning is not None
    body = console_client.get(f"/v1/models/{PRUNED_MODEL}/versions/{PRUNED_VERSION}").json()
    pruning = body["pruning"]
    assert pruning == {**manifest.pruning.to_dict(), "plot": "pruning.png"}
    assert [(lvl["level"], lvl["passed"]) for lvl in pruning["levels"]] == [(0.25, True), (0.5, True), (0.75, False)]
    assert pruning["chosen_level"] == 0.5 and body["selected"]["cpu"] == "pruned-fp32"
    assert "pruning.png" in body["documents"]
    plot = console_client.get(f"/v1/models/{PRUNED_MODEL}/versions/{PRUNED_VERSION}/files/pruning.png")
    assert plot.status_code == 200 and hashlib.sha256(plot.content).hexdigest() == manifest.file("pruning.png").sha256


def test_drift_reports_newest_first_and_none_yet(console_client: httpx.Client, console_store: LocalStore) -> None:
    body = console_client.get(f"/v1/models/{DRIFT_MODEL}/versions/{DRIFT_VERSION}/drift").json()
    (entry,) = body["reports"]
    psi = {f["feature"]: f["psi"] for f in entry["report"]["features"]}
    assert {k: psi[k] for k in DRIFTED} == DRIFTED
    assert console_client.get("/v1/models/diabetes-mlp/versions/1/drift").json()["reports"] == []


def test_unreadable_drift_reports_are_named_not_fatal(console_store: LocalStore, tmp_path: Path) -> None:
    from functions.console.reports import drift_reports

    root = tmp_path / "store"
    shutil.copytree(console_store.root, root)
    store = LocalStore(root)
    folder = f"{catalog.version_prefix(DRIFT_MODEL, DRIFT_VERSION)}/drift"
    store.put_bytes(f"{folder}/2026-11-26.json", b"{not json")
    store.put_bytes(f"{folder}/notes.txt", b"ignored")
    reports = drift_reports(store, DRIFT_MODEL, DRIFT_VERSION)
    assert [r["file"] for r in reports] == ["2026-11-26.json", "2026-11-25.json"]
    assert reports[0]["report"] is None and "error" in reports[0] and reports[1]["report"]


def test_batch_outputs_from_a_local_folder(console_client: httpx.Client) -> None:
    body = console_client.get("/v1/batch/outputs").json()
    assert body["configured"] is True
    (output,) = body["outputs"]
    assert output["folder"] == "diabetes-mlp/1/rows.csv"
    assert output["report"]["rows"] == {"in": 2, "ok": 1, "failed": 1}
    (error,) = output["first_errors"]
    assert error["line"] == 3 and "sex" in error["error"] and output["more_errors"] is False


def test_batch_outputs_from_s3(moto_endpoint: str, s3_bucket: str) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    for i in range(3):
        folder = f"outputs/diabetes-mlp/1/in/part-{i}.csv.etag{i}"
        s3.put_object(Bucket=s3_bucket, Key=f"{folder}/report.json",
                      Body=orjson.dumps({"status": "ok", "rows": {"in": 9, "ok": 9 - i, "failed": i}}))
        if i:
            rows = b"".join(orjson.dumps({"line": n + 2, "error": f"bad {n}"}) + b"\n" for n in range(i * 4))
            s3.put_object(Bucket=s3_bucket, Key=f"{folder}/errors.jsonl", Body=rows)
    s3.put_object(Bucket=s3_bucket, Key="inputs/diabetes-mlp/report.json", Body=b"{}")  # outside the prefix
    outputs = recent_outputs(open_outputs(f"s3://{s3_bucket}/outputs", moto_endpoint), limit=10, error_rows=5)
    assert sorted(o["folder"] for o in outputs) == [f"diabetes-mlp/1/in/part-{i}.csv.etag{i}" for i in range(3)]
    by_failed = {o["report"]["rows"]["failed"]: o for o in outputs}
    assert by_failed[0]["first_errors"] == [] and by_failed[1]["more_errors"] is False
    assert len(by_failed[2]["first_errors"]) == 5 and by_failed[2]["more_errors"] is True


def test_console_assets_and_security_headers(console_client: httpx.Client) -> None:
    redirect = console_client.get("/console", follow_redirects=False)
    assert redirect.status_code == 308 and redirect.headers["location"] == "console/"
    index = console_client.get("/console/")
    assert index.status_code == 200 and "default-src 'self'" in index.headers["content-security-policy"]
    assert index.headers["x-content-type-options"] == "nosniff"
    assert console_client.get("/console/js/app.js").headers["content-type"].startswith("text/javascript")
    for path in ["/console/../functions/api/console.py", "/console/%2e%2e/__init__.py", "/console/nope.js",
                 "/console/js/../../__init__.py", "/console/__init__.py"]:
        assert console_client.get(path).status_code == 404, path
    # Every asset the page references is local and served.
    for ref in re.findall(r'(?:src|href)="([^"#]+)"', index.text):
        assert not ref.startswith(("http:", "https:", "//")), ref
        if not ref.startswith("../"):
            assert console_client.get(f"/console/{ref}").status_code == 200, ref


def test_static_files_load_nothing_from_elsewhere() -> None:
    for path in STATIC_DIR.rglob("*"):
        if path.suffix in (".html", ".js", ".css") and "vendor" not in path.parts:
            text = path.read_text()
            assert not re.search(r"""(?:src|href|url|import|fetch)\s*\(?\s*["'`](?:https?:)?//""", text), path


def test_docs_page_is_offline(console_client: httpx.Client) -> None:
    page = console_client.get("/docs")
    assert page.status_code == 200
    assert "cdn." not in page.text and "fastapi.tiangolo.com" not in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert "/console/vendor/swagger-ui/swagger-ui-bundle.js" in assets
    for asset in assets:
        assert asset.startswith("/"), asset
        assert console_client.get(asset).status_code == 200, asset
    assert '"validatorUrl": null' in page.text


def test_vendored_swagger_ui_is_pinned_with_its_licence() -> None:
    readme = (SWAGGER / "README.md").read_text()
    assert "5.35.0" in readme and "Apache-2.0" in readme
    for name in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert hashlib.sha256((SWAGGER / name).read_bytes()).hexdigest() in readme
    assert "Apache License" in (SWAGGER / "LICENSE").read_text()


def test_console_routes_are_documented_and_read_only(console_client: httpx.Client) -> None:
    paths = console_client.get("/openapi.json").json()["paths"]
    for path in ["/v1/models/{name}/versions/{version}", "/v1/models/{name}/versions/{version}/card",
                 "/v1/models/{name}/versions/{version}/files/{file}", "/v1/models/{name}/versions/{version}/drift",
                 "/v1/batch/outputs"]:
        assert set(paths[path]) == {"get"}, path
    assert not any(p.startswith(("/console", "/docs")) for p in paths)
    for method in ("post", "put", "delete"):
        response = console_client.request(method.upper(), "/v1/models/cancer-mlp/versions/1/card")
        assert response.status_code == 405
