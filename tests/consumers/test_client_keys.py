"""The client side of API keys against a real ``maas serve --keys FILE`` (a subprocess on loopback, the demo
models): ``maas predict/explain/jobs --api-key`` (or ``MAAS_API_KEY``) and ``Client(api_key=)``, exit 16 for a
refused key and 17 over a quota with the seconds to wait, usage metered, and the key never printed, logged or
captured."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from functions.consumers.keys import key_hash, key_id_of, new_key
from functions.core.errors import ApiLimitedError, ApiRefusedError
from functions.core.store import LocalStore
from maas.cli import main
from maas.client import Client
from tests.api.samples import DIABETES_ROW
from tests.live_server import free_port, wait_live

ROOT = Path(__file__).resolve().parents[2]
DATA = json.dumps([DIABETES_ROW])


@dataclass
class Served:
    url: str
    keys: Path
    log: Path
    capture: Path
    issued: list[str] = field(default_factory=list)

    def create(self, consumer: str, *args: str) -> str:
        result = maas("keys", "create", consumer, *args, "--keys", str(self.keys))
        assert result.exit_code == 0, result.output
        key = result.stdout.strip()
        self.issued.append(key)
        return key


def maas(*args: str, api_key: str | None = None) -> Result:
    """The CLI in process, with ``MAAS_API_KEY`` unset (``api_key``: set to it)."""
    return CliRunner().invoke(main, list(args), env={"MAAS_API_KEY": api_key, "MAAS_URL": None})


@pytest.fixture(scope="module")
def served(built_store: LocalStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``maas serve --keys FILE --capture DIR`` with key lookups not cached (a revoke is seen at once); its output
    in a file."""
    root = tmp_path_factory.mktemp("keys-served")
    port = free_port()
    served = Served(f"http://127.0.0.1:{port}", root / "keys.db", root / "server.log", root / "capture")
    served.create("first")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAAS_")}
    env.update(MAAS_KEYS_CACHE_SECONDS="0", PYTHONUNBUFFERED="1")
    with served.log.open("wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "maas", "serve", "--store", built_store.uri, "--port",
                                   str(port), "--keys", str(served.keys), "--capture", str(served.capture)],
                                  cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        try:
            wait_live(served.url, server)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {served.log.read_text()}") from None
        yield served
    finally:
        server.terminate()
        server.wait(timeout=30)


def predict(served: Served, *args: str, api_key: str | None = None, model: str = "diabetes-mlp") -> Result:
    return maas("predict", model, "--data", DATA, "--url", served.url, *args, api_key=api_key)


