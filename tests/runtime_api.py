"""Lambda's Runtime API on loopback, and a handler started under Lambda's own runtime client against it.

``RuntimeApi`` answers the routes of the documented Runtime API (2018-06-01) that a Python runtime calls:
``GET /runtime/invocation/next`` (with ``Lambda-Runtime-Aws-Request-Id``, ``Lambda-Runtime-Deadline-Ms``,
``Lambda-Runtime-Invoked-Function-Arn``, ``Lambda-Runtime-Trace-Id``), ``POST /runtime/invocation/{id}/response``
and ``.../error``, ``POST /runtime/init/error``, and SnapStart's ``GET /runtime/restore/next`` and
``POST /runtime/restore/error``. Every call the runtime makes is journaled in arrival order with what an
``observe`` callback returned at that moment (the tests pass the size of the process's stdout so far: a line
written before a post lies below that post's mark).

``LambdaProcess`` starts ``python -m awslambdaric MODULE.FUNCTION`` (the real client's bootstrap, as Lambda's
managed Python runtime runs it) in a fresh environment holding only what Lambda sets, plus what the test adds.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "/2018-06-01/runtime"
ACCOUNT = "123456789012"
LAMBDA_PYTHON = "AWS_Lambda_python3.12"  # the runtime infra/ deploys; awslambdaric polls from a thread there


@dataclass
class Call:
    """One request the runtime made: route (``next``, ``response``, ``error``, ``init/error``, ``restore/next``,
    ``restore/error``), the invocation it names, its body and headers, and ``observe()`` at its arrival."""

    route: str
    request_id: str | None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    mark: Any = None
    at: float = 0.0  # time.monotonic() at arrival

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Invocation:
    request_id: str
    event: bytes
    deadline_ms: int


class RuntimeApi:
    """The Runtime API on a free loopback port; ``invoke`` queues events, ``outcome`` waits for their answers."""

    def __init__(self, function_name: str = "maas-api", observe: Callable[[], Any] | None = None) -> None:
        self.function_name = function_name
        self.observe = observe or (lambda: None)
        self.calls: list[Call] = []
        self.restore = threading.Event()  # SnapStart: set when the "snapshot" may be restored
        self.restore.set()
        self.refused: set[str] = set()  # request ids whose response post is answered 413, as Lambda does when too large
        self._queue: queue.Queue[Invocation | None] = queue.Queue()
        self._changed = threading.Condition()
        self._server = _Server(("127.0.0.1", 0), _handler_class(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    @property
    def function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{self.function_name}"

    def __enter__(self) -> RuntimeApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._queue.put(None)  # unblocks a waiting ``next`` (it answers 500: the runtime has been stopped anyway)
        self.restore.set()
        self._server.shutdown()
        self._server.server_close()

    def invoke(self, event: Any, request_id: str | None = None, timeout_ms: int = 60_000,
               deadline_ms: int | None = None) -> str:
        """Queue one invocation (event as JSON-able data or raw bytes); its deadline is ``timeout_ms`` from now
        unless ``deadline_ms`` (epoch milliseconds) is given. Returns the request id."""
        request_id = request_id or str(uuid.uuid4())
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        deadline = deadline_ms if deadline_ms is not None else int(time.time() * 1000) + timeout_ms
        self._queue.put(Invocation(request_id, body, deadline))
        return request_id

    def wait(self, found: Callable[[list[Call]], Any], timeout: float = 60.0, what: str = "a call") -> Any:
        """Wait until ``found(calls)`` is truthy; returns it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (result := found(self.calls)):
                left = deadline - time.monotonic()
                if left <= 0:
                    routes = [(c.route, c.request_id) for c in self.calls[-5:]]
                    raise TimeoutError(f"no {what} from the runtime within {timeout} s (last calls: {routes})")
                self._changed.wait(left)
        return result

    def outcome(self, request_id: str, timeout: float = 60.0) -> Call:
        """The response or error the runtime posted for ``request_id``."""
        return self.wait(lambda calls: next((c for c in calls if c.request_id == request_id
                                             and c.route in ("response", "error")), None), timeout,
                         f"answer to {request_id}")

    def first(self, route: str, timeout: float = 60.0) -> Call:
        return self.wait(lambda calls: next((c for c in calls if c.route == route), None), timeout, route)

    def _record(self, call: Call) -> None:
        call.mark, call.at = self.observe(), time.monotonic()
        with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    def _next(self) -> Invocation | None:
        invocation = self._queue.get()
        if invocation is None:
            self._queue.put(None)
        return invocation


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a runtime stopped mid-connection is no news
            super().handle_error(request, client_address)


