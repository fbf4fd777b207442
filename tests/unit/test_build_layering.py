"""The build side's import rules: recipes never import a pipeline, the pretrained pipeline uses the shared tail
(not the trained pipeline's helpers), and no CLI code picks a pipeline by class."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_recipes_never_import_a_pipeline() -> None:
    for path in (ROOT / "model_build" / "recipes").glob("*.py"):
        imported = _imports(path)
        assert not {"model_build.pipeline", "model_build.pretrained", "model_build.tail"} & imported, path.name


def test_both_pipelines_share_the_tail_and_not_each_other() -> None:
    pretrained = _imports(ROOT / "model_build" / "pretrained.py")
    assert not any(name.startswith("model_build.pipeline") for name in pretrained)
    assert "model_build.tail" in pretrained
    assert "model_build.tail" in _imports(ROOT / "model_build" / "pipeline.py")


def test_contracts_do_not_import_torch_or_a_pipeline() -> None:
    tree = ast.parse((ROOT / "model_build" / "contracts.py").read_text(encoding="utf-8"))
    top_level = {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top_level |= {node.module or "" for node in tree.body if isinstance(node, ast.ImportFrom)}
    assert not {"torch", "model_build.pipeline", "model_build.pretrained"} & top_level


def test_no_command_picks_a_pipeline_by_class() -> None:
    for path in [*(ROOT / "maas").glob("*.py"), ROOT / "model_build" / "builder.py"]:
        calls = [node for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                 if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance"
                 and any(word in ast.unparse(node) for word in ("Recipe", "Encoder"))]
        assert calls == [], path.name
