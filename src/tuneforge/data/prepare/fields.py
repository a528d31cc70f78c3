"""A small per-kind accessor over the text fields of every record kind, so each step is written once.

Every text lives at a `key` (a tuple path) with a `role`: system, prompt (user/tool turns), answer
(assistant turns, preference chosen/rejected, pair positive/negative) or text (raw text, labelled text); a
pair's anchor is its prompt.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Iterator

from tuneforge.data.records import Conversation, Labelled, Pair, Preference, Record, Text

Key = tuple


@dataclass
class Slot:
    key: Key
    role: str
    text: str


def _conversation_slots(conv: Conversation, prefix: Key = ()) -> Iterator[Slot]:
    if conv.system is not None:
        yield Slot(prefix + ("system",), "system", conv.system)
    for i, turn in enumerate(conv.turns):
        yield Slot(prefix + ("turn", i), "answer" if turn.role == "assistant" else "prompt", turn.content)


def slots(record: Record) -> list[Slot]:
    """All text fields of a record, in a stable order."""
    if isinstance(record, Conversation):
        return list(_conversation_slots(record))
    if isinstance(record, Preference):
        out = list(_conversation_slots(record.prompt, ("prompt",)))
        out.append(Slot(("chosen",), "answer", record.chosen))
        out.append(Slot(("rejected",), "answer", record.rejected))
        return out
    if isinstance(record, (Text, Labelled)):
        return [Slot(("text",), "text", record.text)]
    if isinstance(record, Pair):
        out = [Slot(("anchor",), "prompt", record.anchor), Slot(("positive",), "answer", record.positive)]
        if record.negative is not None:
            out.append(Slot(("negative",), "answer", record.negative))
        return out
    raise TypeError(f"unsupported record type {type(record).__name__}")


def set_text(record: Record, key: Key, value: str) -> None:
    """Write `value` at `key` (as produced by `slots`)."""
    target = record.prompt if isinstance(record, Preference) and key[0] == "prompt" else record
    path = key[1:] if target is not record else key
    if path[0] == "system":
        target.system = value
    elif path[0] == "turn":
        target.turns[path[1]].content = value
    elif path[0] in ("chosen", "rejected", "text", "anchor", "positive", "negative"):
        setattr(target, path[0], value)
    else:
        raise KeyError(key)


def role_text(record: Record, roles: set[str]) -> str:
    """Texts of the given roles joined by newlines (what length, dedup and leakage compare)."""
    return "\n".join(s.text for s in slots(record) if s.role in roles)


def compare_text(record: Record, on: str = "all") -> str:
    if on == "prompt":
        roles = {"prompt", "text"}
    elif on == "answer":
        roles = {"answer", "text"}
    else:
        roles = {"system", "prompt", "answer", "text"}
    return role_text(record, roles)


def answer_texts(record: Record) -> list[str]:
    """The texts a model learns to produce: must not be empty."""
    if isinstance(record, Conversation):
        return [t.content for t in record.turns if t.role == "assistant"]
    if isinstance(record, Preference):
        return [record.chosen, record.rejected]
    if isinstance(record, Pair):
        return [t for t in (record.positive, record.negative) if t is not None]
    return [record.text]


def prompt_text(record: Record) -> str:
    if isinstance(record, Conversation):
        return record.prompt_text()
    if isinstance(record, Preference):
        return record.prompt.prompt_text()
    if isinstance(record, Pair):
        return record.anchor
    return ""


def label_of(record: Record) -> str | None:
    return record.label if isinstance(record, Labelled) else None


def clone(record: Record) -> Record:
    return copy.deepcopy(record)
