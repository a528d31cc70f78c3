"""Which format a file is in, from the keys of its first rows."""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

from tuneforge.errors import DataError

SAMPLE = 50  # rows looked at; a file's format is decided by the majority of them


def row_format(row: Any) -> str | None:
    """The format one row looks like, or None when its keys match none."""
    if not isinstance(row, dict):
        return None
    keys = set(row)
    if isinstance(row.get("responses"), list) and any(isinstance(r, dict) and "rank" in r for r in row["responses"]):
        return "ranking"
    if {"preferred_output", "non_preferred_output"} & keys or {"chosen", "rejected"} <= keys:
        return "preference"
    if {"chosen_messages", "rejected_messages"} & keys:  # LLaMA-Factory v1 DPO rows
        return "preference"
    if "positive" in keys and keys & {"anchor", "query"}:
        return "pairs"
    if keys & {"messages", "conversations"} and keys & {"label", "kto_tag"}:
        return "kto"
    if "instruction" in keys and "kto_tag" in keys:
        return "kto"
    if "conversations" in keys:
        return "sharegpt"
    if "messages" in keys:
        first = row["messages"][0] if isinstance(row["messages"], list) and row["messages"] else None
        return "sharegpt" if isinstance(first, dict) and "from" in first else "openai"
    if "instruction" in keys:
        return "alpaca"
    if "text" in keys and "label" in keys:
        return "labelled"
    if "text" in keys:
        return "text"
    return None


def detect_format(rows: Iterable[Any]) -> str:
    """Majority format of the first rows; DataError naming the keys seen when nothing matches."""
    votes: Counter[str] = Counter()
    seen_keys: Counter[str] = Counter()
    for i, row in enumerate(rows):
        if i >= SAMPLE:
            break
        fmt = row_format(row)
        if fmt:
            votes[fmt] += 1
        elif isinstance(row, dict):
            seen_keys.update(map(str, row))
    if votes:
        return votes.most_common(1)[0][0]
    keys = ", ".join(k for k, _ in seen_keys.most_common(10)) or "no JSON objects"
    raise DataError(
        f"cannot detect the data format: expected keys like instruction/output (alpaca), conversations "
        f"(sharegpt), messages (openai), chosen/rejected or chosen_messages/rejected_messages (preference), text[/label], anchor/positive (pairs), "
        f"got {keys}; pass the format explicitly (--format or `format:` in the recipe) or rename columns with `columns:`"
    )
