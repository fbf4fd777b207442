"""A recipe's pruning config is checked when the recipe is defined: a bad one stops ``maas build`` with one line
naming the recipe file and the problem (exit 2, like an unknown recipe), never a traceback from deep in a build."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from functions.core.errors import UnknownRecipeError, exit_code
from model_build.recipes import load_recipe
from model_build.recipes.base import PruningConfig


@pytest.mark.parametrize(("options", "problem"), [
    ({"levels": (0.5, 1.0)}, "level 1.0 is not a fraction strictly between 0 and 1"),
    ({"levels": (0.0,)}, "level 0.0 is not a fraction"),
    ({"levels": ("half",)}, "level 'half' is not a fraction"),
    ({"levels": ()}, "levels is empty"),
    ({"levels": 0.5}, "levels and units must be tuples"),
    ({"quick_level": -0.5}, "level -0.5 is not a fraction"),
    ({"units": ("neurons", "filters")}, "units ('neurons', 'filters') must name some of neurons, channels"),
    ({"units": ()}, "units () must name"),
    ({"recovery_epochs": -1}, "recovery_epochs -1 is not a whole number >= 0"),
    ({"quick_recovery_epochs": 1.5}, "quick_recovery_epochs 1.5 is not a whole number"),
    ({"round_to": 0}, "round_to 0 is not a whole number >= 1"),
    ({"learning_rate": 0.0}, "learning_rate 0.0 is not a positive number"),
    ({"distill": "hidden"}, "distill 'hidden' is not 'logits', 'embeddings' or None"),
])
def test_a_bad_pruning_config_names_the_problem(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(UnknownRecipeError) as error:
        PruningConfig(**options)
    assert problem in error.value.message and error.value.message.startswith("invalid PruningConfig: ")


def test_every_problem_is_named_at_once_and_good_configs_pass() -> None:
    with pytest.raises(UnknownRecipeError) as error:
        PruningConfig(levels=(2.0,), round_to=0)
    assert "level 2.0" in error.value.message and "round_to 0" in error.value.message
    assert PruningConfig(levels=(0.1, 0.9), units=("heads", "ffn"), distill=None, learning_rate=1e-4).round_to == 8


def test_a_recipe_file_with_a_bad_pruning_config_is_refused_naming_the_file(tmp_path: Path) -> None:
    recipe = tmp_path / "bad_pruning.py"
    recipe.write_text("from model_build.recipes.base import PruningConfig\n"
                      "from model_build.recipes.cancer_mlp import CancerMLP\n\n\n"
                      "class Bad(CancerMLP):\n    pruning = PruningConfig(levels=(0.5, 1.5))\n")
    with pytest.raises(UnknownRecipeError) as error:
        load_recipe(str(recipe))
    assert error.value.message.startswith(f"{recipe}: invalid PruningConfig: level 1.5")
    assert exit_code(error.value) == 2
