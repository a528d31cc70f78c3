"""Render canonical records into token ids + loss labels with the model's own chat template.

The whole conversation is rendered once and tokenized once (with character offsets); each trainable
assistant turn is located by rendering prefixes of the conversation, and the tokens whose offsets start
inside "content + end-of-turn marker" get labels. Rendering prefixes instead of re-tokenizing pieces keeps
the ids identical to what the template produces at inference time (no merge differences at turn
boundaries), and labelling the end-of-turn marker is what teaches the model to stop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from tuneforge.data.records import Conversation, Text
from tuneforge.errors import DataError
from tuneforge.models.stopping import END_OF_TURN_MARKERS, has_token

IGNORE_INDEX = -100
LossOn = Literal["answer", "all"]

# End-of-turn markers of common templates, tried after the tokenizer's own special tokens.


@dataclass
class RenderedExample:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX where the token is not trained
    truncated: bool = False

    @property
    def n_label_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)

    def __len__(self) -> int:
        return len(self.input_ids)


def _template_kwargs(conv: Conversation) -> dict[str, Any]:
    if not conv.tools:
        return {}
    try:
        tools = json.loads(conv.tools)
    except json.JSONDecodeError as exc:
        raise DataError(f"conversation tools are not valid JSON: {exc}") from exc
    return {"tools": tools if isinstance(tools, list) else [tools]}


def _apply(tokenizer, messages, add_generation_prompt: bool = False, **kwargs) -> str:
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs
    )


def _end_markers(tokenizer) -> list[str]:
    markers = [tokenizer.eos_token] if tokenizer.eos_token else []
    markers += [m for m in END_OF_TURN_MARKERS if has_token(tokenizer, m)]
    return list(dict.fromkeys(markers))


def _turn_span(tokenizer, messages, i: int, full: str, markers: list[str], kwargs) -> tuple[int, int]:
    """Character span [start, end) of assistant message i (content + end-of-turn marker) inside `full`."""
    content = messages[i]["content"]
    upto = _apply(tokenizer, messages[: i + 1], **kwargs)
    if not full.startswith(upto):
        raise DataError(
            "the chat template does not render conversations prefix-stably (history is rewritten); "
            "cannot locate assistant turns — use loss_on='all' or a different template"
        )
    try:
        prefix = _apply(tokenizer, messages[:i], add_generation_prompt=True, **kwargs) if i else ""
    except Exception:  # noqa: BLE001 - some templates refuse a prefix (e.g. alternation checks)
        prefix = ""
    if not prefix or not upto.startswith(prefix):
        # Fall back to the previous message's rendering and search for the content after it.
        prefix = _apply(tokenizer, messages[:i], **kwargs) if i else ""
    start = upto.find(content.strip(), len(prefix)) if content.strip() else len(prefix)
    start = len(prefix) if start < 0 else start
    content_end = start + len(content.strip())
    hits = [(upto.find(m, content_end), m) for m in markers]
    hits = [(pos, m) for pos, m in hits if pos >= 0]
    if hits:
        pos, marker = min(hits)
        return start, pos + len(marker)
    return start, len(upto.rstrip())  # a template without an end marker: label the turn's text


def render_conversation(
    conv: Conversation, tokenizer, cutoff_len: int, loss_on: LossOn = "answer"
) -> RenderedExample:
    """Token ids and labels for one conversation; only trainable turns (+ their end marker) are labelled."""
    if loss_on not in ("answer", "all"):
        raise DataError(f"loss_on must be 'answer' or 'all', got {loss_on!r}")
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(f"tokenizer {tokenizer.name_or_path!r} has no chat template; set one or use Text records")
    messages = conv.messages()
    kwargs = _template_kwargs(conv)
    full = _apply(tokenizer, messages, **kwargs)
    try:
        enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=loss_on == "answer")
    except NotImplementedError:
        raise DataError(
            f"tokenizer {tokenizer.name_or_path!r} is a slow (Python) tokenizer without character offsets; "
            "load the fast one (tokenizer.json) to train on answers only, or use loss_on='all'"
        ) from None
    ids: list[int] = list(enc["input_ids"])
    if loss_on == "all":
        labels = list(ids)
    else:
        labels = [IGNORE_INDEX] * len(ids)
        offset = 1 if conv.system else 0  # messages() puts the system prompt first
        markers = _end_markers(tokenizer)
        for t, turn in enumerate(conv.turns):
            if not turn.trainable:
                continue
            lo, hi = _turn_span(tokenizer, messages, t + offset, full, markers, kwargs)
            for k, (s, _e) in enumerate(enc["offset_mapping"]):
                if lo <= s < hi:
                    labels[k] = ids[k]
    truncated = len(ids) > cutoff_len
    return RenderedExample(ids[:cutoff_len], labels[:cutoff_len], truncated)


def render_text(text: Text, tokenizer, cutoff_len: int) -> list[RenderedExample]:
    """Continued pre-training: the text + eos, cut into cutoff_len blocks, every token labelled."""
    ids = list(tokenizer(text.text)["input_ids"])
    if tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
        ids.append(tokenizer.eos_token_id)
    return [
        RenderedExample(ids[i : i + cutoff_len], ids[i : i + cutoff_len], False)
        for i in range(0, len(ids), cutoff_len)
    ]


def render_prompt(conv: Conversation, tokenizer) -> list[int]:
    """The prompt (trailing assistant turns dropped) with the generation prompt, for generation/eval."""
    turns = list(conv.turns)
    while turns and turns[-1].role == "assistant":
        turns.pop()
    prompt = Conversation(turns=turns, system=conv.system, tools=conv.tools, meta=conv.meta)
    text = _apply(tokenizer, prompt.messages(), add_generation_prompt=True, **_template_kwargs(conv))
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
