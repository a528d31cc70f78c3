"""Text classification (`method.objective: classification`): a fresh K-way head on an encoder (BERT
family) or a decoder, cross-entropy through HF's Trainer, LoRA / full / freeze as for SFT.

Data: labelled rows (`{"text": ..., "label": ..., "groups": {...}}`, see docs/data-readers.md). Sources marked
`split: val` / `split: test` are used as given; otherwise the pool is split with stratification (every
class keeps its share in each split). The run reports, on the test split (or validation when there is none),
accuracy and macro-F1 next to the majority-class baseline, per-class F1, the confusion matrix, and a
per-group audit when rows carry groups.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tuneforge.config.recipe import Recipe
from tuneforge.data.issues import RowIssue
from tuneforge.data.records import Labelled
from tuneforge.errors import DataError
from tuneforge.train.runfolder import RunContext, RunResult


@dataclass
class LabelledData:
    train: list[Labelled]
    val: list[Labelled]
    test: list[Labelled]
    labels: list[str]
    rejected: list[RowIssue] = field(default_factory=list)


def run(recipe: Recipe, run_ctx: RunContext) -> RunResult:
    from tuneforge.train.preference import run_trainer

    return run_trainer(recipe, run_ctx, train_classifier)


def load_labelled(recipe: Recipe) -> LabelledData:
    from tuneforge.data import read_source

    fixed: dict[str, list[Labelled]] = {"val": [], "test": []}
    pool: list[Labelled] = []
    rejected: list[RowIssue] = []
    for source in recipe.data.sources:
        result = read_source(source, variables=recipe.data.variables, strict=recipe.data.strict)
        rejected += result.rejected
        for record in result.records:
            if not isinstance(record, Labelled):
                rejected.append(RowIssue.of_record(record, result.source, "wrong_type", "label",
                                                   "expected a labelled row (text + label), got "
                                                   f"{type(record).__name__}; set format: labelled"))
                continue
            fixed.get(source.split, pool).append(record)
    train, val, test = _split(pool, recipe, bool(fixed["val"]), bool(fixed["test"]))
    val, test = fixed["val"] or val, fixed["test"] or test
    labels = sorted({r.label for r in train})
    if len(labels) < 2 or len(train) < recipe.data.min_examples:
        raise DataError(f"classification needs at least {recipe.data.min_examples} training rows and 2 labels; "
                        f"got {len(train)} rows with labels {labels} ({len(rejected)} rows rejected)")
    val, bad_val = _known(val, labels, "val")
    test, bad_test = _known(test, labels, "test")
    return LabelledData(train, val, test, labels, rejected + bad_val + bad_test)


def _split(pool: list[Labelled], recipe: Recipe, has_val: bool, has_test: bool):
    """Stratified train/val/test split of the pool (plain random where a class is too small to stratify)."""
    from sklearn.model_selection import train_test_split

    def cut(rows: list[Labelled], ratio: float) -> tuple[list[Labelled], list[Labelled]]:
        if ratio <= 0 or len(rows) < 4:
            return rows, []
        counts = Counter(r.label for r in rows)
        stratify = [r.label for r in rows] if min(counts.values()) >= 2 else None
        size = max(ratio, len(counts) / len(rows)) if stratify else ratio
        keep, held = train_test_split(rows, test_size=size, random_state=recipe.seed, stratify=stratify)
        return list(keep), list(held)

    test_ratio = 0.0 if has_test else recipe.data.test_ratio
    rest, test = cut(pool, test_ratio)
    val_ratio = 0.0 if has_val else recipe.data.val_ratio / max(1e-9, 1 - test_ratio)
    train, val = cut(rest, min(val_ratio, 0.5))
    return train, val, test


def _known(rows: list[Labelled], labels: list[str], split: str) -> tuple[list[Labelled], list[RowIssue]]:
    """Held-out rows whose label never occurs in training cannot be predicted: rejected with the reason."""
    kept, bad = [], []
    for row in rows:
        if row.label in labels:
            kept.append(row)
        else:
            bad.append(RowIssue.of_record(row, split, "unseen_label", "label",
                                          f"{split} label {row.label!r} is not among the training labels"))
    return kept, bad


def train_classifier(recipe: Recipe, run: RunContext) -> dict[str, Any]:
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from tuneforge.train.preference import common

    data = load_labelled(recipe)
    recipe, chosen = common.resolve_hparams(recipe, len(data.train))
    model, tokenizer = common.load_sequence_classifier(recipe, len(data.labels), data.labels)
    index = {label: i for i, label in enumerate(data.labels)}
    encode = _encoder(tokenizer, index, recipe.hparams.cutoff_len)
    args = common.trainer_args(TrainingArguments, recipe, run, bool(data.val), remove_unused_columns=False)
    trainer = Trainer(model=model, args=args, train_dataset=encode(data.train),
                      eval_dataset=encode(data.val) if data.val else None,
                      data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=_val_metrics)
    common.per_batch_mean_loss(trainer)
    common.quiet_trainer(trainer)
    trainer.add_callback(common.monitor_callback(run))
    output = trainer.train(resume_from_checkpoint=common.resume_checkpoint(recipe, run))
    held_name, held = ("test", data.test) if data.test else ("val", data.val)
    report = held_out_report(trainer, encode, held, data) if held else {}
    final = common.save_final(trainer, tokenizer, run)
    val_loss = trainer.evaluate().get("eval_loss") if data.val else None
    return {
        "objective": "classification", "labels": data.labels,
        "train_examples": len(data.train), "val_examples": len(data.val), "test_examples": len(data.test),
        "rejected": len(data.rejected), "train_loss": float(output.training_loss),
        "steps": int(output.global_step), "val_loss": val_loss, "held_out": held_name, **report,
        "auto": chosen, "final_dir": str(final), "rejected_rows": data.rejected, "recipe": recipe,
        "stopped": trainer.state.global_step < trainer.state.max_steps,
    }


def _encoder(tokenizer, index: dict[str, int], cutoff_len: int):
    from datasets import Dataset

    def encode(rows: list[Labelled]):
        enc = tokenizer([r.text for r in rows], truncation=True, max_length=cutoff_len)
        return Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                                  "labels": [index[r.label] for r in rows]})
    return encode


def _val_metrics(prediction) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    predicted = prediction.predictions.argmax(-1)
    return {"accuracy": float(accuracy_score(prediction.label_ids, predicted)),
            "macro_f1": float(f1_score(prediction.label_ids, predicted, average="macro"))}


def held_out_report(trainer, encode, rows: list[Labelled], data: LabelledData) -> dict[str, Any]:
    """Accuracy / macro-F1 vs the majority-class baseline, per-class F1, confusion matrix, group audit."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    from tuneforge.evaluate.bias import audit

    logits = trainer.predict(encode(rows)).predictions
    predicted = [data.labels[i] for i in logits.argmax(-1)]
    truth = [r.label for r in rows]
    majority = Counter(r.label for r in data.train).most_common(1)[0][0]
    per_class = f1_score(truth, predicted, labels=data.labels, average=None, zero_division=0)
    return {
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, labels=data.labels, average="macro", zero_division=0)),
        "majority_label": majority,
        "majority_accuracy": sum(t == majority for t in truth) / len(truth),
        "per_class_f1": {label: float(v) for label, v in zip(data.labels, per_class)},
        "confusion": confusion_matrix(truth, predicted, labels=data.labels).tolist(),
        "bias_audit": audit([r.groups for r in rows], truth, predicted, labels=data.labels),
    }
