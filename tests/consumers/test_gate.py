"""``maas serve --keys``'s gate through real uvicorn: every answer code, metering, and the key kept secret."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest

from functions.api.front import create_front
from functions.consumers.admission import Keyring, Limits
from functions.consumers.gate import KeyGate, model_in_path
from functions.consumers.meter import Meter
from functions.consumers.sqlite_store import SqliteStore
from functions.core import capture
from functions.core.settings import Settings
from functions.core.store import LocalStore
from tests.api.conftest import LiveServer
from tests.api.samples import CANCER_ROW, DIABETES_ROW
from tests.consumers.conftest import add_key

FIXED_NOW = 1796385600.0 + 3 * 3600 + 0.5  # 2026-12-04 15:00:00.5 UTC: every request of the module in one window
PREDICT = "/v1/models/diabetes-mlp/predict"


@dataclasses.dataclass
class Served:
    url: str
    store: SqliteStore
    gate: KeyGate


@pytest.fixture(scope="module")
def served(built_store: LocalStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The front behind the key gate (lookups not cached: ttl 0; limits on a fixed clock), on loopback."""
    store = SqliteStore(tmp_path_factory.mktemp("keys") / "keys.db")
    front = create_front(Settings(store=built_store.uri))
    gate = KeyGate(front, Limits(store, clock=lambda: FIXED_NOW), Meter(store), Keyring(store, ttl=0))
    with LiveServer(gate) as url:
        yield Served(url, store, gate)


@pytest.fixture
def http(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        yield client


def body(response: httpx.Response) -> dict[str, object]:
    document = orjson.loads(response.content)
    assert isinstance(document, dict)
    return document


def test_health_needs_no_key_and_everything_else_does(http: httpx.Client) -> None:
    assert http.get("/v2/health/live").status_code == 200
    for method, path in (("POST", PREDICT), ("GET", "/v1/models"), ("GET", "/v1/batch/outputs"),
                         ("POST", "/v2/models/x/infer"), ("GET", "/v1/models/x/versions/1/card")):
        answer = http.request(method, path, json={"instances": [DIABETES_ROW]})
        assert answer.status_code == 401, path
        assert body(answer) == {"code": "unauthenticated", "error": "no API key: send it in the x-api-key header "
                                                                     "(or Authorization: Bearer KEY)"}


def test_the_console_and_the_api_description_load_without_a_key(http: httpx.Client) -> None:
    for path in ("/console/", "/console/js/api.js", "/docs", "/openapi.json"):
        assert http.get(path).status_code == 200, path
    assert http.get("/consolex").status_code == 401  # only the console's own paths
    document = http.get("/openapi.json").json()  # /docs can send the key
    assert document["components"]["securitySchemes"]["ApiKey"] == {"type": "apiKey", "in": "header",
                                                                   "name": "x-api-key"}
    assert {"ApiKey": []} in document["security"]
    assert document["paths"]["/v2/health/live"]["get"]["security"] == []


def test_a_good_key_works_in_either_header_and_a_bad_one_is_401(http: httpx.Client, served: Served) -> None:
    key, _ = add_key(served.store, "either-header")
    for headers in ({"x-api-key": key}, {"authorization": f"Bearer {key}"}):
        answer = http.post(PREDICT, json={"instances": [DIABETES_ROW]}, headers=headers)
        assert answer.status_code == 200 and body(answer)["model"] == "diabetes-mlp"
    for wrong in (key[:-1] + ("A" if key[-1] != "A" else "B"), "maas_", "x" * 5000):
        answer = http.post(PREDICT, json={"instances": [DIABETES_ROW]}, headers={"x-api-key": wrong})
        assert answer.status_code == 401 and body(answer)["code"] == "unauthenticated"
        assert wrong not in answer.text


def test_revoked_expired_and_out_of_scope_keys_are_403(http: httpx.Client, served: Served) -> None:
    key, record = add_key(served.store, "scoped", models=("diabetes-mlp",))
    assert http.post(PREDICT, json={"instances": [DIABETES_ROW]}, headers={"x-api-key": key}).status_code == 200
    listing = http.get("/v1/models", headers={"x-api-key": key})
    assert [m["name"] for m in listing.json()["models"]] == ["diabetes-mlp"]  # only what the key covers
    everything = add_key(served.store, "everything")[0]
    assert len(http.get("/v1/models", headers={"x-api-key": everything}).json()["models"]) > 1
    other = http.post("/v1/models/cancer-mlp:predict", json={"instances": [CANCER_ROW]}, headers={"x-api-key": key})
    assert other.status_code == 403
    assert body(other) == {"code": "forbidden",
                           "error": f"API key maas_{record.key_id} does not cover model 'cancer-mlp'"}
    assert http.get("/v2/models/cancer-mlp", headers={"x-api-key": key}).status_code == 403
    served.store.update_key(record.revoked(1.0))
    revoked = http.post(PREDICT, json={"instances": [DIABETES_ROW]}, headers={"x-api-key": key})
    assert revoked.status_code == 403 and "was revoked" in body(revoked)["error"]
    old, _ = add_key(served.store, "expired", expires_at=1.0)
    expired = http.post(PREDICT, json={"instances": [DIABETES_ROW]}, headers={"x-api-key": old})
    assert expired.status_code == 403 and "expired at 1970-01-01T00:00:01Z" in body(expired)["error"]


def test_a_burst_over_the_rate_limit_gets_exactly_the_limit_through(http: httpx.Client, served: Served) -> None:
    key, _ = add_key(served.store, "bursty", rate_limit=5)

    def one(_: int) -> httpx.Response:
        return http.post(PREDICT, json={"instances": [DIABETES_ROW]}, headers={"x-api-key": key})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(24)))
    assert sorted(a.status_code for a in answers) == [200] * 5 + [429] * 19
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.headers["retry-after"] == "1"
    assert body(refused)["code"] == "rate_limited" and "rate limit of 5 requests per second" in body(refused)["error"]


