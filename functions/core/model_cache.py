"""Loading models for serving: alias -> version -> manifest -> integrity check -> InferenceSession.

One load per model version per process, an LRU bounded by a memory budget, S3 downloads cached on local
disk (``/tmp``) and re-verified on every load, alias resolution cached for a TTL so promote and rollback
take effect without a redeploy, and failed loads remembered briefly so a broken artifact is not fetched
on every request.
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
from functions.core.errors import IntegrityError, MaasError, ModelUnavailableError, NotFoundError
from functions.core.integrity import verify_bytes, vet_onnx
from functions.core.manifest import FileEntry, Manifest, Target, Variant
from functions.core.names import check_alias, check_model_name, check_version
from functions.core.preprocessing import Preprocessor, auxiliary_files, make_preprocessor
from functions.core.settings import Settings
from functions.core.store import LocalStore, Store

if TYPE_CHECKING:
    import onnxruntime as ort

FAILURE_TTL_SECONDS = 10.0


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

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version


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
                 providers: list[str] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.settings = settings
        self.target = target
        self.providers = providers or ["CPUExecutionProvider"]
        self._clock = clock
        self._lock = threading.Lock()
        self._models: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
        self._aliases: dict[tuple[str, str | None], tuple[str, float]] = {}
        self._failures: dict[tuple[str, str], tuple[MaasError, float]] = {}
        self._manifests: dict[tuple[str, str], Manifest] = {}

    def resolve(self, name: str, alias: str | None = None) -> str:
        """The version an alias (default: prod, else latest) points at, re-read after the TTL."""
        check_model_name(name)
        if alias is not None:
            check_alias(alias)
        key = (name, alias)
        cached = self._aliases.get(key)
        now = self._clock()
        if cached and cached[1] > now:
            return cached[0]
        version = catalog.resolve(self.store, name, alias)
        self._aliases[key] = (version, now + self.settings.alias_ttl_seconds)
        return version

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
                raise failure[0]
            try:
                model = self._load(name, version)
            except (ModelUnavailableError, IntegrityError) as exc:
                error = exc if isinstance(exc, ModelUnavailableError) else ModelUnavailableError(
                    f"model {name} version {version} cannot be loaded: {exc.message}")
                self._failures[key] = (error, self._clock() + FAILURE_TTL_SECONDS)
                raise error from None
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

    def peek(self, name: str, version: str | None = None, alias: str | None = None) -> LoadedModel | None:
        """The model if it is in memory and, for an alias, its resolution is still fresh; else None.

        Never touches the store and never waits for a lock, so it may run on an event loop. The caller has
        checked the names already.
        """
        if version is None:
            cached = self._aliases.get((name, alias))
            if cached is None or cached[1] <= self._clock():
                return None
            version = cached[0]
        return self._models.get((name, version))

    def forget_aliases(self) -> None:
        """Drop every cached alias resolution, so the next lookup reads the store (e.g. after a restore)."""
        self._aliases.clear()

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
        data = self._fetch_verified(f"{prefix}/{variant.file}", manifest.file(variant.file))
        vet_onnx(data, self.settings.allowed_op_domains, variant.file)  # checksum verified once, just above
        aux = {path: self._fetch_verified(f"{prefix}/{path}", manifest.file(path))
               for path in auxiliary_files(manifest.preprocessing)}
        try:
            session = ort.InferenceSession(data, session_options(self.settings.intra_op_threads),
                                           providers=self.providers)
            preprocessor = make_preprocessor(manifest.preprocessing, manifest.inputs[0].name, aux)
        except Exception as exc:  # onnxruntime raises its own exception types for unloadable graphs
            raise ModelUnavailableError(f"model {name} version {version} cannot be loaded: {exc}") from None
        return LoadedModel(manifest=manifest, variant=variant, session=session, preprocessor=preprocessor,
                           size_bytes=len(data) * 2, load_ms=(time.perf_counter() - started) * 1000,
                           providers=list(session.get_providers()))

    def _fetch_verified(self, key: str, entry: FileEntry) -> bytes:
        """Bytes of a store object checked against its manifest entry (size, then sha256).

        Remote objects go through a local disk cache keyed by sha256 (``/tmp`` in Lambda); a cached copy is
        re-verified on every load and fetched again if it no longer matches.
        """
        if isinstance(self.store, LocalStore):
            data = self.store.get_bytes(key)
            verify_bytes(data, entry)
            return data
        cached = Path(self.settings.cache_dir) / entry.sha256
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


def model_cache_from(settings: Settings, **kwargs: Any) -> ModelCache:
    """A cache over the store the settings name."""
    from functions.core.store import open_store

    return ModelCache(open_store(settings.store, endpoint_url=settings.s3_endpoint_url), settings, **kwargs)
