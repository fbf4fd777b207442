"""Every demo recipe builds in quick mode and publishes a complete, verifiable version."""

from __future__ import annotations

import numpy as np
import pytest

from functions.core import catalog
from functions.core.integrity import verify_bytes, verify_model_bytes
from functions.core.preprocessing import auxiliary_files, make_preprocessor
from functions.core.settings import DEFAULT_ALLOWED_OP_DOMAINS
from functions.core.store import LocalStore
from model_build import evaluate
from model_build.recipes import load_recipe
from tests.conftest import DEMO_RECIPES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", DEMO_RECIPES)
def test_recipe_publishes_a_verified_version(built_store: LocalStore, name: str) -> None:
    assert catalog.list_versions(built_store, name) == ["1"]
    manifest = catalog.read_manifest(built_store, name, "1")
    prefix = catalog.version_prefix(name, "1")
    assert manifest.name == name and manifest.version == "1"
    assert manifest.provenance.quick and manifest.provenance.seed == 0
    assert len(manifest.provenance.data_sha256) == 64
    assert {"torch", "onnxruntime", "numpy"} <= set(manifest.provenance.libraries)

    listed = set(built_store.list_children(prefix))
    assert listed == {entry.path for entry in manifest.files} | {"manifest.json"}
    for entry in manifest.files:
        verify_bytes(built_store.get_bytes(f"{prefix}/{entry.path}"), entry)

    pruned = load_recipe(name).pruning is not None
    plain = ["fp32", "int8-dynamic", "int8-static", "fp16"]
    assert [v.name for v in manifest.variants] == plain + [f"pruned-{v}" for v in plain] * pruned
    assert (manifest.pruning is not None) == pruned
    gpu = "pruned-fp16" if manifest.selected["cpu"].startswith("pruned-") else "fp16"
    assert manifest.variant("fp16").target == "gpu" and manifest.selected.get("gpu") == gpu
    fp16_metrics = manifest.variant("fp16").metrics
    assert fp16_metrics is not None and fp16_metrics.latency_ms_b1 is None  # speed is measured on a GPU only
    assert all(v.reason for v in manifest.variants)
    shipped = manifest.variant(manifest.selected["cpu"])
    assert shipped.passed and shipped.file is not None
    fp32 = manifest.variant("fp32")
    assert fp32.metrics is not None and fp32.metrics.parity_max_abs_diff is not None
    assert fp32.metrics.parity_max_abs_diff <= 1e-4
    assert manifest.selection_reason.startswith(shipped.name)
    assert any(g.name == "parity" and g.passed for g in manifest.gates)

    for variant in manifest.variants:
        if variant.file:
            data = built_store.get_bytes(f"{prefix}/{variant.file}")
            verify_model_bytes(data, manifest.file(variant.file), DEFAULT_ALLOWED_OP_DOMAINS)

    card = built_store.get_bytes(f"{prefix}/card.md").decode()
    assert f"# {name} version 1" in card and "quick build" in card
    plots = [entry.path for entry in manifest.files if entry.path.endswith(".png")]
    assert len(plots) == 4 + pruned and {"training.png", "variants.png", "importance.png"} <= set(plots)
    assert ("pruning.png" in plots) == pruned and ("## Pruning" in card) == pruned
    for plot in plots:
        assert built_store.get_bytes(f"{prefix}/{plot}").startswith(PNG_MAGIC)
        assert f"]({plot})" in card


def test_shipped_variant_serves_natural_instances(built_store: LocalStore) -> None:
    """The manifest alone is enough to turn raw instances into predictions (what serving will do)."""
    instances = {
        "digits-cnn": [np.zeros((8, 8)).tolist()],
        "cancer-mlp": None,
        "diabetes-mlp": [[50, 1, 25.0, 90.0, 180, 100.0, 50.0, 4.0, 4.6, 90]],
        "text-lstm": ["The striker scored twice in the final."],
    }
    for name, batch in instances.items():
        manifest = catalog.read_manifest(built_store, name, "1")
        prefix = catalog.version_prefix(name, "1")
        files = {f: built_store.get_bytes(f"{prefix}/{f}") for f in auxiliary_files(manifest.preprocessing)}
        pre = make_preprocessor(manifest.preprocessing, manifest.inputs[0].name, files)
        if batch is None:
            features = manifest.preprocessing.features  # type: ignore[union-attr]
            batch = [dict.fromkeys(features, 1.0)]
        tensors = pre.encode(batch)
        path = built_store.root / prefix / manifest.variant(manifest.selected["cpu"]).file  # type: ignore[operator]
        out = evaluate.run(evaluate.cpu_session(path), tensors[manifest.inputs[0].name])
        if manifest.task == "classification":
            assert out.shape == (1, len(manifest.labels or []))
            assert abs(float(out.sum()) - 1) < 1e-3
        else:
            assert out.shape == (1, 1) and np.isfinite(out).all()
