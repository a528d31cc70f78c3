"""Low-level file reading: bytes -> (line, row) pairs with real line numbers, or RowIssues.

Hand-written instead of `datasets.load_dataset` because we need what it does not give: the line where each
row starts (also inside a pretty-printed JSON array), keeping the good rows around a broken one, and an
`encoding` finding instead of a UnicodeDecodeError traceback.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import io
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Union

from tuneforge.data.issues import RowIssue
from tuneforge.errors import DataError

SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv", ".tsv", ".parquet", ".txt")
RAW_LIMIT = 2000  # characters of the original row kept in a RowIssue
_SURROGATE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (decoded with surrogateescape)
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # any code point that cannot be encoded as UTF-8
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]", re.ASCII)  # a JSON escape that may decode to one
ENCODING_HINT = "if the file is not UTF-8, set `encoding:` on the data source (e.g. encoding: latin-1)"
_WS = re.compile(r"[ \t\r\n]*")


@dataclass
class RawRow:
    line: int  # 1-based line where the row starts (parquet: row number)
    data: Any
    raw: str = ""
    duplicate_keys: tuple[str, ...] = ()  # keys that appeared twice in one object (the last value won)


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
    text = _LONE_SURROGATE.sub("\ufffd", text)  # rejected.jsonl/quarantine.jsonl must stay writable UTF-8
    return text if len(text) <= RAW_LIMIT else text[:RAW_LIMIT] + f"... [{len(text) - RAW_LIMIT} more chars]"


def check_path(path: Path) -> Path:
    if path.is_symlink() and not path.exists():  # exists() is False for a loop and a dangling link alike
        try:
            path.resolve(strict=True)
        except (RuntimeError, OSError) as exc:  # RuntimeError: Python < 3.13's symlink loop
            loop = isinstance(exc, RuntimeError) or getattr(exc, "errno", None) == 40
            what = "is a symbolic link loop" if loop else f"is a symbolic link to {os.readlink(path)}, which does not exist"
            raise DataError(f"{path}: {what}; expected a data file") from None
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


def check_encoding(name: str) -> str:
    """A codec name Python knows (the DataSource `encoding:` field), normalised; ValueError otherwise."""
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise ValueError(f"unknown text encoding {name!r}; expected e.g. utf-8, latin-1, cp1252, utf-16") from None


def decode(data: bytes, encoding: str | None = None, source: str = "") -> str:
    """UTF-8 (BOM stripped; UTF-16 if it has a UTF-16 BOM), or the `encoding` the user set. Bad bytes stay as
    lone surrogates to be reported per row with code `encoding` instead of failing the whole file."""
    if encoding:
        return data.decode(encoding, errors="surrogateescape")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="surrogateescape")
    _refuse_bomless_utf16(data, source)
    return data.decode("utf-8-sig", errors="surrogateescape")


def _refuse_bomless_utf16(data: bytes, source: str) -> None:
    """UTF-16 without a BOM decodes as UTF-8 "successfully" into NUL-riddled rows: say what it is instead."""
    head = data[:4096]
    if head.count(0) < len(head) // 4:
        return
    odd_zeros, even_zeros = head[1::2].count(0), head[0::2].count(0)
    order = "le" if odd_zeros > even_zeros else "be"
    raise DataError(f"{source}: looks like UTF-16 ({order.upper()}) text without a byte-order mark; expected UTF-8. "
                    f"Set `encoding: utf-16-{order}` on the data source (--encoding for `data inspect`) "
                    "or re-save the file as UTF-8")


class LineIndex:
    """Character offset -> 1-based line number."""

    def __init__(self, text: str) -> None:
        self._starts = [m.end() for m in re.finditer("\n", text)]

    def line(self, offset: int) -> int:
        return bisect.bisect_right(self._starts, offset) + 1


def read_rows(path: Path, kind: str, encoding: str | None = None) -> Iterator[Item]:
    """Rows of a file; `kind` is one of json, csv, tsv, parquet, txt (see `file_kind`); `encoding` overrides
    the UTF-8/UTF-16-BOM default for text files."""
    if kind == "parquet":
        yield from _parquet_rows(path)
        return
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    try:
        text = decode(data, encoding, str(path))
    except UnicodeDecodeError as exc:  # UTF-16 (BOM or `encoding:`) on bytes that are not: nothing to read per row
        what = f"is not valid {encoding}" if encoding else "starts with a UTF-16 byte-order mark but is not valid UTF-16"
        raise DataError(f"{path}: {what} ({exc.reason} at byte {exc.start}); expected UTF-8 or UTF-16 text, "
                        "or set `encoding:` on the data source") from None
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
    return RowIssue(source, line, "encoding", field, f"expected UTF-8 text, got invalid bytes; {ENCODING_HINT}",
                    clip(raw))


def surrogate_issue(source: str, line: int, raw: str, field: str) -> RowIssue:
    return RowIssue(source, line, "encoding", field, "expected text, got a lone surrogate escape (\\ud800-\\udfff "
                    "without its pair), which no tokenizer or UTF-8 file can hold", clip(raw))


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
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise DataError(f"{source}:1: header: expected a {delimiter!r}-separated header, got {exc}") from None
    except StopIteration:
        return
    header = [h.strip() for h in header]
    yield from _csv_body(text, reader, reader.line_num, source, delimiter, header)


def _csv_body(text: str, reader: Any, base: int, source: str, delimiter: str, header: list[str]) -> Iterator[Item]:
    """Rows after the header. `strict` makes a broken quote an error instead of a cell that swallows the
    following lines; the row it starts on is rejected and reading restarts on the next line, so no row is lost."""
    previous, offset = reader.line_num, 0  # line numbers = offset + the current reader's line_num
    while True:
        start = offset + previous + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            why = "an unterminated quoted field" if "end of data" in str(exc) else str(exc)
            bad_line = _nth_line(text, start)
            yield RowIssue(source, start, "invalid_json", "(row)", f"expected a CSV row, got {why}", clip(bad_line))
            rest = _after_line(text, start)
            if rest is None:
                return
            reader = csv.reader(io.StringIO(rest, newline=""), delimiter=delimiter, strict=True)
            previous, offset = 0, start
            continue
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


def _line_start(text: str, line: int) -> int:
    """Offset of the 1-based `line`, or -1 past the end."""
    pos = 0
    for _ in range(line - 1):
        pos = text.find("\n", pos) + 1
        if pos == 0:
            return -1
    return pos


def _nth_line(text: str, line: int) -> str:
    begin = _line_start(text, line)
    if begin < 0:
        return ""
    end = text.find("\n", begin)
    return text[begin:] if end < 0 else text[begin:end]


def _after_line(text: str, line: int) -> str | None:
    begin = _line_start(text, line + 1)
    return None if begin < 0 or begin >= len(text) else text[begin:]


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
    elif exc.pos > row_start and text[exc.pos - 1] == "\n" and text[exc.pos] in "{[":  # a new row began
        line = index.line(row_start)
        message = "expected the row to be closed ('}' or ']') before the next line, got a new row"
    else:
        message = f"expected valid JSON, got {exc.msg} (column {exc.colno})"
    return RowIssue(source, line, "invalid_json", "(row)", message, raw)


def _row(obj: Any, text: str, begin: int, end: int, source: str, index: LineIndex,
         duplicates: list[str]) -> Item:
    raw = text[begin:end]
    line = index.line(begin)
    if _SURROGATE.search(raw):
        bad = _SURROGATE.search(raw).start()
        return encoding_issue(source, index.line(begin + bad), raw)
    if _SURROGATE_ESCAPE.search(raw):  # cheap gate: only rows that spell a surrogate escape are walked
        field = _lone_surrogate_field(obj)
        if field:
            return surrogate_issue(source, line, raw, field)
    return RawRow(line, obj, clip(raw), tuple(dict.fromkeys(duplicates)))


def _lone_surrogate_field(obj: Any) -> str | None:
    """Path of the first string (key or value) holding an unpaired surrogate; iterative, rows may be deep."""
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if _LONE_SURROGATE.search(value):
                return path or "(row)"
        elif isinstance(value, dict):
            for key, item in value.items():
                name = f"{path}.{key}" if path else str(key)
                if _LONE_SURROGATE.search(str(key)):
                    return name
                stack.append((name, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
    return None


@dataclass
class _BadValue:
    issue: RowIssue


class _Decoder(json.JSONDecoder):
    """raw_decode that also notes keys repeated inside one object (json keeps the last value silently)."""

    def __init__(self) -> None:
        super().__init__(object_pairs_hook=self._pairs)
        self.duplicates: list[str] = []

    def _pairs(self, pairs: list[tuple[str, Any]]) -> dict:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            self.duplicates.extend(k for k, _ in pairs if k in seen or seen.add(k))
        return obj


def _decode_value(decoder: _Decoder, text: str, pos: int, source: str,
                  index: LineIndex) -> tuple[Any, int] | _BadValue:
    """One JSON value at `pos` as (value, end offset), or the issue it raises (shared by arrays and streams)."""
    decoder.duplicates = []
    raw = clip(text[pos : pos + RAW_LIMIT])
    try:
        return decoder.raw_decode(text, pos)
    except RecursionError:
        return _BadValue(RowIssue(source, index.line(pos), "invalid_json", "(row)", "expected JSON nested at most "
                                  "~1000 levels deep, got deeper nesting", raw))
    except json.JSONDecodeError as exc:
        return _BadValue(_decode_error(exc, text, source, index, pos))
    except ValueError:  # int() past Python's digit limit (sys.get_int_max_str_digits, 4300 by default)
        limit = sys.get_int_max_str_digits()
        return _BadValue(RowIssue(source, index.line(pos), "wrong_type", "(row)", f"expected numbers of at most "
                                  f"{limit} digits, got a longer one (write long ids as strings)", raw))


def _json_array(text: str, pos: int, source: str, index: LineIndex) -> Iterator[Item]:
    """Elements of a top-level array, each with the line where it starts (raw_decode keeps offsets)."""
    decoder = _Decoder()
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
            pos = _resync_array(text, pos)
            if pos < 0:
                return
            continue
        obj, end = decoded
        yield _row(obj, text, pos, end, source, index, decoder.duplicates)
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
    decoder = _Decoder()
    while pos < len(text):
        decoded = _decode_value(decoder, text, pos, source, index)
        if isinstance(decoded, _BadValue):
            yield decoded.issue
            pos = _resync_stream(text, pos)
            if pos < 0:
                return
            continue
        obj, end = decoded
        yield _row(obj, text, pos, end, source, index, decoder.duplicates)
        pos = _WS.match(text, end).end()


def _resync_stream(text: str, failed_at: int) -> int:
    """Where to continue after a broken value: the next line, when it starts a new row (JSON Lines: every
    line is a row, so none vanishes); inside a pretty-printed object (the next line is indented or closes
    it), the next line that starts a value in column 0. -1: nothing left."""
    next_line = text.find("\n", failed_at) + 1
    if next_line == 0:
        return -1
    pos = _WS.match(text, next_line).end()
    if pos >= len(text):
        return -1
    line_start = text.rfind("\n", 0, pos) + 1
    if pos == line_start and text[pos] not in "}]":
        return pos
    match = re.compile(r"\n(?=[\{\[])").search(text, pos)
    return match.end() if match else -1
