"""Preference data for the trainers: read, validate pairs, split by prompt, convert to TRL's dataset shapes.

Paired objectives (reward, dpo, orpo) take `Preference` records; KTO takes unpaired thumbs-up/down rows
(a `Conversation` whose `meta["label"]` is a bool), and can also learn from pairs (chosen = good,
rejected = bad). PPO only needs prompts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from tuneforge.config.recipe import Recipe
from tuneforge.data.issues import ReadResult, RowIssue
from tuneforge.data.records import Conversation, Preference, Turn
from tuneforge.errors import DataError


@dataclass
class PreferenceData:
    train: list[Any]
    val: list[Any]
    rejected: list[RowIssue] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def load_preference_data(recipe: Recipe, *, unpaired_ok: bool = False, prompts_only: bool = False) -> PreferenceData:
    """Read every source, keep valid pairs (or labelled rows when `unpaired_ok`, or anything with a prompt
    when `prompts_only`), split train/val by prompt."""
    from tuneforge.data import read_source

    data = recipe.data
    if not data.sources:
        raise DataError("data.sources is empty; expected at least one preference file or dataset entry")
    fixed_val: list[Any] = []
    pool: list[Any] = []
    rejected: list[RowIssue] = []
    files: list[str] = []
    for source in data.sources:
        result = read_source(source, variables=data.variables, strict=data.strict,
                             ranking_pairs=source.ranking_pairs)
        files.append(result.source)
        kept, bad = validate_records(result, unpaired_ok=unpaired_ok, prompts_only=prompts_only)
        rejected += result.rejected + bad
        (fixed_val if source.split in ("val", "test") else pool).extend(kept)
    if len(pool) + len(fixed_val) < data.min_examples:
        reasons = ", ".join(f"{k}: {v}" for k, v in _count_codes(rejected).items()) or "none rejected"
        wanted = "preference pairs or labelled rows" if unpaired_ok else "preference pairs"
        raise DataError(f"{', '.join(files)}: expected at least {data.min_examples} usable {wanted}, "
                        f"got {len(pool) + len(fixed_val)} ({reasons})")
    train, val = split_by_prompt(pool, 0.0 if fixed_val else data.val_ratio, recipe.seed)
    return PreferenceData(train=train, val=fixed_val or val, rejected=rejected, files=files)


def validate_records(result: ReadResult, *, unpaired_ok: bool = False,
                     prompts_only: bool = False) -> tuple[list[Any], list[RowIssue]]:
    """Split a reader's records into usable ones and RowIssues saying why the others cannot be trained on."""
    kept, bad = [], []
    for record in result.records:
        problem = pair_problem(record, unpaired_ok=unpaired_ok, prompts_only=prompts_only)
        if problem is None:
            kept.append(record)
            continue
        code, field_name, message = problem
        bad.append(RowIssue.of_record(record, result.source, code, field_name, message, _raw(record)))
    return kept, bad


def pair_problem(record: Any, *, unpaired_ok: bool = False, prompts_only: bool = False) -> tuple[str, str, str] | None:
    """(code, field, message) when a record cannot be a training pair, else None."""
    if prompts_only and isinstance(record, Conversation):
        if not record.prompt_text().strip():
            return "empty_content", "prompt", "expected a non-empty prompt, got none"
        return None
    if isinstance(record, Preference):
        if not record.prompt.turns or not record.prompt.prompt_text().strip():
            return "empty_content", "prompt", "expected a non-empty prompt, got none"
        if not record.chosen.strip() or not record.rejected.strip():
            side = "chosen" if not record.chosen.strip() else "rejected"
            return "empty_content", side, f"expected a non-empty {side} answer"
        if record.chosen.strip() == record.rejected.strip():
            return "identical_pair", "chosen/rejected", "expected two different answers, got the same text twice"
        return None
    if isinstance(record, Conversation) and unpaired_ok:
        label = record.meta.get("label")
        if not isinstance(label, bool):
            return "missing_field", "label", f"expected a true/false label for unpaired feedback, got {label!r}"
        if not record.turns or record.turns[-1].role != "assistant" or not record.turns[-1].content.strip():
            return "no_assistant_turn", "messages", "expected the conversation to end with the rated answer"
        if not record.prompt_text().strip():
            return "empty_content", "prompt", "expected a non-empty prompt, got none"
        return None
    kind = type(record).__name__
    wanted = "a preference pair or a labelled (thumbs up/down) conversation" if unpaired_ok else "a preference pair"
    return "wrong_type", "(row)", f"expected {wanted}, got a {kind} record"


def split_by_prompt(records: list[Any], val_ratio: float, seed: int) -> tuple[list[Any], list[Any]]:
    """Deterministic split where all pairs of one prompt land on the same side (ranked rows expand
    into several pairs; splitting them would leak the prompt into validation)."""
    if val_ratio <= 0 or len(records) < 2:
        return list(records), []
    def bucket(record: Any) -> float:
        key = f"{seed}:{prompt_key(record)}".encode()
        return int(hashlib.sha256(key).hexdigest()[:8], 16) / 0xFFFFFFFF
    train = [r for r in records if bucket(r) >= val_ratio]
    val = [r for r in records if bucket(r) < val_ratio]
    if not val or not train:  # tiny data: hashing may put everything on one side
        cut = max(1, round(len(records) * val_ratio))
        return list(records[cut:]), list(records[:cut])
    return train, val


