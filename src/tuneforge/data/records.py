"""Canonical records every reader produces and every trainer consumes.

Readers turn Alpaca, ShareGPT, OpenAI `messages`, preference, raw, labelled and pair files into these five
shapes; nothing downstream knows which file format an example came from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Union

Role = Literal["user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("user", "assistant", "tool")


@dataclass
class Turn:
    role: Role
    content: str
    # None means "the default for this role": assistant turns train, others do not.
    train: bool | None = None
    weight: float = 1.0
    tool_call: bool = False  # an assistant turn that is a function call (ShareGPT `function_call`)

    @property
    def trainable(self) -> bool:
        if self.train is not None:
            return self.train and self.weight > 0
        return self.role == "assistant" and self.weight > 0


@dataclass
class Conversation:
    turns: list[Turn]
    system: str | None = None
    tools: str | None = None  # JSON text of the tool schemas, as the chat template expects
    meta: dict[str, Any] = field(default_factory=dict)  # source, line, groups, ids

    def messages(self) -> list[dict[str, str]]:
        """OpenAI-style messages (system first), the input of `tokenizer.apply_chat_template`."""
        out: list[dict[str, str]] = []
        if self.system:
            out.append({"role": "system", "content": self.system})
        out.extend({"role": t.role, "content": t.content} for t in self.turns)
        return out

    def prompt_text(self) -> str:
        """All user turns joined: what dedup, leakage and drift compare."""
        return "\n".join(t.content for t in self.turns if t.role == "user")

    def answer_text(self) -> str:
        return "\n".join(t.content for t in self.turns if t.role == "assistant")


@dataclass
class Preference:
    prompt: Conversation  # ends with a user turn
    chosen: str
    rejected: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Text:
    text: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Labelled:
    text: str
    label: str
    groups: dict[str, str] = field(default_factory=dict)  # e.g. {"gender": "f"} for bias audits
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Pair:
    """Two texts that belong together (query -> passage), for embedding training; `negative` is optional:
    a text close to the anchor that does not answer it (a hard negative)."""

    anchor: str
    positive: str
    negative: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


Record = Union[Conversation, Preference, Text, Labelled, Pair]


def record_to_dict(record: Record) -> dict[str, Any]:
    """Plain-JSON form with a `kind` tag; `record_from_dict` inverts it."""
    return {"kind": type(record).__name__.lower(), **asdict(record)}


def record_from_dict(data: dict[str, Any]) -> Record:
    data = dict(data)
    kind = data.pop("kind")
    if kind == "conversation":
        return _conversation(data)
    if kind == "preference":
        return Preference(
            prompt=_conversation(data["prompt"]),
            chosen=data["chosen"],
            rejected=data["rejected"],
            meta=data.get("meta", {}),
        )
    if kind == "text":
        return Text(**data)
    if kind == "labelled":
        return Labelled(**data)
    if kind == "pair":
        return Pair(**data)
    raise ValueError(f"unknown record kind {kind!r}")


def _conversation(data: dict[str, Any]) -> Conversation:
    turns = [Turn(**t) for t in data["turns"]]
    return Conversation(turns=turns, system=data.get("system"), tools=data.get("tools"), meta=data.get("meta", {}))
