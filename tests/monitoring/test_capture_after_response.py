"""Capture after the response, in Lambda: the handler queues records and the runtime's post writes them.

The order against Lambda's real runtime client (records written after the response post and before the next
invocation, none lost over 1,000 invocations, none twice, none lost when a post is refused) is checked in
tests/runtime/test_api_runtime.py. Here, in process, through the real handler stack (Mangum over the app) and
a stand-in of the runtime's client (``tests.lambda_runtime``), what the real client cannot be made to do: an
error post after a captured prediction, a dead sink, the managed runtime's own module name and awslambdaric's
second client class, settings changed mid-way, capture switched off or no client at all, a queue that no post
drains. (The real client, once imported, would stay in this process's modules for every later test, and its
posts need a Runtime API: it runs in a subprocess there.)
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from mangum import Mangum

from functions.api.app import create_app
from functions.core import capture, capture_after_response
from functions.core.model_cache import ModelCache
from functions.core.settings import Settings
from functions.core.store import LocalStore
from tests.api.samples import DIABETES_ROW
from tests.events import LambdaContext, http_api_event
from tests.lambda_runtime import base_and_sibling_client_classes, invoke, runtime_client_class

MASKS = json.dumps({"diabetes-mlp": {"drop": ["bmi"], "hash": ["age"]}})
LAMBDA = {"AWS_LAMBDA_FUNCTION_NAME": "maas-api", "MAAS_CAPTURE_RATE": "1", "MAAS_CAPTURE_MASK": MASKS,
          "MAAS_CAPTURE_HASH_KEY": "secret"}
EVENT = http_api_event("POST", "/v1/models/diabetes-mlp/predict", orjson.dumps({"instances": [DIABETES_ROW]}))


class Context(LambdaContext):
    def __init__(self, request_id: str) -> None:
        self.aws_request_id = request_id


@pytest.fixture(autouse=True)
def capture_off() -> Iterator[None]:
    yield
    capture.configure(env={})


@pytest.fixture(scope="module")
def handler(monitor_store: LocalStore) -> Any:
    settings = Settings(store=monitor_store.uri, max_batch_rows=1)
    return Mangum(create_app(settings, ModelCache(monitor_store, settings)), lifespan="off")


class Journal:
    """A sink and a client that note, in one list, when records are written and responses posted."""

    def __init__(self, client: Any) -> None:
        self.events: list[str] = []
        self.lines: list[bytes] = []
        journal = self
        original = client.post_invocation_result

        def post(self: Any, invoke_id: str, *args: Any, **kwargs: Any) -> None:
            journal.events.append(f"posted {invoke_id}")
            original(self, invoke_id, *args, **kwargs)

        client.post_invocation_result = post

    def write(self, record: dict[str, Any], line: bytes) -> None:
        request_id = orjson.loads(line)["request_id"]
        self.events.append(f"written {request_id}")
        self.lines.append(line)


def test_an_error_post_writes_too(handler: Any) -> None:
    """A captured prediction whose invocation still ends in an error post (say, a response the runtime cannot
    marshal): the API handler gives the real client no such case, so the stand-in posts the error."""
    client_class = runtime_client_class()
    state = capture.configure(env=LAMBDA)
    assert capture.start_after_response(LAMBDA, client_class)
    journal = Journal(runtime_client_class())
    state.sink = journal
    handler(EVENT, Context("req-0"))
    assert journal.events == []
    client_class().post_invocation_error("req-0", "{}", "{}", invocation_id="i-0")  # the newer signature
    assert journal.events == ["written req-0"]
    records = [orjson.loads(line) for line in journal.lines]
    assert all("bmi" not in r["inputs"][0] and r["inputs"][0]["age"].startswith("hmac:") for r in records)


def test_a_dead_sink_never_reaches_the_runtime(handler: Any) -> None:
    client_class = runtime_client_class()
    state = capture.configure(env=LAMBDA)
    assert capture.start_after_response(LAMBDA, client_class)

    class Gone:
        def write(self, record: dict[str, Any], line: bytes) -> None:
            raise OSError("stdout is closed")

    state.sink = Gone()
    client = client_class()
    answers = [invoke(client, handler, EVENT, Context(f"req-{n}")) for n in range(2)]
    assert [answer and answer["statusCode"] for answer in answers] == [200, 200]
    assert client.posted == [("result", "req-0"), ("result", "req-1")]
    assert state.dropped == 2 and state.captured == 0


@pytest.mark.parametrize("module_name", ["awslambdaric.lambda_runtime_client", "lambda_runtime_client"])  # PyPI's,
# and the managed runtime's own copy (the real PyPI client is found in tests/runtime too)
def test_lambdas_runtime_client_is_found_where_lambda_loads_it(handler: Any, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str],
                                                               module_name: str) -> None:
    client_class = runtime_client_class()
    module = types.ModuleType(module_name)
    module.LambdaRuntimeClient = client_class  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module_name, module)
    capture.configure(env=LAMBDA)
    assert capture.start_after_response(LAMBDA)
    assert "capture records are written after the response" in capsys.readouterr().out  # the start-up line
    assert capture.start_after_response(LAMBDA)  # installing twice wraps once
    wrapped = client_class.post_invocation_result
    assert getattr(wrapped, capture_after_response.MARK) and not hasattr(wrapped.__wrapped__, "__wrapped__")
    assert invoke(client_class(), handler, EVENT, Context("req-0"))
    lines = [line for line in capsys.readouterr().out.splitlines() if '"maas_capture"' in line]
    assert [json.loads(line)["request_id"] for line in lines] == ["req-0"]


def test_every_client_of_the_runtime_writes_when_the_posts_live_on_a_base(handler: Any) -> None:
    standard, multi_concurrent = base_and_sibling_client_classes()
    state = capture.configure(env=LAMBDA)
    assert capture.start_after_response(LAMBDA, standard)
    journal = Journal(runtime_client_class())
    state.sink = journal
    assert invoke(multi_concurrent(), handler, EVENT, Context("req-0"))  # the sibling the runtime may use
    assert invoke(standard(), handler, EVENT, Context("req-1"))
    assert journal.events == ["written req-0", "written req-1"] and state.pending == []


def test_new_settings_write_what_the_old_ones_queued(handler: Any) -> None:
    state = capture.configure(env=LAMBDA)
    assert capture.start_after_response(LAMBDA, runtime_client_class())
    journal = Journal(runtime_client_class())
    state.sink = journal
    handler(EVENT, Context("req-0"))
    capture.configure(env={})
    assert journal.events == ["written req-0"] and state.pending == []


@pytest.mark.parametrize("change", [{"MAAS_CAPTURE_AFTER_RESPONSE": "off"}, {"MAAS_CAPTURE_RATE": "0"},
                                    {"AWS_LAMBDA_FUNCTION_NAME": ""}, {"no runtime client": ""}])
def test_without_a_runtime_client_or_switched_off_records_are_written_inline(
        handler: Any, change: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    env = {**LAMBDA, **change}
    client = None if "no runtime client" in change else runtime_client_class()
    state = capture.configure(env=env)
    assert not capture.start_after_response(env, client) and state.pending is None
    assert handler(EVENT, Context("req-0"))["statusCode"] == 200  # no post follows: written already, or off
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if '"maas_capture"' in line]
    assert len(lines) == (1 if state.rate else 0)
    assert ("runtime client was not found" in out) == (client is None)
    assert ("MAAS_CAPTURE_AFTER_RESPONSE=off" in out) == ("MAAS_CAPTURE_AFTER_RESPONSE" in change)


def test_a_queue_no_post_drains_turns_itself_off(handler: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Were the runtime to post without the wrapped method, the second request finds the first one's record
    still queued: it writes both and queues no more."""
    state = capture.configure(env=LAMBDA)
    assert capture.start_after_response(LAMBDA, runtime_client_class())
    for number in range(5):  # the handler runs, but nothing ever posts
        handler(EVENT, Context(f"req-{number}"))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"maas_capture"' in line]
    assert [r["request_id"] for r in lines] == [f"req-{n}" for n in range(5)] and state.pending is None


def test_a_bad_switch_fails_at_start_up() -> None:
    capture.configure(env=LAMBDA)
    with pytest.raises(capture.CaptureConfigError, match="MAAS_CAPTURE_AFTER_RESPONSE"):
        capture.start_after_response({**LAMBDA, "MAAS_CAPTURE_AFTER_RESPONSE": "later"}, runtime_client_class())
