"""The model card: a markdown page plus PNG plots, stored with the version."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from functions.core.manifest import Manifest, Task
from model_build import quality

if TYPE_CHECKING:
    from model_build.train import History  # torch: only builds that train need it

TRAINING_PLOT = "training.png"
VARIANTS_PLOT = "variants.png"
PRUNING_PLOT = "pruning.png"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training(history: History, metric_name: str, path: Path) -> None:
    """Loss curves and the validation metric per epoch, with the restored best epoch marked."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    epochs = np.arange(1, len(history.train_loss) + 1)
    left.plot(epochs, history.train_loss, label="train")
    left.plot(epochs, history.val_loss, label="validation")
    left.set(title="loss", xlabel="epoch")
    left.legend()
    right.plot(epochs, history.val_metric, color="tab:green")
    right.set(title=f"validation {metric_name}", xlabel="epoch")
    for axis in (left, right):
        axis.axvline(history.best_epoch, color="grey", linestyle=":", label="best")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_outcome(task: Task, outputs: npt.NDArray[Any], y: npt.NDArray[Any], labels: list[str] | None,
                 path: Path) -> None:
    """Confusion matrix (classifiers) or predicted-vs-true and residuals (regressors) on the test split."""
    plt = _pyplot()
    if task == "classification":
        classes = outputs.shape[1]
        matrix = np.zeros((classes, classes), dtype=np.int64)
        np.add.at(matrix, (y.astype(np.int64), outputs.argmax(axis=1)), 1)
        fig, axis = plt.subplots(figsize=(1.2 + 0.5 * classes, 1 + 0.5 * classes))
        axis.imshow(matrix, cmap="Blues")
        names = labels or [str(i) for i in range(classes)]
        axis.set(xticks=range(classes), yticks=range(classes), xlabel="predicted", ylabel="true",
                 title="confusion matrix (test split)")
        axis.set_xticklabels(names, rotation=45, ha="right")
        axis.set_yticklabels(names)
        for (row, col), count in np.ndenumerate(matrix):
            axis.text(col, row, str(count), ha="center", va="center",
                      color="white" if count > matrix.max() / 2 else "black", fontsize=8)
    else:
        predicted = outputs.reshape(-1)
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
        left.scatter(y, predicted, s=10, alpha=0.7)
        low, high = float(min(y.min(), predicted.min())), float(max(y.max(), predicted.max()))
        left.plot([low, high], [low, high], color="grey", linestyle=":")
        left.set(title="predicted vs true (test split)", xlabel="true", ylabel="predicted")
        right.scatter(predicted, y - predicted, s=10, alpha=0.7, color="tab:orange")
        right.axhline(0, color="grey", linestyle=":")
        right.set(title="residuals", xlabel="predicted", ylabel="true - predicted")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_variants(manifest: Manifest, path: Path) -> None:
    """Size, latency at batch 1 and 256, and held-out metric per variant; the shipped one highlighted."""
    plt = _pyplot()
    measured = [(v, v.metrics, v.bytes) for v in manifest.variants if v.metrics is not None and v.bytes is not None]
    names = [v.name for v, _, _ in measured]
    colors = ["tab:green" if v.name == manifest.selected["cpu"] else
              ("tab:blue" if v.passed else "tab:red") for v, _, _ in measured]
    panels = [("size (KiB)", [size / 1024 for _, _, size in measured]),
              ("CPU latency batch 1 (ms)", [m.latency_ms_b1 or 0.0 for _, m, _ in measured]),
              (f"CPU latency batch {manifest.latency_batch} (ms)", [m.latency_ms_b256 or 0.0 for _, m, _ in measured]),
              (f"test {manifest.metric_name}", [m.metric for _, m, _ in measured])]
    fig, axes = plt.subplots(1, 4, figsize=(12, 3))
    for axis, (title, values) in zip(axes, panels, strict=True):
        axis.bar(names, values, color=colors)
        axis.set_title(title, fontsize=9)
        axis.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.suptitle("variants (green: shipped, blue: passed gates, red: failed)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_pruning(manifest: Manifest, path: Path) -> None:
    """Each pruning level's metric against its batch-1 latency (point area: file size), beside the unpruned fp32;
    and its parameters and MACs as a share of the unpruned model's."""
    pruning = manifest.pruning
    assert pruning is not None
    plt = _pyplot()
    fp32 = manifest.variant("fp32")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    points = [("unpruned fp32", fp32.metrics.latency_ms_b1 if fp32.metrics else None,
               fp32.metrics.metric if fp32.metrics else None, fp32.bytes, "tab:grey")]
    points += [(f"level {lvl.level:g}", lvl.latency_ms_b1, lvl.metric, lvl.bytes,
                "tab:green" if lvl.level == pruning.chosen_level else ("tab:blue" if lvl.passed else "tab:red"))
               for lvl in pruning.levels]
    biggest = max((size for *_, size, _ in points if size), default=1)
    for label, latency, metric, size, color in points:
        if latency is None or metric is None:
            continue
        left.scatter([latency], [metric], s=40 + 400 * (size or 0) / biggest, color=color, alpha=0.7)
        left.annotate(label, (latency, metric), fontsize=8, xytext=(4, 4), textcoords="offset points")
    left.set(xlabel="CPU latency batch 1 (ms)", ylabel=f"test {manifest.metric_name}",
             title="metric vs latency (area: file size)")
    names = [f"{lvl.level:g}" for lvl in pruning.levels]
    x = np.arange(len(names))
    right.bar(x - 0.2, [100 * lvl.params / max(pruning.params, 1) for lvl in pruning.levels], 0.4, label="params")
    right.bar(x + 0.2, [100 * lvl.macs / max(pruning.macs, 1) for lvl in pruning.levels], 0.4, label="MACs")
    right.set_xticks(x)
    right.set_xticklabels(names)
    right.set(xlabel="pruning level", ylabel="% of unpruned", title="size and compute left")
    right.legend(fontsize=8)
    fig.suptitle("pruning levels (green: chosen, blue: passed gates, red: failed)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def pruning_lines(manifest: Manifest) -> list[str]:
    """The card's Pruning section: how, every level tried, what was kept and why the shipped variant won."""
    pruning = manifest.pruning
    if pruning is None:
        return []
    batch = manifest.latency_batch
    fp32 = manifest.variant("fp32")
    m = fp32.metrics
    lines = ["", "## Pruning", "",
             f"{pruning.method}; {pruning.library}; importance: {pruning.criterion}; may prune: "
             f"{', '.join(pruning.units)}; recovery: {pruning.recovery}.", "",
             f"| level | params | MACs | file size | latency b1 (ms) | latency b{batch} (ms) "
             f"| test {manifest.metric_name} | gates | kept |", "|---|---|---|---|---|---|---|---|---|",
             f"| 0 (unpruned fp32) | {pruning.params:,} | {pruning.macs:,} | {_kib(fp32.bytes)} "
             f"| {_fmt(m.latency_ms_b1 if m else None)} | {_fmt(m.latency_ms_b256 if m else None)} "
             f"| {_fmt(m.metric if m else None, 4)} | - | {_kept(pruning.widths, pruning.widths)} |"]
    for lvl in pruning.levels:
        chosen = " (chosen)" if lvl.level == pruning.chosen_level else ""
        lines.append(f"| {lvl.level:g}{chosen} | {lvl.params:,} | {lvl.macs:,} | {_kib(lvl.bytes)} "
                     f"| {_fmt(lvl.latency_ms_b1)} | {_fmt(lvl.latency_ms_b256)} | {_fmt(lvl.metric, 4)} "
                     f"| {_cell(lvl.reason)} | {_kept(lvl.kept, pruning.widths)} |")
    shipped = manifest.selected["cpu"]
    verdict = f"a pruned variant ships ({shipped})" if shipped.startswith("pruned-") else \
        f"no pruned variant ships: {shipped} won" + (" by the speed rule (Choice, above)"
                                                     if pruning.chosen_level is not None else "")
    lines += ["", f"Chosen: {pruning.reason}. On CPU {verdict}. MACs count one forward pass on one example "
              "instance; latencies as for the variants."]
    return lines


def _cell(text: str) -> str:
    """Free text (a gate outcome, a library's error) as one markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _kib(size: int | None) -> str:
    return f"{size / 1024:.1f} KiB" if size else "-"


def _kept(kept: dict[str, int], widths: dict[str, int]) -> str:
    """Kept widths, grouped by unit when every layer of that unit kept the same share."""
    units: dict[str, list[tuple[str, int, int]]] = {}
    for label, width in widths.items():
        name, _, unit = label.rpartition(":")
        units.setdefault(unit, []).append((name, kept.get(label, width), width))
    parts = []
    for unit, rows in units.items():
        if len({(k, w) for _, k, w in rows}) == 1 and len(rows) > 1:
            parts.append(f"{unit} {rows[0][1]}/{rows[0][2]} in each of {len(rows)} layers")
        else:
            parts.append(", ".join(f"{name}: {k}/{w} {unit}" for name, k, w in rows))
    return "; ".join(parts) or "-"


def render_card(manifest: Manifest, source: str, plots: list[str]) -> str:
    """The markdown model card."""
    lines = [
        f"# {manifest.name} version {manifest.version}", "",
        manifest.description, "",
        f"- Task: {manifest.task}; created {manifest.created_at}; recipe `{manifest.provenance.recipe}`"
        + (("; **quick import (few check rows, for tests)**" if manifest.provenance.imported_from else
            "; **quick build (few epochs, for tests)**") if manifest.provenance.quick else ""),
        f"- Data: {source}",
        "- Inputs: " + ", ".join(f"`{t.name}` {t.dtype} {t.shape}" for t in manifest.inputs)
        + f"; preprocessing: `{manifest.preprocessing.kind}`",
        "- Outputs: " + ", ".join(f"`{t.name}` {t.dtype} {t.shape}" for t in manifest.outputs),
    ]
    if manifest.labels:
        lines.append(f"- Labels: {', '.join(manifest.labels)}")
    lines += ["", "## Variants", "",
              f"| variant | precision | file size | latency b1 (ms) | latency b{manifest.latency_batch} (ms) "
              f"| test {manifest.metric_name} "
              "| gates | note |", "|---|---|---|---|---|---|---|---|"]
    for v in manifest.variants:
        m = v.metrics
        size = f"{v.bytes / 1024:.1f} KiB" if v.bytes else "-"
        shipped = [t for t, name in manifest.selected.items() if name == v.name]
        lines.append(f"| {v.name}{f' (shipped: {chr(44).join(shipped)})' if shipped else ''} | {v.precision} "
                     f"| {size} | {_fmt(m.latency_ms_b1 if m else None)} | {_fmt(m.latency_ms_b256 if m else None)} "
                     f"| {_fmt(m.metric if m else None, 4)} | {'pass' if v.passed else 'fail'} | {v.reason} |")
    if manifest.baselines:
        selected = manifest.variant(manifest.selected["cpu"]).metrics
        ours = f"{selected.metric:.4f}" if selected else "-"
        lines += ["", "## Compared with", "", f"| model | test {manifest.metric_name} |", "|---|---|",
                  f"| {manifest.name} (shipped variant) | {ours} |"]
        lines += [f"| {name} | {value:.4f} |" for name, value in manifest.baselines.items()]
    lines += ["", f"Choice: {manifest.selection_reason}", "",
              "Latencies: median of repeated `session.run` calls on the build machine, 1 intra-op thread."]
    lines += pruning_lines(manifest)
    lines += ["", "## Gates", "", "| gate | variant | value | threshold | result | detail |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {g.name} | {g.variant} | {g.value:.4g} | {g.threshold:.4g} | {'pass' if g.passed else 'FAIL'} "
              f"| {g.detail} |" for g in manifest.gates]
    lines += quality.card_lines(manifest)
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    p = manifest.provenance
    lines += ["", "## Provenance", ""]
    if p.imported_from is not None:
        origin = p.imported_from
        lines += [f"- imported from: `{origin.file}` ({origin.kind}), sha256 {origin.sha256}",
                  f"- every variant checked against: {origin.reference}"]
    lines += [f"- git commit: {p.git_commit or 'unknown'}", f"- seed: {p.seed}",
              f"- data sha256: {p.data_sha256}", f"- build time: {p.build_seconds:.1f} s",
              "- libraries: " + ", ".join(f"{k} {v}" for k, v in sorted(p.libraries.items())), ""]
    return "\n".join(lines)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"
