"""`tuneforge eval` and `tuneforge compare`: thin layers over `tuneforge.evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from tuneforge.errors import ConfigError, DataError
from tuneforge.ui.console import console, print_warning

_METRICS_HELP = "metrics or groups, comma-separated or repeated (auto, likelihood, text, label, json, calibration, ...)"


def register(app: typer.Typer) -> None:
    """Add `eval` and `compare` to the main app."""
    app.command("eval")(eval_cmd)
    app.command(
        "compare", context_settings={"allow_extra_args": True, "ignore_unknown_options": False}
    )(compare_cmd)


def eval_cmd(
    data: str = typer.Option(..., "--data", help="test file (any format `tuneforge data` reads)"),
    model: Optional[str] = typer.Option(None, "--model", help="alias, HF folder or .gguf file"),
    run: Optional[str] = typer.Option(None, "--run", help="a training run folder"),
    metrics: List[str] = typer.Option(["auto"], "--metrics", help=_METRICS_HELP),
    out: Path = typer.Option(Path("eval-out"), "--out", help="folder for report.html, report.json, predictions"),
    val: Optional[str] = typer.Option(None, "--val", help="validation file to fit the calibration temperature"),
    labels: Optional[str] = typer.Option(None, "--labels", help="label set, comma-separated (default: inferred)"),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", min=1),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 = greedy"),
    top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="evaluate the first N examples"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads (default: physical cores)"),
    judge_url: Optional[str] = typer.Option(None, "--judge-url", help="OpenAI-compatible base URL for LLM-as-judge"),
    judge_model: str = typer.Option("judge", "--judge-model"),
    judge_mode: str = typer.Option("rubric", "--judge-mode", help="rubric or pairwise (vs the reference)"),
) -> None:
    """Evaluate one model or run on a test set: loss, generation metrics, calibration, bias, report."""
    from tuneforge.evaluate.api import evaluate_model
    from tuneforge.evaluate.compare import load_candidate, load_run

    if (model is None) == (run is None):
        raise ConfigError("give exactly one of --model or --run")
    _threads(threads)
    records = read_eval_data(data, limit)
    val_records = read_eval_data(val, None) if val else None
    check_metric_names(metrics)
    with console.status("loading model"):
        loaded = load_run(run) if run else load_candidate(model)
    with console.status("evaluating") as status:
        result = evaluate_model(
            loaded.model, loaded.tokenizer, records, metrics,
            max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, batch_size=batch_size,
            labels=split_list(labels), val_records=val_records, judge=_judge(judge_url, judge_model, judge_mode),
            name=loaded.name, run_dir=loaded.run_dir, out_dir=out,
            progress=lambda step: status.update(f"evaluating: {step}"),
        )
    _print_table([result.name], {k: [format_number(v)] for k, v in result.metrics.items()})
    _warn_skipped(result)
    if result.bias:
        console.print(f"bias audit: {result.bias['status']} (threshold {result.bias['threshold']})")
    console.print(f"report: {out / 'report.html'}  predictions: {out / 'predictions.jsonl'}")


def compare_cmd(
    ctx: typer.Context,
    data: str = typer.Option(..., "--data", help="test file shared by every candidate"),
    models: List[str] = typer.Option([], "--models", help="aliases, HF folders, .gguf files (space or comma separated)"),
    runs: List[str] = typer.Option([], "--runs", help="training run folders"),
    metrics: List[str] = typer.Option(["auto"], "--metrics", help=_METRICS_HELP),
    rank_by: Optional[str] = typer.Option(None, "--rank-by", help="metric to rank by (default: the task's main one)"),
    out: Path = typer.Option(Path("compare-out"), "--out"),
    labels: Optional[str] = typer.Option(None, "--labels"),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", min=1),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0),
    top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    limit: Optional[int] = typer.Option(None, "--limit", min=1),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads (default: physical cores)"),
    judge_url: Optional[str] = typer.Option(None, "--judge-url", help="OpenAI-compatible base URL for LLM-as-judge"),
    judge_model: str = typer.Option("judge", "--judge-model"),
    judge_mode: str = typer.Option("rubric", "--judge-mode", help="rubric or pairwise (vs the reference)"),
) -> None:
    """Rank several base models and/or fine-tuned runs on the same test set and metrics."""
    from tuneforge.evaluate.compare import compare_models

    model_specs, run_specs = split_candidates(models, runs, list(ctx.args))
    if not model_specs and not run_specs:
        raise ConfigError("compare needs candidates: --models A B ... and/or --runs RUN ...")
    _threads(threads)
    records = read_eval_data(data, limit)
    check_metric_names(metrics)
    if rank_by:
        check_metric_names([rank_by], allow_derived=True)
    with console.status("comparing") as status:
        result = compare_models(
            model_specs, records, runs=run_specs, metrics=metrics, rank_by=rank_by, out_dir=out,
            max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, batch_size=batch_size,
            labels=split_list(labels), judge=_judge(judge_url, judge_model, judge_mode), progress=status.update,
        )
    header, rows = result.table()
    # Metrics as rows, models as columns (best first): stays readable in 80 columns with many metrics.
    columns = [f"{row[0]}. {row[1]}" for row in rows]
    by_metric = {name: [row[i] for row in rows] for i, name in enumerate(header) if i >= 2}
    _print_table(columns, by_metric, title=f"ranked by {result.ranked_by} (best first)")
    console.print(f"report: {result.report}")


def read_eval_data(path: str, limit: int | None):
    """Records of a test file (rejected rows are reported, not fatal), the first `limit` of them."""
    from tuneforge.data import read_source

    result = read_source(path)
    if result.rejected:
        print_warning(f"{path}: {len(result.rejected)} rows rejected, e.g. {result.rejected[0]}")
    records = result.records[:limit] if limit else result.records
    if not records:
        raise DataError(f"{path}: no usable examples to evaluate")
    return records


def check_metric_names(names: List[str], allow_derived: bool = False) -> None:
    """Fail before any model loads: unknown names get a did-you-mean."""
    from tuneforge.evaluate.metrics import check_metric_names as check

    derived = ("ece", "ece_calibrated", "judge_score", "label_accuracy") if allow_derived else ()
    try:
        check(names, extra=derived)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def split_candidates(models: List[str], runs: List[str], extra: List[str]) -> tuple[list[str], list[str]]:
    """`--models A B` leaves B as an extra argument: extras that look like run folders are runs."""
    for arg in extra:
        if arg.startswith("-"):
            raise ConfigError(f"unknown option {arg!r} for compare")
    model_specs = [m for raw in models for m in split_list(raw) or []]
    run_specs = [r for raw in runs for r in split_list(raw) or []]
    for arg in extra:
        (run_specs if _is_run_dir(Path(arg)) else model_specs).append(arg)
    return model_specs, run_specs


def _is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / "recipe.yaml").is_file() and not (path / "config.json").is_file()


def _warn_skipped(result) -> None:
    """Say which requested metrics did not apply (e.g. accuracy on free-text answers)."""
    produced = set(result.metrics)
    for name, present in (("judge", "judge_parsed" in result.metrics), ("calibration", bool(result.calibration)),
                          ("bias", bool(result.bias))):
        if present:
            produced.add(name)
    skipped = [m for m in result.settings.get("metrics", []) if m not in produced]
    if skipped:
        print_warning(f"not computed for a {result.task} task: {', '.join(skipped)}")


def _threads(n: Optional[int]) -> None:
    if n:
        from tuneforge.train.threads import configure_threads

        configure_threads(n)


def split_list(value: Optional[str]) -> list[str] | None:
    """A comma-separated option -> its non-empty items (None when not given)."""
    if not value:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _judge(url: Optional[str], model: str, mode: str):
    if not url:
        return None
    from tuneforge.evaluate.judge import JudgeConfig

    if mode not in ("rubric", "pairwise"):
        raise ConfigError(f"--judge-mode must be rubric or pairwise, got {mode!r}")
    return JudgeConfig(base_url=url, model=model, mode=mode)  # type: ignore[arg-type]


def format_number(value) -> str:
    """4 significant digits; a dash for missing or NaN."""
    return "–" if value is None or value != value else f"{value:.4g}"


def _print_table(columns: list[str], by_metric: dict[str, list[str]], title: str | None = None) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("metric", no_wrap=True)
    for name in columns:
        table.add_column(name, justify="right", overflow="fold")
    for metric, values in by_metric.items():
        table.add_row(metric, *values)
    console.print(table)
