"""Capture writes after the response, in Lambda: run them once the runtime has posted the handler's result.

Serializing and writing a capture record costs 25 to 40 µs inside a warm handler, more than the 5% of a 0.2 to 0.3 ms
prediction that capture may add. Lambda's Python runtime posts the handler's result to the Runtime API (at
which point the response goes to the caller), then asks for the next invocation, and Lambda freezes the
environment only at that request. Work done between the two is off the response's path and is never lost.
So in Lambda the handler only queues what it captures (model, instances, output, request id, time: about a
microsecond), and ``install`` wraps the runtime client's ``post_invocation_result`` and
``post_invocation_error`` to write the queued records right after the post, on the same thread: no extra
thread, no extra process, no wake-up.

The runtime client is Lambda's own code (``awslambdaric``), found among the loaded modules; when it is not
there (another runtime, a local run) nothing is wrapped and capture writes inline, as before. The posts are
wrapped on the class that defines them, so every client the runtime may use (awslambdaric 4 has one per
concurrency mode, both subclasses of one base) writes the records. Were a post ever made some other way, the
next request would find the last one's records still queued, write them and turn queuing off
(``capture.record``); only records waiting in an environment shut down before that request would be lost.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

RUNTIME_CLIENT_MODULE = "lambda_runtime_client"  # awslambdaric's, or a runtime's own copy of it
POSTS = ("post_invocation_result", "post_invocation_error")
MARK = "__maas_capture_after__"


def runtime_client_class() -> type[Any] | None:
    """The Lambda runtime's client class, if this process was started by Lambda's Python runtime."""
    for name, module in list(sys.modules.items()):
        if name.rpartition(".")[2] != RUNTIME_CLIENT_MODULE:
            continue
        client = getattr(module, "LambdaRuntimeClient", None)
        if isinstance(client, type) and all(callable(getattr(client, post, None)) for post in POSTS):
            return client
    return None


def install(client_class: type[Any], after_post: Callable[[], None]) -> None:
    """Wrap the posts where ``client_class``'s MRO defines them (once), so that ``after_post`` runs once each has
    returned (or raised), after the callbacks installed before it; idempotent. ``after_post`` must not raise:
    nothing it does may reach the runtime."""
    if after_post not in _AFTER_POST:
        _AFTER_POST.append(after_post)
    for post in POSTS:
        owner = next(k for k in client_class.__mro__ if post in vars(k))
        original = vars(owner)[post]
        if not getattr(original, MARK, False):
            setattr(owner, post, _then(original))


def install_found(after_post: Callable[[], None], client_class: type[Any] | None = None) -> type[Any] | None:
    """``install`` on ``client_class``, default the runtime client this process was started by; the class wrapped,
    or None when there is none (not in Lambda: the caller does its work some other way)."""
    client_class = client_class or runtime_client_class()
    if client_class is not None:
        install(client_class, after_post)
    return client_class


_AFTER_POST: list[Callable[[], None]] = []
"""What runs after each post, in order: capture's record writes, then shadow comparisons."""


def _then(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def posted(*args: Any, **kwargs: Any) -> Any:
        try:
            return original(*args, **kwargs)
        finally:
            for after_post in tuple(_AFTER_POST):
                after_post()

    setattr(posted, MARK, True)
    return posted
