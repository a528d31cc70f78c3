"""Turn canonical records into evaluation examples: a prompt, a reference answer and group attributes.

Conversations answer with their last assistant turn; labelled rows become one-turn conversations whose
answer is the label; preference rows answer with `chosen`; raw text only has a likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from tuneforge.data.records import Conversation, Labelled, Preference, Record, Text, Turn
from tuneforge.errors import DataError


@dataclass
class EvalExample:
    index: int
    conversation: Conversation | None  # full conversation incl. the reference answer (None for raw text)
    prompt: Conversation | None  # everything before the reference answer
    reference: str
    text: Text | None = None
    groups: dict[str, str] = field(default_factory=dict)

    @property
    def prompt_display(self) -> str:
        if self.prompt is None:
            return self.text.text if self.text else ""
        return "\n".join(f"{t.role}: {t.content}" for t in self.prompt.turns)


def to_examples(records: Sequence[Record], group_field: str | None = None) -> list[EvalExample]:
    """`group_field` names a meta key holding the bias-audit group(s) instead of `group`/`groups`."""
    if not records:
        raise DataError("the test set is empty: nothing to evaluate")
    examples = [_one(i, r) for i, r in enumerate(records)]
    if group_field:
        for ex, record in zip(examples, records):
            value = getattr(record, "meta", {}).get(group_field)
            if isinstance(value, dict):
                ex.groups = {str(k): str(v) for k, v in value.items()}
            elif value is not None:
                ex.groups = {group_field: str(value)}
    return examples


def _one(i: int, record: Record) -> EvalExample:
    if isinstance(record, Labelled):
        conv = Conversation(
            turns=[Turn("user", record.text), Turn("assistant", record.label)], meta=dict(record.meta)
        )
        return _from_conversation(i, conv, groups=dict(record.groups) or _meta_groups(record.meta))
    if isinstance(record, Preference):
        conv = Conversation(
            turns=[*record.prompt.turns, Turn("assistant", record.chosen)],
            system=record.prompt.system,
            tools=record.prompt.tools,
            meta={**record.prompt.meta, **record.meta},
        )
        return _from_conversation(i, conv)
    if isinstance(record, Conversation):
        return _from_conversation(i, record)
    if isinstance(record, Text):
        return EvalExample(i, None, None, "", text=record, groups=_meta_groups(record.meta))
    raise DataError(f"record {i}: cannot evaluate a {type(record).__name__}")


def _from_conversation(i: int, conv: Conversation, groups: dict[str, str] | None = None) -> EvalExample:
    last = max((k for k, t in enumerate(conv.turns) if t.role == "assistant"), default=None)
    if last is None:
        raise DataError(f"record {i}: conversation has no assistant turn to compare against")
    prompt = Conversation(turns=conv.turns[:last], system=conv.system, tools=conv.tools, meta=conv.meta)
    return EvalExample(
        i, conv, prompt, conv.turns[last].content, groups=groups if groups is not None else _meta_groups(conv.meta)
    )


def _meta_groups(meta: dict[str, Any]) -> dict[str, str]:
    """`meta["groups"]` (a dict) or `meta["group"]` (one value) name the bias-audit groups."""
    groups = meta.get("groups")
    if isinstance(groups, dict):
        return {str(k): str(v) for k, v in groups.items()}
    if meta.get("group") is not None:
        return {"group": str(meta["group"])}
    return {}


def with_answer(example: EvalExample, answer: str) -> Conversation:
    """The example's prompt answered with `answer` (used to score each candidate label)."""
    assert example.prompt is not None
    prompt = example.prompt
    return Conversation(
        turns=[*prompt.turns, Turn("assistant", answer)], system=prompt.system, tools=prompt.tools, meta=prompt.meta
    )
