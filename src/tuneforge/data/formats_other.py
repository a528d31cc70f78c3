"""Preference (paired), ranking (n-way), raw text, labelled text and embedding pairs -> records."""

from __future__ import annotations

import math
from typing import Any

from tuneforge.data.formats import (
    ReadOptions,
    RowProblem,
    check_turns,
    check_type,
    describe,
    optional,
    require,
    text_value,
    tools_text,
)
from tuneforge.data.formats_chat import alpaca_prompt_turns, conversation_from_messages
from tuneforge.data.records import Conversation, Labelled, Pair, Preference, Text, Turn
from tuneforge.errors import DataError


def preference(row: dict, opts: ReadOptions) -> list[Preference]:
    """LLaMA-Factory ranking (alpaca or sharegpt style), TRL prompt/chosen/rejected, OpenAI DPO."""
    if "preferred_output" in row or "non_preferred_output" in row:
        source = require(row, "input", dict)
        prompt = _prompt_messages(require(source, "messages", list, "input.messages"), "input.messages", opts)
        prompt.tools = tools_text(source.get("tools"), "input.tools")
        chosen = _answer(require(row, "preferred_output", (list, str, dict)), "preferred_output", opts)
        rejected = _answer(require(row, "non_preferred_output", (list, str, dict)), "non_preferred_output", opts)
    elif "chosen_messages" in row or "rejected_messages" in row:  # LLaMA-Factory v1: two whole conversations
        chosen_raw = require(row, "chosen_messages", list)
        rejected_raw = require(row, "rejected_messages", list)
        prompt, chosen, rejected = _implicit_prompt(chosen_raw, rejected_raw, opts, ("chosen_messages", "rejected_messages"))
        prompt.tools = tools_text(row.get("tools"))
    else:
        prompt, chosen, rejected = _chosen_rejected(row, opts)
        prompt.tools = prompt.tools or tools_text(row.get("tools"))
    if prompt.system is None:
        prompt.system = optional(row, "system") or None
    if chosen.strip() == rejected.strip():
        raise RowProblem("identical_pair", "chosen/rejected", "expected two different answers, got the same text twice")
    return [Preference(prompt=prompt, chosen=chosen, rejected=rejected)]


def _chosen_rejected(row: dict, opts: ReadOptions) -> tuple[Conversation, str, str]:
    chosen_raw = require(row, "chosen", (str, list, dict))
    rejected_raw = require(row, "rejected", (str, list, dict))
    for key in ("conversations", "messages"):
        if key in row:
            prompt = _prompt_messages(require(row, key, list), key, opts)
            return prompt, _answer(chosen_raw, "chosen", opts), _answer(rejected_raw, "rejected", opts)
    if "instruction" in row:
        prompt = Conversation(turns=alpaca_prompt_turns(row))
        check_turns(prompt.turns, "instruction", prompt_only=True)
        return prompt, _answer(chosen_raw, "chosen", opts), _answer(rejected_raw, "rejected", opts)
    if "prompt" in row:
        value = require(row, "prompt", (str, list))
        if isinstance(value, str):
            prompt = Conversation(turns=[Turn("user", text_value(value, "prompt"))])
        else:
            prompt = _prompt_messages(value, "prompt", opts)
        return prompt, _answer(chosen_raw, "chosen", opts), _answer(rejected_raw, "rejected", opts)
    return _implicit_prompt(chosen_raw, rejected_raw, opts)


def _implicit_prompt(chosen: Any, rejected: Any, opts: ReadOptions,
                     keys: tuple[str, str] = ("chosen", "rejected")) -> tuple[Conversation, str, str]:
    """TRL "implicit prompt": chosen and rejected are whole conversations sharing the prompt turns."""
    if not (isinstance(chosen, list) and isinstance(rejected, list)):
        raise RowProblem("missing_field", "prompt", "expected a prompt (prompt, instruction, conversations or "
                         f"messages), got only chosen/rejected {describe(chosen)}")
    shared = 0
    while shared < min(len(chosen), len(rejected)) - 1 and _same_message(chosen[shared], rejected[shared]):
        shared += 1
    prompt = _prompt_messages(chosen[:shared], keys[0], opts)
    return prompt, _answer(chosen[shared:], keys[0], opts), _answer(rejected[shared:], keys[1], opts)


