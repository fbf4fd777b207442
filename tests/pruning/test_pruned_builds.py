"""Pruned variants in real quick builds: recorded levels, smaller ONNX files, parity with the pruned PyTorch
model, the gates refusing an over-pruned level, a model the library cannot prune still published unpruned,
recipes without pruning unchanged, and the record round-trip."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from functions.core import catalog
from functions.core.manifest import Manifest
from functions.core.store import LocalStore
from model_build.contracts import PretrainedEncoder
from model_build.recipes.base import PruningConfig
from model_build.recipes.cancer_mlp import CancerMLP

PLAIN = ["fp32", "int8-dynamic", "int8-static", "fp16"]


class OverPrunedMLP(CancerMLP):
    """cancer-mlp pruned to 1-2 neurons per layer with no recovery: its level must fail the accuracy gate."""

    name = "overpruned-mlp"
    pruning = PruningConfig(units=("neurons",), quick_level=0.95, round_to=1, quick_recovery_epochs=0)


@pytest.mark.parametrize("name", ["digits-cnn", "cancer-mlp"])
def test_pruned_level_is_smaller_and_matches_its_pytorch_model(built_store: LocalStore, name: str) -> None:
    manifest = catalog.read_manifest(built_store, name, "1")
    pruning = manifest.pruning
    assert pruning is not None and pruning.library.startswith("torch-pruning ")
    [level] = pruning.levels  # --quick tries one level
    assert level.level == 0.5 and level.passed and pruning.chosen_level == 0.5
    assert level.params < pruning.params and level.macs < pruning.macs
    assert all(level.kept[k] < width for k, width in pruning.widths.items())
    fp32, pruned = manifest.variant("fp32"), manifest.variant("pruned-fp32")
    assert pruned.bytes is not None and fp32.bytes is not None and pruned.bytes < fp32.bytes
    assert pruned.passed and pruned.file == "model.pruned-fp32.onnx" and level.bytes == pruned.bytes
    assert pruned.metrics is not None and pruned.metrics.parity_max_abs_diff is not None
    assert pruned.metrics.parity_max_abs_diff <= 1e-4 and level.metric == pruned.metrics.metric
    assert any(g.name == "parity" and g.variant == "pruned-fp32" and g.passed for g in manifest.gates)
    assert [v.name for v in manifest.variants] == PLAIN + [f"pruned-{v}" for v in PLAIN]
    static = manifest.variant("pruned-int8-static")
    assert not static.passed and static.reason.startswith("skipped: --quick")
    assert manifest.variant("pruned-fp16").target == "gpu"
    card = built_store.get_bytes(f"{catalog.version_prefix(name, '1')}/card.md").decode()
    assert "## Pruning" in card and "| 0.5 (chosen) |" in card and "](pruning.png)" in card


def test_recipes_without_pruning_build_as_before(built_store: LocalStore) -> None:
    for name in ("diabetes-mlp", "text-lstm"):
        manifest = catalog.read_manifest(built_store, name, "1")
        assert manifest.pruning is None and [v.name for v in manifest.variants] == PLAIN
        raw = orjson.loads(built_store.get_bytes(f"{catalog.version_prefix(name, '1')}/manifest.json"))
        assert "pruning" not in raw and "pruning.png" not in {f["path"] for f in raw["files"]}


def test_pruning_record_round_trips(built_store: LocalStore) -> None:
    raw = built_store.get_bytes(f"{catalog.version_prefix('digits-cnn', '1')}/manifest.json")
    manifest = Manifest.from_json(raw)
    assert manifest.pruning is not None
    assert Manifest.from_json(orjson.dumps(manifest.to_dict())) == manifest
    assert orjson.loads(raw)["pruning"] == manifest.pruning.to_dict()


def test_the_gate_refuses_an_over_pruned_level(tmp_path: Path) -> None:
    from model_build.pipeline import build

    manifest = build(OverPrunedMLP(), LocalStore(tmp_path / "store"), quick=True)
    pruning = manifest.pruning
    assert pruning is not None and pruning.chosen_level is None
    [level] = pruning.levels
    assert level.level == 0.95 and not level.passed and "accuracy_drop" in level.reason
    assert set(level.kept.values()) <= {1, 2} and level.bytes is not None and level.metric is not None
    for name in PLAIN:
        variant = manifest.variant(f"pruned-{name}")
        assert not variant.passed and variant.file is None and variant.reason.startswith("skipped: no level passed")
    assert not manifest.selected["cpu"].startswith("pruned-") and manifest.selected["gpu"] == "fp16"


def test_a_recipe_the_library_cannot_prune_still_publishes_its_unpruned_variants(tmp_path: Path) -> None:
    from model_build.pipeline import build
    from model_build.recipes import load_recipe

    recipe = load_recipe(str(Path(__file__).parents[1] / "recipes" / "unprunable_recipe.py"))
    store = LocalStore(tmp_path / "store")
    assert not isinstance(recipe, PretrainedEncoder)
    manifest = build(recipe, store, quick=True)
    pruning = manifest.pruning
    assert pruning is not None and pruning.levels == [] and pruning.chosen_level is None
    assert pruning.reason.startswith("the model could not be pruned (") and "\n" not in pruning.reason
    assert pruning.widths == {"project:neurons": 24} and pruning.params > 0
    assert manifest.variant("fp32").passed and manifest.selected["cpu"] in PLAIN
    for name in PLAIN:
        variant = manifest.variant(f"pruned-{name}")
        assert not variant.passed and variant.file is None and "could not be pruned" in variant.reason
    card = store.get_bytes(f"{catalog.version_prefix(manifest.name, manifest.version)}/card.md").decode()
    assert "## Pruning" in card and "could not be pruned" in card
    assert Manifest.from_json(orjson.dumps(manifest.to_dict())) == manifest
