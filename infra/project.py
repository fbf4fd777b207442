"""The project's root and its runtime requirements (read from pyproject.toml): what the bundle and the locks share."""

from __future__ import annotations

import tomllib
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The CLI's terminal libraries: functions/ never imports them.
NOT_AT_RUNTIME = frozenset({"click", "rich"})


def runtime_requirements(pyproject: Path = PROJECT_ROOT / "pyproject.toml") -> list[str]:
    """The base dependencies plus the ``serve`` extra, less what only the CLI uses."""
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["serve"]]
    return [r for r in requirements if _requirement_name(r) not in NOT_AT_RUNTIME]


def _requirement_name(requirement: str) -> str:
    for i, char in enumerate(requirement):
        if not (char.isalnum() or char in "-_."):
            return requirement[:i].lower()
    return requirement.lower()
