"""The ``maas`` entry point: a click group that loads each command's module on first use.

Add a command group by writing its module and adding one line to ``COMMANDS`` ("name": "module:function").
Errors become one red line and the exit code from the table in ``functions/core/errors.py``.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

COMMANDS: dict[str, str] = {
    "build": "maas.build:build",
    "import": "maas.importing:import_command",
    "models": "maas.models:models",
    "promote": "maas.aliases:promote",
    "rollback": "maas.aliases:rollback",
    "shadow": "maas.rollouts:shadow",
    "split": "maas.rollouts:split",
    "serve": "maas.serve:serve",
    "predict": "maas.predict:predict",
    "batch": "maas.batch:batch_command",
    "jobs": "maas.jobs:jobs",
    "keys": "maas.keys:keys",
    "usage": "maas.usage:usage",
    "cost": "maas.cost:command",
    "capacity": "maas.capacity:command",
    "drift": "maas.drift:drift_command",
    "explain": "maas.explain:explain_command",
}


class _Main(click.Group):
    """Commands imported on demand; the project's errors turned into a red line and a distinct exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        from functions.core.errors import MaasError, StoreUnavailableError, exit_code
        from maas.common import err

        try:
            return super().invoke(ctx)
        except MaasError as exc:
            err(f"error: {exc.message}")
            sys.exit(exit_code(exc))
        except OSError as exc:
            err(f"error: {exc}")
            sys.exit(exit_code(StoreUnavailableError(str(exc))))


@click.group(cls=_Main)
@click.version_option(package_name="maas")
def main() -> None:
    """maas: build, publish, serve and manage models for serverless serving."""


if __name__ == "__main__":
    main()
