"""Deployment footprint: the Lambda bundle per architecture against Lambda's 250 MB limit, synth time, and
the cdk-nag / cfn-lint counts on the synthesized templates.

Bundles are built by ``infra.bundling.build_bundle`` (pip ``--platform manylinux_2_28_<arch>``, trimmed,
bytecode compiled for Python 3.12) into a fresh folder each time, with pip's download cache warm; zipped
size is the bundle zipped with deflate (what CDK uploads). Synth times are fresh processes running
``python -m infra.app`` into a new output folder: "cold" builds the bundle, "warm" skips bundling (CDK's
``aws:cdk:bundling-stacks`` = none), which is what template-only changes cost.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

TITLE = "Deployment: Lambda bundle size, synth time, cdk-nag and cfn-lint"
ROOT = Path(__file__).resolve().parents[1]
LAMBDA_LIMIT_MB = 250
ENV = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}


def _zipped_bytes(folder: Path) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "bundle.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    zf.write(path, path.relative_to(folder).as_posix())
        return archive.stat().st_size


def _bundle(architecture: str) -> dict[str, Any]:
    from infra.bundling import build_bundle

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        report = build_bundle(Path(tmp) / "bundle", architecture, "3.12", budget_mb=LAMBDA_LIMIT_MB)
        seconds = time.perf_counter() - started
        largest = sorted(((sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir()
                           else p.stat().st_size, p.name) for p in report.path.iterdir()), reverse=True)[:5]
        return {"architecture": architecture, "unzipped_mb": round(report.unzipped_bytes / 2**20, 1),
                "zipped_mb": round(_zipped_bytes(report.path) / 2**20, 1), "files": report.files,
                "compiled": report.compiled, "build_s": round(seconds, 1),
                "largest": [{"name": name, "mb": round(size / 2**20, 1)} for size, name in largest]}


def _synth(bundle: bool, stage: str = "dev") -> tuple[float, Path]:
    outdir = Path(tempfile.mkdtemp(prefix="maas-synth-"))
    context = {"stage": stage} if bundle else {"stage": stage, "aws:cdk:bundling-stacks": []}
    code = ("import json, sys; from infra.app import build_app; "
            f"build_app(context=json.loads(sys.argv[1]), outdir={str(outdir)!r}).synth()")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, json.dumps(context)], cwd=ROOT, env=ENV, check=True,
                   capture_output=True, timeout=900)
    return time.perf_counter() - started, outdir


def _lint(outdir: Path) -> dict[str, int]:
    result = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), "--format", "json",
                             *map(str, outdir.glob("*.template.json"))], capture_output=True, text=True, check=False)
    findings = json.loads(result.stdout or "[]")
    return {level: sum(f["Level"] == level for f in findings) for level in ("Error", "Warning", "Informational")}


def _nag(stage: str) -> dict[str, Any]:
    """Findings with the acknowledgments removed, and how many of them are acknowledged."""
    code = (
        "import json, sys; from infra import nag; from infra.app import build_app\n"
        "real = nag.acknowledgments\n"
        "nag.acknowledgments = lambda stack: {}\n"
        "out = sys.argv[1]\n"
        "try:\n"
        "    build_app(context={'stage': sys.argv[2], 'aws:cdk:bundling-stacks': []}, outdir=out).synth()\n"
        "except RuntimeError:\n"
        "    pass\n"
        "report = json.load(open(out + '/validation-report.json'))\n"
        "stack = build_app(context={'stage': sys.argv[2], 'aws:cdk:bundling-stacks': []}, rule_packs=False)"
        ".node.find_child('maas-' + sys.argv[2])\n"
        "print(json.dumps({'reports': report['pluginReports'], 'acknowledged': list(real(stack))}))\n")
    with tempfile.TemporaryDirectory() as out:
        result = subprocess.run([sys.executable, "-c", code, out, stage], cwd=ROOT, env=ENV, check=True,
                                capture_output=True, text=True, timeout=900)
    data = json.loads(result.stdout.strip().splitlines()[-1])
    findings = {f"{p['pluginName']}::{v['ruleName']}": len(v["violatingConstructs"])
                for p in data["reports"] for v in p["violations"]}
    acknowledged = set(data["acknowledged"])
    return {"stage": stage, "finding_ids": len(findings), "resources_flagged": sum(findings.values()),
            "acknowledged_ids": len(acknowledged & set(findings)),
            "acknowledged_rules": len({a.split("[")[0] for a in acknowledged}),
            "unacknowledged": sorted(set(findings) - acknowledged)}


def run(quick: bool) -> dict[str, Any]:
    bundles = [_bundle(arch) for arch in ("arm64", "x86_64")]
    repeats = 1 if quick else 3
    cold, cold_dir = _synth(bundle=True)
    warm = [_synth(bundle=False)[0] for _ in range(repeats)]
    _, prod_dir = _synth(bundle=False, stage="prod")
    return {"quick": quick, "lambda_limit_mb": LAMBDA_LIMIT_MB, "bundles": bundles,
            "synth_cold_s": round(cold, 1), "synth_warm_s": round(statistics.median(warm), 1),
            "synth_warm_runs": [round(w, 1) for w in warm],
            "cfn_lint": {"dev": _lint(cold_dir), "prod": _lint(prod_dir)},
            "nag": [_nag("dev"), _nag("prod")]}


def render(result: dict[str, Any]) -> str:
    limit = result["lambda_limit_mb"]
    lines = ["| architecture | unzipped (MB) | of the 250 MB limit | zipped (MB) | files | bytecode | build (s) "
             "| largest parts (MB) |", "|---|---|---|---|---|---|---|---|"]
    for b in result["bundles"]:
        parts = ", ".join(f"{p['name']} {p['mb']}" for p in b["largest"])
        lines.append(f"| {b['architecture']} | {b['unzipped_mb']} | {b['unzipped_mb'] / limit:.0%} | {b['zipped_mb']} "
                     f"| {b['files']:,} | {'3.12, unchecked-hash' if b['compiled'] else 'none'} | {b['build_s']} "
                     f"| {parts} |")
    lines += ["", f"Synth (fresh process, cdk-nag included): {result['synth_cold_s']} s with the bundle built, "
              f"{result['synth_warm_s']} s without bundling (median of {result['synth_warm_runs']}).", "",
              "| stage | cdk-nag findings (rule[resource] ids) | resources flagged | acknowledged ids "
              "| acknowledged rules | unacknowledged | cfn-lint errors | cfn-lint warnings |",
              "|---|---|---|---|---|---|---|---|"]
    for n in result["nag"]:
        lint = result["cfn_lint"][n["stage"]]
        lines.append(f"| {n['stage']} | {n['finding_ids']} | {n['resources_flagged']} | {n['acknowledged_ids']} "
                     f"| {n['acknowledged_rules']} | {len(n['unacknowledged'])} | {lint['Error']} "
                     f"| {lint['Warning']} |")
    lines += ["", "Targets: bundle <= 150 MB unzipped; 0 unacknowledged cdk-nag findings; 0 cfn-lint errors "
              "(warnings are W3005, redundant DependsOn that CDK emits)."]
    return "\n".join(lines)
