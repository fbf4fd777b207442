"""Loading models for serving: alias -> version -> manifest -> integrity check -> InferenceSession.

One load per model version per process, an LRU bounded by a memory budget, S3 downloads cached on local
disk (``/tmp``) and re-verified on every load, alias resolution cached for a TTL so promote and rollback
take effect without a redeploy, and failed loads remembered briefly so a broken artifact is not fetched
on every request.

Stale-while-revalidate (``functions.core.revalidate``): alias targets and the model listing are kept for
``MAAS_ALIAS_TTL_SECONDS``; once expired they still answer at once while one background refresh per key
re-reads the store, backing off (1 s doubling up to one TTL) while the store keeps failing. Only a request
with no known value waits for the store, within the request budget. Answers given while the store fails the
refreshes are counted (``stale_answers``; a log line that is also the ``StaleAliasTargets`` EMF metric, at
most one per alias every ``STALE_LOG_SECONDS``), and so is every failed refresh (``StoreRefreshFailures``).
Loaded models never need the store; manifests are immutable and cached forever once read. A store outage is
never remembered as a broken version: only integrity and load failures are.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from functions.core import catalog
from functions.core.catalog import DEFAULT_ALIAS
from functions.core.errors import (
    IntegrityError,
    ModelUnavailableError,
    NotFoundError,
)
from functions.core.explain.background import background_files
from functions.core.integrity import verify_bytes, vet_onnx
from functions.core.manifest import FileEntry, Manifest, Target, Variant
from functions.core.names import check_alias, check_model_name, check_sha256, check_version
from functions.core.preprocessing import Preprocessor, auxiliary_files, make_preprocessor
from functions.core.revalidate import Known, RefreshFailure, Revalidating, start_daemon
from functions.core.rollout import Route
from functions.core.settings import Settings
from functions.core.store import LocalStore, Store

if TYPE_CHECKING:
    import onnxruntime as ort

FAILURE_TTL_SECONDS = 10.0
LISTING = "models"
AliasKey = tuple[str, str | None]
STALE_LOG_SECONDS = 5.0


@dataclass
class LoadedModel:
    """A ready-to-run model version."""

    manifest: Manifest
    variant: Variant
    session: ort.InferenceSession
    preprocessor: Preprocessor
    size_bytes: int
    load_ms: float
    providers: list[str] = field(default_factory=list)
    requests: int = 0
    files: dict[str, bytes] = field(default_factory=dict)
    """Verified auxiliary files kept for explanations (the background sample)."""
    joinable: bool = False
    """Concurrent requests may share a session run: no row of a run changes another's result."""
    join_checked: bool = False
    """The first shared run has been checked against runs of their own (functions.core.batching)."""

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version


# Operators whose result for one row depends on the other rows of the run: dynamic quantization scales each
# activation tensor by its range over the whole batch.
ROW_COUPLED_OPS = frozenset({"DynamicQuantizeLinear", "DynamicQuantizeMatMul", "DynamicQuantizeLSTM"})


def rows_independent(op_types: set[str], session: ort.InferenceSession) -> bool:
    """Rows of one run plausibly never influence each other: no row-coupled operator, and every input and
    output starts with the same free (named) dimension, the batch axis. The batcher also checks each model's
    first shared run against runs of their own."""
    ends = [*session.get_inputs(), *session.get_outputs()]
    first = {e.shape[0] if e.shape else None for e in ends}
    return not op_types & ROW_COUPLED_OPS and bool(ends) and len(first) == 1 and isinstance(first.pop(), str)


