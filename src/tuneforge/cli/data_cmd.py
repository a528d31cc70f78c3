"""`tuneforge data ...`: inspect data files (and, registered by prepare_cmd, prepare them)."""

from __future__ import annotations

from typing import List, Optional

import typer

from tuneforge.errors import ConfigError
from tuneforge.ui.console import console

data_app = typer.Typer(
    help="Inspect and prepare training data.", no_args_is_help=True, pretty_exceptions_enable=False
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
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Format, counts, rejected rows by reason, turns, token lengths and a few rendered examples."""
    from tuneforge.data.inspect import inspect_source

    report = inspect_source(
        source, format=format, dataset_info=dataset_info, model=model,
        variables=parse_sets(set_), rejected_out=rejected_out,
    )
    if as_json:
        print(report.to_json())
        return
    _print_report(report)


def _print_report(report) -> None:
    out = console.print
    out(f"[bold]{report.source}[/]  format: [bold]{report.format}[/]")
    out(f"rows: {report.rows}   valid: {report.valid}   rejected: {report.rejected}")
    if report.rejected_by_code:
        codes = ", ".join(f"{code} {n}" for code, n in sorted(report.rejected_by_code.items()))
        out(f"rejected by code: {codes}")
        for issue in report.issues[:5]:
            out(f"  {issue}", markup=False, soft_wrap=True)
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


def register(app: typer.Typer) -> None:
    """Add the `data` sub-app (inspect here; `prepare` from prepare_cmd) to the main app."""
    app.add_typer(data_app, name="data")
    from tuneforge.cli import prepare_cmd

    prepare_cmd.register(data_app)
