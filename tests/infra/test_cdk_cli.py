"""`npx cdk synth` with the CLI pinned in package.json, offline, as ops run it."""

from __future__ import annotations

import json
import os
import subprocess

from infra.project import PROJECT_ROOT
from tests.infra.conftest import Synthesized


def test_pinned_cli_synthesizes_the_app(dev: Synthesized) -> None:
    cli = PROJECT_ROOT / "node_modules" / ".bin" / "cdk"
    assert cli.exists(), "node_modules missing: `make test` installs the pinned CDK CLI with npm ci"
    version = subprocess.run([str(cli), "--version"], capture_output=True, text=True, check=True, timeout=120)
    assert version.stdout.startswith("2."), version.stdout
    env = {**os.environ, "CDK_DISABLE_CLI_TELEMETRY": "true", "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    # Same output folder as the session's synth: the bundle for this source hash is reused, not rebuilt.
    result = subprocess.run([str(cli), "synth", "--no-notices", "--quiet", "--output", str(dev.outdir)],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    template = json.loads((dev.outdir / "maas-dev.template.json").read_text())
    assert template["Resources"] and "ApiUrl" in template["Outputs"]
    manifest = json.loads((dev.outdir / "manifest.json").read_text())
    assert "maas-dev" in manifest["artifacts"]
