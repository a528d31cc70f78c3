"""Bookkeeping shared by the steps: the items in flight and the quarantine ledger.

Nothing is lost silently: every removal and every modification is recorded with its step, reason and the
original record, and each step's counts are checked (in = out + removed).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.data.records import Record, record_to_dict


class CountMismatch(RuntimeError):
    """An internal invariant broke: a step lost or invented examples. Always a bug, never user error."""


@dataclass
class Item:
    uid: int  # position in the input, stable through the pipeline
    record: Record
    split: str = "auto"  # a split the user brought (source split=train/val/test), else auto
    source: str = ""


def where(item: Item) -> dict[str, Any]:
    meta = getattr(item.record, "meta", {}) or {}
    return {"uid": item.uid, "source": meta.get("source", item.source), "line": meta.get("line")}


@dataclass
class StepCounts:
    step: str
    n_in: int
    n_out: int = 0
    removed: Counter = field(default_factory=Counter)
    modified: Counter = field(default_factory=Counter)
    skipped: str | None = None  # why the step did not run

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step, "in": self.n_in, "out": self.n_out,
            "removed": sum(self.removed.values()), "modified": sum(self.modified.values()),
            "removed_by_reason": dict(self.removed), "modified_by_reason": dict(self.modified),
            "skipped": self.skipped,
        }


class Ledger:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.steps: list[StepCounts] = []
        self._current: StepCounts | None = None

    def begin(self, step: str, items: list[Item]) -> StepCounts:
        self._current = StepCounts(step, len(items))
        self.steps.append(self._current)
        return self._current

    def end(self, items: list[Item]) -> list[Item]:
        cur = self._current
        assert cur is not None
        cur.n_out = len(items)
        removed = sum(cur.removed.values())
        if cur.n_in != cur.n_out + removed:
            raise CountMismatch(
                f"step {cur.step}: {cur.n_in} in != {cur.n_out} out + {removed} quarantined (a bug in tuneforge)"
            )
        self._current = None
        return items

    def skip(self, step: str, items: list[Item], why: str) -> list[Item]:
        self.begin(step, items).skipped = why
        return self.end(items)

    def remove(self, item: Item, reason: str, detail: str = "", **extra: Any) -> None:
        assert self._current is not None
        self._current.removed[reason] += 1
        self.entries.append({
            "step": self._current.step, "action": "removed", "reason": reason, "detail": detail,
            **where(item), **extra, "original": record_to_dict(item.record),
        })

    def modify(self, item: Item, original: Record, reason: str, detail: str = "", **extra: Any) -> None:
        assert self._current is not None
        self._current.modified[reason] += 1
        self.entries.append({
            "step": self._current.step, "action": "modified", "reason": reason, "detail": detail,
            **where(item), **extra, "original": record_to_dict(original), "changed": record_to_dict(item.record),
        })

    def removed_total(self) -> int:
        return sum(sum(s.removed.values()) for s in self.steps)

    def write(self, path: Path) -> Path:
        from tuneforge.data.io import write_jsonl

        return write_jsonl(self.entries, path)
