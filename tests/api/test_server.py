"""The app under uvicorn on loopback: predictions, model metadata, 503 isolation, alias TTL, the CLI client."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from functions.core import catalog
from functions.core.store import LocalStore
from tests.api.conftest import CORRUPT_MODEL, CORRUPT_VERSION, FakeClock
from tests.api.samples import CANCER_ROW, INSTANCES


@pytest.mark.parametrize("name", sorted(INSTANCES))
def test_predict_every_demo_model(client: httpx.Client, name: str) -> None:
    response = client.post(f"/v1/models/{name}/predict", json={"instances": INSTANCES[name]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == name
    assert len(body["predictions"]) == len(INSTANCES[name])
    first = body["predictions"][0]
    if name == "diabetes-mlp":
        assert set(first) == {"value"}
    else:
        assert abs(sum(first["probabilities"].values()) - 1) < 1e-3
        assert first["label"] == max(first["probabilities"], key=first["probabilities"].get)


def test_digit_zero_is_classified_as_zero(client: httpx.Client) -> None:
    body = client.post("/v1/models/digits-cnn/predict", json={"instances": INSTANCES["digits-cnn"]}).json()
    assert body["predictions"][0]["label"] == "0"


def test_model_metadata_and_listing(client: httpx.Client) -> None:
    listing = client.get("/v1/models").json()["models"]
    assert {m["name"] for m in listing} == {"cancer-mlp", "diabetes-mlp", "digits-cnn", "text-lstm"}
    detail = client.get("/v1/models/cancer-mlp").json()
    assert detail["default_version"] == "1" and detail["aliases"] == {"prod": "1"}
    assert detail["versions"] == ["1", "2"]
    assert len(detail["preprocessing"]["features"]) == 30


def test_corrupted_version_answers_503_while_everything_else_serves(client: httpx.Client) -> None:
    for _ in range(2):  # the failure is remembered, and the process stays up
        broken = client.post(f"/v1/models/{CORRUPT_MODEL}/versions/{CORRUPT_VERSION}/predict",
                             json={"instances": [CANCER_ROW]})
        assert broken.status_code == 503
        assert broken.json()["code"] == "model_unavailable"
        assert "sha256" in broken.json()["error"]
    assert client.get(f"/v2/models/{CORRUPT_MODEL}/versions/{CORRUPT_VERSION}/ready").status_code == 503
    assert client.post(f"/v1/models/{CORRUPT_MODEL}/versions/1/predict",
                       json={"instances": [CANCER_ROW]}).status_code == 200
    for name, instances in INSTANCES.items():
        assert client.post(f"/v1/models/{name}/predict", json={"instances": instances}).status_code == 200


def test_promote_and_rollback_take_effect_after_the_ttl(client: httpx.Client, app,  # type: ignore[no-untyped-def]
                                                        serving_store: LocalStore, clock: FakeClock) -> None:
    """After the TTL the known target still answers at once while one background refresh re-reads the alias;
    the requests after it get the new target."""
    from model_build.pipeline import build
    from model_build.recipes import load_recipe

    name = "diabetes-mlp"
    assert client.post(f"/v1/models/{name}/predict", json={"instances": INSTANCES[name]}).json()["version"] == "1"
    build(load_recipe(name), serving_store, quick=True)  # version 2
    catalog.promote(serving_store, name, "1", "prod")
    catalog.promote(serving_store, name, "2", "prod")
    version = lambda: client.post(f"/v1/models/{name}/predict",  # noqa: E731
                                  json={"instances": INSTANCES[name]}).json()["version"]
    assert version() == "1"  # alias still cached
    clock.now += 31
    assert version() == "1"  # expired: answered from the known target, which is being re-read
    assert app.cache.alias_targets.settle(30)
    assert version() == "2"
    catalog.rollback(serving_store, name, "prod")
    assert version() == "2"
    clock.now += 31
    assert version() == "2"
    assert app.cache.alias_targets.settle(30)
    assert version() == "1"


def test_maas_predict_cli_against_the_server(base_url: str) -> None:
    result = subprocess.run([sys.executable, "-m", "maas", "predict", "text-lstm", "--url", base_url,
                             "--data", '["Heavy rain will clear by the weekend."]'],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert '"model":"text-lstm"' in result.stdout
    bad = subprocess.run([sys.executable, "-m", "maas", "predict", "text-lstm", "--url", base_url,
                          "--data", "[5]"], capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 8
    assert "HTTP 422" in bad.stderr and "expected a string" in bad.stderr
