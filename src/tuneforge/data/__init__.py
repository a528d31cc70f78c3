"""tuneforge.data: read any supported file into canonical records, with every bad row reported.

    from tuneforge.data import read_source
    result = read_source("train.jsonl")            # format auto-detected
    result.records, result.rejected                # Conversation/Preference/Text/Labelled, RowIssues
    read_source("identity", dataset_info="data/", variables={"name": "Forge", "author": "me"})
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from tuneforge.config.sections import DataConfig, DataSource
from tuneforge.data.detect import detect_format
from tuneforge.data.formats import FORMATS, ReadOptions, RowProblem, converter
from tuneforge.data.io import RawRow, check_path, clip, file_kind, parse_json_cells, read_rows
from tuneforge.data.issues import ReadResult, RowIssue
from tuneforge.data.placeholders import fill
from tuneforge.data.records import Record
from tuneforge.data.writers import write_records
from tuneforge.errors import DataError

__all__ = ["read_source", "read_data", "collect_records", "detect_format", "write_records", "FORMATS"]

DEFAULT_DATASET_INFO = Path("data") / "dataset_info.json"  # LLaMA-Factory's layout, relative to the cwd


def read_source(
    source: DataSource | str | Path,
    *,
    variables: dict[str, str] | None = None,
    strict: bool = False,
    dataset_info: str | Path | None = None,
    ranking_pairs: str | None = None,
    format: str | None = None,
    encoding: str | None = None,
) -> ReadResult:
    """Read one file or dataset_info entry. Bad rows go to `rejected` with their reason (or, when
    `strict`, the first one raises DataError). Files that cannot be read at all raise DataError.
    `format` and `encoding` override the source's (same as `DataSource.format` / `.encoding`).
    Always rows == valid_rows + len(rejected): no row is dropped without a word."""
    spec = _as_source(source, dataset_info)
    if encoding:
        spec = spec.model_copy(update={"encoding": _encoding(encoding)})
    if format and format != "auto":
        if format not in FORMATS:
            raise DataError(f"unknown data format {format!r}; expected one of auto, {', '.join(FORMATS)}")
        spec = spec.model_copy(update={"format": format})
    fmt, columns, tags, dataset = spec.format, dict(spec.columns), {}, None
    if spec.name:
        from tuneforge.data.dataset_info import resolve_entry

        entry = resolve_entry(spec.name, spec.dataset_info or dataset_info or DEFAULT_DATASET_INFO)
        paths = _entry_files(entry.path)
        fmt = entry.format if fmt == "auto" else fmt
        columns = {**entry.columns, **columns}
        tags, dataset = entry.tags, entry.name
    else:
        paths = [check_path(Path(spec.path).expanduser())]
    opts = ReadOptions(tags=tags, ranking_pairs=ranking_pairs or spec.ranking_pairs)
    result = ReadResult(source=str(paths[0]) if len(paths) == 1 else str(paths[0].parent), format=fmt)
    for path in paths:
        _read_file(path, result, spec, columns, opts, variables or {}, strict, dataset)
    if result.rows != result.valid_rows + len(result.rejected):  # the invariant the reports print
        raise DataError(f"{result.source}: {result.rows} rows in != {result.valid_rows} valid + "
                        f"{len(result.rejected)} rejected (a bug in tuneforge)")
    return result


def _encoding(name: str) -> str:
    from tuneforge.data.io import check_encoding

    try:
        return check_encoding(name)
    except ValueError as exc:
        raise DataError(f"--encoding: {exc}") from None


def _as_source(source: DataSource | str | Path, dataset_info: str | Path | None) -> DataSource:
    if isinstance(source, DataSource):
        return source
    text = str(source)
    path = Path(text).expanduser()
    looks_like_name = not path.exists() and path.suffix == "" and "/" not in text
    if looks_like_name and (dataset_info or DEFAULT_DATASET_INFO.is_file()):
        return DataSource(name=text, dataset_info=str(dataset_info) if dataset_info else None)
    if looks_like_name:
        raise DataError(f"data file not found: {text} (to read it as a dataset_info.json entry, pass --dataset-info)")
    return DataSource(path=text)


def _entry_files(path: Path) -> list[Path]:
    """LLaMA-Factory allows file_name to be a folder: all its data files, in name order."""
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    files = [p for p in files if p.suffix.lower() in (".json", ".jsonl", ".csv", ".tsv", ".parquet", ".txt")]
    if not files:
        raise DataError(f"{path}: the folder holds no data files")
    return files


def _read_file(path: Path, result: ReadResult, spec: DataSource, columns: dict[str, str],
               opts: ReadOptions, variables: dict[str, str], strict: bool, dataset: str | None) -> None:
    kind = file_kind(path)
    items = list(read_rows(path, kind, spec.encoding))
    if spec.max_rows:
        items = items[: max(0, spec.max_rows - result.rows)]
    for item in items:
        if isinstance(item, RawRow) and isinstance(item.data, dict):
            if columns:
                item.data = _rename(item.data, columns)
            if kind in ("csv", "tsv"):
                item.data = parse_json_cells(item.data)
    fmt = result.format
    if fmt == "auto":
        fmt = "text" if kind == "txt" else _detect(path, items)
        result.format = fmt
    convert = converter(fmt)
    source = str(path)
    for item in items:
        result.rows += 1
        issue = item if isinstance(item, RowIssue) else None
        if issue is None:
            issue = _convert(item, convert, opts, variables, source, dataset, result)
        if issue is not None:
            if strict:
                raise DataError(str(issue))
            result.rejected.append(issue)


def _convert(item: RawRow, convert: Any, opts: ReadOptions, variables: dict[str, str], source: str,
             dataset: str | None, result: ReadResult) -> RowIssue | None:
    """Records of one row into `result`, or the issue that rejects it."""
    try:
        records = _records(item, convert, opts, variables, source, dataset)
    except RowProblem as problem:
        return RowIssue(source, item.line, problem.code, problem.field, problem.message, clip(item.raw))
    except RecursionError:  # a row just under the reader's depth limit can still be too deep to walk
        return RowIssue(source, item.line, "invalid_json", "(row)", "expected JSON nested at most a few hundred "
                        "levels deep, got deeper nesting", clip(item.raw))
    result.records.extend(records)
    result.valid_rows += 1
    for key in item.duplicate_keys:
        result.warnings.append(f"{source}:{item.line}: {key}: duplicate key in one object; the last value is used")
    return None


def _detect(path: Path, items: list) -> str:
    """The majority format, or a DataError that names the file and, when no row could be read at all,
    the real cause (bad encoding, nesting, syntax) instead of "no JSON objects"."""
    rows = [i.data for i in items if isinstance(i, RawRow)]
    issues = [i for i in items if isinstance(i, RowIssue)]
    if not any(isinstance(r, dict) for r in rows) and issues:
        counts = Counter(i.code for i in issues)
        summary = ", ".join(f"{n} {code}" for code, n in counts.most_common())
        raise DataError(f"{path}: no row could be read ({len(issues)} rejected: {summary}); the first: "
                        f"{issues[0].field}: {issues[0].message} (line {issues[0].line})")
    try:
        return detect_format(rows)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


def _records(row: RawRow, convert: Any, opts: ReadOptions, variables: dict[str, str],
             source: str, dataset: str | None) -> list[Record]:
    data = row.data
    if not isinstance(data, dict):
        raise RowProblem("wrong_type", "(row)", f"expected a JSON object, got {type(data).__name__}")
    data = fill(data, variables)
    records = convert(data, opts)
    for record in records:
        if isinstance(data.get("meta"), dict):
            record.meta.update(data["meta"])
        if data.get("id") is not None:
            record.meta.setdefault("id", data["id"])
        record.meta.update(source=source, line=row.line)
        if dataset:
            record.meta["dataset"] = dataset
    return records


def _rename(row: dict, columns: dict[str, str]) -> dict:
    """`columns` maps tuneforge keys to the file's column names, e.g. {"text": "body"}."""
    renamed_from = set(columns.values())
    out = {k: v for k, v in row.items() if k not in renamed_from}
    for key, column in columns.items():
        if column in row:
            out[key] = row[column]
    return out


def read_data(data: DataConfig, *, dataset_info: str | Path | None = None) -> list[ReadResult]:
    """Every source of a recipe's `data:` section, read with its variables and strictness."""
    if not data.sources:
        raise DataError("data.sources is empty; expected at least one file or dataset entry")
    return [read_source(s, variables=data.variables, strict=data.strict, dataset_info=dataset_info)
            for s in data.sources]


def collect_records(data: DataConfig | list[ReadResult], min_examples: int | None = None) -> list[Record]:
    """All usable records of all sources; DataError when fewer than `min_examples` (recipe default 10)."""
    results = read_data(data) if isinstance(data, DataConfig) else data
    if min_examples is None:
        min_examples = data.min_examples if isinstance(data, DataConfig) else 10
    records = [r for result in results for r in result.records]
    if len(records) < min_examples:
        rejected = sum(len(r.rejected) for r in results)
        where = ", ".join(r.source for r in results)
        raise DataError(f"{where}: expected at least {min_examples} usable examples, got {len(records)} "
                        f"({rejected} rows rejected; run `tuneforge data inspect` to see why)")
    return records