def _handler_class(api: RuntimeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the runtime's curl client expects
        disable_nagle_algorithm = True  # else every small answer waits for a delayed ACK (~40 ms)

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: bytes = b"{}", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError):  # the runtime was stopped while it waited
                self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == f"{PREFIX}/invocation/next":
                api._record(Call("next", None))
                invocation = api._next()
                if invocation is None:
                    self._reply(500, b'{"errorMessage": "the emulator is shutting down"}')
                    return
                self._reply(200, invocation.event, {
                    "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": api.function_arn,
                    "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0"})
            elif self.path == f"{PREFIX}/restore/next":
                api._record(Call("restore/next", None))
                api.restore.wait()
                self._reply(200)
            else:
                self._reply(404, b'{"errorMessage": "unknown route"}')

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items()}
            path = self.path.removeprefix(PREFIX)
            if path in ("/init/error", "/restore/error"):
                api._record(Call(path.lstrip("/"), None, body, headers))
                self._reply(202)
                return
            parts = path.strip("/").split("/")  # invocation, ID, response|error
            if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                api._record(Call(parts[2], parts[1], body, headers))
                if parts[2] == "response" and parts[1] in api.refused:
                    self._reply(413, b'{"errorMessage": "Exceeded maximum allowed payload size",'
                                     b' "errorType": "RequestEntityTooLarge"}')
                else:
                    self._reply(202, b'{"status": "OK"}')
            else:
                self._reply(404, b'{"errorMessage": "unknown route"}')

    return Handler


def lambda_environment(api: RuntimeApi, handler: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The variables Lambda's managed runtime sets (region, function, log group, runtime API, handler), the
    Python path of this checkout, loopback credentials, then ``extra``."""
    name = api.function_name
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "en_US.UTF-8", "TZ": ":UTC",
        "PYTHONPATH": str(ROOT), "LAMBDA_TASK_ROOT": str(ROOT), "_HANDLER": handler,
        "AWS_LAMBDA_RUNTIME_API": api.address, "AWS_EXECUTION_ENV": LAMBDA_PYTHON,
        "AWS_LAMBDA_FUNCTION_NAME": name, "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024", "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}", "AWS_LAMBDA_LOG_STREAM_NAME": "2026/12/04/[$LATEST]0",
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
    }
    return {**env, **(extra or {})}


class LambdaProcess:
    """``python -m awslambdaric HANDLER`` against ``api``; stdout and stderr go to files in ``folder``."""

    def __init__(self, api: RuntimeApi, handler: str, folder: Path, env: dict[str, str] | None = None) -> None:
        self.api = api
        self.stdout_path = folder / f"{api.function_name}.stdout"
        self.stderr_path = folder / f"{api.function_name}.stderr"
        self.env = lambda_environment(api, handler, env)
        self.handler = handler
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> LambdaProcess:
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen([sys.executable, "-m", "awslambdaric", self.handler], cwd=ROOT,
                                            env=self.env, stdout=out, stderr=err)
        return self

    def stdout_size(self) -> int:
        """How many bytes the process has written to stdout so far (the runtime flushes every write)."""
        try:
            return self.stdout_path.stat().st_size
        except FileNotFoundError:
            return 0

    def stdout(self) -> bytes:
        return self.stdout_path.read_bytes()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        """Lambda ends an environment with a signal; so does this."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@contextmanager
def lambda_function(handler: str, folder: Path, env: dict[str, str] | None = None,
                    function_name: str = "maas-api") -> Iterator[tuple[RuntimeApi, LambdaProcess]]:
    """A Runtime API and the handler's process started against it (its stdout size is each call's mark)."""
    process: LambdaProcess | None = None

    def observe() -> int:
        return process.stdout_size() if process is not None else 0

    with RuntimeApi(function_name, observe) as api:
        process = LambdaProcess(api, handler, folder, env).start()
        try:
            yield api, process
        finally:
            process.stop()
