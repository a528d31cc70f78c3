"""Scores for generated answers: text overlap, labels and JSON.

Every score stands on the reference implementation of the field (sacrebleu, rouge-score, scikit-learn);
this module only decides which metric applies to which task and keeps per-example scores for the report.
"""

from __future__ import annotations

import difflib
import json
import re
import string
import unicodedata
from typing import Any, Iterable

from tuneforge.errors import ConfigError

LIKELIHOOD_METRICS = ("loss", "perplexity", "token_accuracy")
TEXT_METRICS = ("exact_match", "normalized_exact_match", "bleu", "chrf", "rouge1", "rouge2", "rougeL")
LABEL_METRICS = ("accuracy", "macro_f1")
JSON_METRICS = ("json_valid", "json_field_accuracy", "json_exact_match")
EXTRA_METRICS = ("calibration", "bias", "judge")
ALL_METRICS = LIKELIHOOD_METRICS + TEXT_METRICS + LABEL_METRICS + JSON_METRICS + EXTRA_METRICS
# Group names a user may pass instead of single metrics.
METRIC_GROUPS = {
    "auto": (),  # resolved from the task type
    "likelihood": LIKELIHOOD_METRICS,
    "text": TEXT_METRICS,
    "rouge": ("rouge1", "rouge2", "rougeL"),
    "label": LABEL_METRICS,
    "json": JSON_METRICS,
}
# Metrics where lower is better (everything else: higher is better).
LOWER_IS_BETTER = {"loss", "perplexity", "ece"}

OTHER_LABEL = "<other>"


def resolve_metrics(names: Iterable[str] | None, task: str) -> list[str]:
    """Expand groups and `auto`, check names (did-you-mean), keep the user's order, drop duplicates."""
    names = list(names or ["auto"])
    out: list[str] = []
    for raw in names:
        for name in (n.strip() for n in raw.split(",")):
            if not name:
                continue
            if name == "auto":
                out.extend(default_metrics(task))
            elif name in METRIC_GROUPS:
                out.extend(METRIC_GROUPS[name])
            elif name in ALL_METRICS:
                out.append(name)
            else:
                raise ConfigError(unknown_metric_message(name))
    return list(dict.fromkeys(out))


def check_metric_names(names: Iterable[str], extra: Iterable[str] = ()) -> None:
    """Raise ValueError (did-you-mean) for a name that is neither a metric nor a group."""
    known = set(ALL_METRICS) | set(METRIC_GROUPS) | set(extra)
    for raw in names:
        for name in filter(None, (n.strip() for n in raw.split(","))):
            if name not in known:
                raise ValueError(unknown_metric_message(name))


def unknown_metric_message(name: str) -> str:
    choices = list(ALL_METRICS) + list(METRIC_GROUPS)
    same_case = [c for c in choices if c.lower() == name.lower()]  # "rougel" -> "rougeL"
    close = same_case or difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown metric {name!r}{hint} (choose from: {', '.join(choices)})"


def default_metrics(task: str) -> list[str]:
    base = list(LIKELIHOOD_METRICS) + ["exact_match", "normalized_exact_match"]
    if task == "label":
        return base + list(LABEL_METRICS)
    if task == "json":
        return base + list(JSON_METRICS)
    if task == "text":
        return base + ["bleu", "chrf", "rouge1", "rouge2", "rougeL"]
    return list(LIKELIHOOD_METRICS)  # raw text: no prompt to answer


# --------------------------------------------------------------------------- exact match


