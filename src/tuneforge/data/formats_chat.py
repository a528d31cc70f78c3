"""Supervised chat formats -> Conversation: Alpaca, ShareGPT, OpenAI `messages`, KTO (unpaired, labelled)."""

from __future__ import annotations

import json
import math
from typing import Any

from tuneforge.data.formats import (
    ReadOptions,
    RowProblem,
    check_type,
    describe,
    label_value,
    new_conversation,
    optional,
    require,
    text_value,
    tools_text,
)
from tuneforge.data.records import Conversation, Turn

KTO_LABEL_KEYS = ("label", "kto_tag")


def alpaca(row: dict, opts: ReadOptions) -> list[Conversation]:
    turns = alpaca_prompt_turns(row)
    output = text_value(require(row, "output"), "output")
    turns.append(Turn("assistant", output))
    system = optional(row, "system")
    return [new_conversation(turns, system, tools_text(row.get("tools")), "(turns)")]


def alpaca_prompt_turns(row: dict) -> list[Turn]:
    """history pairs, then `instruction` + `input` (joined by a newline, as LLaMA-Factory does)."""
    instruction = require(row, "instruction")
    query = optional(row, "input") or ""
    if not (instruction.strip() or query.strip()):
        raise RowProblem("empty_content", "instruction", "expected non-empty text, got an empty string")
    turns: list[Turn] = []
    for i, pair in enumerate(optional(row, "history", list) or []):
        path = f"history[{i}]"
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise RowProblem("wrong_type", path, f"expected an [instruction, answer] pair, got {describe(pair)}")
        turns.append(Turn("user", text_value(pair[0], f"{path}[0]")))
        turns.append(Turn("assistant", text_value(pair[1], f"{path}[1]")))
    content = "\n".join(part for part in (instruction, query) if part)
    turns.append(Turn("user", content))
    return turns


def sharegpt(row: dict, opts: ReadOptions) -> list[Conversation]:
    key = "conversations" if "conversations" in row else "messages"
    return [_chat(row, key, opts)]


def openai(row: dict, opts: ReadOptions) -> list[Conversation]:
    key = "messages" if "messages" in row else "conversations"
    return [_chat(row, key, opts)]


def kto(row: dict, opts: ReadOptions) -> list[Conversation]:
    key = next((k for k in KTO_LABEL_KEYS if k in row), "label")
    label = label_value(require(row, key, (bool, int, float, str)), key)
    if "instruction" in row:
        conv = alpaca(row, opts)[0]
    else:
        conv = _chat(row, "messages" if "messages" in row else "conversations", opts)
    conv.meta["label"] = label
    return [conv]


def _chat(row: dict, key: str, opts: ReadOptions) -> Conversation:
    items = require(row, key, list)
    system, turns = parse_turns(items, key, opts)
    column_system = optional(row, "system")
    system = system if system is not None else column_system
    tools = tools_text(row.get("tools", row.get("functions")))
    conv = new_conversation(turns, system, tools, key)
    for k in KTO_LABEL_KEYS:  # an unpaired label also survives an explicit sharegpt/openai format
        if row.get(k) is not None:
            conv.meta["label"] = label_value(row[k], k)
    return conv


def parse_turns(items: list, path: str, opts: ReadOptions) -> tuple[str | None, list[Turn]]:
    """Turns of a ShareGPT (from/value) or OpenAI (role/content) list; a leading system turn is returned
    apart. Roles: human/user, gpt/assistant, function_call (assistant tool call), observation/tool, system."""
    system: str | None = None
    turns: list[Turn] = []
    roles = _role_table(opts)
    for i, item in enumerate(items):
        item_path = f"{path}[{i}]"
        check_type(item, dict, item_path)
        role_key, content_key = _keys_for(item, opts)
        role_name = require(item, role_key, str, f"{item_path}.{role_key}")
        if role_name not in roles:
            raise RowProblem(
                "unrecognized_role", f"{item_path}.{role_key}",
                f"expected one of {', '.join(sorted(roles))}, got {role_name!r}",
            )
        role, tool_call = roles[role_name]
        if role == "system":
            if turns or system is not None:
                raise RowProblem("turn_order", item_path, "expected a system turn only first, got it mid-conversation")
            system = _content(item.get(content_key), f"{item_path}.{content_key}")
            continue
        turns.append(_turn(item, role, tool_call, content_key, item_path))
    return system, turns


