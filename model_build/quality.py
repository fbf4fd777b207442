"""What users look for beside accuracy or RMSE: per-class precision, recall and F1 with macro averages (and
ROC AUC for binary classifiers), MAE and R² for regressors, on the test split; for the card and the manifest."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from functions.core.manifest import Manifest, Task


def evaluation(task: Task, outputs: npt.NDArray[Any], y: npt.NDArray[Any],
               labels: list[str] | None) -> dict[str, Any]:
    """The test-split evaluation of the shipped variant's outputs."""
    if task == "classification":
        return classification_report(outputs, y.astype(np.int64), labels)
    predicted = outputs.reshape(-1).astype(np.float64)
    truth = y.reshape(-1).astype(np.float64)
    residual = float(np.sum((truth - predicted) ** 2))
    spread = float(np.sum((truth - truth.mean()) ** 2))
    return {"mae": round(float(np.mean(np.abs(truth - predicted))), 6),
            "r2": round(1.0 - residual / spread, 6) if spread > 0 else 0.0}


def classification_report(probabilities: npt.NDArray[Any], y: npt.NDArray[np.int64],
                          labels: list[str] | None) -> dict[str, Any]:
    """Per-class precision, recall, F1 and support; their macro averages; ROC AUC when there are two classes."""
    classes = probabilities.shape[1]
    names = labels or [str(i) for i in range(classes)]
    predicted = probabilities.argmax(axis=1)
    per_class: dict[str, dict[str, float]] = {}
    for index, name in enumerate(names):
        hits = float(np.sum((predicted == index) & (y == index)))
        claimed, actual = float(np.sum(predicted == index)), float(np.sum(y == index))
        precision = hits / claimed if claimed else 0.0
        recall = hits / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": round(precision, 6), "recall": round(recall, 6), "f1": round(f1, 6),
                           "support": int(actual)}
    report: dict[str, Any] = {
        "per_class": per_class,
        "macro": {key: round(float(np.mean([row[key] for row in per_class.values()])), 6)
                  for key in ("precision", "recall", "f1")},
    }
    if classes == 2:
        report["roc_auc"] = round(roc_auc(probabilities[:, 1], y == 1), 6)
    return report


def roc_auc(scores: npt.NDArray[Any], positive: npt.NDArray[np.bool_]) -> float:
    """Area under the ROC curve: the probability a positive outranks a negative (ties count half)."""
    pos, neg = scores[positive], scores[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    ranks = _average_ranks(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _average_ranks(values: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    _, inverse = np.unique(values, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks)
    counts = np.bincount(inverse)
    averaged: npt.NDArray[np.float64] = (sums / counts)[inverse]
    return averaged


def card_lines(manifest: Manifest) -> list[str]:
    """The card's evaluation and global importance sections (empty for versions without them)."""
    lines: list[str] = []
    report = manifest.evaluation
    heading = f"## Evaluation ({'--eval rows' if manifest.provenance.imported_from else 'test split'}, shipped variant)"
    if report and "per_class" in report:
        lines += ["", heading, "",
                  "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        lines += [f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {row['support']} |"
                  for name, row in report["per_class"].items()]
        macro = report["macro"]
        lines.append(f"| **macro average** | {macro['precision']:.3f} | {macro['recall']:.3f} | {macro['f1']:.3f} "
                     f"| {sum(r['support'] for r in report['per_class'].values())} |")
        if "roc_auc" in report:
            lines += ["", f"ROC AUC: {report['roc_auc']:.4f}"]
    elif report:
        lines += ["", heading, "",
                  f"- MAE: {report['mae']:.4g}", f"- R²: {report['r2']:.4f}"]
    if manifest.importance:
        top = sorted(manifest.importance.items(), key=lambda kv: -kv[1])[:10]
        lines += ["", "## Global importance", "",
                  "Mean |SHAP attribution| of the explained output over held-out instances "
                  "(see docs/explanations.md); the plot is `importance.png`.", "",
                  "| input | mean abs attribution |", "|---|---|"]
        lines += [f"| {name} | {value:.4g} |" for name, value in top]
    return lines
