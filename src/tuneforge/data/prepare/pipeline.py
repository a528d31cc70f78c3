"""`prepare(...)`: run the data workbench steps in order and write splits, quarantine and report.

    from tuneforge.data.prepare import prepare, PrepareConfig
    result = prepare(["train.json"], PrepareConfig(), "prepared/", seed=42)
    result.counts, result.paths["report_html"]
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from tuneforge.config.sections import DataSource
from tuneforge.data.issues import ReadResult
from tuneforge.data.prepare.config import PrepareConfig
from tuneforge.data.prepare.dedup import run_dedup
from tuneforge.data.prepare.filters import TokenCounter, example_lengths, run_filter
from tuneforge.data.prepare.leakage import run_leakage
from tuneforge.data.prepare.ledger import CountMismatch, Item, Ledger
from tuneforge.data.prepare.normalize import run_normalize
from tuneforge.data.prepare.pii import run_pii
from tuneforge.data.prepare.split import SPLITS, run_split
from tuneforge.data.records import Conversation, Labelled, Pair, Preference, Record, Text
from tuneforge.errors import ConfigError, DataError

RECORD_TYPES = (Conversation, Preference, Text, Labelled, Pair)


@dataclass
class PrepareResult:
    out_dir: Path
    counts: dict[str, int]  # rows, rejected, records, removed, out, and one per split
    splits: dict[str, list[Record]]
    report: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)


def as_config(config: PrepareConfig | dict | None) -> PrepareConfig:
    if isinstance(config, PrepareConfig):
        return config
    from pydantic import ValidationError

    from tuneforge.config.recipe import format_validation_error

    try:
        return PrepareConfig.model_validate(config or {})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, PrepareConfig, "data.prepare")) from None


def read_inputs(inputs: Iterable[Any], variables: dict[str, str] | None = None,
                strict: bool = False) -> tuple[list[Item], list[ReadResult]]:
    """Records pass through; paths and DataSources are read with tuneforge.data.read_source."""
    from tuneforge.data import read_source

    items: list[Item] = []
    results: list[ReadResult] = []
    for entry in inputs:
        if isinstance(entry, RECORD_TYPES):
            # steps edit records in place: never the caller's objects
            record = copy.deepcopy(entry)
            items.append(Item(len(items), record, _split_of(record), str(record.meta.get("source", ""))))
            continue
        if not isinstance(entry, (str, Path, DataSource)):
            raise DataError(f"prepare: expected records, file paths or DataSources, got {type(entry).__name__}")
        result = read_source(entry, variables=variables, strict=strict)
        results.append(result)
        split = entry.split if isinstance(entry, DataSource) else "auto"
        for record in result.records:
            items.append(Item(len(items), record, split, result.source))
    return items, results


def _split_of(record: Record) -> str:
    split = record.meta.get("split", "auto") if isinstance(record.meta, dict) else "auto"
    return split if split in SPLITS else "auto"


def _resolve_eval(path: str | None, variables: dict[str, str] | None) -> tuple[list[Record] | None, str | None]:
    if not path:
        return None, None
    from tuneforge.data import read_source

    result = read_source(path, variables=variables)
    return result.records, result.source


def prepare(
    inputs: Sequence[Any] | str | Path,
    config: PrepareConfig | dict | None = None,
    out_dir: str | Path = "prepared",
    *,
    tokenizer: Any = None,
    seed: int = 42,
    val: int | float | None = None,
    test: int | float | None = None,
    eval_data: str | None = None,
    variables: dict[str, str] | None = None,
    strict: bool = False,
    write: bool = True,
) -> PrepareResult:
    """Normalize -> filter -> anonymize PII -> deduplicate -> split -> leakage check, then write
    out_dir/{train,val,test}.jsonl, quarantine.jsonl, rejected.jsonl, report.json and report.html.

    `inputs`: records, file paths or DataSources (a source's split=train/val/test is kept).
    `val`/`test`: ratio (<1) or count; default split.val/split.test from the config, else 0.1/0.0."""
    cfg = as_config(config)
    started = time.perf_counter()
    if isinstance(inputs, (str, Path, DataSource)) or isinstance(inputs, RECORD_TYPES):
        inputs = [inputs]
    items, results = read_inputs(inputs, variables, strict)
    rejected = [issue for r in results for issue in r.rejected]
    given = len(items) - sum(len(r.records) for r in results)  # records passed in, not read from a file
    rows = given + sum(r.rows for r in results)  # reader rows: a ranking row may expand to several records
    valid_rows = given + sum(r.valid_rows for r in results)
    if not items:
        where = ", ".join(r.source for r in results) or "prepare"
        raise DataError(f"{where}: no usable examples ({len(rejected)} rows rejected; see rejected.jsonl "
                        "or run `tuneforge data inspect`)")
    n_records = len(items)
    ledger, state = Ledger(), {}
    report: dict[str, Any] = {"steps": {}, "notes": []}
    counter = TokenCounter(tokenizer)
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def timed(name: str, fn, *args):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn(*args)
        timings[name] = round(time.perf_counter() - t0, 3)
        cpu[name] = round(time.process_time() - c0, 3)  # wall time on a busy machine overstates the cost
        return out

    items = timed("normalize", run_normalize, items, cfg.normalize, ledger)
    items = timed("filter", run_filter, items, cfg.filter, ledger, counter, seed)
    items = timed("pii", run_pii, items, cfg.pii, ledger, report["steps"].setdefault("pii", {}))
    items = timed("dedup", run_dedup, items, cfg.dedup, ledger, state, report["steps"].setdefault("dedup", {}),
                  cfg.report.max_clusters, cfg.report.max_text_chars)
    val = val if val is not None else (cfg.split.val if cfg.split.val is not None else 0.1)
    test = test if test is not None else (cfg.split.test if cfg.split.test is not None else 0.0)
    splits = timed("split", run_split, items, cfg.split, cfg.dedup, ledger, state,
                   report["steps"].setdefault("split", {}), val, test, seed)
    eval_records, eval_source = _resolve_eval(cfg.leakage.eval_data or eval_data, variables)
    timed("leakage", run_leakage, splits, cfg.leakage, cfg.dedup, state, report["steps"].setdefault("leakage", {}),
          eval_records, eval_source, cfg.report.max_text_chars)
    out = sum(len(v) for v in splits.values())
    removed = ledger.removed_total()
    if n_records != out + removed:  # the promise of this module: nothing is lost silently
        raise CountMismatch(f"{n_records} examples in != {out} out + {removed} quarantined (a bug in tuneforge)")
    counts = {"rows": rows, "valid_rows": valid_rows, "rejected": len(rejected), "records": n_records, "removed": removed,
              "modified": sum(sum(s.modified.values()) for s in ledger.steps), "out": out,
              **{s: len(v) for s, v in splits.items()}}
    report.update({
        "counts": counts, "seed": seed, "tokens_counted_with": counter.name,
        "step_counts": [s.as_dict() for s in ledger.steps], "timings_s": timings, "cpu_s": cpu,
        "token_lengths": {s: example_lengths(v, counter) for s, v in splits.items()},
        "rejected_by_code": _by_code(rejected), "sources": [r.source for r in results],
        "reader_warnings": [w for r in results for w in r.warnings][:100],
        "config": cfg.model_dump(mode="json"),
    })
    report["notes"] += report["steps"]["pii"].get("notes", [])
    report["notes"].append(f"token lengths counted with {counter.name}")
    report["wall_s"] = round(time.perf_counter() - started, 3)
    result = PrepareResult(Path(out_dir), counts, {s: [i.record for i in v] for s, v in splits.items()}, report)
    if write:
        from tuneforge.data.prepare.report import write_outputs

        result.paths = write_outputs(result, ledger, rejected, cfg)
    return result


def _by_code(rejected) -> dict[str, int]:
    out: dict[str, int] = {}
    for issue in rejected:
        out[issue.code] = out.get(issue.code, 0) + 1
    return out


def prepare_recipe(recipe, out_dir: str | Path | None = None, *, tokenizer: Any = None,
                   inputs: Sequence[Any] | None = None) -> PrepareResult:
    """Run `prepare` with a Recipe's data sources, data.prepare section, split ratios, eval.data and seed."""
    data = recipe.data
    sources = list(inputs) if inputs else list(data.sources)
    if not sources:
        raise ConfigError("no data to prepare: give --input FILE or data.sources in the recipe")
    cfg = as_config(data.prepare)
    return prepare(
        sources, cfg, out_dir or Path(recipe.output_dir) / f"{recipe.name}-prepared",
        tokenizer=tokenizer, seed=recipe.seed,
        val=cfg.split.val if cfg.split.val is not None else data.val_ratio,
        test=cfg.split.test if cfg.split.test is not None else data.test_ratio,
        eval_data=recipe.eval.data, variables=data.variables, strict=data.strict,
    )
