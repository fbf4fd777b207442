"""SnapStart runtime hooks for the prediction function (``warmStart: snapstart``).

Before the snapshot: the preload models (``MAAS_PRELOAD``) are loaded and each runs one warm-up inference, so
the first request after a restore finds sessions, arenas and code paths warm. After a restore: AWS clients are
re-created (their connections and credentials do not survive a snapshot; the new one keeps the request
budget's bounds), alias targets and the model listing are forgotten and the preload aliases read again (they
may have moved since the snapshot was taken: a snapshot's values are not served even as stale answers), and
random generators are reseeded (every restored copy would otherwise share one state). Lambda's
``snapshot_restore_py`` module exists only in the Lambda runtime, so it is imported guardedly; the hooks are
plain functions the tests call directly.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np

from functions.api.front import Front
from functions.core.manifest import ImagePreprocessing, TabularPreprocessing
from functions.core.model_cache import LoadedModel
from functions.core.service import ModelRef, PredictionService
from functions.core.telemetry import log


def preload_refs(specs: tuple[str, ...]) -> list[ModelRef]:
    """``name``, ``name@alias`` or ``name:version`` -> checked model references."""
    refs = []
    for spec in specs:
        name, _, version = spec.partition(":")
        name, _, alias = name.partition("@")
        refs.append(ModelRef.checked(name, version or None, alias or None))
    return refs


def warm_up_instance(model: LoadedModel) -> Any:
    """A valid natural instance for the model: zeros for tabular and images, a short text otherwise."""
    spec = model.manifest.preprocessing
    if isinstance(spec, TabularPreprocessing):
        return [0.0] * len(spec.features)
    if isinstance(spec, ImagePreprocessing):
        return np.zeros(spec.shape).tolist()
    return "warm up"


def before_snapshot(front: Front) -> list[str]:
    """Load every preload model and run one warm-up inference each; returns ``name:version`` of those warmed."""
    service: PredictionService = front.service
    warmed = []
    for ref in preload_refs(front.settings.preload):
        model = service.load(ref)
        service.run(model, service.encode(model, [warm_up_instance(model)]))
        warmed.append(f"{model.name}:{model.version}")
    log("INFO", "snapshot warm-up done", models=warmed)
    return warmed


def after_restore(front: Front) -> None:
    """New AWS clients, aliases read again, randomness reseeded."""
    from functions.core.store import open_store

    settings = front.settings
    front.cache.store = open_store(settings.store, endpoint_url=settings.s3_endpoint_url,
                                   budget_seconds=settings.request_budget_seconds)  # as model_cache_from's
    front.cache.forget_aliases()
    for ref in preload_refs(settings.preload):
        if ref.version is None:
            front.cache.resolve(ref.name, ref.alias)
    seed = int.from_bytes(os.urandom(8), "little")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # the legacy global generator other code may use
    log("INFO", "restored from snapshot")


def register(front: Front) -> bool:
    """Register both hooks with Lambda's runtime when it offers them; False elsewhere."""
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:
        return False
    register_before_snapshot(lambda: before_snapshot(front))
    register_after_restore(lambda: after_restore(front))
    return True
