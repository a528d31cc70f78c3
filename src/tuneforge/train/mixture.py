"""Mixing several sources (tasks) in one causal-LM training set: names, per-epoch sampling, per-task slices.

Every source is a task, named by `data.sources[i].task` or its file stem / dataset entry. Each epoch draws
`count_i` examples from task i:

* `weight` (any objective of the SFT engine): `count_i = n_i * weight_i`, so weight 2 shows every example
  twice per epoch and 0.5 shows a different half each epoch;
* `method.options.temperature: T` (multitask): T5-style temperature mixing, `rate_i ∝ n_i ** (1/T)` times the
  weight, scaled so an epoch keeps the total number of examples. T=1 is proportional, large T is close to
  equal shares: small tasks are up-sampled without letting big ones drown them.

The draw depends on (seed, epoch, task) only, so a resumed run sees the same epochs as an uninterrupted one.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tuneforge.config.sections import DataSource
from tuneforge.data.issues import ReadResult


def task_names(sources: Sequence[DataSource]) -> list[str]:
    """One unique, readable name per source; duplicates get -2, -3 ..."""
    names: list[str] = []
    for i, source in enumerate(sources):
        base = source.task or (Path(source.path).stem if source.path else source.name) or f"source{i}"
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", base)
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


def tag_tasks(results: Sequence[ReadResult], sources: Sequence[DataSource]) -> list[str]:
    """Write each record's task name into its meta (splitting keeps it) and return the names."""
    names = task_names(sources)
    for name, result in zip(names, results):
        for record in result.records:
            record.meta["task"] = name
    return names


def group_by_task(records: Sequence[Any], names: Sequence[str]) -> dict[str, list[Any]]:
    groups: dict[str, list[Any]] = {name: [] for name in names}
    for record in records:
        groups.setdefault(record.meta.get("task", names[0]), []).append(record)
    return groups


def mixing_counts(sizes: dict[str, int], weights: dict[str, float], temperature: float | None) -> dict[str, float]:
    """Examples per epoch for each task (fractional: the fraction is drawn afresh each epoch)."""
    if temperature is None:
        return {t: n * weights.get(t, 1.0) for t, n in sizes.items()}
    if temperature <= 0:
        raise ValueError(f"method.options.temperature: expected a number > 0, got {temperature}")
    raw = {t: (n ** (1.0 / temperature)) * weights.get(t, 1.0) if n else 0.0 for t, n in sizes.items()}
    total_raw, total = sum(raw.values()), sum(sizes.values())
    return {t: total * r / total_raw if total_raw else 0.0 for t, r in raw.items()}


@dataclass
class TaskSlices:
    """Where each task's examples sit in a concatenated example list."""

    spans: dict[str, tuple[int, int]] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        return {t: end - start for t, (start, end) in self.spans.items()}


class EpochSampler:
    """Callable `epoch -> example indices` drawing `counts[task]` examples of each task that epoch.

    Whole passes repeat every example; the fractional remainder is a sample without replacement, so no example
    is shown twice more often than another in the same epoch."""

    def __init__(self, slices: TaskSlices, counts: dict[str, float], seed: int):
        self.slices, self.counts, self.seed = slices, counts, seed

    def __call__(self, epoch: int) -> list[int]:
        indices: list[int] = []
        for task, (start, end) in self.slices.spans.items():
            n, want = end - start, self.counts.get(task, float(end - start))
            if n == 0 or want <= 0:
                continue
            whole, rest = divmod(want, n)
            span = list(range(start, end))
            indices += span * int(whole)
            rng = random.Random(f"{self.seed}:{epoch}:{task}")
            indices += rng.sample(span, int(round(rest)))
        return indices

    def is_identity(self) -> bool:
        return all(abs(self.counts.get(t, n) - n) < 1e-9 for t, n in self.slices.sizes().items())


def describe_mixture(slices: TaskSlices, counts: dict[str, float]) -> str:
    """'qa 320 -> 320, chat 40 -> 160 (x4.0)': what one epoch holds per task."""
    parts = []
    for task, n in slices.sizes().items():
        want = counts.get(task, n)
        factor = f" (x{want / n:.2g})" if n and abs(want - n) > 1e-9 else ""
        parts.append(f"{task} {n:,} -> {round(want):,}{factor}")
    return ", ".join(parts)
