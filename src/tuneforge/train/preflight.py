"""Before training: split the data, refuse what cannot work, and show what is about to happen.

The summary has examples/tokens/truncations per split, trainable parameters, a time estimate measured
on a few real optimizer steps (whose effect is then undone), and a peak-memory estimate.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from rich.console import Group
from rich.table import Table

from tuneforge.config.recipe import Recipe
from tuneforge.config.sections import DataSource
from tuneforge.data.issues import ReadResult, RowIssue, write_issues
from tuneforge.data.records import Conversation, Record, Text
from tuneforge.errors import DataError
from tuneforge.train import checkpoint as ckpt
from tuneforge.train.methods import unique_parameters

SPLITS = ("train", "val", "test")


@dataclass
class Splits:
    train: list[Record] = field(default_factory=list)
    val: list[Record] = field(default_factory=list)
    test: list[Record] = field(default_factory=list)

    def __getitem__(self, name: str) -> list[Record]:
        return getattr(self, name)


def split_records(results: list[ReadResult], sources: list[DataSource], val_ratio: float,
                  test_ratio: float, seed: int) -> Splits:
    """Sources with an explicit `split` go there; the rest is pooled and split by the ratios with `seed`.

    A ratio is skipped when a source already provides that split, so an explicit val file is not diluted.
    """
    splits = Splits()
    pool: list[Record] = []
    for i, result in enumerate(results):
        which = sources[i].split if i < len(sources) else "auto"
        (pool if which == "auto" else splits[which]).extend(result.records)
    rng = random.Random(seed)
    order = list(range(len(pool)))
    rng.shuffle(order)
    n_val = int(round(len(pool) * val_ratio)) if not splits.val else 0
    n_test = int(round(len(pool) * test_ratio)) if not splits.test else 0
    if val_ratio > 0 and not splits.val and len(pool) >= 10:
        n_val = max(n_val, 1)
    splits.test.extend(pool[i] for i in order[:n_test])
    splits.val.extend(pool[i] for i in order[n_test:n_test + n_val])
    splits.train.extend(pool[i] for i in order[n_test + n_val:])
    return splits


def check_record_kinds(splits: Splits, objective: str) -> None:
    want = Text if objective == "pretrain" else Conversation
    for name in SPLITS:
        records = splits[name]
        if objective in ("pretrain", "multitask"):  # multitask may mix raw-text tasks with chat tasks
            bad = [r for r in records if not isinstance(r, (Text, Conversation))]
        else:
            bad = [r for r in records if not isinstance(r, want)]
        if bad:
            kind = type(bad[0]).__name__
            src = bad[0].meta.get("source", "?") if hasattr(bad[0], "meta") else "?"
            hint = " (raw text: set method.objective=pretrain)" if kind == "Text" else ""
            hint = " (preference pairs: set method.objective=dpo)" if kind == "Preference" else hint
            raise DataError(
                f"{src}: method.objective={objective} trains on {want.__name__.lower()} records, "
                f"got {len(bad)} {kind.lower()} record(s) in the {name} split{hint}"
            )


def check_usable(n_train: int, n_val: int, recipe: Recipe, rejected: list[RowIssue] | None = None,
                 dropped_no_labels: int = 0, rejected_path: Path | None = None) -> None:
    """Refuse too little data, saying why rows went missing: the rejected rows (written with their reason
    to `rejected_path`, by default <output_dir>/<name>-rejected.jsonl for callers without a run folder yet)
    and the examples whose answer lies beyond cutoff_len."""
    minimum = max(recipe.data.min_examples, 1)
    why = []
    if n_train < minimum:
        problem = (f"only {n_train} usable training example(s) after splitting and tokenizing; expected at "
                   f"least {minimum} (data.min_examples)")
        if dropped_no_labels:
            why.append(f"{dropped_no_labels} example(s) had no answer token within hparams.cutoff_len="
                       f"{recipe.hparams.cutoff_len} (raise it, or shorten the prompts)")
    elif recipe.hparams.early_stopping_patience and n_val == 0:
        problem = ("early stopping is on (hparams.early_stopping_patience) but the validation split is empty; "
                   "set data.val_ratio > 0, give a source with split: val, or turn early stopping off")
    else:
        return
    if rejected:  # the run stops here, so the rows it refused are filed now
        path = write_issues(rejected, rejected_path or Path(recipe.output_dir) / f"{recipe.name}-rejected.jsonl")
        why.append(f"{len(rejected)} row(s) were rejected, e.g. {rejected[0]}; all of them with their "
                   f"reason in {path}")
    elif n_train < minimum and not why:
        why.append("Add data, or check rejected rows with `tuneforge data inspect`")
    raise DataError(f"{problem}. {'; '.join(why)}" if why else problem)


def measure_step_time(model: torch.nn.Module, run_step: Callable[[], None], n_steps: int) -> float | None:
    """Seconds per optimizer step measured on `n_steps` real steps, then undone: trainable weights and RNG
    states are put back (the caller's optimizer is a throwaway), so the probe does not change the result.
    With 2+ steps the first is left out: first-call allocations and kernel selection are not representative."""
    if n_steps <= 0:
        return None
    saved = {k: v.clone() for k, v in ckpt.trainable_state(model).items()}
    rng_json, rng_tensors = ckpt.capture_rng()
    times = []
    try:
        for _ in range(n_steps):
            start = time.perf_counter()
            run_step()
            times.append(time.perf_counter() - start)
    finally:
        ckpt.load_trainable_state(model, saved)
        model.zero_grad(set_to_none=True)
        ckpt.restore_rng(rng_json, rng_tensors)
    timed = times[1:] or times
    return sum(timed) / len(timed)


def estimate_peak_memory(model: torch.nn.Module, optimizer_name: str, batch_size: int,
                         seq_len: int, gradient_checkpointing: bool) -> int:
    """Bytes: weights + gradients + optimizer state + activations (a rule of thumb per layer)."""
    weights = trainable = 0
    for p in unique_parameters(model):
        weights += p.numel() * p.element_size()
        if p.requires_grad:
            trainable += p.numel() * 4
    states = {"adamw": 2, "adam": 2, "rmsprop": 2, "sgd": 1, "adafactor": 1}.get(optimizer_name, 2)
    config = getattr(model, "config", None)
    hidden = getattr(config, "hidden_size", 768)
    layers = getattr(config, "num_hidden_layers", 12)
    # ~34 hidden-sized fp32 tensors kept per token per layer (attention + MLP); 2 with checkpointing.
    per_layer = 2 if gradient_checkpointing else 34
    activations = batch_size * seq_len * hidden * layers * per_layer * 4
    return int(weights + trainable * (1 + states) + activations)


def summary_table(stats: dict[str, dict[str, Any]], extra: dict[str, str]) -> Group:
    table = Table(title="pre-flight", show_header=True, header_style="bold", title_justify="left")
    table.add_column("split")
    for col in ("examples", "tokens", "trained tokens", "truncated", "dropped"):
        table.add_column(col, justify="right")
    for name in SPLITS:
        s = stats.get(name)
        if not s:
            continue
        table.add_row(name, *(f"{s.get(k, 0):,}" for k in
                              ("examples", "tokens", "label_tokens", "truncated", "dropped_no_labels")))
    facts = Table(show_header=False, box=None, padding=(0, 1))
    facts.add_column(style="dim")
    facts.add_column()
    for key, value in extra.items():
        facts.add_row(key, value)
    return Group(table, facts)


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def format_seconds(s: float) -> str:
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"