def one_error_line(result: Result) -> str:
    """The single line a refused command prints (checked to be the only one)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: HTTP "), result.stderr
    assert result.stdout == ""
    return lines[0]


def test_a_good_key_gets_predictions_from_the_option_the_variable_and_the_client(
        served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    key = served.create("good", "--models", "diabetes-mlp")
    by_option = predict(served, "--api-key", key)
    assert by_option.exit_code == 0, by_option.output
    assert json.loads(by_option.stdout)["model"] == "diabetes-mlp"
    by_variable = predict(served, api_key=key)
    assert by_variable.exit_code == 0 and json.loads(by_variable.stdout)["predictions"]
    assert len(Client(served.url, api_key=key).predict("diabetes-mlp", [DIABETES_ROW])["predictions"]) == 1
    monkeypatch.setenv("MAAS_API_KEY", key)  # the client's default
    assert Client(served.url).api_key == key and Client(served.url, api_key="").api_key is None
    assert Client(served.url).predict("diabetes-mlp", [DIABETES_ROW])["predictions"]
    monkeypatch.delenv("MAAS_API_KEY")
    out_of_scope = predict(served, "--api-key", key, model="cancer-mlp")
    assert out_of_scope.exit_code == 16
    assert "HTTP 403 forbidden" in one_error_line(out_of_scope) and "does not cover model 'cancer-mlp'" in \
        out_of_scope.stderr


def test_no_key_an_unknown_key_and_a_revoked_key_exit_16_with_one_line(served: Served) -> None:
    missing = predict(served)
    assert missing.exit_code == 16
    line = one_error_line(missing)
    assert "HTTP 401 unauthenticated: no API key" in line and "--api-key" in line
    unknown_key = new_key()[0]
    unknown = predict(served, "--api-key", unknown_key)
    assert unknown.exit_code == 16 and "HTTP 401 unauthenticated: the API key is not valid" in one_error_line(unknown)
    key = served.create("revoked")
    assert predict(served, "--api-key", key).exit_code == 0
    assert maas("keys", "revoke", str(key_id_of(key)), "--keys", str(served.keys)).exit_code == 0
    revoked = predict(served, "--api-key", key)
    assert revoked.exit_code == 16
    assert f"HTTP 403 forbidden: API key maas_{key_id_of(key)} was revoked" in one_error_line(revoked)
    explained = maas("explain", "diabetes-mlp", "--data", DATA, "--url", served.url, "--json", "--api-key", key)
    assert explained.exit_code == 16 and "was revoked" in explained.stderr
    with pytest.raises(ApiRefusedError) as refused:
        Client(served.url, api_key=key).predict("diabetes-mlp", [DIABETES_ROW])
    assert refused.value.status == 403
    for result in (unknown, revoked, explained):
        assert unknown_key not in result.output and key not in result.output


def test_over_a_daily_quota_of_one_exits_17_with_the_seconds_to_wait_and_usage_is_metered(served: Served) -> None:
    key = served.create("quota-1", "--daily-quota", "1")
    assert predict(served, "--api-key", key).exit_code == 0
    over = predict(served, "--api-key", key)
    assert over.exit_code == 17
    line = one_error_line(over)
    assert "HTTP 429 quota_exceeded" in line and "daily quota of 1" in line
    seconds = int(line.rsplit("retry after ", 1)[1].split(" s")[0])
    assert 0 < seconds <= 86400
    with pytest.raises(ApiLimitedError) as limited:
        Client(served.url, api_key=key).predict("diabetes-mlp", [DIABETES_ROW])
    assert limited.value.status == 429 and limited.value.retry_after is not None and limited.value.retry_after > 0
    rows: list[dict[str, object]] = []
    for _ in range(300):  # the server writes usage about once a second; bounded polling, no timing asserted
        result = maas("usage", "--consumer", "quota-1", "--json", "--keys", str(served.keys))
        rows = json.loads(result.stdout)
        if sum(int(str(r["requests"])) for r in rows) >= 3:
            break
        time.sleep(0.1)
    totals = {name: sum(int(str(r[name])) for r in rows) for name in ("requests", "rows", "throttled")}
    assert totals == {"requests": 3, "rows": 1, "throttled": 2}
    assert {r["model"] for r in rows} == {"diabetes-mlp", "-"}  # the two 429s: answered before a version


def test_jobs_send_the_key_to_the_api_and_its_own_upload_and_download_links(served: Served, tmp_path: Path) -> None:
    key = served.create("batch-team", "--models", "diabetes-mlp")
    source = tmp_path / "rows.csv"
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(list(DIABETES_ROW))
    writer.writerows([list(DIABETES_ROW.values())] * 2)
    source.write_text(out.getvalue())
    refused = maas("jobs", "submit", "diabetes-mlp", "--input", str(source), "--url", served.url)
    assert refused.exit_code == 16 and "unauthenticated" in refused.stderr
    submitted = maas("jobs", "submit", "diabetes-mlp", "--input", str(source), "--url", served.url, api_key=key)
    assert submitted.exit_code == 0, submitted.output
    job_id = json.loads(submitted.stdout)["job_id"]
    status: dict[str, object] = {}
    for _ in range(600):  # bounded polling; no timing is asserted
        status = json.loads(maas("jobs", "status", job_id, "--url", served.url, api_key=key).stdout)
        if status["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.1)
    assert status["status"] == "succeeded", status
    fetched = maas("jobs", "fetch", job_id, "--output", str(tmp_path / "out"), "--url", served.url,
                   "--api-key", key)
    assert fetched.exit_code == 0, fetched.output
    assert len((tmp_path / "out" / "predictions.jsonl").read_text().splitlines()) == 2


def test_keys_never_appear_in_listings_the_server_log_or_capture_records(served: Served) -> None:
    key = served.create("secretive")
    assert predict(served, "--api-key", key).exit_code == 0
    assert maas("keys", "revoke", str(key_id_of(key)), "--keys", str(served.keys)).exit_code == 0
    assert predict(served, "--api-key", key).exit_code == 16
    assert predict(served, "--api-key", key[:-1] + ("A" if key[-1] != "A" else "B")).exit_code == 16
    listing = maas("keys", "list", "--keys", str(served.keys))
    listing_json = maas("keys", "list", "--json", "--keys", str(served.keys))
    log = served.log.read_text()
    assert f"maas_{key_id_of(key)} was revoked" in log  # the refusal was logged, by the key's public id
    captured = ""
    for _ in range(300):  # capture records are appended by a background thread; bounded polling
        captured = "".join(path.read_text() for path in served.capture.rglob("*.jsonl"))
        if '"consumer":"secretive"' in captured.replace(" ", ""):
            break
        time.sleep(0.1)
    assert '"consumer":"secretive"' in captured.replace(" ", "")  # the request was captured, by its consumer
    assert len(served.issued) >= 5
    for issued in served.issued:
        secret = issued.split("_", 2)[2]
        for text in (listing.output, listing_json.output, log, captured):
            assert issued not in text and secret not in text and key_hash(issued) not in text


def test_the_key_goes_only_to_the_api_origin_and_an_aws_url_with_a_key_is_not_signed() -> None:
    client = Client("https://abc123.execute-api.eu-west-1.amazonaws.com/", api_key="maas_k")
    assert not client.sign and Client("https://abc123.execute-api.eu-west-1.amazonaws.com/").sign
    assert client.key_header("https://abc123.execute-api.eu-west-1.amazonaws.com:443/v1/jobs/x") == {
        "x-api-key": "maas_k"}
    assert client.key_header("https://bucket.s3.amazonaws.com/in?X-Amz-Signature=s") == {}
    assert client.key_header("http://abc123.execute-api.eu-west-1.amazonaws.com/v1/jobs/x") == {}
    assert Client("http://127.0.0.1:8000", api_key="").key_header("http://127.0.0.1:8000/v1/jobs/x") == {}


def test_refusals_from_api_gateway_keep_their_hint_and_a_429_without_retry_after_says_later() -> None:
    gateway = Client.refusal(403, '{"message":"Forbidden"}', None, key_sent=False)
    assert isinstance(gateway, ApiRefusedError) and "--api-key" in gateway.message and "--auth iam" in gateway.message
    throttled = Client.refusal(429, '{"message":"Too Many Requests"}', None, key_sent=True)
    assert isinstance(throttled, ApiLimitedError) and throttled.retry_after is None
    assert throttled.message == "HTTP 429 throttled: Too Many Requests; retry later"
    quota = Client.refusal(429, '{"error":"over","code":"rate_limited"}', "3", key_sent=True)
    assert isinstance(quota, ApiLimitedError) and quota.retry_after == 3
    assert quota.message == "HTTP 429 rate_limited: over; retry after 3 s"
    assert type(Client.refusal(422, '{"error":"bad","code":"invalid_input"}', None, key_sent=True)).__name__ == \
        "ApiRejectedError"


def test_a_redirect_to_another_origin_never_carries_the_key() -> None:
    import http.server
    import threading

    seen: list[dict[str, str]] = []

    class Elsewhere(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def do_GET(self) -> None:
            self.do_POST()

        def log_message(self, format: str, *args: object) -> None:
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)

    class Redirecting(Elsewhere):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("location", f"http://127.0.0.1:{other.server_address[1]}/stolen")
            self.send_header("content-length", "0")
            self.end_headers()

    api = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    for server in (other, api):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        key = new_key()[0]
        Client(f"http://127.0.0.1:{api.server_address[1]}", api_key=key).job("0" * 32)
    finally:
        for server in (other, api):
            server.shutdown()
            server.server_close()
    assert seen and all("x-api-key" not in headers and key not in str(headers) for headers in seen)
