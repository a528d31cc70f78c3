"""`tuneforge data ...`: inspect and synthesize data files (and, registered by prepare_cmd, prepare them)."""

from __future__ import annotations

from typing import List, Optional

import typer

from tuneforge.errors import ConfigError
from tuneforge.ui.console import console

data_app = typer.Typer(
    help="Inspect, prepare and synthesize training data.", no_args_is_help=True, pretty_exceptions_enable=False
)


def parse_sets(values: list[str]) -> dict[str, str]:
    """--set name=value pairs -> {name: value} (the `data.variables` of a recipe)."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--set: expected name=value, got {value!r}")
        out[name.strip()] = text
    return out


@data_app.command("inspect")
def inspect_cmd(
    source: str = typer.Argument(..., help="data file, or an entry name in dataset_info.json"),
    format: str = typer.Option("auto", "--format", "-f", help="alpaca, sharegpt, openai, kto, preference, ranking, text, labelled"),
    dataset_info: Optional[str] = typer.Option(None, "--dataset-info", help="dataset_info.json or its folder"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="tokenizer to measure with ('whitespace' for words)"),
    set_: List[str] = typer.Option([], "--set", help="fill a {{name}} placeholder: name=value (repeatable)"),
    rejected_out: Optional[str] = typer.Option(None, "--rejected-out", help="write rejected rows with reasons (JSONL)"),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="the file's text encoding when not UTF-8 (e.g. latin-1)"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Format, counts, rejected rows by reason, turns, token lengths and a few rendered examples."""
    from tuneforge.data.inspect import inspect_source

    report = inspect_source(
        source, format=format, dataset_info=dataset_info, model=model,
        variables=parse_sets(set_), rejected_out=rejected_out, encoding=encoding,
    )
    if as_json:
        print(report.to_json())
        return
    _print_report(report)


def _print_report(report) -> None:
    out = console.print
    out(f"[bold]{report.source}[/]  format: [bold]{report.format}[/]")
    out(f"rows: {report.rows} = {report.valid_rows} valid + {report.rejected} rejected   valid: {report.valid}   "
        f"rejected: {report.rejected}")
    if report.rejected_by_code:
        codes = ", ".join(f"{code} {n}" for code, n in sorted(report.rejected_by_code.items()))
        out(f"rejected by code: {codes}")
        for issue in report.issues[:5]:
            out(f"  {issue}", markup=False, soft_wrap=True)
    for warning in report.warnings[:5]:
        out(f"warning: {warning}", markup=False, soft_wrap=True)
    if len(report.warnings) > 5:
        out(f"... {len(report.warnings) - 5} more warnings (--json lists them)")
    if report.rejected_out:
        out(f"rejected rows written to {report.rejected_out}")
    if report.kinds:
        out("records: " + ", ".join(f"{k} {n}" for k, n in report.kinds.items()))
    if report.turns:
        t = report.turns
        out(f"turns per example: min {t['min']}  p50 {t['p50']}  max {t['max']}  mean {t['mean']}")
    if report.tokens.get("measured"):
        k = report.tokens
        out(f"tokens ({report.tokenizer}): p50 {k['p50']}  p90 {k['p90']}  p99 {k['p99']}  max {k['max']}")
    if report.tokenizer_note:
        out(f"note: {report.tokenizer_note}", markup=False)
    for i, example in enumerate(report.examples, start=1):
        out(f"[dim]--- example {i} ---[/]")
        out(example, markup=False, highlight=False, soft_wrap=True)


@data_app.command("synthesize")
def synthesize_cmd(
    args: List[str] = typer.Argument(None, help="[recipe.yaml] then key=value overrides, e.g. filter.rouge_threshold=0.6"),
    seeds: Optional[str] = typer.Option(None, "--seeds", "-s", help="seed file: Self-Instruct seed_tasks.jsonl, Alpaca, ShareGPT, OpenAI"),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="output folder (default <output_dir>/<name>-synth)"),
    n: Optional[int] = typer.Option(None, "--n", "-n", help="accepted examples to reach (default 100)"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="local model/run folder, or the endpoint's model name with --base-url"),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1"),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="variable holding the endpoint key (default OPENAI_API_KEY)"),
    max_seeds: Optional[int] = typer.Option(None, "--max-seeds", help="use only the first N seeds"),
    max_candidates: Optional[int] = typer.Option(None, "--max-candidates", help="stop after this many candidates (default 10 x n)"),
    block: List[str] = typer.Option([], "--block", help="add a word/phrase to the blocklist (repeatable)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads for a local model"),
    resume: bool = typer.Option(False, "--resume", help="keep going in an existing output folder until n are accepted"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output folder's files"),
) -> None:
    """Grow a few seed tasks into many with an LLM (Self-Instruct / Alpaca): writes synthetic.jsonl (Alpaca rows),
    rejected.jsonl (every rejected candidate with its reason) and report.json."""
    from tuneforge.cli.prepare_cmd import split_recipe_args
    from tuneforge.config.recipe import load_recipe
    from tuneforge.data.synthesize import synthesize_recipe
    from tuneforge.data.synthesize.report import summary_lines

    if resume and overwrite:
        raise ConfigError("give --resume or --overwrite, not both")
    recipe_path, overrides = split_recipe_args(list(args or []), "synthesize")
    recipe = load_recipe(recipe_path, overrides)
    cfg = recipe.synthesize
    for key, value in {"seeds": seeds, "out": out, "n": n, "max_seeds": max_seeds,
                       "max_candidates": max_candidates}.items():
        _set_flag(cfg, key, value)
    for key, value in {"model": model, "base_url": base_url, "api_key_env": api_key_env, "threads": threads}.items():
        _set_flag(cfg.generator, key, value)
    if block:
        cfg.filter.blocklist = [*cfg.filter.blocklist, *block]
    if resume or overwrite:
        cfg.if_exists = "resume" if resume else "overwrite"

    def progress(event: dict) -> None:
        console.print(f"round {event['round']}: {event['round_accepted']}/{event['round_candidates']} accepted; "
                      f"{event['accepted']}/{event['target']} in all after {event['candidates']} candidates "
                      f"({event['elapsed_s']:.0f} s)", highlight=False)

    result = synthesize_recipe(recipe, progress=progress)
    for line in summary_lines(result.report):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(f"wrote {result.out_dir}/synthetic.jsonl, rejected.jsonl, report.json", markup=False,
                  highlight=False, soft_wrap=True)


def _set_flag(section, key: str, value) -> None:
    """Sections validate on assignment, so a bad flag value fails like a bad recipe key."""
    from pydantic import ValidationError

    if value is None:
        return
    try:
        setattr(section, key, value)
    except ValidationError as exc:
        raise ConfigError(f"--{key.replace('_', '-')}: {exc.errors()[0]['msg']} (got {value!r})") from None


def register(app: typer.Typer) -> None:
    """Add the `data` sub-app (inspect here; `prepare` from prepare_cmd) to the main app."""
    app.add_typer(data_app, name="data")
    from tuneforge.cli import prepare_cmd

    prepare_cmd.register(data_app)
