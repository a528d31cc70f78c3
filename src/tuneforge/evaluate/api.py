"""`evaluate_model`: one model on one test set -> metrics, per-example outputs, calibration, bias audit.

A notebook calls this directly; `tuneforge eval` is a thin layer over it and `compare_models` calls it once
per candidate.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from tuneforge.data.records import Labelled, Record
from tuneforge.errors import ConfigError
from tuneforge.evaluate import metrics as M
from tuneforge.evaluate.bias import DEFAULT_THRESHOLD, audit
from tuneforge.evaluate.calibration import calibrate, load_calibration, save_calibration
from tuneforge.evaluate.examples import EvalExample, to_examples
from tuneforge.evaluate.generate import GenerationSettings, generate_answers
from tuneforge.evaluate.judge import Judge, JudgeConfig, summarize
from tuneforge.evaluate.likelihood import (
    classifier_labels,
    classifier_logits,
    corpus_likelihood,
    is_classifier,
    label_logprobs,
    render_for_loss,
    token_stats,
)
from tuneforge.evaluate.scoring import detect_task, example_quality, primary_metric, score_generations

GENERATION_METRICS = set(M.TEXT_METRICS) | set(M.LABEL_METRICS) | set(M.JSON_METRICS) | {"judge", "bias"}


@dataclass
class EvalResult:
    name: str
    task: str  # "text", "label", "json" or "lm" (raw text: likelihood only)
    metrics: dict[str, float]
    examples: list[dict[str, Any]]  # index, prompt, reference, prediction, scores, groups
    labels: list[str] | None = None
    confusion: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    bias: dict[str, Any] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    run_dir: str | None = None

    @property
    def primary(self) -> str | None:
        return primary_metric(self.task, self.metrics)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "task": self.task, "metrics": self.metrics, "primary_metric": self.primary,
            "labels": self.labels, "confusion": self.confusion, "calibration": self.calibration,
            "bias": self.bias, "settings": self.settings, "run_dir": self.run_dir,
            "n_examples": len(self.examples),
        }

    def save_predictions(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as fh:
            for row in self.examples:
                fh.write(json.dumps(row, ensure_ascii=False, default=_jsonable) + "\n")
        return path

    def best_and_worst(self, k: int = 3) -> tuple[list[dict], list[dict]]:
        ranked = sorted(self.examples, key=lambda row: example_quality(row["scores"]), reverse=True)
        return ranked[:k], ranked[::-1][:k]


def evaluate_model(
    model,
    tokenizer,
    records: Sequence[Record],
    metrics: Sequence[str] | None = None,
    *,
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    top_p: float = 1.0,
    batch_size: int = 8,
    labels: Sequence[str] | None = None,
    val_records: Sequence[Record] | None = None,
    calibration_temperature: float | None = None,
    cutoff_len: int = 1024,
    judge: JudgeConfig | Judge | None = None,
    bias_threshold: float = DEFAULT_THRESHOLD,
    group_field: str | None = None,
    name: str = "model",
    run_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> EvalResult:
    """Evaluate one model. `metrics` defaults to `auto` (chosen from the task type); see docs/evaluation.md."""
    say = progress or (lambda _msg: None)
    examples = to_examples(records, group_field)
    classifier = is_classifier(model)
    if classifier and not labels:
        labels = classifier_labels(model)
    task = _task(examples, records, labels)
    wanted = M.resolve_metrics(metrics, task)
    if task == "label" and not labels:
        labels = M.infer_labels([ex.reference for ex in examples]) or sorted({ex.reference for ex in examples})
    labels = list(labels) if labels else None

    rows = [_row(ex) for ex in examples]
    corpus: dict[str, float] = {}
    if not classifier and any(m in wanted for m in M.LIKELIHOOD_METRICS):
        say("likelihood")
        corpus.update(_likelihood(model, tokenizer, examples, rows, wanted, cutoff_len, batch_size))

    chat = [ex for ex in examples if ex.prompt is not None]
    predictions: list[str] = []
    extras: dict[str, Any] = {}
    budget = _generation_budget(tokenizer, task, labels, max_new_tokens)
    if chat and any(m in GENERATION_METRICS for m in wanted):
        say("generation")
        if classifier:
            logits = classifier_logits(model, tokenizer, [_user_text(ex) for ex in chat], cutoff_len)
            predictions = [labels[i] for i in logits.argmax(-1).tolist()]
        else:
            settings = GenerationSettings(budget, temperature, top_p, batch_size)
            predictions = generate_answers(model, tokenizer, chat, settings)
        corpus.update(_score(chat, predictions, rows, wanted, labels, extras))

    calib = None
    if "calibration" in wanted and task == "label" and labels:
        say("calibration")
        calib = _calibration(
            model, tokenizer, chat, labels, val_records, calibration_temperature, run_dir, cutoff_len, batch_size
        )
        corpus["label_accuracy"] = calib.accuracy
        corpus["ece"] = calib.ece_before
        if calib.ece_after is not None:
            corpus["ece_calibrated"] = calib.ece_after

    bias = None
    if predictions and any(ex.groups for ex in chat):
        predicted = extras.get("predicted_labels", predictions)
        quality = [example_quality(rows[ex.index]["scores"]) for ex in chat]
        bias = audit([ex.groups for ex in chat], [ex.reference for ex in chat], predicted, quality,
                     labels if task == "label" else None, bias_threshold)
    elif "bias" in wanted:
        say("bias: no example carries group attributes (meta group/groups or Labelled.groups)")

    if judge is not None and predictions:
        say("judge")
        corpus.update(_judge(judge, chat, predictions, rows))

    result = EvalResult(
        name=name, task=task, metrics=corpus, examples=rows, labels=labels,
        confusion=extras.get("confusion"), calibration=calib.to_dict() if calib else None, bias=bias,
        settings={"metrics": wanted, "max_new_tokens": max_new_tokens, "max_new_tokens_used": budget,
                  "temperature": temperature, "top_p": top_p, "batch_size": batch_size, "cutoff_len": cutoff_len},
        run_dir=str(run_dir) if run_dir else None,
    )
    if calib is not None and calib.fitted_on:
        for where in (out_dir, run_dir):
            if where:
                save_calibration(calib, where)
    if out_dir:
        from tuneforge.evaluate.report import write_eval_report

        write_eval_report(result, out_dir, run_dir=run_dir)
    return result


def _task(examples: list[EvalExample], records: Sequence[Record], labels) -> str:
    chat = [ex for ex in examples if ex.prompt is not None]
    if not chat:
        return "lm"
    all_labelled = all(isinstance(r, Labelled) for r in records)
    return detect_task([ex.reference for ex in chat], labels, all_labelled)


def _row(ex: EvalExample) -> dict[str, Any]:
    return {
        "index": ex.index, "prompt": ex.prompt_display, "reference": ex.reference,
        "prediction": None, "scores": {}, "groups": ex.groups,
    }


def _generation_budget(tokenizer, task: str, labels, max_new_tokens: int) -> int:
    """A label answer never needs more than the longest label (+ slack for "Answer: ..."): capping the
    budget makes label tasks several times faster than a 128-token default."""
    if task != "label" or not labels:
        return max_new_tokens
    longest = max(len(tokenizer(lab, add_special_tokens=False)["input_ids"]) for lab in labels)
    return min(max_new_tokens, longest + 8)


def _score(chat, predictions, rows, wanted, labels, extras: dict) -> dict[str, float]:
    """Score generations; per-example scores and mapped labels go into `rows`, the confusion into `extras`."""
    scores, per_example, found = score_generations(predictions, [ex.reference for ex in chat], wanted, labels)
    extras.update(found)
    mapped = found.get("predicted_labels")
    for k, (ex, pred, sc) in enumerate(zip(chat, predictions, per_example)):
        rows[ex.index]["prediction"] = pred
        rows[ex.index]["scores"].update(sc)
        if mapped:
            rows[ex.index]["predicted_label"] = mapped[k]
    return scores


def _user_text(ex: EvalExample) -> str:
    return "\n".join(t.content for t in ex.prompt.turns if t.role == "user")


def _likelihood(model, tokenizer, examples, rows, wanted, cutoff_len, batch_size) -> dict[str, float]:
    rendered = [render_for_loss(ex, tokenizer, cutoff_len) for ex in examples]
    stats = token_stats(model, tokenizer, rendered, batch_size)
    for row, s in zip(rows, stats):
        if s.tokens:
            row["scores"]["loss"] = s.loss
            row["scores"]["token_accuracy"] = s.correct / s.tokens
    return {k: v for k, v in corpus_likelihood(stats).items() if k in wanted}


def _calibration(model, tokenizer, chat, labels, val_records, temperature, run_dir, cutoff_len, batch_size):
    index = {label: i for i, label in enumerate(labels)}

    def logits_and_targets(examples):
        keep = [ex for ex in examples if ex.reference in index]
        if is_classifier(model):
            logits = classifier_logits(model, tokenizer, [_user_text(ex) for ex in keep], cutoff_len)
        else:
            logits = label_logprobs(model, tokenizer, keep, labels, cutoff_len, batch_size)
        return logits, [index[ex.reference] for ex in keep]

    test_logits, test_targets = logits_and_targets(chat)
    if not test_targets:
        raise ConfigError("calibration needs test answers that are among the labels " + repr(labels))
    val_logits = val_targets = None
    if val_records:
        val_logits, val_targets = logits_and_targets([ex for ex in to_examples(val_records) if ex.prompt])
    elif temperature is None and run_dir is not None:
        saved = load_calibration(run_dir)  # later predictions reuse the run's fitted temperature
        temperature = float(saved["temperature"]) if saved else None
    source = "classifier-head" if is_classifier(model) else "label-logprob"
    return calibrate(test_logits, test_targets, labels, val_logits, val_targets, temperature, source)


def _judge(judge, chat, predictions, rows) -> dict[str, float]:
    judge = judge if isinstance(judge, Judge) else Judge(judge)
    prompts = [ex.prompt_display for ex in chat]
    refs = [ex.reference for ex in chat]
    if judge.config.mode == "pairwise":
        scores = judge.pairwise(prompts, refs, predictions, refs)  # win rate against the reference answer
    else:
        scores = judge.rubric(prompts, refs, predictions)
    for ex, score in zip(chat, scores):
        if score is not None:
            rows[ex.index]["scores"]["judge"] = score
    return summarize(scores)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)
