"""Synthesize the CDK app once per session, with the real local bundling and the cdk-nag packs."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


@dataclass
class Synthesized:
    """A synthesized cloud assembly: its folder and the stack template."""

    outdir: Path
    template: dict[str, Any]

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """Logical id -> Properties of every resource of this type (ids are for messages only)."""
        return {lid: r.get("Properties", {}) for lid, r in self.template["Resources"].items()
                if r["Type"] == resource_type}

    def one(self, resource_type: str) -> dict[str, Any]:
        found = list(self.resources(resource_type).values())
        assert len(found) == 1, f"expected one {resource_type}, found {len(found)}"
        return found[0]


def synthesize(outdir: Path, context: dict[str, Any] | None = None, bundle: bool = False) -> Synthesized:
    """Synthesize the app (cdk-nag included); bundling is skipped unless asked for, to keep tests fast."""
    from infra.app import build_app

    context = dict(context or {})
    if not bundle:
        context["aws:cdk:bundling-stacks"] = []
    app = build_app(context=context, outdir=str(outdir))
    assembly = app.synth()
    (stack,) = assembly.stacks
    return Synthesized(outdir, json.loads(Path(assembly.directory, stack.template_file).read_text()))


@pytest.fixture(scope="session")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesized]:
    """The default stage as `cdk synth` makes it, Lambda bundle included."""
    yield synthesize(tmp_path_factory.mktemp("cdk-dev"), bundle=True)


@pytest.fixture(scope="session")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The prod stage from cdk.json (canary deployments, longer retention)."""
    return synthesize(tmp_path_factory.mktemp("cdk-prod"), {"stage": "prod"})
