"""Seed tasks: Self-Instruct's seed_tasks.jsonl, or any file tuneforge's readers read (Alpaca, ShareGPT,
OpenAI messages). Seeds are few and hand-picked, so a bad row stops the run with file:line, field and what
was expected, instead of being skipped."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from tuneforge.data.formats import RowProblem, check_type, optional, require, text_value
from tuneforge.data.io import RawRow, check_path, file_kind, read_rows
from tuneforge.data.issues import RowIssue
from tuneforge.data.records import Conversation, Preference, Record
from tuneforge.errors import DataError

MAX_LISTED = 5  # bad rows named in the error


@dataclass
class Seed:
    id: str
    instruction: str
    input: str = ""
    output: str = ""
    is_classification: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


def load_seeds(source: str | Path | Sequence[Seed | dict | Record], max_seeds: int | None = None) -> list[Seed]:
    """Seeds from a file, from dicts (Self-Instruct or Alpaca rows) or from canonical records."""
    if isinstance(source, (str, Path)):
        seeds = _from_file(Path(source).expanduser())
    else:
        seeds = [_from_object(item, i) for i, item in enumerate(source)]
    if max_seeds:
        seeds = seeds[:max_seeds]
    if not seeds:
        raise DataError(f"{source if isinstance(source, (str, Path)) else 'seeds'}: no seed tasks; "
                        "expected at least one instruction with an output")
    return seeds


def _from_file(path: Path) -> list[Seed]:
    check_path(path)
    kind = file_kind(path)
    items = list(read_rows(path, kind)) if kind == "json" else []
    if items and _is_self_instruct(items):
        return _self_instruct(items, str(path))
    return _from_reader(path, kind, items)


def _is_self_instruct(items: list) -> bool:
    rows = [i.data for i in items[:50] if isinstance(i, RawRow) and isinstance(i.data, dict)]
    return bool(rows) and sum("instances" in r for r in rows) * 2 > len(rows)


def _self_instruct(items: list, source: str) -> list[Seed]:
    seeds: list[Seed] = []
    issues: list[RowIssue] = []
    for item in items:
        if isinstance(item, RowIssue):
            issues.append(item)
            continue
        try:
            seeds.append(self_instruct_seed(item.data, f"seed_line_{item.line}", source, item.line))
        except RowProblem as problem:
            issues.append(RowIssue(source, item.line, problem.code, problem.field, problem.message))
    _raise_issues(issues, len(items), source, "Self-Instruct seed tasks (id, instruction, instances[{input, output}])")
    return seeds


def self_instruct_seed(row: Any, default_id: str, source: str = "", line: int = 0) -> Seed:
    """One seed_tasks.jsonl row; the first instance is the seed's input/output (Self-Instruct shows only
    instructions when asking for new tasks; one worked instance is what an Alpaca row holds)."""
    if not isinstance(row, dict):
        raise RowProblem("wrong_type", "(row)", f"expected a JSON object, got {type(row).__name__}")
    instruction = text_value(require(row, "instruction"), "instruction")
    instances = require(row, "instances", list)
    if not instances:
        raise RowProblem("empty_content", "instances", "expected at least one {input, output} instance, got []")
    first = check_type(instances[0], dict, "instances[0]")
    task_input = optional(first, "input", str, "instances[0].input") or ""
    output = text_value(require(first, "output", str, "instances[0].output"), "instances[0].output")
    is_cls = optional(row, "is_classification", bool) or False
    seed_id = row.get("id")
    seed_id = str(seed_id) if isinstance(seed_id, (str, int)) and str(seed_id).strip() else default_id
    meta = {k: row[k] for k in ("name",) if isinstance(row.get(k), str)}
    if source:
        meta.update(source=source, line=line)
    return Seed(seed_id, instruction.strip(), task_input.strip(), output.strip(), is_cls, meta)


def _from_reader(path: Path, kind: str, items: list) -> list[Seed]:
    from tuneforge.data import read_source

    result = read_source(path)
    _raise_issues(result.rejected, result.rows, str(path), f"{result.format} rows with an instruction and an answer")
    # Alpaca rows keep instruction and input apart; the reader joins them into one user turn.
    raw = {i.line: i.data for i in items if isinstance(i, RawRow) and isinstance(i.data, dict)}
    seeds = []
    for k, record in enumerate(result.records):
        line = record.meta.get("line", k + 1) if hasattr(record, "meta") else k + 1
        seed = _from_record(record, f"seed_line_{line}", f"{path}:{line}")
        row = raw.get(line) if result.format == "alpaca" else None
        if row and isinstance(row.get("instruction"), str) and isinstance(row.get("input", ""), str):
            seed.instruction, seed.input = row["instruction"].strip(), (row.get("input") or "").strip()
        seeds.append(seed)
    return seeds


def _from_record(record: Record, default_id: str, where: str) -> Seed:
    if isinstance(record, Preference):
        conv = Conversation([*record.prompt.turns], record.prompt.system, meta={**record.prompt.meta, **record.meta})
        user, answer = conv.turns[-1].content, record.chosen
    elif isinstance(record, Conversation):
        user_turn = next((i for i, t in enumerate(record.turns) if t.role == "user"), None)
        answer_turn = next((t for t in record.turns[(user_turn or 0) + 1:] if t.role == "assistant"), None)
        if user_turn is None or answer_turn is None:
            raise DataError(f"{where}: expected a user turn followed by an assistant answer")
        conv, user, answer = record, record.turns[user_turn].content, answer_turn.content
    else:
        raise DataError(f"{where}: seeds must be instruction/answer examples, got a {type(record).__name__} record "
                        "(expected Self-Instruct, Alpaca, ShareGPT or OpenAI messages rows)")
    meta = dict(conv.meta)
    seed_id = meta.get("id")
    seed_id = str(seed_id) if seed_id is not None else default_id
    return Seed(seed_id, user.strip(), "", answer.strip(), False, meta)


def _from_object(item: Seed | dict | Record, index: int) -> Seed:
    if isinstance(item, Seed):
        return item
    default_id = f"seed_{index}"
    if isinstance(item, dict):
        try:
            if "instances" in item:
                return self_instruct_seed(item, default_id)
            instruction = text_value(require(item, "instruction"), "instruction")
            output = text_value(require(item, "output"), "output")
            task_input = optional(item, "input") or ""
        except RowProblem as problem:
            raise DataError(f"seeds[{index}]: {problem.field}: {problem.message}") from None
        seed_id = str(item.get("id", default_id))
        return Seed(seed_id, instruction.strip(), task_input.strip(), output.strip(),
                    bool(item.get("is_classification", False)))
    return _from_record(item, default_id, f"seeds[{index}]")


def _raise_issues(issues: Iterable[RowIssue], rows: int, source: str, expected: str) -> None:
    issues = list(issues)
    if not issues:
        return
    listed = "\n".join(f"  {issue}" for issue in issues[:MAX_LISTED])
    more = f"\n  ... and {len(issues) - MAX_LISTED} more" if len(issues) > MAX_LISTED else ""
    raise DataError(f"{source}: {len(issues)} of {rows} seed rows are invalid (expected {expected}); "
                    f"fix or remove them:\n{listed}{more}")
