"""`compare_models`: several base models and/or fine-tuned runs on the same test set, ranked.

This is "compare candidate base models on your test data before you choose": every candidate gets the same
metrics and generation settings, one at a time (each model is released before the next loads).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, Union

from tuneforge.data.records import Record
from tuneforge.errors import ConfigError, ModelError
from tuneforge.evaluate.api import EvalResult, evaluate_model
from tuneforge.evaluate.report import rank, write_eval_report

# A candidate: a model spec (alias, HF folder, .gguf file), or an already loaded (name, model, tokenizer).
Candidate = Union[str, Path, tuple[str, Any, Any]]


@dataclass
class Loaded:
    name: str
    model: Any
    tokenizer: Any
    run_dir: Path | None = None


def load_candidate(spec: str | Path) -> Loaded:
    """An alias, HF folder or GGUF file through `tuneforge.models.load_model`."""
    from tuneforge.models import load_model

    model, tokenizer = load_model(str(spec))
    return Loaded(_display_name(spec), model, tokenizer)


def load_run(spec: str | Path) -> Loaded:
    """A fine-tuned run folder (or name) through the training engine's run loader."""
    try:
        from tuneforge.train.runs import load_run_model, resolve_run
    except ImportError as exc:  # the training engine is optional in minimal installs
        raise ModelError(f"cannot load runs here: {exc}") from None
    run_dir = Path(resolve_run(spec))
    model, tokenizer = load_run_model(run_dir)
    return Loaded(f"run:{run_dir.name}", model, tokenizer, run_dir)


def _display_name(spec: str | Path) -> str:
    path = Path(spec)
    if path.exists():
        return path.name if path.suffix == ".gguf" else path.resolve().name
    return str(spec)


@dataclass
class CompareResult:
    ranked_by: str | None
    results: list[EvalResult]  # best first
    report: Path | None = None

    @property
    def best(self) -> EvalResult:
        return self.results[0]

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows (rank, model, task, metrics...) for a rich or plain table."""
        names = list(dict.fromkeys(k for r in self.results for k in r.metrics))
        header = ["#", "model", *names]
        rows = [
            [str(i), r.name, *(_cell(r.metrics.get(n)) for n in names)] for i, r in enumerate(self.results, 1)
        ]
        return header, rows


def _cell(value) -> str:
    return "–" if value is None or value != value else f"{value:.4g}"  # None or NaN


def compare_models(
    specs: Sequence[Candidate],
    records: Sequence[Record],
    *,
    runs: Sequence[str | Path] = (),
    metrics: Sequence[str] | None = None,
    rank_by: str | None = None,
    out_dir: str | Path | None = None,
    loader: Callable[[str | Path], Loaded] = load_candidate,
    run_loader: Callable[[str | Path], Loaded] = load_run,
    progress: Callable[[str], None] | None = None,
    **eval_kwargs: Any,
) -> CompareResult:
    """Evaluate each candidate with `evaluate_model(**eval_kwargs)` and rank them (best first)."""
    say = progress or (lambda _msg: None)
    jobs: list[tuple[Candidate, Callable]] = [(s, loader) for s in specs] + [(r, run_loader) for r in runs]
    if len(jobs) < 1:
        raise ConfigError("compare needs at least one model or run")
    results: list[EvalResult] = []
    seen: set[str] = set()
    for spec, load in jobs:
        item = Loaded(*spec) if isinstance(spec, tuple) else load(spec)
        name = _unique(item.name, seen)
        say(f"evaluating {name}")
        result = evaluate_model(
            item.model, item.tokenizer, records, metrics, name=name, run_dir=item.run_dir, **eval_kwargs
        )
        results.append(result)
        del item
        gc.collect()  # one candidate in memory at a time
    _same_metric_set(results)
    metric, ranked = rank(results, rank_by)
    if rank_by and all(rank_by not in r.metrics for r in results):
        raise ConfigError(f"cannot rank by {rank_by!r}: computed metrics are {sorted(results[0].metrics)}")
    report = write_eval_report(ranked, out_dir, rank_by=metric) if out_dir else None
    return CompareResult(metric, ranked, report)


def _unique(name: str, seen: set[str]) -> str:
    base, n = name, 2
    while name in seen:
        name, n = f"{base}#{n}", n + 1
    seen.add(name)
    return name


def _same_metric_set(results: list[EvalResult]) -> None:
    # A classifier head skips loss/perplexity; fill gaps with None so the table lines up.
    names = list(dict.fromkeys(k for r in results for k in r.metrics))
    for r in results:
        for n in names:
            r.metrics.setdefault(n, float("nan"))
