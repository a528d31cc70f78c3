"""`tuneforge serve`, `tuneforge feedback export`, `tuneforge drift`: thin layers over tuneforge.serve."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import List, Optional

import typer

from tuneforge.errors import ConfigError
from tuneforge.ui.console import console

feedback_app = typer.Typer(help="Turn served feedback into training data.", no_args_is_help=True,
                           pretty_exceptions_enable=False)


def parse_adapters(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ConfigError(f"--adapter: expected NAME=PATH, got {value!r}")
        out[name.strip()] = path.strip()
    return out


def serve_cmd(
    target: str = typer.Argument(..., help="model alias, HF folder, .gguf file, or a run folder"),
    adapter: List[str] = typer.Option([], "--adapter", help="serve a LoRA adapter as a model: NAME=PATH (repeatable)"),
    host: str = typer.Option("127.0.0.1", "--host", help="bind address; anything but loopback needs --api-key"),
    port: int = typer.Option(8000, "--port"),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="TUNEFORGE_API_KEY",
                                          help="require `Authorization: Bearer KEY`; enables /admin routes"),
    db: str = typer.Option("feedback.sqlite", "--db", help="completion + feedback log (SQLite); '' turns it off"),
    max_batch: int = typer.Option(8, "--max-batch", help="most rows generated together"),
    queue: int = typer.Option(64, "--queue", help="most requests waiting; more get HTTP 429"),
    window_ms: float = typer.Option(10.0, "--window-ms", help="how long to gather a batch"),
    max_tokens_cap: int = typer.Option(1024, "--max-tokens-cap", help="largest max_tokens a request may ask"),
    max_prompt_tokens: Optional[int] = typer.Option(None, "--max-prompt-tokens", help="default: the context length"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads for generation (1 is best on a busy CPU)"),
    scheduler: str = typer.Option("continuous", "--scheduler",
                                  help="continuous (rows join/leave every step) or static (batch runs to its end)"),
) -> None:
    """Serve a model (and adapters) over an OpenAI-compatible HTTP API, logging completions and feedback."""
    from tuneforge.serve.launch import serve

    serve(target, host=host, port=port, api_key=api_key, adapters=parse_adapters(adapter), db=db or None,
          max_batch=max_batch, queue=queue, window_ms=window_ms, max_tokens_cap=max_tokens_cap,
          max_prompt_tokens=max_prompt_tokens, threads=threads, scheduler=scheduler)


@feedback_app.command("export")
def export_cmd(
    db: str = typer.Option(..., "--db", help="the server's feedback.sqlite"),
    out: str = typer.Option(..., "--out", help="folder for sft.jsonl and preferences.jsonl"),
    previous: List[str] = typer.Option([], "--previous", help="earlier training file to dedup against (repeatable)"),
    run: Optional[str] = typer.Option(None, "--run", help="also write next_recipe.yaml continuing this run"),
) -> None:
    """Export corrections / good answers (SFT) and preference pairs, deduplicated against earlier data."""
    from tuneforge.serve.export_feedback import export_feedback, next_round_recipe

    if not Path(db).is_file():
        raise ConfigError(f"--db {db}: file not found")
    s = export_feedback(db, out, previous)
    say = functools.partial(console.print, soft_wrap=True, markup=False)
    say(f"read {s.completions} completions, {s.feedback} feedback rows")
    say(f"sft: {s.sft} -> {s.files['sft']}")
    say(f"preferences: {s.preferences} -> {s.files['preferences']}")
    say(f"skipped: {s.duplicates_previous} already in previous data, {s.duplicates_within} duplicates, "
        f"{s.orphan_feedback} feedback rows without a logged completion")
    if run:
        next_round_recipe(run, out)
        console.print(f"next round recipe: {Path(out) / 'next_recipe.yaml'}  (tuneforge train {Path(out) / 'next_recipe.yaml'})")


def drift_cmd(
    run: str = typer.Option(..., "--run", help="run folder whose training prompts are the reference"),
    db: str = typer.Option("feedback.sqlite", "--db", help="the server's feedback.sqlite"),
    window: int = typer.Option(500, "--window", min=1, help="most recent served prompts / ratings to compare"),
    encoder: str = typer.Option("auto", "--encoder", help="auto (MiniLM if installed), minilm or tfidf"),
    out: str = typer.Option("drift.json", "--out", help="where to write the JSON report"),
) -> None:
    """Compare recent served prompts with the run's training prompts, and the feedback rating trend."""
    from rich.table import Table

    from tuneforge.serve.drift import compute_drift

    if encoder not in ("auto", "minilm", "tfidf"):
        raise ConfigError(f"--encoder: expected auto, minilm or tfidf, got {encoder!r}")
    if not Path(db).is_file():
        raise ConfigError(f"--db {db}: file not found")
    report = compute_drift(run, db, window, encoder=encoder)
    Path(out).write_text(json.dumps(report, indent=2), encoding="utf-8")
    table = Table(title=f"drift: {report['served_prompts']} served vs {report['train_prompts']} training prompts")
    for col in ("signal", "value", "status"):
        table.add_column(col)
    for name in ("length", "domain", "ratings"):
        sig = report[name]
        detail = ", ".join(f"{k}={v}" for k, v in sig.items() if k != "status")
        colour = {"ok": "green", "warn": "yellow"}.get(sig["status"], "dim")
        table.add_row(name, detail, f"[{colour}]{sig['status']}[/]")
    console.print(table)
    console.print(f"overall: {report['status']}  (written to {out})")


def register(app: typer.Typer) -> None:
    """Add this stage's verbs to the main app."""
    app.command("serve")(serve_cmd)
    app.command("drift")(drift_cmd)
    app.add_typer(feedback_app, name="feedback")
