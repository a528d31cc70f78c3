"""Turn served completions + feedback into the next round's training files.

SFT (`sft.jsonl`, OpenAI messages): corrections, and answers rated +1 or picked among choices.
Preferences (`preferences.jsonl`, TRL prompt/chosen/rejected): correction > original answer,
picked choice > the other choices, and +1 answers > -1 answers to the same prompt.
Both are deduplicated within themselves and against previous training files by a hash of the
normalized prompt and answer(s), so a round never re-teaches what the last one saw.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from tuneforge.data.records import Conversation, Preference, Turn
from tuneforge.serve.feedback import read_all

MAX_PAIRS_PER_PROMPT = 4  # +1 x -1 answers grow quadratically; a few pairs carry the signal


@dataclass
class ExportSummary:
    completions: int = 0
    feedback: int = 0
    sft: int = 0
    preferences: int = 0
    duplicates_previous: int = 0
    duplicates_within: int = 0
    orphan_feedback: int = 0  # feedback whose completion is not in the log
    files: dict[str, str] = field(default_factory=dict)


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def record_key(prompt: str, *answers: str) -> str:
    joined = "\x1f".join(normalize(t) for t in (prompt, *answers))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()


def conversation_from_messages(messages: list[dict[str, str]]) -> Conversation:
    system = "\n".join(m["content"] for m in messages if m["role"] == "system") or None
    turns = [Turn(role=m["role"], content=m["content"]) for m in messages if m["role"] != "system"]
    return Conversation(turns=turns, system=system)


def previous_keys(paths: Iterable[str | Path]) -> set[str]:
    """Keys of every SFT example and preference pair in earlier training files (any readable format)."""
    from tuneforge.data import read_source

    keys: set[str] = set()
    for path in paths:
        for rec in read_source(path).records:
            if isinstance(rec, Conversation):
                keys.add(record_key(rec.prompt_text(), rec.answer_text()))
            elif isinstance(rec, Preference):
                prompt = rec.prompt.prompt_text()
                keys.add(record_key(prompt, rec.chosen, rec.rejected))
                keys.add(record_key(prompt, rec.chosen))
    return keys


class _Collector:
    def __init__(self, seen_before: set[str], summary: ExportSummary):
        self.seen_before, self.summary = seen_before, summary
        self.seen: set[str] = set()
        self.sft: list[Conversation] = []
        self.prefs: list[Preference] = []

    def _new(self, key: str) -> bool:
        if key in self.seen_before:
            self.summary.duplicates_previous += 1
            return False
        if key in self.seen:
            self.summary.duplicates_within += 1
            return False
        self.seen.add(key)
        return True

    def add_sft(self, prompt: Conversation, answer: str, meta: dict) -> None:
        if answer.strip() and self._new(record_key(prompt.prompt_text(), answer)):
            turns = [*prompt.turns, Turn(role="assistant", content=answer)]
            self.sft.append(Conversation(turns=turns, system=prompt.system, meta=dict(meta)))

    def add_pref(self, prompt: Conversation, chosen: str, rejected: str, meta: dict) -> None:
        if not chosen.strip() or normalize(chosen) == normalize(rejected):
            return
        if self._new(record_key(prompt.prompt_text(), chosen, rejected)):
            self.prefs.append(Preference(prompt=prompt, chosen=chosen, rejected=rejected, meta=dict(meta)))


def export_feedback(db: str | Path, out_dir: str | Path, previous: Iterable[str | Path] = ()) -> ExportSummary:
    """Write `sft.jsonl` and `preferences.jsonl` to `out_dir`; return the counts."""
    from tuneforge.data import write_records

    completions, feedback = read_all(db)
    summary = ExportSummary(completions=len(completions), feedback=len(feedback))
    by_id = {c["id"]: c for c in completions}
    out = _Collector(previous_keys(previous), summary)
    rated: dict[str, dict[int, list[tuple[Conversation, str, str]]]] = defaultdict(lambda: defaultdict(list))
    for fb in feedback:
        done = by_id.get(fb["response_id"])
        if done is None:
            summary.orphan_feedback += 1
            continue
        prompt = conversation_from_messages(done["messages"])
        outputs: list[str] = done["outputs"]
        picked = fb["choice"] if fb["choice"] is not None and fb["choice"] < len(outputs) else 0
        meta = {"response_id": fb["response_id"], "feedback_id": fb["id"], "model": done["model"]}
        if fb["correction"]:
            out.add_sft(prompt, fb["correction"], {**meta, "origin": "correction"})
            out.add_pref(prompt, fb["correction"], outputs[picked], {**meta, "origin": "correction"})
        elif fb["choice"] is not None and fb["rating"] != -1:
            out.add_sft(prompt, outputs[picked], {**meta, "origin": "choice"})
        elif fb["rating"] == 1:
            out.add_sft(prompt, outputs[picked], {**meta, "origin": "rating"})
        if fb["choice"] is not None:
            for i, other in enumerate(outputs):
                if i != picked:
                    out.add_pref(prompt, outputs[picked], other, {**meta, "origin": "choice"})
        if fb["rating"] in (1, -1):
            rated[record_key(prompt.prompt_text())][fb["rating"]].append((prompt, outputs[picked], fb["response_id"]))
    for groups in rated.values():
        pairs = [(good, bad) for good in groups[1] for bad in groups[-1]][:MAX_PAIRS_PER_PROMPT]
        for (prompt, chosen, good_id), (_, rejected, bad_id) in pairs:
            out.add_pref(prompt, chosen, rejected, {"origin": "ratings", "response_ids": [good_id, bad_id]})
    out_dir = Path(out_dir)
    summary.sft, summary.preferences = len(out.sft), len(out.prefs)
    summary.files["sft"] = str(write_records(out.sft, out_dir / "sft.jsonl"))
    summary.files["preferences"] = str(write_records(out.prefs, out_dir / "preferences.jsonl"))
    return summary


def next_round_recipe(run_dir: str | Path, export_dir: str | Path, *, replay_weight: float = 1.0) -> dict[str, Any]:
    """A recipe for the next round: the run's recipe, started from the run (`model.init_from_run`),
    trained on the exported SFT file plus the original sources (replay, against forgetting).
    Written to `<export_dir>/next_recipe.yaml` after validation; returns the raw dict."""
    import yaml

    from tuneforge.config.recipe import parse_recipe
    from tuneforge.errors import ConfigError

    run_dir, export_dir = Path(run_dir).resolve(), Path(export_dir).resolve()
    recipe_path = run_dir / "recipe.yaml"
    if not recipe_path.is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no recipe.yaml)")
    raw = yaml.safe_load(recipe_path.read_text(encoding="utf-8")) or {}
    sft = export_dir / "sft.jsonl"
    if not sft.is_file():
        raise ConfigError(f"{export_dir}: no sft.jsonl; run `tuneforge feedback export` first")
    raw.setdefault("model", {})["init_from_run"] = str(run_dir)
    data = raw.get("data") or {}
    data = {"sources": data} if isinstance(data, list) else dict(data)
    old = [dict(s, weight=replay_weight) for s in data.get("sources", [])]
    data["sources"] = [{"path": str(sft), "format": "openai"}, *old]
    raw["data"] = data
    raw["name"] = f"{raw.get('name') or run_dir.name}-next"
    raw.pop("resume", None)
    parse_recipe(raw, origin=str(recipe_path))  # fail here, not at training time
    out = export_dir / "next_recipe.yaml"
    out.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return raw
