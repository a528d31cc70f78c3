"""`tuneforge data inspect`: what a data file holds, what was rejected and why, and how long examples are
in tokens of the model that will train on them."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from tuneforge.data.records import Conversation, Labelled, Pair, Preference, Record
from tuneforge.errors import TuneforgeError

DEFAULT_TOKENIZER = "smollm2-135m-instruct"
WHITESPACE = "whitespace"
MAX_EXAMPLE_CHARS = 1500


@dataclass
class InspectReport:
    source: str
    format: str
    rows: int
    valid: int  # records (a ranking row may expand to several)
    rejected: int
    valid_rows: int  # rows == valid_rows + rejected, always
    rejected_by_code: dict[str, int]
    issues: list[str]  # the first few rejected rows, as file:line: field: expected …, got …
    kinds: dict[str, int]  # records by kind (conversation, preference, text, labelled)
    turns: dict[str, float]  # turns per example: min/p50/max/mean (empty for plain text)
    tokens: dict[str, int]  # token length percentiles: p50/p90/p99/max, and how many examples measured
    tokenizer: str
    tokenizer_note: str | None = None
    examples: list[str] = field(default_factory=list)
    rejected_out: str | None = None
    warnings: list[str] = field(default_factory=list)  # e.g. duplicate keys; the rows were kept

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)


def inspect_source(
    source: Any,
    *,
    format: str | None = None,
    dataset_info: str | Path | None = None,
    model: str | None = None,
    tokenizer: Any = None,
    variables: dict[str, str] | None = None,
    rejected_out: str | Path | None = None,
    encoding: str | None = None,
    n_examples: int = 3,
    max_measured: int = 5000,
) -> InspectReport:
    """Read a file or dataset entry and summarize it. `model` names the tokenizer (default: SmolLM2's,
    falling back to whitespace words if it cannot load; "whitespace" asks for words directly)."""
    from tuneforge.data import read_source

    result = read_source(source, variables=variables, dataset_info=dataset_info, format=format, encoding=encoding)
    written = result.write_rejected(rejected_out) if rejected_out else None
    tok, tok_name, note = _choose_tokenizer(model, tokenizer)
    render = _renderer(tok)
    records = result.records
    measured = _spread(records, max_measured)
    lengths = _lengths(measured, render, tok)
    if len(measured) < len(records):
        note = ((note + "; ") if note else "") + f"token lengths from {len(measured)} of {len(records)} examples"
    kinds: dict[str, int] = {}
    for r in records:
        kinds[type(r).__name__.lower()] = kinds.get(type(r).__name__.lower(), 0) + 1
    return InspectReport(
        source=result.source,
        format=result.format,
        rows=result.rows,
        valid=len(records),
        rejected=len(result.rejected),
        valid_rows=result.valid_rows,
        rejected_by_code=result.counts_by_code(),
        issues=[str(issue) for issue in result.rejected[:10]],
        kinds=kinds,
        turns=_turn_stats(records),
        tokens={**percentiles(lengths), "measured": len(lengths)},
        tokenizer=tok_name,
        tokenizer_note=note,
        examples=[_render_record(r, render) for r in _spread(records, n_examples)],
        rejected_out=str(written) if written else None,
        warnings=result.warnings[:50],
    )


def percentiles(values: list[int]) -> dict[str, int]:
    """Nearest-rank p50/p90/p99/max (values that exist in the data, not interpolations)."""
    if not values:
        return {}
    ordered = sorted(values)

    def rank(p: float) -> int:
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    return {"p50": rank(50), "p90": rank(90), "p99": rank(99), "max": ordered[-1]}


def _choose_tokenizer(model: str | None, tokenizer: Any) -> tuple[Any, str, str | None]:
    if tokenizer is not None:
        return tokenizer, getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__, None
    if model == WHITESPACE:
        return None, WHITESPACE, "whitespace-separated words, not model tokens"
    try:
        from tuneforge.models import load_tokenizer
    except ImportError:
        if model:
            raise
        return None, WHITESPACE, "tuneforge.models is not available: whitespace words, not model tokens"
    if model:  # asked for explicitly: a failure is the user's to fix
        return load_tokenizer(model), model, None
    try:
        return load_tokenizer(DEFAULT_TOKENIZER), DEFAULT_TOKENIZER, None
    except (TuneforgeError, OSError, ValueError) as exc:
        return None, WHITESPACE, f"could not load the {DEFAULT_TOKENIZER} tokenizer ({exc}): whitespace words"


def _renderer(tok: Any) -> Callable[[list[dict], str | None], str]:
    def plain(messages: list[dict], tools: str | None) -> str:
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages)

    if tok is None or not getattr(tok, "chat_template", None):
        return plain

    def chat(messages: list[dict], tools: str | None) -> str:
        kwargs: dict[str, Any] = {}
        if tools:
            try:
                kwargs["tools"] = json.loads(tools)
            except ValueError:
                pass
        try:
            return tok.apply_chat_template(messages, tokenize=False, **kwargs)
        except Exception:  # templates raise on shapes they do not support (e.g. tool turns): show plain text
            return plain(messages, tools)

    return chat


def _render_record(record: Record, render: Callable) -> str:
    if isinstance(record, Conversation):
        return _clip(render(record.messages(), record.tools))
    if isinstance(record, Preference):
        prompt = record.prompt.messages()
        chosen = render(prompt + [{"role": "assistant", "content": record.chosen}], record.prompt.tools)
        return f"{_clip(chosen)}\n[rejected] {_clip(record.rejected)}"  # clipped apart: both stay visible
    if isinstance(record, Labelled):
        return _clip(f"[{record.label}] {record.text}")
    if isinstance(record, Pair):
        negative = f"\n[negative] {_clip(record.negative)}" if record.negative is not None else ""
        return f"{_clip(record.anchor)}\n[positive] {_clip(record.positive)}{negative}"
    return _clip(record.text)


def _texts(record: Record, render: Callable) -> list[str]:
    """What is measured: the rendered conversation; for a pair, prompt + each answer."""
    if isinstance(record, Preference):
        prompt = record.prompt.messages()
        return [render(prompt + [{"role": "assistant", "content": a}], record.prompt.tools)
                for a in (record.chosen, record.rejected)]
    if isinstance(record, Conversation):
        return [render(record.messages(), record.tools)]
    if isinstance(record, Pair):  # each side is embedded on its own
        return [t for t in (record.anchor, record.positive, record.negative) if t is not None]
    return [record.text]


def _lengths(records: list[Record], render: Callable, tok: Any, batch: int = 256) -> list[int]:
    per_record = [_texts(r, render) for r in records]
    flat = [t for texts in per_record for t in texts]
    if tok is None:
        sizes = [len(t.split()) for t in flat]
    else:  # batched: fast tokenizers encode a list in one Rust call
        sizes = [len(ids) for i in range(0, len(flat), batch)
                 for ids in tok(flat[i:i + batch], add_special_tokens=False)["input_ids"]]
    out, pos = [], 0
    for texts in per_record:
        out.append(max(sizes[pos:pos + len(texts)]))
        pos += len(texts)
    return out


def _turn_stats(records: list[Record]) -> dict[str, float]:
    counts = [len(r.turns) if isinstance(r, Conversation) else len(r.prompt.turns) + 1
              for r in records if isinstance(r, (Conversation, Preference))]
    if not counts:
        return {}
    return {"min": min(counts), "p50": percentiles(counts)["p50"], "max": max(counts),
            "mean": round(sum(counts) / len(counts), 2)}


def _spread(records: list, n: int) -> list:
    """n records evenly spaced through the file (first included), deterministic."""
    if len(records) <= n:
        return list(records)
    step = len(records) / n
    return [records[int(i * step)] for i in range(n)]


def _clip(text: str) -> str:
    return text if len(text) <= MAX_EXAMPLE_CHARS else text[:MAX_EXAMPLE_CHARS] + f"... [{len(text) - MAX_EXAMPLE_CHARS} more chars]"