def test_a_daily_quota_is_exact_and_says_when_it_renews(http: httpx.Client, served: Served) -> None:
    key, _ = add_key(served.store, "quota", daily_quota=3)
    statuses = [http.post(PREDICT, json={"instances": [DIABETES_ROW]}, headers={"x-api-key": key}).status_code
                for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    over = http.post(PREDICT, json={"instances": [DIABETES_ROW]}, headers={"x-api-key": key})
    assert body(over)["code"] == "quota_exceeded"
    assert over.headers["retry-after"] == str(9 * 3600)  # 15:00:00.5 UTC -> midnight, rounded up


def test_usage_counts_requests_rows_and_errors_by_class(http: httpx.Client, served: Served) -> None:
    key, _ = add_key(served.store, "metered", models=("diabetes-mlp", "cancer-mlp"), daily_quota=6)
    headers = {"x-api-key": key}
    http.post(PREDICT, json={"instances": [DIABETES_ROW] * 3}, headers=headers)
    http.post("/v1/models/diabetes-mlp/versions/1/predict", json={"instances": [DIABETES_ROW]}, headers=headers)
    assert http.post(PREDICT, json={"instances": [{"age": "old"}]}, headers=headers).status_code == 422
    tensor = http.get("/v2/models/cancer-mlp", headers=headers).json()["inputs"][0]["name"]  # counted: 0 rows
    assert http.post("/v2/models/cancer-mlp/infer", headers=headers, json={"inputs": [
        {"name": tensor, "datatype": "FP32", "shape": [2, 30], "data": CANCER_ROW * 2}]}).status_code == 200
    assert http.post("/v1/models/digits-cnn/predict", json={"instances": []}, headers=headers).status_code == 403
    assert http.post("/v1/models/nope/predict", json={"instances": []}, headers=headers).status_code == 403
    for _ in range(2):  # the quota's sixth request (scope refusals are not counted), then one over it
        http.post(PREDICT, json={"instances": [DIABETES_ROW]}, headers=headers)
    served.gate.meter.flush()
    rows = {(u.model, u.version): u for u in served.store.usage(consumer="metered")}
    diabetes, cancer = rows[("diabetes-mlp", "1")], rows[("cancer-mlp", "1")]
    # the 422 counts against the version that refused its input
    assert (diabetes.requests, diabetes.rows, diabetes.client_errors, diabetes.throttled) == (4, 5, 1, 0)
    assert (cancer.requests, cancer.rows) == (1, 2)
    # answered before a version was chosen (the metadata read, two scope refusals, the quota's 429): under "-"
    unversioned = rows[("-", "-")]
    assert (unversioned.requests, unversioned.client_errors, unversioned.throttled, unversioned.rows) == (4, 2, 1, 0)
    assert set(rows) == {("diabetes-mlp", "1"), ("cancer-mlp", "1"), ("-", "-")}
    assert sum(u.server_errors for u in rows.values()) == 0
    assert all(u.latency_ms > 0 for u in rows.values())


def test_the_key_never_reaches_logs_capture_or_answers(http: httpx.Client, served: Served, tmp_path: Path,
                                                      capfd: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAAS_METRICS", "1")
    key, record = add_key(served.store, "secretive", models=("diabetes-mlp",))
    capture.configure(rate=1.0, directory=tmp_path / "capture", masks='{"*": {"consumer": "hash"}}',
                      env={"MAAS_CAPTURE_HASH_KEY": "k"})
    try:
        answers = [http.post(PREDICT, json={"instances": [DIABETES_ROW]}, headers={"x-api-key": key}),
                   http.post(PREDICT, json={"instances": [{"bad": 1}]}, headers={"x-api-key": key}),
                   http.post("/v1/models/cancer-mlp/predict", json={}, headers={"authorization": f"Bearer {key}"})]
        capture.state().sink.flush()  # type: ignore[union-attr]
        captured = b"".join(p.read_bytes() for p in (tmp_path / "capture").rglob("*.jsonl"))
    finally:
        capture.configure(env={})
    assert [a.status_code for a in answers] == [200, 422, 403]
    printed = capfd.readouterr().out
    for where in (printed, captured.decode(), *(a.text for a in answers)):
        assert key not in where and key[14:] not in where  # nor its secret part alone
    records = [orjson.loads(line) for line in captured.splitlines()]
    assert len(records) == 1 and records[0]["consumer"].startswith("hmac:")
    metrics = [orjson.loads(line) for line in printed.splitlines() if '"Latency"' in line]
    assert [m["consumer"] for m in metrics] == ["secretive"]
    assert f"maas_{record.key_id}" in printed  # the 403's log line names the key by its public id


@pytest.mark.parametrize(("path", "model"), [
    ("/v1/models/a/predict", "a"), ("/v1/models/a:predict", "a"), ("/v2/models/b/versions/2/infer", "b"),
    ("/v1/models", None), ("/v1/jobs/123", None), ("/v1/models/", None), ("/console/", None)])
def test_the_model_is_read_from_the_path(path: str, model: str | None) -> None:
    assert model_in_path(path) == model


def test_a_corrupted_key_record_is_a_503_for_that_key_only(http: httpx.Client, served: Served) -> None:
    broken, record = add_key(served.store, "corrupted")
    good, _ = add_key(served.store, "unaffected")
    served.store._run("UPDATE keys SET record = ? WHERE key_id = ?", ("{not json", record.key_id))
    answer = http.post(PREDICT, json={"instances": [DIABETES_ROW]}, headers={"x-api-key": broken})
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert body(answer) == {"code": "key_store_unavailable",
                            "error": "API keys cannot be checked right now; retry later"}
    assert http.post(PREDICT, json={"instances": [DIABETES_ROW]}, headers={"x-api-key": good}).status_code == 200


def test_names_from_paths_never_become_usage_rows_and_odd_tokens_are_refused(http: httpx.Client,
                                                                             served: Served) -> None:
    key, _ = add_key(served.store, "odd-paths")
    headers = {"x-api-key": key}
    long_name = "a" * 1100
    one = {"instances": [DIABETES_ROW]}
    assert http.post(f"/v1/models/{long_name}/predict", json=one, headers=headers).status_code == 404
    assert http.post("/v1/models/no-such-model/predict", json=one, headers=headers).status_code == 404
    job = http.post("/v1/models/diabetes-mlp/jobs", json={"format": "csv", "bytes": 10}, headers=headers).json()
    upload = http.put(f"/v1/jobs/{job['job_id']}/input", params={"token": "é"}, content=b"x")
    assert upload.status_code == 403 and body(upload)["code"] == "forbidden"  # a token no job has, not a 500
    served.gate.meter.flush()
    rows = {(u.model, u.version): u.requests for u in served.store.usage(consumer="odd-paths")}
    assert rows == {("-", "-"): 3}  # the two unknown models and the job submission: no row named by the path
