"""The plain-ASGI front: predictions and health checks without FastAPI, everything else delegated to it.

Predict (v1), infer (v2) and ``/v2/health/{live,ready}`` are answered here; the FastAPI app (OpenAPI,
``/docs``, model listings, 404s) is built on its first request. Neither FastAPI, Starlette nor pydantic is
imported until then, which keeps cold starts short. Lambda wraps it with Mangum (``functions.api.handler``);
``maas serve`` runs it under uvicorn (``functions.api.front:create_front``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from functions.api.http import Call, Receive, Scope, Send
from functions.api.routes import answer, match
from functions.core.model_cache import ModelCache, model_cache_from
from functions.core.service import HELD, PredictionService
from functions.core.settings import Settings, get_settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from functions.core.shadow import Comparison


class Front:
    """ASGI app: the fast routes here, the rest through the FastAPI app built on first need."""

    def __init__(self, settings: Settings | None = None, cache: ModelCache | None = None) -> None:
        self.settings = settings or get_settings()
        self.cache = cache or model_cache_from(self.settings)
        self.service = PredictionService(self.cache, self.settings)
        self.api_keys = False
        """Requests need API keys (set by the key gate in front): the OpenAPI document declares them."""
        self._app: FastAPI | None = None

    @property
    def app(self) -> FastAPI:
        """The FastAPI app over the same cache (built once, on first need)."""
        if self._app is None:
            from functions.api.app import create_app

            self._app = create_app(self.settings, self.cache, self.api_keys)
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root + "/"):
                path = path[len(root):]
            found = match(scope["method"], path)
            if found is not None:
                handler, params = found
                held: list[Comparison] = []
                token = HELD.set(held)
                try:
                    reply = await answer(handler, self.service, Call.of(scope, receive), params)
                    await reply.send(send)
                finally:
                    HELD.reset(token)
                    if held:  # shadow comparisons run once the answer is out
                        self.service.release(held)
                return
        elif scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        await self.app(scope, receive, send)


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop: the model cache loads lazily (or at import with MAAS_PRELOAD)."""
    while True:
        message: Any = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_front(settings: Settings | None = None, cache: ModelCache | None = None) -> Front:
    """The ASGI app Lambda and ``maas serve`` run."""
    return Front(settings, cache)
