"""Bias audit: per-group metrics and fairness gaps when examples carry group attributes.

Uses fairlearn's MetricFrame for per-group numbers and its equal-opportunity / equalized-odds
differences. Those two need a binary outcome: for a label task with more than two labels each label is
audited one-vs-rest and the worst gap is reported; for free-text tasks the outcome is "answered correctly".
"""

from __future__ import annotations

from typing import Any, Sequence

DEFAULT_THRESHOLD = 0.1


def audit(
    groups: Sequence[dict[str, str]],
    references: Sequence[str],
    predictions: Sequence[str],
    scores: Sequence[float] | None = None,
    labels: Sequence[str] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, Any] | None:
    """One entry per group attribute; None when no example has any group."""
    attributes = sorted({k for g in groups for k in g})
    if not attributes:
        return None
    out: dict[str, Any] = {"threshold": threshold, "attributes": {}}
    for attribute in attributes:
        values = [g.get(attribute, "<none>") for g in groups]
        if labels:
            entry = _label_audit(values, references, predictions, labels, threshold)
        else:
            entry = _score_audit(values, scores or [0.0] * len(values), threshold)
        out["attributes"][attribute] = entry
    out["status"] = "warn" if any(a["status"] == "warn" for a in out["attributes"].values()) else "pass"
    return out


def _label_audit(values, references, predictions, labels, threshold) -> dict[str, Any]:
    from fairlearn.metrics import (
        MetricFrame,
        count,
        equal_opportunity_difference,
        equalized_odds_difference,
    )
    from sklearn.metrics import accuracy_score

    frame = MetricFrame(
        metrics={"accuracy": accuracy_score, "count": count},
        y_true=list(references),
        y_pred=list(predictions),
        sensitive_features=values,
    )
    # Binary tasks audit the second label (sorted) as positive; multi-class audits every label one-vs-rest.
    positives = [sorted(labels)[-1]] if len(labels) == 2 else list(labels)
    eo, eodds = {}, {}
    for positive in positives:
        y_true = [int(r == positive) for r in references]
        y_pred = [int(p == positive) for p in predictions]
        eo[positive] = _safe(equal_opportunity_difference, y_true, y_pred, values)
        eodds[positive] = _safe(equalized_odds_difference, y_true, y_pred, values)
    worst_eo = max((v for v in eo.values() if v is not None), default=None)
    worst_eodds = max((v for v in eodds.values() if v is not None), default=None)
    gap = float(frame.difference()["accuracy"])
    worst = max(v for v in (worst_eo, worst_eodds, gap) if v is not None)
    return {
        "by_group": _by_group(frame),
        "accuracy_difference": gap,
        "equal_opportunity_difference": worst_eo,
        "equalized_odds_difference": worst_eodds,
        "per_label": {"equal_opportunity": eo, "equalized_odds": eodds},
        "status": "warn" if worst > threshold else "pass",
    }


def _score_audit(values, scores, threshold) -> dict[str, Any]:
    from fairlearn.metrics import MetricFrame, count

    frame = MetricFrame(
        metrics={"score": _mean, "count": count},
        y_true=list(scores),
        y_pred=list(scores),
        sensitive_features=values,
    )
    gap = float(frame.difference()["score"])
    return {
        "by_group": _by_group(frame),
        "score_difference": gap,
        "equal_opportunity_difference": None,
        "equalized_odds_difference": None,
        "status": "warn" if gap > threshold else "pass",
    }


def _mean(y_true, y_pred) -> float:
    return float(sum(y_true) / len(y_true)) if len(y_true) else 0.0


def _by_group(frame) -> dict[str, dict[str, float]]:
    table = frame.by_group
    return {str(group): {k: float(v) for k, v in row.items()} for group, row in table.iterrows()}


def _safe(fn, y_true, y_pred, values) -> float | None:
    # A group with no positives leaves the true-positive rate undefined; fairlearn returns nan then.
    import math

    try:
        value = float(fn(y_true, y_pred, sensitive_features=values))
    except (ValueError, ZeroDivisionError):
        return None
    return None if math.isnan(value) else value
