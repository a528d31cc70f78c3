"""Matplotlib (Agg) charts for the report, each returned as a base64 PNG so the HTML is self-contained."""

from __future__ import annotations

import base64
import io
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def loss_curves(series: dict[str, list[tuple[float, float]]]) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, points in series.items():
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o" if len(points) < 30 else None, markersize=3, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def metric_bars(models: Sequence[str], metrics: dict[str, Sequence[float | None]]) -> str:
    """One small panel per metric so metrics on different scales (loss vs BLEU) stay readable."""
    names = list(metrics)
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        values = [v if v is not None else 0.0 for v in metrics[name]]
        ax.bar(range(len(models)), values, color=[f"C{i}" for i in range(len(models))])
        ax.set_title(name, fontsize=9)
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels([m[:14] for m in models], rotation=30, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    return _png(fig)


def reliability_diagram(before: dict[str, Any], after: dict[str, Any] | None, title: str = "") -> str:
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
    for rel, label in ((before, "before"), (after, "after")):
        if not rel:
            continue
        pts = [(c, a) for c, a in zip(rel["confidence"], rel["accuracy"]) if c is not None]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o", label=f"{label} (ECE {rel['ece']:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return _png(fig)


def confusion_matrix(labels: Sequence[str], matrix: Sequence[Sequence[int]], title: str = "") -> str:
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * n, 1.0 + 0.6 * n))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(title, fontsize=9)
    peak = max((max(row) for row in matrix), default=0) or 1
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center", fontsize=8,
                    color="white" if value > peak / 2 else "black")
    return _png(fig)