def _same_message(a: Any, b: Any) -> bool:
    """Equal as prompt turns: a v1 per-message loss_weight does not make two identical prompts differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        drop = ("loss_weight",)
        return {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}
    return a == b


def _prompt_messages(items: list, path: str, opts: ReadOptions) -> Conversation:
    conv = conversation_from_messages(items, path, opts)
    if not conv.turns:
        raise RowProblem("empty_content", path, "expected a prompt with at least one user turn, got none")
    check_turns(conv.turns, path, prompt_only=True)
    return conv


def _answer(value: Any, path: str, opts: ReadOptions) -> str:
    """One assistant answer: a string, a {from/value} or {role/content} object, or a one-message list."""
    if isinstance(value, list):
        if len(value) != 1:
            raise RowProblem("wrong_type", path, f"expected one assistant message, got {len(value)} messages")
        value = value[0]
    if isinstance(value, dict):
        conv = conversation_from_messages([value], path, opts)
        if not conv.turns or conv.turns[0].role != "assistant":
            got = conv.turns[0].role if conv.turns else "a system message"
            raise RowProblem("unrecognized_role", path, f"expected an assistant answer, got {got}")
        return conv.turns[0].content
    return text_value(value, path)


def ranking(row: dict, opts: ReadOptions) -> list[Preference]:
    try:
        from tuneforge.data.ranking import expand_ranking_row
    except ImportError:
        raise DataError(
            "ranking data (rows with `responses: [{..., rank}]`) needs tuneforge.data.ranking, "
            "which is not installed in this build"
        ) from None
    try:
        return list(expand_ranking_row(row, pairs=opts.ranking_pairs))
    except RowProblem:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise RowProblem("wrong_type", "responses", f"expected ranked responses, got {exc}") from None


def text(row: dict, opts: ReadOptions) -> list[Text]:
    return [Text(text=text_value(require(row, "text"), "text"))]


def labelled(row: dict, opts: ReadOptions) -> list[Labelled]:
    body = text_value(require(row, "text"), "text")
    label = require(row, "label", (str, int, float, bool))
    if isinstance(label, str) and not label.strip():
        raise RowProblem("empty_content", "label", "expected a label, got an empty string")
    if isinstance(label, float) and not math.isfinite(label):  # JSON's NaN/Infinity would become class "nan"
        raise RowProblem("wrong_type", "label", f"expected a label (text or a finite number), got {label}")
    return [Labelled(text=body, label=str(label), groups=_groups(row))]


ANCHOR_KEYS = ("anchor", "query")  # sentence-transformers' and retrieval datasets' names for the first text


def pairs(row: dict, opts: ReadOptions) -> list[Pair]:
    """`{"anchor" or "query": ..., "positive": ..., "negative": ...?}` (sentence-transformers' column names)."""
    key = next((k for k in ANCHOR_KEYS if row.get(k) is not None), "anchor")
    anchor = text_value(require(row, key), key)
    positive = text_value(require(row, "positive"), "positive")
    negative = optional(row, "negative")
    return [check_pair(Pair(anchor=anchor, positive=positive, negative=negative or None))]


def check_pair(pair: Pair) -> Pair:
    """RowProblem when a pair cannot teach anything: an empty side, or the same text on both sides."""
    for name in ("anchor", "positive"):
        if not getattr(pair, name).strip():
            raise RowProblem("empty_content", name, f"expected a non-empty {name}, got an empty string")
    if pair.anchor.strip() == pair.positive.strip():
        raise RowProblem("identical_pair", "anchor/positive", "expected two different texts, got the same text twice")
    if pair.negative is not None and pair.negative.strip() == pair.positive.strip():
        raise RowProblem("identical_pair", "positive/negative", "expected a negative that differs from the positive")
    return pair


def _groups(row: dict) -> dict[str, str]:
    """Group attributes for bias audits: `group.X`/`groups.X` columns, a `groups` object, or `meta.group`."""
    groups: dict[str, str] = {}
    meta = row.get("meta")
    if isinstance(meta, dict) and meta.get("group") is not None:
        value = meta["group"]
        groups.update({str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {"group": str(value)})
    if row.get("groups") is not None:
        value = check_type(row["groups"], dict, "groups")
        groups.update({str(k): str(v) for k, v in value.items()})
    for key, value in row.items():
        for prefix in ("group.", "groups."):
            if isinstance(key, str) and key.startswith(prefix) and value is not None and value != "":
                groups[key[len(prefix):]] = str(value)
    return groups