def session_options(threads: int) -> ort.SessionOptions:
    """CPU session options for serving: a fixed number of intra-op threads, no spinning when idle."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


class ModelCache:
    """Process-wide cache of loaded models; safe to share between request threads."""

    def __init__(self, store: Store, settings: Settings, target: Target = "cpu",
                 providers: list[str] | None = None, clock: Callable[[], float] = time.monotonic,
                 start: Callable[[Callable[[], None]], None] = start_daemon) -> None:
        self.store = store
        self.settings = settings
        self.target = target
        self.providers = providers or ["CPUExecutionProvider"]
        self._clock = clock
        self._lock = threading.Lock()
        self._models: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
        self._failures: dict[tuple[str, str], tuple[str, float]] = {}
        """Remembered load failures: the message and until when. Never the exception object: re-raising one
        object appends every request's frames to its traceback (about 10 KB a request, held until it expires)."""
        self._manifests: dict[tuple[str, str], Manifest] = {}
        ttl = settings.alias_ttl_seconds
        self.alias_targets: Revalidating[AliasKey, Route] = Revalidating(
            self._read_alias_target, ttl, clock=clock, start=start, on_failure=_count_refresh_failure,
            on_recovery=self._flush_stale)
        """Alias -> route (target version and rollouts), stale-while-revalidate."""
        self.listings: Revalidating[str, list[dict[str, Any]]] = Revalidating(
            lambda _: catalog.listing(self.store), ttl, clock=clock, start=start, on_failure=_count_refresh_failure)
        """The model listing (one key), stale-while-revalidate."""
        self._stale_lock = threading.Lock()
        self._stale_pending: dict[AliasKey, tuple[int, float]] = {}
        self.stale_answers = 0
        """How many alias resolutions answered a last known target while the store was failing its refreshes."""

    def resolve(self, name: str, alias: str | None = None) -> str:
        """The version an alias (default: prod, else latest) points at: the known target at once (re-read in the
        background once its TTL ran out), else read from the store (blocking, within the store's budget)."""
        return self.route(name, alias).version

    def route(self, name: str, alias: str | None = None) -> Route:
        """Where an alias (default: prod, else latest) sends requests, as ``resolve`` finds its target."""
        check_model_name(name)
        if alias is not None:
            check_alias(alias)
        key = (name, alias)
        try:
            known = self.alias_targets.get(key)
        except IntegrityError as exc:  # an unreadable alias record: that alias only is unusable
            raise ModelUnavailableError(exc.message) from None
        self._note(key, known)
        return known.value

    def listing(self) -> Known[list[dict[str, Any]]]:
        """The model listing (``GET /v1/models``): the known one at once, else read from the store (blocking)."""
        return self.listings.get(LISTING)

    def peek_listing(self) -> Known[list[dict[str, Any]]] | None:
        """The known model listing, or None; never waits for the store (may start a background refresh)."""
        return self.listings.lookup(LISTING)

    def versions_and_aliases(self, name: str) -> tuple[list[str], dict[str, str]]:
        """A model's versions and usable aliases (model metadata routes): from the known listing when it holds
        the model, so that metadata of a known model never waits for the store; else read from it (blocking)."""
        known = self.listings.lookup(LISTING)
        for entry in known.value if known is not None else []:
            if entry["name"] == name:
                return list(entry["versions"]), dict(entry["aliases"])
        return (catalog.list_versions(self.store, name),
                {alias: record.version for alias, record in catalog.list_aliases(self.store, name).items()})

    def manifest(self, name: str, version: str) -> Manifest:
        """The manifest of a version (immutable, so cached forever)."""
        key = (check_model_name(name), check_version(version))
        if key in self._models:
            return self._models[key].manifest
        if key not in self._manifests:
            try:
                self._manifests[key] = catalog.read_manifest(self.store, name, version)
            except NotFoundError:
                raise NotFoundError(f"model {name!r} has no version {version!r}") from None
            except IntegrityError as exc:
                raise ModelUnavailableError(f"model {name} version {version} cannot be loaded: {exc.message}") from None
        return self._manifests[key]

    def get(self, name: str, version: str | None = None, alias: str | None = None) -> LoadedModel:
        """The loaded model for an explicit version, or for the version an alias resolves to."""
        version = check_version(version) if version is not None else self.resolve(name, alias)
        key = (check_model_name(name), version)
        with self._lock:
            model = self._models.get(key)
            if model is not None:
                self._models.move_to_end(key)
                return model
            failure = self._failures.get(key)
            if failure and failure[1] > self._clock():
                raise ModelUnavailableError(failure[0]) from None  # built fresh: no traceback carried over
            try:
                model = self._load(name, version)
            except (ModelUnavailableError, IntegrityError) as exc:
                message = exc.message if isinstance(exc, ModelUnavailableError) else \
                    f"model {name} version {version} cannot be loaded: {exc.message}"
                self._failures[key] = (message, self._clock() + FAILURE_TTL_SECONDS)
                raise ModelUnavailableError(message) from None
            self._failures.pop(key, None)
            self._models[key] = model
            self._evict()
            return model

    def loaded(self) -> list[LoadedModel]:
        """Models currently in memory, least recently used first."""
        return list(self._models.values())

    def preload(self, names: tuple[str, ...]) -> None:
        """Load the given models (``name`` or ``name@alias`` or ``name:version``) now, e.g. at init."""
        for spec in names:
            name, _, version = spec.partition(":")
            name, _, alias = name.partition("@")
            self.get(name, version or None, alias or None)

    def peek_route(self, name: str, alias: str | None = None) -> Route | None:
        """The known route of an alias, or None; never waits for the store (may start a background refresh). The
        caller has checked the names already."""
        key = (name, alias)
        known = self.alias_targets.lookup(key)
        if known is None:
            return None
        self._note(key, known)
        return known.value

    def peek(self, name: str, version: str | None = None, alias: str | None = None) -> LoadedModel | None:
        """The model if it is in memory and, for an alias, its target is known (an expired target is used, and
        re-read in the background); else None.

        Never touches the store and never waits for a store call or the load lock, so it may run on an event
        loop. The caller has checked the names already.
        """
        if version is None:
            key = (name, alias)
            known = self.alias_targets.lookup(key)
            if known is None:
                return None
            model = self._models.get((name, known.value.version))
            if model is not None:
                self._note(key, known)
            return model
        return self._models.get((name, version))

    def forget_aliases(self) -> None:
        """Drop every known alias target and the listing, so the next lookup reads the store (after a restore,
        values from the snapshot are not trusted even as stale answers)."""
        self.alias_targets.forget()
        self.listings.forget()

    def _read_alias_target(self, key: AliasKey) -> Route:
        route = catalog.route(self.store, *key)
        for problem in route.ignored:
            _rollout_ignored(key[0], route.alias or DEFAULT_ALIAS, route.version, problem)
        return route

    def _note(self, key: AliasKey, known: Known[Route]) -> None:
        """Count an answer given from a target whose refreshes the store is failing (one log record per alias
        every STALE_LOG_SECONDS, carrying the count since the last)."""
        if not (known.stale and known.failures):
            return
        now = self._clock()
        with self._stale_lock:
            self.stale_answers += 1
            pending, logged_at = self._stale_pending.get(key, (0, float("-inf")))
            pending += 1
            due = now - logged_at >= STALE_LOG_SECONDS
            self._stale_pending[key] = (0, now) if due else (pending, logged_at)
        if due:
            _count_stale(key[0], key[1], known.value.version, known.error or "store unreachable", pending)

    def _flush_stale(self, key: AliasKey, failures: int) -> None:
        """The store answered a refresh again: log the stale answers not logged yet."""
        with self._stale_lock:
            pending, _ = self._stale_pending.pop(key, (0, 0.0))
        known = self.alias_targets.lookup(key)
        if pending and known is not None:
            _count_stale(key[0], key[1], known.value.version, f"store answers again after {failures} failed refreshes",
                         pending)

    def _evict(self) -> None:
        budget = self.settings.model_memory_mb * 1024 * 1024
        while len(self._models) > 1 and sum(m.size_bytes for m in self._models.values()) > budget:
            self._models.popitem(last=False)

    def _load(self, name: str, version: str) -> LoadedModel:
        import onnxruntime as ort

        started = time.perf_counter()
        manifest = self.manifest(name, version)
        variant_name = manifest.selected.get(self.target) or manifest.selected["cpu"]
        variant = manifest.variant(variant_name)
        if variant.file is None:
            raise ModelUnavailableError(f"model {name} version {version}: variant {variant_name} has no file")
        prefix = catalog.version_prefix(name, version)
        try:
            data = self._fetch_verified(f"{prefix}/{variant.file}", manifest.file(variant.file))
            facts = vet_onnx(data, self.settings.allowed_op_domains, variant.file)  # checksum verified just above
            aux = {path: self._fetch_verified(f"{prefix}/{path}", manifest.file(path))
                   for path in [*auxiliary_files(manifest.preprocessing), *background_files(manifest)]}
        except (NotFoundError, KeyError) as exc:
            missing = exc.args[0] if isinstance(exc, KeyError) else "a file"
            raise ModelUnavailableError(f"model {name} version {version} cannot be loaded: {missing} is missing "
                                        "from the version") from None
        try:
            session = ort.InferenceSession(data, session_options(self.settings.intra_op_threads),
                                           providers=self.providers)
            preprocessor = make_preprocessor(manifest.preprocessing, manifest.inputs[0].name, aux)
        except Exception as exc:  # onnxruntime raises its own exception types for unloadable graphs
            raise ModelUnavailableError(f"model {name} version {version} cannot be loaded: "
                                        f"{type(exc).__name__}") from None
        mismatch = graph_mismatch(manifest, session)
        if mismatch:
            raise ModelUnavailableError(f"model {name} version {version} cannot be loaded: {mismatch}")
        return LoadedModel(manifest=manifest, variant=variant, session=session, preprocessor=preprocessor,
                           size_bytes=len(data) * 2, load_ms=(time.perf_counter() - started) * 1000,
                           providers=list(session.get_providers()),
                           joinable=rows_independent(facts.op_types, session),
                           files={path: aux[path] for path in background_files(manifest)})

    def _fetch_verified(self, key: str, entry: FileEntry) -> bytes:
        """Bytes of a store object checked against its manifest entry (size, then sha256).

        Remote objects go through a local disk cache keyed by sha256 (``/tmp`` in Lambda); a cached copy is
        re-verified on every load and fetched again if it no longer matches.
        """
        if isinstance(self.store, LocalStore):
            data = self.store.get_bytes(key)
            verify_bytes(data, entry)
            return data
        cached = Path(self.settings.cache_dir) / check_sha256(entry.sha256)  # never a path from unchecked data
        if cached.is_file():
            data = cached.read_bytes()
            try:
                verify_bytes(data, entry)
                return data
            except IntegrityError:
                cached.unlink(missing_ok=True)
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f"{entry.sha256}.{os.getpid()}.{threading.get_ident()}.part")
        self.store.download(key, partial)
        data = partial.read_bytes()
        try:
            verify_bytes(data, entry)
        except IntegrityError:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(cached)
        return data

    def fetch_file(self, name: str, version: str, entry: FileEntry) -> bytes:
        """A file of a version, read through the verified fetch (size and sha256 against ``entry``)."""
        return self._fetch_verified(f"{catalog.version_prefix(name, version)}/{entry.path}", entry)