def normalize_answer(text: str) -> str:
    """SQuAD-style normalization: NFKC, lower case, no punctuation/articles, single spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    return float(prediction.strip() == reference.strip())


def normalized_exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


# --------------------------------------------------------------------------- text overlap


def corpus_bleu(predictions: list[str], references: list[str]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_bleu(predictions, [references]).score)


def corpus_chrf(predictions: list[str], references: list[str]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_chrf(predictions, [references]).score)


def sentence_bleu(prediction: str, reference: str) -> float:
    import sacrebleu

    return float(sacrebleu.sentence_bleu(prediction, [reference]).score)


def sentence_chrf(prediction: str, reference: str) -> float:
    import sacrebleu

    return float(sacrebleu.sentence_chrf(prediction, [reference]).score)


def rouge_scores(predictions: list[str], references: list[str], kinds: list[str]) -> list[dict[str, float]]:
    """Per-example ROUGE F-measures (x100, like sacrebleu's scale) for the requested kinds."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(kinds, use_stemmer=True)
    return [
        {k: 100.0 * s.fmeasure for k, s in scorer.score(ref, pred).items()}
        for pred, ref in zip(predictions, references)
    ]


# --------------------------------------------------------------------------- labels


def infer_labels(references: list[str]) -> list[str] | None:
    """The answers look like labels when a few short strings repeat across the set."""
    n = len(references)
    distinct = sorted({r.strip() for r in references})
    if n < 4 or len(distinct) < 2:
        return None
    short = all(len(r.split()) <= 3 for r in distinct)
    if short and len(distinct) <= min(20, n // 2):
        return distinct
    return None


def map_to_label(prediction: str, labels: list[str]) -> str:
    """Map free text to a label: exact, then normalized, then the label the answer starts with."""
    pred = prediction.strip()
    if pred in labels:
        return pred
    norm = normalize_answer(pred)
    by_norm = {normalize_answer(lab): lab for lab in labels}
    if norm in by_norm:
        return by_norm[norm]
    # Longest label first so "very positive" wins over "positive".
    for key in sorted(by_norm, key=len, reverse=True):
        if key and (norm.startswith(key + " ") or norm == key):
            return by_norm[key]
    # "The sentiment is positive." names exactly one label somewhere: take it; two or more is ambiguous.
    words = f" {norm} "
    named = [key for key in by_norm if key and f" {key} " in words]
    named = [k for k in named if not any(k != o and k in o for o in named)]  # drop labels inside longer ones
    return by_norm[named[0]] if len(named) == 1 else OTHER_LABEL


def label_metrics(predicted: list[str], references: list[str], labels: list[str]) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    axis = list(labels) + ([OTHER_LABEL] if OTHER_LABEL in predicted else [])
    return {
        "accuracy": float(accuracy_score(references, predicted)),
        # Macro-F1 over the label set only: "<other>" is a wrong answer, not a class to average.
        "macro_f1": float(f1_score(references, predicted, labels=list(labels), average="macro", zero_division=0)),
        "confusion": {
            "labels": axis,
            "matrix": confusion_matrix(references, predicted, labels=axis).tolist(),
        },
    }


# --------------------------------------------------------------------------- JSON


def first_json_object(text: str) -> dict | None:
    """The first JSON object in the text (models often wrap it in prose or ``` fences)."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def json_scores(prediction: str, reference: str) -> dict[str, float]:
    """Validity, share of reference fields reproduced exactly, and whole-object equality."""
    pred = first_json_object(prediction)
    ref = first_json_object(reference)
    if ref is None:
        ref = {}
    if pred is None:
        return {"json_valid": 0.0, "json_field_accuracy": 0.0, "json_exact_match": 0.0}
    fields = _flatten(ref)
    got = _flatten(pred)
    hits = sum(1 for key, value in fields.items() if key in got and got[key] == value)
    return {
        "json_valid": 1.0,
        "json_field_accuracy": hits / len(fields) if fields else float(not got),
        "json_exact_match": float(pred == ref),
    }


def is_json_task(references: list[str]) -> bool:
    return bool(references) and all(
        r.strip().startswith("{") and first_json_object(r) is not None for r in references
    )


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested objects become dotted keys so field accuracy credits each leaf field."""
    if isinstance(obj, dict) and obj:
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): obj}
