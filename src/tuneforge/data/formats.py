"""Row -> record converters: shared pieces (options, problems, turn validation) and the dispatch table.

Each converter takes one row (a dict, columns already renamed to tuneforge's names) and returns a list
of records, or raises `RowProblem` with an issue code, the field and "expected …, got …".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from tuneforge.data.records import Conversation, Record, Turn

FORMATS = ("alpaca", "sharegpt", "openai", "kto", "preference", "ranking", "text", "labelled", "pairs")


class RowProblem(Exception):
    """One row is unusable. `tuneforge.data.ranking` may raise it too."""

    def __init__(self, code: str, field: str, message: str) -> None:
        super().__init__(message)
        self.code, self.field, self.message = code, field, message


@dataclass
class ReadOptions:
    """How to interpret rows: LLaMA-Factory-style tags for chat turns and ranking expansion."""

    tags: dict[str, str] = field(default_factory=dict)
    ranking_pairs: str = "all"

    def tag(self, name: str, default: str) -> str:
        return self.tags.get(name, default)


def describe(value: Any) -> str:
    """Short "got …" text: the type and a glimpse of the value."""
    if value is None:
        return "null"
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def require(row: dict, key: str, kinds: type | tuple = str, path: str | None = None) -> Any:
    path = path or key
    if key not in row or row[key] is None:
        raise RowProblem("missing_field", path, f"expected {_kind_name(kinds)}, got nothing (keys: {_keys(row)})")
    return check_type(row[key], kinds, path)


def optional(row: dict, key: str, kinds: type | tuple = str, path: str | None = None) -> Any:
    if row.get(key) is None:
        return None
    return check_type(row[key], kinds, path or key)


def check_type(value: Any, kinds: type | tuple, path: str) -> Any:
    if not isinstance(value, kinds) or isinstance(value, bool) and bool not in _as_tuple(kinds):
        raise RowProblem("wrong_type", path, f"expected {_kind_name(kinds)}, got {describe(value)}")
    return value


def text_value(value: Any, path: str, *, allow_empty: bool = False) -> str:
    check_type(value, str, path)
    if not allow_empty and not value.strip():
        raise RowProblem("empty_content", path, "expected non-empty text, got an empty string")
    return value


def _as_tuple(kinds: type | tuple) -> tuple:
    return kinds if isinstance(kinds, tuple) else (kinds,)


_NAMES = {str: "a string", list: "a list", dict: "an object", bool: "true/false", int: "a number", float: "a number"}


def _kind_name(kinds: type | tuple) -> str:
    names = dict.fromkeys(_NAMES.get(k, k.__name__) for k in _as_tuple(kinds))
    return " or ".join(names)


def _keys(row: dict) -> str:
    return ", ".join(sorted(map(str, row))[:8]) or "none"


def tools_text(value: Any, path: str = "tools") -> str | None:
    """Tool schemas as JSON text (what Conversation.tools holds): lists/objects are serialized."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    raise RowProblem("wrong_type", path, f"expected a list of tool schemas or JSON text, got {describe(value)}")


def label_value(value: Any, path: str) -> bool:
    """KTO desirability: true/false, 1/0 or their spellings in a CSV."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.strip().lower()]
    raise RowProblem("wrong_type", path, f"expected true or false, got {describe(value)}")


_BOOL_WORDS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def check_turns(turns: list[Turn], path: str, *, prompt_only: bool = False) -> None:
    """Turn order every chat template accepts: user first, no two user (or assistant) turns in a row, tool
    results only after a tool call. A training conversation needs a trainable assistant turn; a preference
    prompt must end with the user turn the answers reply to."""
    if not turns:
        raise RowProblem("empty_content", path, "expected at least one turn, got none")
    if turns[0].role != "user":
        raise RowProblem("turn_order", f"{path}[0]", f"expected the first turn to be user, got {turns[0].role}")
    for i in range(1, len(turns)):
        before, turn = turns[i - 1], turns[i]
        if turn.role == "tool" and not (before.role == "tool" or before.tool_call):
            raise RowProblem("turn_order", f"{path}[{i}]", f"expected a tool result after a tool call, got it after {before.role}")
        if turn.role == before.role and turn.role in ("user", "assistant") and not before.tool_call:
            raise RowProblem("turn_order", f"{path}[{i}]", f"expected turns to alternate, got two {turn.role} turns in a row")
    if prompt_only:
        if turns[-1].role != "user":
            raise RowProblem("turn_order", f"{path}[{len(turns) - 1}]", f"expected the prompt to end with a user turn, got {turns[-1].role}")
    elif not any(t.role == "assistant" and t.trainable for t in turns):
        raise RowProblem("no_assistant_turn", path, "expected at least one assistant turn to train on, got none")


def new_conversation(turns: list[Turn], system: str | None, tools: str | None, path: str) -> Conversation:
    check_turns(turns, path)
    return Conversation(turns=turns, system=system or None, tools=tools)


Converter = Callable[[dict, ReadOptions], list[Record]]


def converter(fmt: str) -> Converter:
    from tuneforge.data import formats_chat, formats_other

    table: dict[str, Converter] = {
        "alpaca": formats_chat.alpaca,
        "sharegpt": formats_chat.sharegpt,
        "openai": formats_chat.openai,
        "kto": formats_chat.kto,
        "preference": formats_other.preference,
        "ranking": formats_other.ranking,
        "text": formats_other.text,
        "labelled": formats_other.labelled,
        "pairs": formats_other.pairs,
    }
    return table[fmt]
