"""PNG charts for docs/benchmarks.md, drawn from the stored results (one per benchmark where a picture helps)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bars(path: Path, title: str, panels: list[tuple[str, list[str], list[float]]]) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.4), squeeze=False)
    for axis, (label, names, values) in zip(axes[0], panels, strict=True):
        axis.barh(names, values, color="tab:blue")
        axis.set_xlabel(label, fontsize=9)
        axis.tick_params(labelsize=8)
        axis.invert_yaxis()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def serving(result: dict[str, Any], path: Path) -> None:
    cold = {k: v["median_ms"] for k, v in result["cold"].items()}
    warm = {k: v["p50_ms"] for k, v in result["warm"].items()}
    _bars(path, "Lambda handler: cold start and warm p50 (lower is better)",
          [("cold start, median (ms)", list(cold), list(cold.values())),
           ("warm p50 (ms)", list(warm), list(warm.values()))])


def batch(result: dict[str, Any], path: Path) -> None:
    rows = [f"{r['rows']:,} rows" for r in result["sizes"]]
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    width = 0.38
    positions = range(len(rows))
    for offset, key, label in ((-width / 2, "runner_rows_per_s", "batch runner"),
                               (width / 2, "raw_rows_per_s", "raw session.run")):
        axes[0].bar([p + offset for p in positions], [r[key] for r in result["sizes"]], width, label=label)
    for offset, key, label in ((-width / 2, "runner_peak_mb", "batch runner"),
                               (width / 2, "raw_peak_mb", "raw session.run")):
        axes[1].bar([p + offset for p in positions], [r[key] for r in result["sizes"]], width, label=label)
    for axis, label in zip(axes, ("rows/s (higher is better)", "peak RSS MiB (flat is the goal)"), strict=True):
        axis.set_xticks(list(positions), rows)
        axis.set_ylabel(label, fontsize=9)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def http(result: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for name, server in result["servers"].items():
        concurrency = [p["concurrency"] for p in server["load"]]
        axes[0].plot(concurrency, [p["rps"] for p in server["load"]], marker="o", label=name)
        axes[1].plot(concurrency, [p["p99_ms"] for p in server["load"]], marker="o", label=name)
    for axis, label in zip(axes, ("req/s (higher is better)", "p99 latency ms (log; lower is better)"), strict=True):
        axis.set_xscale("log", base=2)
        axis.set_xticks([1, 8, 32], ["1", "8", "32"])
        axis.set_xlabel("concurrent connections", fontsize=9)
        axis.set_ylabel(label, fontsize=9)
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def transformer(result: dict[str, Any], path: Path) -> None:
    cases = [r["case"] for r in result["latency"]]
    _bars(path, "MiniLM on this CPU: int8 speed-up over fp32 (higher is better)",
          [("int8 speed-up (x)", cases, [r["speedup"] for r in result["latency"]])])


def infra(result: dict[str, Any], path: Path) -> None:
    names = [b["architecture"] for b in result["bundles"]]
    _bars(path, f"Lambda bundle, unzipped (limit {result['lambda_limit_mb']} MB, budget 150 MB)",
          [("MB unzipped", names, [b["unzipped_mb"] for b in result["bundles"]]),
           ("MB zipped", names, [b["zipped_mb"] for b in result["bundles"]])])


def build(result: dict[str, Any], path: Path) -> None:
    """Pruning: each recipe's levels, metric against batch-1 latency relative to the unpruned fp32 variant."""
    from bench.build import best_quantized

    pruned = [r for r in result["recipes"] if r.get("pruning")]
    if not pruned:
        return
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(pruned), figsize=(4.2 * len(pruned), 3.4), squeeze=False)
    for axis, r in zip(axes[0], pruned, strict=True):
        fp32 = next(v for v in r["variants"] if v["name"] == "fp32")
        base = fp32["latency_ms_b1"]
        axis.scatter([1.0], [fp32["metric"]], color="black", label="fp32", zorder=3)
        if (int8 := best_quantized(r)) is not None:
            axis.scatter([int8["latency_ms_b1"] / base], [int8["metric"]], color="tab:orange", label=int8["name"],
                         zorder=3)
        for i, level in enumerate(r["pruning"]["levels"]):
            if level["latency_ms_b1"] is None or level["metric"] is None:
                continue
            x, y = level["latency_ms_b1"] / base, level["metric"]
            axis.scatter([x], [y], color="tab:blue", facecolors="tab:blue" if level["passed"] else "none", zorder=3)
            axis.annotate(f"{level['level']:g}", (x, y), textcoords="offset points", xytext=(4, 4 - 10 * (i % 2)),
                          fontsize=8)  # alternate above and below: levels often sit on the same metric
        axis.set_title(r["recipe"], fontsize=9)
        axis.set_xlabel("batch-1 latency vs fp32 (lower is better)", fontsize=8)
        axis.set_ylabel(f"test {r['metric_name']}", fontsize=8)
        axis.tick_params(labelsize=8)
        axis.legend(fontsize=7)
    fig.suptitle("Pruning levels (blue; hollow: refused by the gates) against fp32 and the best int8 variant",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


CHARTS: dict[str, Callable[[dict[str, Any], Path], None]] = {
    "build": build, "serving": serving, "batch": batch, "http": http, "transformer": transformer, "infra": infra}
