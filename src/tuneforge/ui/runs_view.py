"""What the dashboard shows about run folders: table rows, a run's details, metrics read by byte offset,
the few files a browser may fetch, and side-by-side comparisons. No FastAPI here: plain functions over
`tuneforge.train.runs` and the run-folder layout (docs/training.md), so they are tested without a server.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import time
import zlib
from pathlib import Path
from typing import Any

from tuneforge.train import checkpoint as ckpt
from tuneforge.train.runfolder import STOP_REQUEST, read_status, stop_requested
from tuneforge.train.runs import RunInfo, read_json_mapping, read_run, read_yaml_mapping, recipe_field

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# The only files a browser may fetch from a run folder (plus eval/<task>/report.html of multitask runs).
SERVABLE = ("eval/report.html", "rejected.jsonl", "loss.png", "recipe.yaml", "summary.json", "manifest.json")
_TASK_REPORT = re.compile(r"^eval/[A-Za-z0-9][A-Za-z0-9._-]*/report\.html$")
_MAX_METRICS_BYTES = 4 << 20  # one poll returns at most this much of metrics.jsonl; the next continues


class RunNotFound(LookupError):
    """No such run (or a name that could never be one): HTTP 404."""


def run_path(runs_dir: Path, name: str) -> Path:
    """The folder of run `name`: a direct child of runs_dir holding a recipe.yaml, never anything else."""
    if not _NAME.match(name or ""):
        raise RunNotFound(f"not a run name: {name!r}")
    root = Path(runs_dir).resolve()
    path = (root / name).resolve()
    if path.parent != root or not (path / "recipe.yaml").is_file():
        raise RunNotFound(f"run not found: {name} (under {runs_dir})")
    return path


def run_file(run_dir: Path, rel: str) -> Path:
    """A servable file of the run; anything else (other names, `..`, links out of the folder) is not found."""
    if rel not in SERVABLE and not _TASK_REPORT.match(rel):
        raise RunNotFound(f"{rel}: not a file the dashboard serves (allowed: {', '.join(SERVABLE)})")
    root = Path(run_dir).resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise RunNotFound(f"{rel}: not in this run folder")
    return path


class RunsView:
    """Rows of the runs table. The table polls, so each row is cached until one of the run's files changes,
    and a running run's steps and best val loss come from reading only what metrics.jsonl gained."""

    def __init__(self, runs_dir: Path):
        self.runs_dir = Path(runs_dir)
        self._rows: dict[Path, tuple[tuple, dict[str, Any]]] = {}
        self._tails: dict[Path, tuple[str | None, int, float | None]] = {}

    def rows(self) -> list[dict[str, Any]]:
        root = self.runs_dir
        if not root.is_dir():
            return []
        folders = [p for p in root.iterdir() if p.is_dir() and (p / "recipe.yaml").is_file()]
        folders.sort(key=lambda p: (p / "recipe.yaml").stat().st_mtime, reverse=True)
        return [self.row(p) for p in folders]

    def row(self, run_dir: Path) -> dict[str, Any]:
        key = _signature(run_dir)
        cached = self._rows.get(run_dir)
        if cached is None or cached[0] != key:
            cached = (key, _row(run_dir, *self._progress(run_dir)))
            self._rows[run_dir] = cached
        row = dict(cached[1])
        if row["status"] == "running":
            row["status"] = read_status(run_dir)  # a killed process reads as stopped without a file change
            row["duration_s"] = _duration(run_dir, row["status"])
        return row

    def _progress(self, run_dir: Path) -> tuple[int, float | None]:
        summary = read_json_mapping(run_dir / "summary.json")
        if summary:
            return summary.get("steps") or 0, summary.get("best_val_loss")
        cursor, steps, best = self._tails.get(run_dir, (None, 0, None))
        got = read_metrics_from(run_dir / "metrics.jsonl", cursor)
        if got["reset"]:
            steps, best = 0, None
        for r in got["rows"]:
            steps = max(steps, int(r.get("step") or 0))
            if isinstance(r.get("val_loss"), (int, float)):
                best = r["val_loss"] if best is None else min(best, r["val_loss"])
        self._tails[run_dir] = (got["cursor"], steps, best)
        return steps, best


