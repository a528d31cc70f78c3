"""Validation findings: every rejected row keeps where it came from, why, and its original text."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Generic, Literal, TypeVar

from tuneforge.data.records import Record

IssueCode = Literal[
    "invalid_json",
    "missing_field",
    "wrong_type",
    "empty_content",
    "unrecognized_role",
    "no_assistant_turn",
    "turn_order",
    "encoding",
    "unfilled_placeholder",
    "identical_pair",
    "too_long",
    "unseen_label",
    "not_supported",
]


@dataclass
class RowIssue:
    source: str
    line: int  # 1-based line in the file where the row starts
    code: IssueCode
    field: str
    message: str  # "expected …, got …"
    raw: str = ""  # the original row text (truncated for huge rows)

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.field}: {self.message} [{self.code}]"

    @classmethod
    def of_record(cls, record: Record, default_source: str, code: IssueCode, field: str, message: str,
                  raw: str = "") -> "RowIssue":
        """An issue found after reading, placed where the record came from (its meta source/line)."""
        meta = getattr(record, "meta", None) or {}
        return cls(str(meta.get("source", default_source)), int(meta.get("line", 0)), code, field, message, raw)


R = TypeVar("R", bound=Record)


@dataclass
class ReadResult(Generic[R]):
    source: str
    format: str
    records: list[R] = field(default_factory=list)
    rejected: list[RowIssue] = field(default_factory=list)
    rows: int = 0  # rows seen = valid_rows + len(rejected) (a ranking row may give several records)
    valid_rows: int = 0
    warnings: list[str] = field(default_factory=list)  # file:line: field: ... for rows kept despite a doubt

    def counts_by_code(self) -> dict[str, int]:
        return dict(Counter(issue.code for issue in self.rejected))

    def write_rejected(self, path: str | Path) -> Path | None:
        """Write rejected rows with their reason as JSONL (nothing is lost silently)."""
        return write_issues(self.rejected, path) if self.rejected else None


def write_issues(issues: list[RowIssue], path: str | Path) -> Path:
    """Rejected rows with their reason as JSONL, one RowIssue per line (every trainer's rejected.jsonl)."""
    from tuneforge.data.io import write_jsonl  # io imports this module

    return write_jsonl((asdict(issue) for issue in issues), path)
