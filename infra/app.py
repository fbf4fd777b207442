"""CDK entry point (``cdk.json`` runs ``python -m infra.app``): the stack of the stage named in context, with
AWS's cdk-nag rule packs as validation plugins, so any unacknowledged finding fails the synth."""

from __future__ import annotations

import json
import os

import aws_cdk as cdk

from infra.config import stage_config
from infra.nag import apply_rule_packs
from infra.project import PROJECT_ROOT
from infra.stack import MaasStack


def build_app(context: dict[str, object] | None = None, outdir: str | None = None,
              rule_packs: bool = True) -> cdk.App:
    """The app with its stack, ready to synth; ``context`` overrides cdk.json's (the tests pass their own)."""
    defaults = json.loads((PROJECT_ROOT / "cdk.json").read_text()).get("context", {})
    app = cdk.App(context={**defaults, **(context or {})}, outdir=outdir)
    context_values = {key: app.node.try_get_context(key) for key in ("stage", "stages")}
    config = stage_config({k: v for k, v in context_values.items() if v is not None})
    environment = cdk.Environment(account=config.account or os.environ.get("CDK_DEFAULT_ACCOUNT"),
                                  region=config.region or os.environ.get("CDK_DEFAULT_REGION"))
    stack = MaasStack(app, f"maas-{config.stage}", config=config, env=environment)
    if rule_packs:
        apply_rule_packs(app, stack)
    return app


def main() -> None:
    build_app().synth()


if __name__ == "__main__":
    main()
