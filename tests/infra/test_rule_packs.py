"""cdk-nag (AwsSolutions and Serverless packs) and cfn-lint on every synthesized template."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from infra import nag
from tests.infra.conftest import Synthesized, synthesize


def test_synth_passes_both_packs_with_nothing_unacknowledged(dev: Synthesized, prod: Synthesized) -> None:
    for synth in (dev, prod):
        report = json.loads((synth.outdir / "validation-report.json").read_text())
        conclusions = {p["pluginName"]: (p["conclusion"], len(p["violations"])) for p in report["pluginReports"]}
        assert conclusions == {"AwsSolutions": ("success", 0), "Serverless": ("success", 0)}


def test_each_acknowledgment_has_a_reason_and_still_matches_a_finding(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nag, "acknowledgments", lambda stack: {})
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        synthesize(tmp_path, {"stage": "prod"})
    report = json.loads((tmp_path / "validation-report.json").read_text())
    findings = {f"{p['pluginName']}::{v['ruleName']}" for p in report["pluginReports"] for v in p["violations"]}
    monkeypatch.undo()

    from infra.app import build_app

    stack = build_app(context={"stage": "prod", "aws:cdk:bundling-stacks": []}, rule_packs=False).node.find_child(
        "maas-prod")
    acknowledged = nag.acknowledgments(stack)  # type: ignore[arg-type]
    assert findings == set(acknowledged), "acknowledged findings and real findings differ"
    assert all(len(reason) > 40 for reason in acknowledged.values())
    rules = {finding.split("[")[0] for finding in acknowledged}
    assert len(rules) <= 9, rules


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_cfn_lint_reports_no_errors(stage: str, dev: Synthesized, prod: Synthesized) -> None:
    synth = {"dev": dev, "prod": prod}[stage]
    templates = sorted(synth.outdir.glob("*.template.json"))
    assert templates
    result = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), "--format", "json", *map(str, templates)],
                            capture_output=True, text=True, check=False)
    findings = json.loads(result.stdout or "[]")
    errors = [f for f in findings if f["Level"] == "Error"]
    assert errors == [], errors
    assert result.returncode in (0, 4, 8, 12)  # 4 = warnings, 8 = informational; 2 would be errors
