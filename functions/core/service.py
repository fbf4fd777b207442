"""The protocol-neutral prediction service (KServe's DataPlane is the model).

resolve -> load -> validate/encode -> run -> decode -> count and emit metrics. The HTTP codecs (v1 JSON,
v2 Open Inference Protocol, explanations next) parse their wire format, name the model with a ``ModelRef``
and hand the service natural instances and a decoder; the batch runner and the GPU worker use the same
``encode``/``run`` for whole chunks.

Store access never runs on an event loop: ``model()`` answers from memory when the model is loaded and its
alias target known (fresh, or expired and being re-read in the background), else loads in a worker thread
bounded by the request budget, and a store that does not answer within it gives ``StoreTimeoutError`` (503
with Retry-After).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt

from functions.core import capture, request_facts
from functions.core.batching import RunBatcher
from functions.core.errors import (
    MaasError,
    ModelUnavailableError,
    NotFoundError,
    StoreTimeoutError,
)
from functions.core.model_cache import LoadedModel, ModelCache
from functions.core.names import check_alias, check_model_name, check_version
from functions.core.preprocessing import Instances, Tensors
from functions.core.rollout import Route
from functions.core.settings import Settings
from functions.core.telemetry import emit_prediction_metrics

if TYPE_CHECKING:
    from functions.core.shadow import Comparison, ShadowRunner

T = TypeVar("T")
Output = npt.NDArray[np.float32]

HELD: ContextVar[list[Comparison] | None] = ContextVar("maas_held_comparisons", default=None)
"""Comparisons a request holds until its response is sent (set by the front; None: submit at once)."""


@dataclass(frozen=True)
class ModelRef:
    """A model named by a request: an explicit version, or an alias (None: prod, else the latest)."""

    name: str
    version: str | None = None
    alias: str | None = None

    @classmethod
    def checked(cls, name: str, version: str | None = None, alias: str | None = None) -> ModelRef:
        """Validate every name once, before anything else looks at them."""
        return cls(check_model_name(name), None if version is None else check_version(version),
                   None if alias is None else check_alias(alias))


def request_budget(settings: Settings) -> float:
    """Seconds a request may wait for the store (``MAAS_REQUEST_BUDGET_SECONDS``)."""
    return float(settings.request_budget_seconds)


class PredictionService:
    """Predictions over a model cache, for every protocol."""

    def __init__(self, cache: ModelCache, settings: Settings | None = None) -> None:
        self.cache = cache
        self.settings = settings or cache.settings
        self.budget = request_budget(self.settings)
        self.batcher = RunBatcher(self.run, self.settings.max_batch_rows)
        self.off_loop_calls = 0
        """Requests that went to a worker thread to read the store (nothing known in memory answered them)."""
        self.budget_timeouts = 0
        """Of those, the ones the request budget cut off (answered 503 ``store_timeout``)."""
        self._shadows: ShadowRunner | None = None

    @property
    def shadows(self) -> ShadowRunner:
        """The runner of shadow comparisons, made on first need (the module stays off the cold path); in Lambda
        it runs them after the runtime's post from then on, the first request's included."""
        if self._shadows is None:
            from functions.core import shadow

            runner = shadow.ShadowRunner(self.cache, self.settings.shadow_budget_seconds)
            if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
                shadow.start_after_response(runner)
            self._shadows = runner
        return self._shadows

    def load(self, ref: ModelRef) -> LoadedModel:
        """The loaded model (blocking: may read the store). A file missing from a version is a 503."""
        version = ref.version or self.cache.resolve(ref.name, ref.alias)
        self.cache.manifest(ref.name, version)  # NotFoundError here: the version does not exist
        try:
            return self.cache.get(ref.name, version)
        except NotFoundError as exc:
            raise ModelUnavailableError(f"model {ref.name} version {version} cannot be loaded: {exc.message}") \
                from None

    async def model(self, ref: ModelRef) -> LoadedModel:
        """From memory without waiting, else loaded in a worker thread within the request budget."""
        model = self.cache.peek(ref.name, ref.version, ref.alias)
        if model is not None:
            return model
        return await self.off_loop(self.load, ref)

    async def routed(self, ref: ModelRef,
                     routing_key: Callable[[], str | None]) -> tuple[LoadedModel, Route | None]:
        """The model that serves a request, and the route whose shadow runs after its answer (None: no shadow
        this time). An explicit version is served as named; an alias's route sends a sticky share to its split
        version (``routing_key`` is asked only then) and a sampled share of what its target serves to its
        shadow candidate."""
        if ref.version is not None:
            return await self.model(ref), None
        route = self.cache.peek_route(ref.name, ref.alias)
        if route is None:
            route = await self.off_loop(self.cache.route, ref.name, ref.alias)
        version = route.version if route.split is None else route.pick(ref.name, routing_key())
        model = self.cache.peek(ref.name, version)
        if model is None:
            model = await self.off_loop(self.load, ModelRef(ref.name, version))
        shadow = route.shadow
        if shadow is None or version != route.version or route.alias is None or not shadow.sampled():
            return model, None
        return model, route

    def release(self, held: list[Comparison]) -> None:
        """Hand the comparisons a request held to the shadow runner (its response has been sent)."""
        for comparison in held:
            self.shadows.submit(comparison)

    async def off_loop(self, work: Callable[..., T], *args: Any) -> T:
        """Run blocking store work in a thread; StoreTimeoutError if it outlasts the request budget."""
        loop = asyncio.get_running_loop()
        self.off_loop_calls += 1
        try:
            return await asyncio.wait_for(loop.run_in_executor(None, work, *args), self.budget)
        except TimeoutError:
            self.budget_timeouts += 1
            raise StoreTimeoutError(f"the model store did not answer within {self.budget:g} s") from None

    @staticmethod
    def encode(model: LoadedModel, instances: Instances) -> Tensors:
        """Validate and encode natural instances; InvalidInputError names the first bad one."""
        return model.preprocessor.encode(instances)

    @staticmethod
    def run(model: LoadedModel, tensors: Tensors) -> Output:
        """One session run over encoded tensors (a request, or a whole batch chunk)."""
        output: Output = model.session.run(None, tensors)[0]
        return output

    async def predict(self, model: LoadedModel, instances: Sequence[Any],
                      decode: Callable[[LoadedModel, Output], T], request_id: str, started: float | None = None,
                      shadow: Route | None = None) -> T:
        """Encode, run (sharing the run with concurrent requests), decode with the codec's ``decode``, then count
        the request and emit its metrics; with ``shadow``, hand the comparison over for after the answer."""
        started = time.perf_counter() if started is None else started
        output = await self.batcher.run(model, self.encode(model, instances))
        result = decode(model, output)
        consumer = request_facts.served(model.name, model.version, len(instances))
        capture.record(model, instances, output, request_id, consumer)
        self.record(model, len(instances), started, request_id, consumer)
        if shadow is not None:
            self._hold(model, shadow, instances, output, (time.perf_counter() - started) * 1000, request_id)
        return result

    def _hold(self, model: LoadedModel, route: Route, instances: Sequence[Any], output: Output,
              live_ms: float, request_id: str) -> None:
        """Keep the comparison for after the response: held by the request when its front sends the response
        first (or the runtime's post in Lambda), else submitted now."""
        shadows = self.shadows
        assert route.shadow is not None and route.alias is not None
        comparison = shadows.comparison(model, route.shadow.candidate, route.alias, instances, output, live_ms,
                                        request_id)
        held = HELD.get()
        if held is not None and not shadows.after_post:
            held.append(comparison)
        else:
            shadows.submit(comparison)

    @staticmethod
    def record(model: LoadedModel, instances: int, started: float, request_id: str,
               consumer: str | None = None) -> None:
        """Count one served request and emit its metrics (the first carries the model load time)."""
        model.requests += 1
        emit_prediction_metrics(model.name, model.version, model.variant.name,
                                (time.perf_counter() - started) * 1000, instances,
                                model.load_ms if model.requests == 1 else None, request_id, consumer)

    def ready(self) -> bool:
        """The store answers (blocking)."""
        from functions.core import catalog

        try:
            catalog.list_models(self.cache.store)
        except MaasError:
            return False
        return True