def graph_mismatch(manifest: Manifest, session: ort.InferenceSession) -> str | None:
    """Why the graph cannot serve what the manifest describes (inputs, outputs, label count), or None."""
    graph_inputs = {i.name for i in session.get_inputs()}
    fed = {manifest.inputs[0].name, *getattr(manifest.preprocessing, "inputs", [])}
    if not fed <= graph_inputs or {t.name for t in manifest.inputs} != graph_inputs:
        return f"graph inputs {sorted(graph_inputs)} do not match the manifest's {[t.name for t in manifest.inputs]}"
    graph_outputs = [o.name for o in session.get_outputs()]
    if not graph_outputs or graph_outputs[0] != manifest.outputs[0].name:
        return f"graph outputs {graph_outputs} do not match the manifest's {[t.name for t in manifest.outputs]}"
    width = session.get_outputs()[0].shape[-1] if session.get_outputs()[0].shape else None
    if manifest.task == "classification" and manifest.labels is not None and isinstance(width, int) \
            and len(manifest.labels) != width:
        return f"{len(manifest.labels)} labels for {width} outputs"
    return None


def _count_stale(name: str, alias: str | None, version: str, reason: str, count: int = 1) -> None:
    """One log line that is also an EMF record: ``count`` answers from a stale alias target while the store
    fails its refreshes."""
    from functions.core.telemetry import log_metric

    log_metric("warning", "store unreachable: serving the last known alias target", "StaleAliasTargets", count,
               [["model"]], model=name, alias=alias or "default", version=version, reason=reason)


