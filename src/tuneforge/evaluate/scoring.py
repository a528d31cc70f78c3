"""Score generated answers against references, per example and for the corpus, by task type."""

from __future__ import annotations

from typing import Any, Sequence

from tuneforge.evaluate import metrics as M

ROUGE_KINDS = ("rouge1", "rouge2", "rougeL")


def detect_task(references: Sequence[str], labels: Sequence[str] | None, all_labelled: bool) -> str:
    """`label`, `json` or `text` (the caller handles raw-text-only sets as `lm`)."""
    if labels or all_labelled:
        return "label"
    if M.is_json_task(list(references)):
        return "json"
    if M.infer_labels(list(references)):
        return "label"
    return "text"


def score_generations(
    predictions: Sequence[str],
    references: Sequence[str],
    wanted: Sequence[str],
    labels: Sequence[str] | None = None,
) -> tuple[dict[str, float], list[dict[str, float]], dict[str, Any]]:
    """(corpus metrics, per-example scores, extras such as the confusion matrix and mapped labels)."""
    preds, refs = list(predictions), list(references)
    per_example: list[dict[str, float]] = [{} for _ in preds]
    corpus: dict[str, float] = {}
    extras: dict[str, Any] = {}

    for name, fn in (("exact_match", M.exact_match), ("normalized_exact_match", M.normalized_exact_match)):
        if name in wanted:
            _per_example(per_example, name, [fn(p, r) for p, r in zip(preds, refs)], corpus)

    if "bleu" in wanted:
        corpus["bleu"] = M.corpus_bleu(preds, refs)  # corpus BLEU, not the mean of sentence BLEUs
        for row, p, r in zip(per_example, preds, refs):
            row["bleu"] = M.sentence_bleu(p, r)
    if "chrf" in wanted:
        corpus["chrf"] = M.corpus_chrf(preds, refs)
        for row, p, r in zip(per_example, preds, refs):
            row["chrf"] = M.sentence_chrf(p, r)
    kinds = [k for k in ROUGE_KINDS if k in wanted]
    if kinds:
        rows = M.rouge_scores(preds, refs, kinds)
        for kind in kinds:
            _per_example(per_example, kind, [r[kind] for r in rows], corpus)

    if labels and any(m in wanted for m in (*M.LABEL_METRICS, "bias")):  # the audit needs mapped labels
        mapped = [M.map_to_label(p, list(labels)) for p in preds]
        result = M.label_metrics(mapped, refs, list(labels))
        for name in M.LABEL_METRICS:
            if name in wanted:
                corpus[name] = result[name]
        extras["confusion"] = result["confusion"]
        extras["predicted_labels"] = mapped
        for row, m, r in zip(per_example, mapped, refs):
            row["correct"] = float(m == r)

    json_wanted = [m for m in M.JSON_METRICS if m in wanted]
    if json_wanted:
        rows = [M.json_scores(p, r) for p, r in zip(preds, refs)]
        for name in json_wanted:
            _per_example(per_example, name, [r[name] for r in rows], corpus)
    return corpus, per_example, extras


def _per_example(per_example: list[dict[str, float]], name: str, values: list[float], corpus: dict) -> None:
    for row, value in zip(per_example, values):
        row[name] = value
    corpus[name] = sum(values) / len(values) if values else float("nan")


def example_quality(scores: dict[str, float]) -> float:
    """One number per example, in [0, 1] when generated (higher = better): best/worst examples, bias audit."""
    scale = {"rougeL": 100.0, "chrf": 100.0, "bleu": 100.0}  # these are reported x100, like sacrebleu
    for key in ("correct", "json_field_accuracy", "rougeL", "chrf", "bleu", "normalized_exact_match",
                "exact_match", "judge"):
        if key in scores:
            return float(scores[key]) / scale.get(key, 1.0)
    if "loss" in scores:
        return -float(scores["loss"])
    return 0.0


def primary_metric(task: str, metrics: dict[str, float]) -> str | None:
    """The metric a comparison ranks by when the user does not choose one."""
    preferences = {
        "label": ("accuracy", "macro_f1", "label_accuracy"),
        "json": ("json_field_accuracy", "json_exact_match", "json_valid"),
        "text": ("rougeL", "chrf", "bleu", "normalized_exact_match", "exact_match"),
    }.get(task, ())
    for name in (*preferences, "judge_score", "exact_match", "loss"):
        if name in metrics:
            return name
    return next(iter(metrics), None)