def prompt_key(record: Any) -> str:
    if isinstance(record, Preference):
        conv = record.prompt
    else:
        turns = list(record.turns)
        while turns and turns[-1].role == "assistant":  # the rated/reference answer is not part of the prompt
            turns.pop()
        conv = Conversation(turns, record.system)
    return json.dumps(conv.messages(), ensure_ascii=False, sort_keys=True)


def fit_pair(pair: Preference, tokenizer, cutoff_len: int) -> Preference:
    """Shorten a long pair so it fits `cutoff_len` tokens: TRL's Reward and DPO trainers drop pairs whose
    prompt fills the window, and on real data (dpo_en_demo: long prompts) that loses a third of them. The
    prompt keeps its last tokens (the question), each answer its first tokens (where chosen and rejected
    already differ)."""
    def n_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def head(text: str, n: int) -> str:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return text if len(ids) <= n else tokenizer.decode(ids[:max(n, 1)])

    margin = template_overhead(tokenizer)
    prompt_budget = cutoff_len // 2
    prompt = pair.prompt
    last = prompt.turns[-1]
    prompt_len = sum(n_tokens(t.content) for t in prompt.turns) + n_tokens(prompt.system or "")
    if prompt_len > prompt_budget:
        ids = tokenizer(last.content, add_special_tokens=False)["input_ids"]
        text = tokenizer.decode(ids[-prompt_budget:])
        prompt = Conversation([Turn(last.role, text)], None, prompt.tools, prompt.meta)
        prompt_len = min(len(ids), prompt_budget)
    budget = max(8, cutoff_len - prompt_len - margin)
    return Preference(prompt, head(pair.chosen, budget), head(pair.rejected, budget), pair.meta)


def template_overhead(tokenizer) -> int:
    """Tokens the chat template adds around one user turn and one answer (SmolLM2's default system prompt
    alone is ~30); 16 for plain-text (encoder) tokenizers: [CLS]/[SEP] and the prompt/answer newline."""
    if not getattr(tokenizer, "chat_template", None):
        return 16
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    ids = tokenizer.apply_chat_template(messages, tokenize=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    return len(ids)  # the two one-token contents stand in for the end token TRL appends and one spare


def paired_rows(records: Iterable[Preference]) -> list[dict[str, Any]]:
    """TRL's conversational preference shape: prompt messages + one-message chosen/rejected lists."""
    return [{"prompt": r.prompt.messages(),
             "chosen": [{"role": "assistant", "content": r.chosen}],
             "rejected": [{"role": "assistant", "content": r.rejected}]} for r in records]


def plain_prompt(messages: list[dict[str, str]]) -> str:
    """A prompt as plain text, for models without a chat template (e.g. an encoder reward model)."""
    return "\n".join(m["content"] for m in messages if m["role"] != "assistant") + "\n"


def plain_paired_rows(records: Iterable[Preference]) -> list[dict[str, Any]]:
    """TRL's standard (non-chat) preference shape: the texts are concatenated prompt + answer."""
    return [{"prompt": plain_prompt(r.prompt.messages()), "chosen": r.chosen, "rejected": r.rejected}
            for r in records]


def unpaired_rows(records: Iterable[Any]) -> list[dict[str, Any]]:
    """TRL's conversational KTO shape (prompt, completion, label); a pair gives one good and one bad row."""
    rows = []
    for r in records:
        if isinstance(r, Preference):
            prompt = r.prompt.messages()
            rows.append({"prompt": prompt, "completion": [{"role": "assistant", "content": r.chosen}], "label": True})
            rows.append({"prompt": prompt, "completion": [{"role": "assistant", "content": r.rejected}],
                         "label": False})
        else:
            messages = r.messages()
            rows.append({"prompt": messages[:-1], "completion": messages[-1:], "label": bool(r.meta["label"])})
    return rows


def prompt_messages(records: Iterable[Any]) -> list[list[dict[str, str]]]:
    """Unique prompts (as chat messages) for on-policy training (PPO), in first-seen order."""
    seen, out = set(), []
    for r in records:
        key = prompt_key(r)
        if key not in seen:
            seen.add(key)
            out.append(json.loads(key))
    return out


def to_dataset(rows: list[dict[str, Any]]):
    from datasets import Dataset

    return Dataset.from_list(rows) if rows else None


def _count_codes(issues: list[RowIssue]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for issue in issues:
        counts[issue.code] = counts.get(issue.code, 0) + 1
    return counts


def _raw(record: Any) -> str:
    from tuneforge.data.records import record_to_dict

    text = json.dumps(record_to_dict(record), ensure_ascii=False)
    return text if len(text) <= 2000 else text[:2000] + "..."
