"""Build time per recipe, and each variant's size, latency (batch 1 and the recipe's latency batch: 256, 32
for MiniLM) and held-out metric; for the recipes that prune, every pruning level the build tried.

Each recipe is built once into a temporary local store exactly as ``maas build`` does; the per-variant
latencies are the build's own measurements (median of 300 runs at batch 1 and 30 at the latency batch, after
warm-up, 1 intra-op thread). A pruning level's figures are its pruned-fp32 ONNX file's, measured the same way in
the same build, next to the unpruned fp32 variant and the best unpruned quantized variant (the passing int8
variant fastest at batch 1); params and MACs are the pruned PyTorch model's, one example instance.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from functions.core.manifest import Manifest
from functions.core.store import LocalStore
from model_build.builder import build_recipe
from model_build.recipes import DEMO, load_recipe

TITLE = "Build pipeline: build time, variants and pruning levels per recipe"
PRUNED = ["digits-cnn", "cancer-mlp", "minilm-classifier"]
"""The demo recipes that prune (issue 31); minilm-classifier is built here for its pruning figures."""
RECIPES = [*DEMO, *(name for name in PRUNED if name not in DEMO)]


def run(quick: bool) -> dict[str, Any]:
    recipes = []
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(Path(tmp))
        for name in RECIPES:
            started = time.perf_counter()
            manifest = build_recipe(load_recipe(name), store, quick=quick)
            seconds = time.perf_counter() - started
            recipes.append({
                "recipe": name, "build_seconds": round(seconds, 2), "metric_name": manifest.metric_name,
                "latency_batch": manifest.latency_batch,
                "selected": manifest.selected["cpu"], "reason": manifest.selection_reason,
                "variants": [{
                    "name": v.name, "bytes": v.bytes, "passed": v.passed, "note": v.reason,
                    "metric": v.metrics.metric if v.metrics else None,
                    "latency_ms_b1": v.metrics.latency_ms_b1 if v.metrics else None,
                    "latency_ms_b256": v.metrics.latency_ms_b256 if v.metrics else None,
                    "parity_max_abs_diff": v.metrics.parity_max_abs_diff if v.metrics else None,
                } for v in manifest.variants],
                "pruning": _pruning(manifest),
            })
    return {"quick": quick, "recipes": recipes}


def _pruning(manifest: Manifest) -> dict[str, Any] | None:
    """The manifest's pruning record without the per-layer widths (levels, chosen level, reason)."""
    if manifest.pruning is None:
        return None
    record = manifest.pruning.to_dict()
    return {"method": record["method"], "params": record["params"], "macs": record["macs"],
            "chosen_level": record["chosen_level"], "reason": record["reason"],
            "levels": [{k: v for k, v in level.items() if k != "kept"} for level in record["levels"]]}


def best_quantized(recipe: dict[str, Any]) -> dict[str, Any] | None:
    """The passing unpruned int8 CPU variant fastest at batch 1, if any."""
    measured = [v for v in recipe["variants"] if v["name"].startswith("int8") and v["passed"]
                and v["latency_ms_b1"] is not None and v["latency_ms_b256"] is not None]
    return min(measured, key=lambda v: (v["latency_ms_b1"], v["latency_ms_b256"]), default=None)


def _count(n: int | None) -> str:
    if n is None:
        return "-"
    for floor, div, unit in ((1e9, 1e9, "G"), (1e6, 1e6, "M"), (1e4, 1e3, "K")):
        if n >= floor:
            return f"{n / div:.3g} {unit}"
    return str(n)


def _ratio(value: float | None, reference: float | None) -> str:
    return "-" if value is None or not reference else f"{value / reference:.2f}x"


def _delta(value: float | None, reference: float | None) -> str:
    return "-" if value is None or reference is None else f"{value - reference:+.4f}"


