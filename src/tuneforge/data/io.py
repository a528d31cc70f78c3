"""Low-level file reading: bytes -> (line, row) pairs with real line numbers, or RowIssues.

Hand-written instead of `datasets.load_dataset` because we need what it does not give: the line where each
row starts (also inside a pretty-printed JSON array), keeping the good rows around a broken one, and an
`encoding` finding instead of a UnicodeDecodeError traceback.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Union

from tuneforge.data.issues import RowIssue
from tuneforge.errors import DataError

SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv", ".tsv", ".parquet", ".txt")
RAW_LIMIT = 2000  # characters of the original row kept in a RowIssue
_SURROGATE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (decoded with surrogateescape)
_WS = re.compile(r"[ \t\r\n]*")


@dataclass
class RawRow:
    line: int  # 1-based line where the row starts (parquet: row number)
    data: Any
    raw: str = ""


Item = Union[RawRow, RowIssue]


def write_jsonl(rows: Iterator[dict[str, Any]] | list[dict[str, Any]], path: str | Path) -> Path:
    """One JSON object per line, UTF-8, non-ASCII kept as is; the folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def clip(text: str) -> str:
    text = _SURROGATE.sub("\ufffd", text)
    return text if len(text) <= RAW_LIMIT else text[:RAW_LIMIT] + f"... [{len(text) - RAW_LIMIT} more chars]"


def check_path(path: Path) -> Path:
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    if path.is_dir():
        hint = ""
        if (path / "dataset_info.json").is_file():
            hint = f"; to read an entry, pass its name with --dataset-info {path}"
        raise DataError(
            f"{path} is a directory; expected a data file ({', '.join(SUFFIXES)}){hint}"
        )
    return path


