"""Records -> JSONL that the readers read back to equal records (round trip).

Conversation -> OpenAI `messages` (+ per-message weight, tools); Preference -> TRL conversational
prompt/chosen/rejected; Text -> {"text"}; Labelled -> {"text", "label", "groups"}; Pair -> {"anchor",
"positive", "negative"}. Fields OpenAI has no
name for (`train`, `tool_call`) and meta other than source/line are written as extra keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from tuneforge.data.io import write_jsonl
from tuneforge.data.records import Conversation, Labelled, Pair, Preference, Record, Text, Turn

_LOCATION = ("source", "line")  # where a record was read from; a written file is a new location


def record_row(record: Record) -> dict[str, Any]:
    if isinstance(record, Conversation):
        row: dict[str, Any] = {"messages": _messages(record)}
        if record.tools:
            row["tools"] = _tools(record.tools)
    elif isinstance(record, Preference):
        row = {
            "prompt": _messages(record.prompt),
            "chosen": [{"role": "assistant", "content": record.chosen}],
            "rejected": [{"role": "assistant", "content": record.rejected}],
        }
        if record.prompt.tools:
            row["tools"] = _tools(record.prompt.tools)
    elif isinstance(record, Labelled):
        row = {"text": record.text, "label": record.label}
        if record.groups:
            row["groups"] = dict(record.groups)
    elif isinstance(record, Text):
        row = {"text": record.text}
    elif isinstance(record, Pair):
        row = {"anchor": record.anchor, "positive": record.positive}
        if record.negative is not None:
            row["negative"] = record.negative
    else:
        raise TypeError(f"not a record: {type(record).__name__}")
    meta = {k: v for k, v in record.meta.items() if k not in _LOCATION}
    if isinstance(record, Conversation) and "label" in meta:
        row["label"] = meta.pop("label")  # KTO rows: messages + boolean label
    if meta:
        row["meta"] = meta
    return row


def write_records(records: Iterable[Record], path: str | Path) -> Path:
    return write_jsonl((record_row(record) for record in records), path)


def _messages(conv: Conversation) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if conv.system is not None:
        out.append({"role": "system", "content": conv.system})
    out.extend(_message(t) for t in conv.turns)
    return out


def _message(turn: Turn) -> dict[str, Any]:
    message: dict[str, Any] = {"role": turn.role, "content": turn.content}
    if turn.weight != 1.0 or turn.role == "assistant" and not turn.trainable:
        message["weight"] = turn.weight
    if turn.train is not None:
        message["train"] = turn.train
    if turn.tool_call:
        message["tool_call"] = True
    return message


def _tools(tools: str) -> Any:
    """Tools as a JSON list (what OpenAI expects) when that re-serializes to the same text, else the text."""
    try:
        parsed = json.loads(tools)
    except ValueError:
        return tools
    return parsed if json.dumps(parsed, ensure_ascii=False) == tools else tools