def _rollout_ignored(name: str, alias: str, version: str, problem: str) -> None:
    """One log line each time an alias record with a malformed rollout is read: the alias serves its target."""
    from functions.core.telemetry import log

    log("WARNING", "rollout setting ignored: the alias serves its target", model=name, alias=alias,
        version=version, problem=problem)


def _count_refresh_failure(failure: RefreshFailure[Any]) -> None:
    """One log line that is also an EMF record (``StoreRefreshFailures``, no dimension: one series to alarm on)."""
    from functions.core.telemetry import log_metric

    key = failure.key
    what = {"what": "alias", "model": key[0], "alias": key[1] or "default"} if isinstance(key, tuple) \
        else {"what": "listing"}
    reason = getattr(failure.error, "message", None) or type(failure.error).__name__
    retry_in = failure.retry_in
    log_metric("warning", "store refresh failed: " + ("value dropped" if retry_in is None else
                                                      "keeping the last known value"),
               "StoreRefreshFailures", 1, [[]], **what, failures=failure.failures,
               retry_in_seconds=None if retry_in is None else round(retry_in, 3), reason=reason)


def model_cache_from(settings: Settings, **kwargs: Any) -> ModelCache:
    """A cache over the store the settings name."""
    from functions.core.store import open_store

    store = open_store(settings.store, endpoint_url=settings.s3_endpoint_url,
                       budget_seconds=settings.request_budget_seconds)
    return ModelCache(store, settings, **kwargs)