def _signature(run_dir: Path) -> tuple:
    out = []
    for name in ("recipe.yaml", "status", "summary.json", "metrics.jsonl", "pid", STOP_REQUEST):
        try:
            st = (run_dir / name).stat()
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def _row(run_dir: Path, steps: int, best_val_loss: float | None) -> dict[str, Any]:
    recipe = read_yaml_mapping(run_dir / "recipe.yaml")
    status = read_status(run_dir)
    return {
        "name": run_dir.name, "status": status, "objective": recipe_field(recipe, "method", "objective", "sft"),
        "method": recipe_field(recipe, "method", "type"), "model": str(recipe_field(recipe, "model", "name_or_path")),
        "steps": steps,
        "best_val_loss": _num(best_val_loss), "started": _started(run_dir),
        "duration_s": _duration(run_dir, status), "has_final": (run_dir / "final").is_dir(),
        "stop_requested": stop_requested(run_dir),
        "resumable": status in ("stopped", "failed") and ckpt.latest_checkpoint(run_dir) is not None,
    }


def _started_ts(run_dir: Path) -> float:
    created = read_json_mapping(run_dir / "manifest.json").get("created")
    try:
        return _dt.datetime.fromisoformat(created).timestamp()
    except (TypeError, ValueError):
        return (run_dir / "recipe.yaml").stat().st_mtime


def _started(run_dir: Path) -> str:
    return _dt.datetime.fromtimestamp(_started_ts(run_dir)).isoformat(timespec="seconds")


def _duration(run_dir: Path, status: str) -> float | None:
    """Wall time from the manifest to the last status write (the end), or to now while running."""
    start = _started_ts(run_dir)
    if status == "running":
        return round(time.time() - start, 1)
    try:
        return round(max(0.0, (run_dir / "status").stat().st_mtime - start), 1)
    except OSError:
        return None


# -- one run ----------------------------------------------------------------------------------------

def run_detail(run_dir: Path, row: dict[str, Any]) -> dict[str, Any]:
    """Everything the run page shows except the metric rows (those come by offset, see read_metrics_from);
    `row` is the run's row of the runs table (RunsView.row)."""
    summary = read_json_mapping(run_dir / "summary.json")
    stats = summary.get("stats") if isinstance(summary.get("stats"), dict) else {}
    files = [rel for rel in SERVABLE if (run_dir / rel).is_file()]
    files += sorted(str(p.relative_to(run_dir)) for p in run_dir.glob("eval/*/report.html"))
    return {
        **row, "path": str(run_dir),
        "recipe_yaml": (run_dir / "recipe.yaml").read_text(encoding="utf-8"),
        "summary": {k: v for k, v in summary.items() if k != "stats"},
        "before_after": before_after(stats), "stats": flat_stats(stats),
        "files": files, "checkpoints": [p.name for p in ckpt.list_checkpoints(run_dir)],
    }