def render(result: dict[str, Any]) -> str:
    lines = ["| recipe | build time (s) | latency batch N | shipped variant |", "|---|---|---|---|"]
    lines += [f"| {r['recipe']} | {r['build_seconds']:.1f} | {r.get('latency_batch', 256)} | {_shipped(r)} |"
              for r in result["recipes"]]
    lines += ["", "| recipe | variant | size (KiB) | b1 latency (ms) | bN latency (ms) | b1 vs fp32 | bN vs fp32 "
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
    pruned = [r for r in result["recipes"] if r.get("pruning")]
    if pruned:
        lines += ["", *render_pruning(pruned)]
    return "\n".join(lines)


def _shipped(r: dict[str, Any]) -> str:
    pruning = r.get("pruning")
    if r["selected"].startswith("pruned-") and pruning and pruning["chosen_level"] is not None:
        return f"{r['selected']} (pruning level {pruning['chosen_level']:g})"
    return str(r["selected"])


def render_pruning(recipes: list[dict[str, Any]]) -> list[str]:
    """Each pruning level's pruned-fp32 file next to the unpruned fp32 and the best unpruned int8 variant."""
    lines = ["Pruning levels tried (level: fraction of each prunable layer's width removed; each level's pruned-fp32 "
             "file; \"vs fp32\" and \"vs int8\" divide by, or for the metric subtract, the unpruned fp32 variant's "
             "and the best unpruned int8 variant's figures):", "",
             "| recipe | model | params | MACs | size (KiB) | b1 (ms) | bN (ms) | b1 vs fp32 | bN vs fp32 "
             "| b1 vs int8 | bN vs int8 | size vs int8 | test metric | vs fp32 | vs int8 | gates |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in recipes:
        p = r["pruning"]
        fp32 = next(v for v in r["variants"] if v["name"] == "fp32")
        int8 = best_quantized(r)
        ref = int8 or {}
        rows: list[tuple[str, dict[str, Any], int | None, int | None, str]] = [
            ("fp32 (unpruned)", fp32, p["params"], p["macs"], "reference")]
        if int8 is not None:
            rows.append((f"{int8['name']} (best int8, unpruned)", int8, p["params"], p["macs"], "pass"))
        for level in p["levels"]:
            chosen = " (chosen)" if level["level"] == p["chosen_level"] else ""
            rows.append((f"level {level['level']:g}{chosen}", level, level["params"], level["macs"],
                         "pass" if level["passed"] else f"refused: {level['reason']}"))
        for label, m, params, macs, gates in rows:
            size = "-" if m.get("bytes") is None else f"{m['bytes'] / 1024:.1f}"
            b1 = "-" if m.get("latency_ms_b1") is None else f"{m['latency_ms_b1']:.4f}"
            bn = "-" if m.get("latency_ms_b256") is None else f"{m['latency_ms_b256']:.3f}"
            metric = "-" if m.get("metric") is None else f"{r['metric_name']} {m['metric']:.4f}"
            lines.append(
                f"| {r['recipe']} | {label} | {_count(params)} | {_count(macs)} | {size} | {b1} | {bn} "
                f"| {_ratio(m.get('latency_ms_b1'), fp32['latency_ms_b1'])} "
                f"| {_ratio(m.get('latency_ms_b256'), fp32['latency_ms_b256'])} "
                f"| {_ratio(m.get('latency_ms_b1'), ref.get('latency_ms_b1'))} "
                f"| {_ratio(m.get('latency_ms_b256'), ref.get('latency_ms_b256'))} "
                f"| {_ratio(m.get('bytes'), ref.get('bytes'))} | {metric} | {_delta(m.get('metric'), fp32['metric'])} "
                f"| {_delta(m.get('metric'), ref.get('metric'))} | {gates} |")
    lines += ["", "| recipe | latency batch N | chosen level | why that level | shipped variant | why that variant |",
              "|---|---|---|---|---|---|"]
    for r in recipes:
        p = r["pruning"]
        level = "none" if p["chosen_level"] is None else f"{p['chosen_level']:g}"
        lines.append(f"| {r['recipe']} | {r['latency_batch']} | {level} | {p['reason']} | {_shipped(r)} "
                     f"| {r['reason']} |")
    return lines
