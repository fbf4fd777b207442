"""Build time per recipe, and each variant's size, latency (batch 1 and 256) and held-out metric.

Each recipe is built once into a temporary local store exactly as ``maas build`` does; the per-variant
latencies are the build's own measurements (median of 300 runs at batch 1 and 30 at batch 256, after
warm-up, 1 intra-op thread).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from functions.core.store import LocalStore
from model_build.pipeline import build
from model_build.recipes import DEMO, load_recipe

TITLE = "Build pipeline: build time and variants per recipe"


def run(quick: bool) -> dict[str, Any]:
    recipes = []
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(Path(tmp))
        for name in DEMO:
            started = time.perf_counter()
            manifest = build(load_recipe(name), store, quick=quick)
            seconds = time.perf_counter() - started
            recipes.append({
                "recipe": name, "build_seconds": round(seconds, 2), "metric_name": manifest.metric_name,
                "selected": manifest.selected["cpu"], "reason": manifest.selection_reason,
                "variants": [{
                    "name": v.name, "bytes": v.bytes, "passed": v.passed, "note": v.reason,
                    "metric": v.metrics.metric if v.metrics else None,
                    "latency_ms_b1": v.metrics.latency_ms_b1 if v.metrics else None,
                    "latency_ms_b256": v.metrics.latency_ms_b256 if v.metrics else None,
                    "parity_max_abs_diff": v.metrics.parity_max_abs_diff if v.metrics else None,
                } for v in manifest.variants],
            })
    return {"quick": quick, "recipes": recipes}


def render(result: dict[str, Any]) -> str:
    lines = ["| recipe | build time (s) | shipped variant |", "|---|---|---|"]
    lines += [f"| {r['recipe']} | {r['build_seconds']:.1f} | {r['selected']} |" for r in result["recipes"]]
    lines += ["", "| recipe | variant | size (KiB) | b1 latency (ms) | b256 latency (ms) | b1 vs fp32 | b256 vs fp32 "
              "| test metric | gates |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["recipes"]:
        fp32 = next(v for v in r["variants"] if v["name"] == "fp32")
        for v in r["variants"]:
            if v["metric"] is None:
                lines.append(f"| {r['recipe']} | {v['name']} | - | - | - | - | - | - | {v['note']} |")
                continue
            if v["latency_ms_b1"] is None:  # GPU variant: accuracy measured here, speed only on a GPU
                lines.append(f"| {r['recipe']} | {v['name']} (GPU) | {v['bytes'] / 1024:.1f} | - | - | - | - "
                             f"| {r['metric_name']} {v['metric']:.4f} | {'pass' if v['passed'] else 'fail'} |")
                continue
            shipped = " (shipped)" if v["name"] == r["selected"] else ""
            lines.append(
                f"| {r['recipe']} | {v['name']}{shipped} | {v['bytes'] / 1024:.1f} | {v['latency_ms_b1']:.4f} "
                f"| {v['latency_ms_b256']:.3f} | {v['latency_ms_b1'] / fp32['latency_ms_b1']:.2f}x "
                f"| {v['latency_ms_b256'] / fp32['latency_ms_b256']:.2f}x | {r['metric_name']} {v['metric']:.4f} "
                f"| {'pass' if v['passed'] else 'fail'} |")
    return "\n".join(lines)