def before_after(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """Before -> after tables: test_before/test_after (one table per task for multitask runs) and every
    `<x>_before`/`<x>_after` or `<x>_first`/`<x>_last` pair (preference accuracy, PPO reward...)."""
    tables = []
    test_b, test_a = stats.get("test_before") or {}, stats.get("test_after") or {}
    if isinstance(test_a, dict) and test_a:
        per_task = all(isinstance(v, dict) for v in test_a.values())
        for task, after in (test_a.items() if per_task else [("", test_a)]):
            before = (test_b.get(task) if per_task else test_b) or {}
            title = f"test split, task {task}" if task else "test split"
            tables.append(_table(title, after, before))
    pairs = _pairs(stats)
    if pairs:
        tables.append({"title": "held-out statistics", "rows": pairs})
    return tables


def _table(title: str, after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    rows = [{"metric": m, "before": _num(before.get(m)), "after": _num(v)} for m, v in after.items()]
    return {"title": title, "rows": rows}


def _pairs(stats: dict[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    rows = []
    for key, value in stats.items():
        if key in ("test_before", "test_after"):
            continue
        for old, new in (("_before", "_after"), ("_first", "_last")):
            if key.endswith(new):
                stem = key[: -len(new)]
                prior = stats.get(stem + old)
                if isinstance(value, dict):
                    rows += [{"metric": f"{prefix}{stem}.{m}", "before": _num((prior or {}).get(m)),
                              "after": _num(v)} for m, v in value.items() if _num(v) is not None]
                elif _num(value) is not None:
                    rows.append({"metric": prefix + stem, "before": _num(prior), "after": _num(value)})
        if isinstance(value, dict) and not key.endswith(("_before", "_after")):
            rows += _pairs(value, f"{prefix}{key}.")
    return rows


def flat_stats(stats: dict[str, Any], prefix: str = "", depth: int = 0) -> list[list[Any]]:
    """Scalar stats as [key, value] rows (nested dicts dotted, two levels); small lists shown as JSON."""
    out: list[list[Any]] = []
    for key, value in stats.items():
        name = prefix + str(key)
        if isinstance(value, dict) and depth < 2:
            out += flat_stats(value, name + ".", depth + 1)
        elif isinstance(value, (int, float, str, bool)) or value is None:
            out.append([name, _num(value) if isinstance(value, float) else value])
        else:
            text = json.dumps(value, default=str)
            out.append([name, text if len(text) <= 200 else text[:197] + "..."])
    return out


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) or math.isinf(value) else value


# -- metrics.jsonl by byte offset -------------------------------------------------------------------

def read_metrics_from(path: Path, cursor: str | None = None) -> dict[str, Any]:
    """Rows of metrics.jsonl after `cursor` (from the previous answer; None: from the start).

    The cursor is `<offset>:<crc32 of the 64 bytes before it>`: a poll reads only what was appended, and
    when the file was rewritten under the reader (a resumed run drops the rows after its checkpoint) the
    bytes before the offset no longer match, so the answer starts again from 0 with `reset: true`.
    Only complete lines are returned; a half-written last line waits for the next poll.
    """
    offset, reset = _parse_cursor(path, cursor)
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            chunk = fh.read(_MAX_METRICS_BYTES)
    except FileNotFoundError:
        return {"rows": [], "cursor": None, "reset": reset, "size": 0}
    end = chunk.rfind(b"\n") + 1
    rows = []
    for line in chunk[:end].splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    offset += end
    return {"rows": rows, "cursor": _make_cursor(path, offset), "reset": reset, "size": path.stat().st_size}


def _make_cursor(path: Path, offset: int) -> str:
    return f"{offset}:{_crc_before(path, offset)}"


def _crc_before(path: Path, offset: int) -> int:
    with open(path, "rb") as fh:
        fh.seek(max(0, offset - 64))
        return zlib.crc32(fh.read(min(64, offset)))


def _parse_cursor(path: Path, cursor: str | None) -> tuple[int, bool]:
    if not cursor:
        return 0, False
    text, _, crc = cursor.partition(":")
    try:
        offset, crc_value = int(text), int(crc)
    except ValueError:
        return 0, True
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0, True
    if offset < 0 or offset > size or _crc_before(path, offset) != crc_value:
        return 0, True
    return offset, False


# -- comparing runs ---------------------------------------------------------------------------------

def compare_runs(run_dirs: list[Path], max_points: int = 400) -> dict[str, Any]:
    """Summary test metrics side by side (best per metric marked) and every run's loss curves."""
    from tuneforge.evaluate.metrics import LOWER_IS_BETTER
    from tuneforge.evaluate.report import read_loss_curves

    runs, metrics = [], []
    for run_dir in run_dirs:
        info = read_run(run_dir)
        values = _headline_metrics(info, read_json_mapping(run_dir / "summary.json").get("stats") or {})
        metrics += [m for m in values if m not in metrics]
        curves = read_loss_curves(run_dir)
        runs.append({**_row(run_dir, info.steps, info.best_val_loss), "metrics": values,
                     "curves": {k: _thin(v, max_points) for k, v in curves.items()
                                if k in ("train_loss", "val_loss")}})
    best = {}
    for metric in metrics:
        scored = [(r["metrics"][metric], r["name"]) for r in runs if r["metrics"].get(metric) is not None]
        if len(scored) > 1:
            lower = metric.rsplit(".", 1)[-1] in LOWER_IS_BETTER or metric.endswith("loss")
            best[metric] = (min(scored) if lower else max(scored))[1]
    return {"runs": runs, "metrics": metrics, "best": best}


def _headline_metrics(info: RunInfo, stats: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {"best_val_loss": _num(info.best_val_loss)}
    after = stats.get("test_after") or {}
    for key, value in after.items() if isinstance(after, dict) else ():
        if isinstance(value, dict):  # multitask: one dict per task
            out.update({f"{key}.{m}": _num(v) for m, v in value.items()})
        else:
            out[f"test.{key}"] = _num(value)
    for row in _pairs(stats):
        out[row["metric"]] = row["after"]
    return out


def _thin(points: list[tuple[float, float]], limit: int) -> list[tuple[float, float]]:
    """At most `limit` points, keeping the last (a 10k-step train curve need not cross the wire whole)."""
    if len(points) <= limit:
        return points
    stride = math.ceil(len(points) / limit)
    return points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])