def decode(data: bytes) -> str:
    """UTF-8 (BOM stripped; UTF-16 if it has a UTF-16 BOM). Bad bytes stay as lone surrogates to be
    reported per row with code `encoding` instead of failing the whole file."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="surrogateescape")
    return data.decode("utf-8-sig", errors="surrogateescape")


class LineIndex:
    """Character offset -> 1-based line number."""

    def __init__(self, text: str) -> None:
        self._starts = [m.end() for m in re.finditer("\n", text)]

    def line(self, offset: int) -> int:
        return bisect.bisect_right(self._starts, offset) + 1


def read_rows(path: Path, kind: str) -> Iterator[Item]:
    """Rows of a file; `kind` is one of json, csv, tsv, parquet, txt (see `file_kind`)."""
    if kind == "parquet":
        yield from _parquet_rows(path)
        return
    try:
        text = decode(path.read_bytes())
    except UnicodeDecodeError as exc:  # a UTF-16 BOM on bytes that are not UTF-16: nothing to read per row
        raise DataError(f"{path}: starts with a UTF-16 byte-order mark but is not valid UTF-16 ({exc.reason} at "
                        f"byte {exc.start}); expected UTF-8 or UTF-16 text") from None
    if not text.strip():
        raise DataError(f"{path}: the file is empty; expected at least one example")
    source = str(path)
    if kind == "txt":
        yield from _text_rows(text, source)
    elif kind in ("csv", "tsv"):
        yield from _csv_rows(text, source, "\t" if kind == "tsv" else ",")
    else:
        yield from _json_rows(text, source)


def file_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".json", ".jsonl", ".ndjson"):
        return "json"
    if suffix in (".csv", ".tsv", ".parquet", ".txt"):
        return suffix[1:]
    raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r}; expected one of {', '.join(SUFFIXES)}")


def encoding_issue(source: str, line: int, raw: str, field: str = "(row)") -> RowIssue:
    return RowIssue(source, line, "encoding", field, "expected UTF-8 text, got invalid bytes", clip(raw))


def _text_rows(text: str, source: str) -> Iterator[Item]:
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        if _SURROGATE.search(line):
            yield encoding_issue(source, number, line)
        else:
            yield RawRow(number, {"text": line}, line)


def _csv_rows(text: str, source: str, delimiter: str) -> Iterator[Item]:
    csv.field_size_limit(2**31 - 1)  # the default 128 KiB per cell rejects long documents
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise DataError(f"{source}:1: header: expected a {delimiter!r}-separated header, got {exc}") from None
    header = [h.strip() for h in header]
    previous = reader.line_num
    while True:
        start = previous + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield RowIssue(source, start, "invalid_json", "(row)", f"expected a CSV row, got {exc}")
            return
        previous = reader.line_num
        raw = delimiter.join(cells)
        if not any(c.strip() for c in cells):
            continue
        if _SURROGATE.search(raw):
            yield encoding_issue(source, start, raw)
        elif len(cells) != len(header):
            yield RowIssue(source, start, "missing_field", "(row)",
                           f"expected {len(header)} columns, got {len(cells)}", clip(raw))
        else:
            yield RawRow(start, dict(zip(header, cells)), raw)


# Row keys that hold lists/objects; in a CSV they arrive as JSON text (see parse_json_cells).
STRUCTURED = frozenset({"messages", "conversations", "history", "tools", "chosen", "rejected", "prompt", "responses",
                        "input", "preferred_output", "non_preferred_output", "groups", "meta"})


def parse_json_cells(row: dict) -> dict:
    """CSV/TSV cells of structured keys (e.g. a `messages` column) that hold JSON are parsed; other cells
    stay text, so a text column that happens to start with "[" is not turned into a list."""
    for key in STRUCTURED & row.keys():
        value = row[key]
        if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
            try:
                row[key] = json.loads(value)
            except ValueError:
                pass  # the converter reports it as wrong_type with the text it got
    return row


def _parquet_rows(path: Path) -> Iterator[Item]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise DataError(f"{path}: expected a Parquet file, got {type(exc).__name__}: {exc}") from None
    if table.num_rows == 0:
        raise DataError(f"{path}: the file is empty; expected at least one example")
    for number, row in enumerate(table.to_pylist(), start=1):
        yield RawRow(number, row, "")


def _json_rows(text: str, source: str) -> Iterator[Item]:
    index = LineIndex(text)
    start = _WS.match(text).end()
    if text.startswith("[", start):
        yield from _json_array(text, start + 1, source, index)
    else:
        yield from _json_stream(text, start, source, index)


def _decode_error(exc: json.JSONDecodeError, text: str, source: str, index: LineIndex, row_start: int) -> RowIssue:
    line = index.line(exc.pos)
    bad_line = text[text.rfind("\n", 0, exc.pos) + 1 : text.find("\n", exc.pos) % (len(text) + 1)]
    raw = clip(text[row_start : row_start + RAW_LIMIT])
    if _SURROGATE.search(bad_line):
        return encoding_issue(source, line, raw)
    at_end = exc.pos >= len(text.rstrip())
    unterminated = exc.msg.startswith("Unterminated string") and '"' not in text[exc.pos + 1 :]
    if at_end or unterminated:
        line = index.line(max(0, len(text.rstrip()) - 1))  # the last line with text, not the empty one after it
        message = "expected more JSON, got end of file (truncated?)"
    else:
        message = f"expected valid JSON, got {exc.msg} (column {exc.colno})"
    return RowIssue(source, line, "invalid_json", "(row)", message, raw)


def _row(obj: Any, text: str, begin: int, end: int, source: str, index: LineIndex) -> Item:
    raw = text[begin:end]
    line = index.line(begin)
    if _SURROGATE.search(raw):
        bad = _SURROGATE.search(raw).start()
        return encoding_issue(source, index.line(begin + bad), raw)
    return RawRow(line, obj, clip(raw))


@dataclass
class _BadValue:
    issue: RowIssue
    error_pos: int | None  # where the JSON error is, to resync after; None: stop reading the file


def _decode_value(decoder: json.JSONDecoder, text: str, pos: int, source: str,
                  index: LineIndex) -> tuple[Any, int] | _BadValue:
    """One JSON value at `pos` as (value, end offset), or the issue it raises (shared by arrays and streams)."""
    try:
        return decoder.raw_decode(text, pos)
    except RecursionError:
        return _BadValue(RowIssue(source, index.line(pos), "invalid_json", "(row)", "expected JSON nested at most "
                                  "~1000 levels deep, got deeper nesting", clip(text[pos : pos + RAW_LIMIT])), None)
    except json.JSONDecodeError as exc:
        return _BadValue(_decode_error(exc, text, source, index, pos), exc.pos)


def _json_array(text: str, pos: int, source: str, index: LineIndex) -> Iterator[Item]:
    """Elements of a top-level array, each with the line where it starts (raw_decode keeps offsets)."""
    decoder = json.JSONDecoder()
    while True:
        pos = _WS.match(text, pos).end()
        if text.startswith("]", pos):
            _trailing(text, pos + 1, source, index)
            return
        if pos >= len(text):
            yield RowIssue(source, index.line(len(text.rstrip()) - 1), "invalid_json", "(array)",
                           "expected ']' closing the array, got end of file (truncated?)")
            return
        decoded = _decode_value(decoder, text, pos, source, index)
        if isinstance(decoded, _BadValue):
            yield decoded.issue
            pos = -1 if decoded.error_pos is None else _resync_array(text, pos)
            if pos < 0:
                return
            continue
        obj, end = decoded
        yield _row(obj, text, pos, end, source, index)
        pos = _WS.match(text, end).end()
        if text.startswith(",", pos):
            pos += 1
        elif not text.startswith("]", pos):
            if pos >= len(text):
                yield RowIssue(source, index.line(len(text.rstrip()) - 1), "invalid_json", "(array)",
                               "expected ',' or ']', got end of file (truncated?)")
                return
            yield RowIssue(source, index.line(pos), "invalid_json", "(array)",
                           f"expected ',' or ']' between elements, got {text[pos:pos + 10]!r}")
            pos = _resync_array(text, pos)
            if pos < 0:
                return


def _resync_array(text: str, failed_at: int) -> int:
    """After a broken element, continue at the next line that starts an element at the same indentation
    (pretty-printed arrays); -1 when there is no such line, so a compact array stops at the error."""
    line_start = text.rfind("\n", 0, failed_at) + 1
    indent = text[line_start:failed_at]
    if indent.strip():  # element does not start its own line: cannot resync safely
        return -1
    pattern = re.compile(r"\n" + re.escape(indent) + r"(?=[\{\[])")
    match = pattern.search(text, failed_at + 1)
    return match.end() if match else -1


def _trailing(text: str, pos: int, source: str, index: LineIndex) -> None:
    rest = text[pos:].strip()
    if rest:
        raise DataError(f"{source}:{index.line(pos)}: (file): expected end of file after the array, got {rest[:20]!r}")


def _json_stream(text: str, pos: int, source: str, index: LineIndex) -> Iterator[Item]:
    """JSON Lines (also concatenated pretty-printed objects): one value after another."""
    decoder = json.JSONDecoder()
    while pos < len(text):
        decoded = _decode_value(decoder, text, pos, source, index)
        if isinstance(decoded, _BadValue):
            yield decoded.issue
            if decoded.error_pos is None:
                return
            # continue at the next line that starts a value in column 0 (every line of a JSONL file).
            error_pos = decoded.error_pos
            match = re.compile(r"\n(?=[\{\[])").search(text, error_pos if error_pos > pos else pos + 1)
            if not match:
                return
            pos = match.end()
            continue
        obj, end = decoded
        yield _row(obj, text, pos, end, source, index)
        pos = _WS.match(text, end).end()
