"""Built-in recipes and loading of user recipes from a Python file."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from pathlib import Path

from functions.core.errors import UnknownRecipeError as UnknownRecipeError
from model_build.contracts import PretrainedEncoder, Recipe

BUILTIN = {
    "digits-cnn": "model_build.recipes.digits_cnn:DigitsCNN",
    "cancer-mlp": "model_build.recipes.cancer_mlp:CancerMLP",
    "diabetes-mlp": "model_build.recipes.diabetes_mlp:DiabetesMLP",
    "text-lstm": "model_build.recipes.text_lstm:TextLSTM",
    "minilm-embed": "model_build.recipes.minilm_embed:MiniLMEmbed",
    "minilm-classifier": "model_build.recipes.minilm_classifier:MiniLMClassifier",
    "minilm-classifier-finetuned": "model_build.recipes.minilm_classifier:MiniLMClassifierFineTuned",
}
DEMO = ["digits-cnn", "cancer-mlp", "diabetes-mlp", "text-lstm"]


def load_recipe(name_or_path: str) -> Recipe | PretrainedEncoder:
    """Instantiate a built-in recipe by name, or the single Recipe subclass defined in a ``.py`` file."""
    if name_or_path in BUILTIN:
        module_name, _, class_name = BUILTIN[name_or_path].partition(":")
        recipe_class: type[Recipe | PretrainedEncoder] = getattr(importlib.import_module(module_name), class_name)
        return recipe_class()
    path = Path(name_or_path)
    if path.suffix != ".py":
        raise UnknownRecipeError(f"unknown recipe {name_or_path!r}: use one of {', '.join(BUILTIN)} or a .py file")
    if not path.is_file():
        raise UnknownRecipeError(f"recipe file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"maas_user_recipe_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise UnknownRecipeError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except UnknownRecipeError as exc:  # a config refused while the file defines its recipe (e.g. PruningConfig)
        raise UnknownRecipeError(f"{path}: {exc.message}") from None
    found = [obj for obj in vars(module).values()
             if inspect.isclass(obj) and issubclass(obj, Recipe) and obj is not Recipe
             and obj.__module__ == module.__name__ and not inspect.isabstract(obj)]
    if len(found) != 1:
        raise UnknownRecipeError(f"{path} must define exactly one Recipe subclass, found {len(found)}")
    return found[0]()
