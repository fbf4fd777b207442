"""Build any recipe: the contract names its pipeline, so nothing here inspects the recipe's class."""

from __future__ import annotations

import importlib
from typing import Protocol

from functions.core.manifest import Manifest
from functions.core.store import Store
from model_build.contracts import PretrainedEncoder, Recipe
from model_build.reporting import Reporter


class _Pipeline(Protocol):
    def __call__(self, recipe: Recipe | PretrainedEncoder, store: Store, *, quick: bool = False,
                 reporter: Reporter | None = None) -> Manifest: ...


def build_recipe(recipe: Recipe | PretrainedEncoder, store: Store, *, quick: bool = False,
                 reporter: Reporter | None = None) -> Manifest:
    """Run the pipeline the recipe's contract names (``pipeline = "module:function"``) and publish a version."""
    module_name, _, function = recipe.pipeline.partition(":")
    pipeline: _Pipeline = getattr(importlib.import_module(module_name), function)
    return pipeline(recipe, store, quick=quick, reporter=reporter)
