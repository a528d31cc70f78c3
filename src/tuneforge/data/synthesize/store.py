"""The output folder: synthetic.jsonl (Alpaca rows + meta), rejected.jsonl (every rejected candidate with
its reason) and report.json. Rows are appended after every round, so a stopped run keeps what it made and
`if_exists: resume` carries on from there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError, DataError

ACCEPTED = "synthetic.jsonl"
REJECTED = "rejected.jsonl"
REPORT = "report.json"


class Store:
    """Accepted and rejected rows, in memory and (when `out_dir` is given) on disk."""

    def __init__(self, out_dir: str | Path | None, if_exists: str = "error") -> None:
        self.out_dir = Path(out_dir).expanduser() if out_dir is not None else None
        self.accepted: list[dict[str, Any]] = []
        self.rejected: list[dict[str, Any]] = []
        self.previous: dict[str, Any] = {}  # the earlier report when resuming
        if self.out_dir is None:
            return
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise ConfigError(f"--out {self.out_dir} (synthesize.out) is a file; expected a folder for "
                              f"{ACCEPTED}, {REJECTED} and {REPORT}")
        accepted = self.out_dir / ACCEPTED
        exists = (accepted.is_file() and accepted.stat().st_size > 0) or (self.out_dir / REPORT).is_file()
        if exists and if_exists == "error":
            raise ConfigError(f"{self.out_dir} already holds a synthesis run; resume it (--resume, "
                              "synthesize.if_exists=resume), replace it (--overwrite) or choose another --out")
        if exists and if_exists == "resume":
            self.accepted = _read_jsonl(accepted) if accepted.is_file() else []
            self.rejected = _read_jsonl(self.out_dir / REJECTED) if (self.out_dir / REJECTED).is_file() else []
            report = self.out_dir / REPORT
            self.previous = json.loads(report.read_text(encoding="utf-8")) if report.is_file() else {}
        else:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            for name in (ACCEPTED, REJECTED, REPORT):
                (self.out_dir / name).unlink(missing_ok=True)

    @property
    def last_round(self) -> int:
        """The highest round in the rows on disk: a run killed after appending rows but before writing its
        report has a report that lags behind, and reusing a round number would replay that round's seeds."""
        rounds = [row.get("meta", {}).get("round") for row in self.accepted] + [r.get("round") for r in self.rejected]
        return max((r for r in rounds if isinstance(r, int)), default=0)

    @property
    def candidates(self) -> int:
        return len(self.accepted) + len(self.rejected)

    def add(self, accepted: list[dict[str, Any]], rejected: list[dict[str, Any]]) -> None:
        self.accepted.extend(accepted)
        self.rejected.extend(rejected)
        if self.out_dir is None:
            return
        for name, rows in ((ACCEPTED, accepted), (REJECTED, rejected)):
            with (self.out_dir / name).open("a", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")

    def write_report(self, report: dict[str, Any]) -> Path | None:
        if self.out_dir is None:
            return None
        path = self.out_dir / REPORT
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)  # a killed run never leaves half a report behind
        return path


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: cannot resume: invalid JSON ({exc.msg}); "
                            "fix the line or start over with --overwrite") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: cannot resume: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows
