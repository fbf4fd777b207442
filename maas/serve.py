"""``maas serve``: the prediction API under uvicorn, on a socket bound before anything is announced."""

from __future__ import annotations

import dataclasses
import errno
import os
import socket
from pathlib import Path
from typing import Any

import click

from functions.core.settings import ENV_KEYS
from maas.common import store_option


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port; ``PortInUseError`` when another process holds the address."""
    from functions.core.errors import PortInUseError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose proto says TCP. With
    # proto 0 every response's body waited for the client's delayed ACK of the headers: 40 ms per request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(f"{host}:{port} is already in use; stop the other server or pass --port") from None
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@click.command()
@store_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--batch-outputs", default=None, metavar="DIR-or-URI",
              help="Folder or s3://BUCKET/PREFIX whose batch outputs the console lists (else $MAAS_BATCH_OUTPUTS).")
@click.option("--capture", "capture_dir", default=None, type=click.Path(path_type=Path),
              help="Write sampled prediction records (MAAS_CAPTURE_RATE, default all) as JSON lines under DIR.")
@click.option("--keys", "keys_file", default=None, metavar="FILE",
              help="Require API keys from this key store (a SQLite file made by `maas keys create --keys FILE`, or "
                   "dynamodb://TABLE): "
                   "scopes, rate limits and quotas enforced, usage metered into it.")
def serve(store_uri: str | None, host: str, port: int, batch_outputs: str | None, capture_dir: Path | None,
          keys_file: str | None) -> None:
    """Serve the prediction API and the web console (/console; the same ASGI app as Lambda) with uvicorn."""
    if keys_file is not None and not keys_file.startswith("dynamodb://") and not Path(keys_file).is_file():
        from functions.core.errors import NotFoundError

        raise NotFoundError(f"no key store at {keys_file}: make one with `maas keys create CONSUMER --keys "
                            f"{keys_file}`")
    if keys_file is None and os.environ.get(ENV_KEYS):
        click.echo(f"note: {ENV_KEYS} is set but --keys was not given: this server requires no API keys", err=True)
    sock = bind(host, port)
    if capture_dir is not None:
        from functions.core import capture

        capture.configure(directory=capture_dir)
    import uvicorn

    from functions.api.front import create_front
    from functions.core.settings import ENV_BATCH_OUTPUTS, Settings

    if batch_outputs:
        os.environ[ENV_BATCH_OUTPUTS] = batch_outputs
    settings = Settings.from_env()
    if store_uri:
        settings = dataclasses.replace(settings, store=store_uri)
    front = create_front(settings)
    if settings.preload:
        front.cache.preload(settings.preload)
    app: Any = front
    if keys_file is not None:
        from functions.consumers.gate import local_gate

        app = local_gate(front, keys_file)
    keys_note = f", API keys from {keys_file}" if keys_file is not None else ""
    click.echo(f"serving {settings.store} on http://{host}:{port} (console: http://{host}:{port}/console/, "
               f"OpenAPI docs: http://{host}:{port}/docs{keys_note})", err=True)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
    try:
        server.run(sockets=[sock])
    finally:
        if keys_file is not None:
            app.meter.flush()  # usage counted since the last write