def _turn(item: dict, role: str, tool_call: bool, content_key: str, path: str) -> Turn:
    content = _content(item.get(content_key), f"{path}.{content_key}")
    calls = item.get("tool_calls") or item.get("function_call")
    if role == "assistant" and calls:
        tool_call = True
        call_text = json.dumps(calls, ensure_ascii=False)
        content = f"{content}\n{call_text}" if content.strip() else call_text
    if isinstance(content, ToolCallText):
        tool_call = True
    if not content.strip():
        got = "null" if item.get(content_key) is None else "an empty string"
        missing = "missing" if content_key not in item else got
        raise RowProblem("empty_content" if missing != "missing" else "missing_field", f"{path}.{content_key}",
                         f"expected non-empty text, got {missing}")
    weight = _weight(item, path)
    train = optional(item, "train", bool, f"{path}.train")
    if train is None and "loss_weight" in item:  # LLaMA-Factory v1: the weight decides, whatever the role
        train = weight > 0
    tool_call = bool(optional(item, "tool_call", bool, f"{path}.tool_call") or tool_call)
    return Turn(role, str(content), train=train, weight=weight, tool_call=tool_call)


def _weight(item: dict, path: str) -> float:
    """`weight` (tuneforge) or `loss_weight` (LLaMA-Factory v1): a finite number >= 0; 0 = not trained on."""
    key = "loss_weight" if "loss_weight" in item else "weight"
    weight = optional(item, key, (int, float), f"{path}.{key}")
    if weight is not None and not (math.isfinite(weight) and weight >= 0):
        raise RowProblem("wrong_type", f"{path}.{key}", f"expected a weight >= 0, got {weight}")
    return 1.0 if weight is None else float(weight)


class ToolCallText(str):
    """Content made of v1 `tool_call` parts: the turn is a function call."""


MEDIA_PARTS = {"image": "image", "image_url": "image", "input_image": "image", "audio": "audio",
               "input_audio": "audio", "audio_url": "audio", "video": "video", "video_url": "video", "file": "file"}


def _content(value: Any, path: str) -> str:
    """A string, or typed content parts: OpenAI's {"type": "text", "text": ...} and LLaMA-Factory v1's
    {"type": "text" | "reasoning" | "tool_call", "value": ...}; media parts are refused by name."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if not (isinstance(value, list) and all(isinstance(p, dict) for p in value)):
        raise RowProblem("wrong_type", path, f"expected a string or a list of content parts, got {describe(value)}")
    texts, calls = [], []
    for i, part in enumerate(value):
        kind = part.get("type", "text")
        if kind in MEDIA_PARTS:
            raise RowProblem("not_supported", f"{path}[{i}]", f"not supported: {MEDIA_PARTS[kind]} content "
                             "(tuneforge trains text-only models; drop the part or the row)")
        body = part.get("text", part.get("value"))
        if kind == "tool_call":
            calls.append(body if isinstance(body, str) else json.dumps(body, ensure_ascii=False))
            continue
        if kind not in ("text", "reasoning") or not isinstance(body, str):
            want = "a text part with a string `text` or `value`"
            raise RowProblem("wrong_type", f"{path}[{i}]", f"expected {want}, got {describe(part)}")
        texts.append(f"<think>\n{body}\n</think>\n\n" if kind == "reasoning" else body)
    text = "".join(texts)
    if calls:
        return ToolCallText("\n".join(([text] if text.strip() else []) + calls))
    return text


def _keys_for(item: dict, opts: ReadOptions) -> tuple[str, str]:
    if "role_tag" in opts.tags or "content_tag" in opts.tags:
        return opts.tag("role_tag", "from"), opts.tag("content_tag", "value")
    if "from" in item or "value" in item:
        return "from", "value"
    return "role", "content"


def _role_table(opts: ReadOptions) -> dict[str, tuple[str, bool]]:
    table = {
        "human": ("user", False), "user": ("user", False),
        "gpt": ("assistant", False), "assistant": ("assistant", False), "model": ("assistant", False),
        "function_call": ("assistant", True),
        "observation": ("tool", False), "tool": ("tool", False), "function": ("tool", False),
        "system": ("system", False),
    }
    custom = {
        "user_tag": ("user", False), "assistant_tag": ("assistant", False),
        "function_tag": ("assistant", True), "observation_tag": ("tool", False), "system_tag": ("system", False),
    }
    for tag, meaning in custom.items():
        if tag in opts.tags:
            table[opts.tags[tag]] = meaning
    return table


def conversation_from_messages(items: list, path: str, opts: ReadOptions) -> Conversation:
    """A message list without validation of its end (used for preference prompts)."""
    system, turns = parse_turns(items, path, opts)
    return Conversation(turns=turns, system=system or None)
