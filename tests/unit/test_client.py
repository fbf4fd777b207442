"""maas.client: SigV4 signing checked against botocore's own signer on a loopback server, bearer tokens,
AWS endpoint detection, and the 401/403 hint (issue 17)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from functions.core.errors import ApiRejectedError
from maas.client import Client, aws_endpoint

SEEN: list[dict[str, Any]] = []
KEY, SECRET, REGION = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "eu-west-1"


class _Recorder(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        SEEN.append({"method": "POST", "path": self.path, "headers": dict(self.headers.items()), "body": body})
        status = 403 if self.path.startswith("/v1/models/locked/") else 200
        payload = {"message": "Forbidden"} if status == 403 else {"predictions": [1]}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    SEEN.clear()


def _botocore_signature(url: str, seen: dict[str, Any], service: str) -> str:
    """What botocore's signer computes for the request the server received, at the same timestamp."""
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    request = AWSRequest(method="POST", url=url + seen["path"], data=seen["body"],
                         headers={"content-type": headers["content-type"], "X-Amz-Date": headers["x-amz-date"]})
    request.context["timestamp"] = headers["x-amz-date"]
    signer = SigV4Auth(Credentials(KEY, SECRET), service, REGION)
    canonical = signer.canonical_request(request)
    return signer.signature(signer.string_to_sign(request, canonical), request)


def test_sigv4_signature_matches_botocore_and_has_the_standard_shape(server: str, aws_env: None) -> None:
    answer = Client(server, auth="iam", region=REGION).predict("iris", [[1, 2, 3, 4]], alias="prod")
    assert answer == {"predictions": [1]}
    [seen] = SEEN
    assert seen["path"] == "/v1/models/iris/predict?alias=prod"
    assert json.loads(seen["body"]) == {"instances": [[1, 2, 3, 4]]}
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    found = re.fullmatch(r"AWS4-HMAC-SHA256 Credential=(\S+), SignedHeaders=(\S+), Signature=([0-9a-f]{64})",
                         headers["authorization"])
    assert found is not None, headers["authorization"]
    credential, signed, signature = found.groups()
    assert credential == f"{KEY}/{headers['x-amz-date'][:8]}/{REGION}/execute-api/aws4_request"
    assert set(signed.split(";")) >= {"host", "x-amz-date", "content-type"}
    assert signature == _botocore_signature(server, seen, "execute-api")


def test_a_tampered_body_does_not_verify(server: str, aws_env: None) -> None:
    Client(server, auth="iam", region=REGION).predict("iris", [[1]])
    seen = {**SEEN[0], "body": b'{"instances": [[2]]}'}
    signature = SEEN[0]["headers"]["Authorization"].rsplit("=", 1)[1]
    assert signature != _botocore_signature(server, seen, "execute-api")


def test_bearer_token_is_sent_and_nothing_is_signed(server: str, aws_env: None) -> None:
    Client(server, token="tok-123").predict("iris", [[1]], version="2")
    [seen] = SEEN
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["authorization"] == "Bearer tok-123"
    assert "x-amz-date" not in headers
    assert seen["path"] == "/v1/models/iris/versions/2/predict"


def test_loopback_urls_send_no_credentials_by_default(server: str, aws_env: None) -> None:
    Client(server).predict("iris", [[1]])
    assert "authorization" not in {k.lower() for k in SEEN[0]["headers"]}


def test_403_says_how_to_authenticate(server: str, aws_env: None) -> None:
    with pytest.raises(ApiRejectedError) as caught:
        Client(server).predict("locked", [[1]])
    assert caught.value.status == 403
    assert "--auth iam" in caught.value.message and "MAAS_TOKEN" in caught.value.message


def test_aws_endpoints_are_recognized_with_service_and_region() -> None:
    assert aws_endpoint("https://abc123.execute-api.eu-west-1.amazonaws.com/") == ("execute-api", "eu-west-1")
    assert aws_endpoint("https://xyz.lambda-url.us-east-2.on.aws") == ("lambda", "us-east-2")
    assert aws_endpoint("http://127.0.0.1:8000") is None
    assert aws_endpoint("https://execute-api.eu-west-1.amazonaws.com.evil.example") is None
    client = Client("https://xyz.lambda-url.us-east-2.on.aws")
    assert client.sign and client.service == "lambda" and client.region == "us-east-2"
    assert not Client("https://xyz.lambda-url.us-east-2.on.aws", token="t").sign
