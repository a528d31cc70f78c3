"""Tasks in the SFT engine: every data source is a task (see mixture.py for how epochs are drawn).

For `sft` / `pretrain` this only honours `data.sources[i].weight`. `method.objective: multitask` adds what a
multi-task run needs to be judged per task:

* temperature mixing (`method.options.temperature`), so small tasks are not drowned by big ones;
* validation loss per task in metrics.jsonl (`val_loss.<task>`), and the run's `val_loss` (early stopping,
  best checkpoint) as the macro mean over tasks by default (`method.options.val_average: macro | micro`),
  so one large task cannot hide another getting worse;
* before/after on the test split per task, each with its own metrics (`eval.metrics: [auto]` picks them
  from the task's answers: JSON, labels or free text), and one report per task under `eval/<task>/`.

Sources may mix conversations and raw text: text tasks train on every token, conversations on their answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tuneforge.config.recipe import Recipe
from tuneforge.train.methods import method_options
from tuneforge.train.mixture import EpochSampler, TaskSlices, group_by_task, mixing_counts, task_names


class MultitaskOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(None, gt=0, description="T5-style mixing: rate ∝ n ** (1/T)")
    val_average: Literal["macro", "micro"] = "macro"


def parse_options(recipe: Recipe) -> MultitaskOptions:
    if recipe.method.objective != "multitask":
        return MultitaskOptions()
    return method_options(recipe.method, MultitaskOptions)


@dataclass
class TaskPlan:
    names: list[str]
    slices: dict[str, TaskSlices] = field(default_factory=dict)  # split -> where each task's examples are
    counts: dict[str, float] = field(default_factory=dict)  # training examples per epoch, per task
    per_task: bool = False  # multitask: validation and test reported per task
    val_average: str = "micro"

    def sampler(self, seed: int) -> EpochSampler | None:
        sampler = EpochSampler(self.slices["train"], self.counts, seed)
        return None if sampler.is_identity() else sampler


def tokenize_by_task(splits, tokenizer, recipe: Recipe, cache) -> tuple[dict[str, Any], TaskPlan]:
    """Tokenize each split task by task (cached per task) and plan the training mixture."""
    from tuneforge.train.tokcache import TokenizedDataset, tokenize_dataset

    options = parse_options(recipe)
    names = task_names(recipe.data.sources)
    loss_on = "all" if recipe.method.objective == "pretrain" else recipe.hparams.loss_on
    plan = TaskPlan(names, per_task=recipe.method.objective == "multitask", val_average=options.val_average)
    datasets: dict[str, Any] = {}
    for split in ("train", "val", "test"):
        examples, stats, slices = [], {}, TaskSlices()
        for task, records in group_by_task(splits[split], names).items():
            part = (tokenize_dataset(records, tokenizer, recipe.hparams.cutoff_len, loss_on, cache) if records
                    else TokenizedDataset([], {"examples": 0}))
            slices.spans[task] = (len(examples), len(examples) + len(part.examples))
            examples += part.examples
            for key, value in part.stats.items():
                stats[key] = stats.get(key, 0) + value
        datasets[split] = TokenizedDataset(examples, stats)
        plan.slices[split] = slices
    weights = {name: s.weight for name, s in zip(names, recipe.data.sources)}
    plan.counts = mixing_counts(plan.slices["train"].sizes(), weights, options.temperature)
    return datasets, plan


def val_groups(plan: TaskPlan, examples, batch_size: int, seed: int, pad_id: int, rank: int = 0,
               world: int = 1) -> dict[str, list]:
    """Validation batches per task (multitask) or one group of all of them (this process's share of each)."""
    from tuneforge.train.batching import LengthGroupedBatcher

    def batches(part):
        return list(LengthGroupedBatcher(part, batch_size, seed, pad_id, rank=rank, world=world).batches(0)) \
            if part else []

    if not plan.per_task:
        return {"all": batches(examples)} if examples else {}
    spans = plan.slices["val"].spans
    groups = {task: batches(examples[start:end]) for task, (start, end) in spans.items()}
    return {task: b for task, b in groups.items() if b}


def combine_val(sums: dict[str, tuple[float, int, int]], average: str) -> dict[str, float]:
    """Per-task (loss sum, tokens, correct) -> run metrics; `val_loss` is the macro or micro mean."""
    import math

    def metrics(loss_sum: float, tokens: int, correct: int, suffix: str = "") -> dict[str, float]:
        loss = loss_sum / max(tokens, 1)
        return {f"val_loss{suffix}": loss, f"val_accuracy{suffix}": correct / max(tokens, 1),
                f"val_perplexity{suffix}": math.exp(min(loss, 50.0))}

    total = [sum(s[i] for s in sums.values()) for i in range(3)]
    out = metrics(*total)
    if list(sums) == ["all"]:
        return out
    for task, s in sums.items():
        out.update(metrics(*s, suffix=f".{task}"))
    out["val_loss_micro"] = out["val_loss"]
    if average == "macro":
        out["val_loss"] = sum(out[f"val_loss.{task}"] for task in sums) / len(sums)
        out["val_perplexity"] = math.exp(min(out["val_loss"], 50.0))
    return out


def test_by_task(test_records, names: list[str]) -> dict[str, list]:
    return {task: records for task, records in group_by_task(test_records, names).items() if records}
