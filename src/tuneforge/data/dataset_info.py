"""LLaMA-Factory's `dataset_info.json`, read as-is: an entry name -> file, format, column renames, tags."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path

from tuneforge.errors import DataError

HUB_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")
TAG_KEYS = ("role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag", "system_tag")
# LLaMA-Factory column names -> tuneforge row keys (see formats_chat / formats_other).
_ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "history": "history",
                   "system": "system", "tools": "tools", "chosen": "chosen", "rejected": "rejected",
                   "kto_tag": "kto_tag"}
_SHAREGPT_COLUMNS = {"messages": "conversations", "system": "system", "tools": "tools", "chosen": "chosen",
                     "rejected": "rejected", "kto_tag": "kto_tag"}


@dataclass
class Entry:
    name: str
    path: Path
    format: str
    columns: dict[str, str] = field(default_factory=dict)  # tuneforge key -> file column
    tags: dict[str, str] = field(default_factory=dict)


def find_dataset_info(path: str | Path) -> Path:
    """`path` is the json file or the folder holding dataset_info.json."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "dataset_info.json"
    if not path.is_file():
        raise DataError(f"dataset_info.json not found: {path}")
    return path


def load_dataset_info(path: str | Path) -> tuple[dict, Path]:
    path = find_dataset_info(path)
    try:
        info = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: expected valid JSON, got {exc.msg}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: expected UTF-8 text, got invalid bytes") from None
    if not isinstance(info, dict):
        raise DataError(f"{path}: expected an object of dataset entries, got {type(info).__name__}")
    return info, path


def resolve_entry(name: str, dataset_info: str | Path) -> Entry:
    info, info_path = load_dataset_info(dataset_info)
    if name not in info:
        close = difflib.get_close_matches(name, list(info), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise DataError(f"{info_path}: no dataset entry named {name!r}{hint}")
    entry = info[name]
    if not isinstance(entry, dict):
        raise DataError(f"{info_path}: entry {name!r}: expected an object, got {type(entry).__name__}")
    file_name = entry.get("file_name")
    if not file_name:
        hub = next((f"{k}={entry[k]}" for k in HUB_KEYS if entry.get(k)), None)
        if hub:
            raise DataError(f"not available offline: entry {name} points at hub dataset {hub.split('=', 1)[1]} "
                            f"({hub.split('=', 1)[0]}); download it and set file_name to a local file")
        raise DataError(f"{info_path}: entry {name!r}: expected file_name, got keys {', '.join(entry) or 'none'}")
    path = info_path.parent / file_name
    if not path.exists():
        raise DataError(f"dataset entry {name!r} names file {file_name}, which is missing (expected it at {path})")
    fmt, columns = _format_and_columns(name, entry)
    tags = {k: v for k, v in (entry.get("tags") or {}).items() if k in TAG_KEYS}
    return Entry(name=name, path=path, format=fmt, columns=columns, tags=tags)


def _format_and_columns(name: str, entry: dict) -> tuple[str, dict[str, str]]:
    formatting = entry.get("formatting", "alpaca")
    given = entry.get("columns") or {}
    if formatting == "alpaca":
        table = dict(_ALPACA_COLUMNS)
        if set(given) == {"prompt"} and not entry.get("ranking"):  # pre-training text (wiki_demo, c4_demo)
            return "text", {"text": given["prompt"]}
    elif formatting in ("sharegpt", "openai"):
        table = dict(_SHAREGPT_COLUMNS)
    else:
        raise DataError(f"dataset entry {name!r}: formatting expected alpaca or sharegpt, got {formatting!r}")
    columns = {table[k]: v for k, v in given.items() if k in table and v}
    if entry.get("ranking"):
        fmt = "preference"
    elif "kto_tag" in given:
        fmt = "kto"
    else:
        fmt = formatting if formatting == "alpaca" else "sharegpt"
    return fmt, columns


@dataclass
class EntrySummary:
    """One dataset_info.json entry as `data inspect` lists it: its counts, or why it cannot be read here."""

    name: str
    format: str | None = None
    file: str | None = None
    rows: int = 0
    valid_rows: int = 0
    rejected: int = 0
    rejected_by_code: dict[str, int] = field(default_factory=dict)
    unavailable: str | None = None  # "hub" (no local file), "missing file" or the reader's error


def looks_like_dataset_info(source: str | Path) -> bool:
    """A dataset_info.json file, or a folder that holds one (what `data inspect` lists instead of reading)."""
    path = Path(source).expanduser()
    return (path.is_file() and path.name == "dataset_info.json") or (path / "dataset_info.json").is_file()


def summarize_entries(dataset_info: str | Path, variables: dict[str, str] | None = None) -> list[EntrySummary]:
    """Every entry, read offline: row counts for those with a local file, the reason for the others."""
    from tuneforge.config.sections import DataSource
    from tuneforge.data import read_source

    info, info_path = load_dataset_info(dataset_info)
    out: list[EntrySummary] = []
    for name, entry in info.items():
        summary = EntrySummary(name=name, file=entry.get("file_name") if isinstance(entry, dict) else None)
        if isinstance(entry, dict) and not entry.get("file_name") and any(entry.get(k) for k in HUB_KEYS):
            summary.unavailable = "hub"
        elif summary.file and not (info_path.parent / summary.file).exists():
            summary.unavailable = "missing file"
        else:
            try:
                result = read_source(DataSource(name=name, dataset_info=str(info_path)), variables=variables)
            except DataError as exc:
                summary.unavailable = str(exc)
            else:
                summary.format, summary.rows = result.format, result.rows
                summary.valid_rows, summary.rejected = result.valid_rows, len(result.rejected)
                summary.rejected_by_code = result.counts_by_code()
        out.append(summary)
    return out
