"""`tuneforge models` and `tuneforge chat`."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from tuneforge.ui.console import console


def register(app: typer.Typer) -> None:
    app.command("models")(models_cmd)
    app.command("chat")(chat_cmd)


def models_cmd(
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """List the embedded model aliases: installed or not, parameter counts and paths."""
    import json
    from dataclasses import asdict

    from tuneforge.models.inventory import list_aliases

    entries = list_aliases()
    if as_json:
        console.print_json(json.dumps([asdict(e) for e in entries]))
        return
    table = Table(title="model aliases")
    for column in ("alias", "kind", "installed", "parameters"):
        table.add_column(column, no_wrap=True)
    table.add_column("path / install", overflow="fold")
    for e in entries:
        params = f"{e.parameters / 1e6:.1f} M" if e.parameters else "-"
        table.add_row(e.alias, e.kind, "yes" if e.installed else "no", params, e.path or e.install)
    console.print(table)
    console.print("Any local Hugging Face folder (safetensors) or .gguf file also works as --model.")


def chat_cmd(
    prompt: Optional[str] = typer.Argument(None, help="one question; omit for an interactive session"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="alias, HF folder or .gguf file"),
    run: Optional[str] = typer.Option(None, "--run", help="a training run folder (uses its result)"),
    adapter: Optional[str] = typer.Option(None, "--adapter", help="a PEFT adapter folder to apply"),
    system: Optional[str] = typer.Option(None, "--system", help="system prompt"),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens"),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy"),
    top_p: float = typer.Option(1.0, "--top-p"),
) -> None:
    """Ask a model one question, or chat with it (its chat template is used)."""
    from tuneforge.models.chat import chat_reply

    llm, tokenizer = _load_for_chat(model, run, adapter)
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    settings = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
    if prompt is not None:
        history.append({"role": "user", "content": prompt})
        console.print(chat_reply(llm, tokenizer, history, **settings))
        return
    console.print("[dim]chat: empty line or Ctrl-D to quit, /reset to clear the history[/]")
    while True:
        try:
            line = console.input("[bold]you>[/] ").strip()
        except EOFError:
            break
        if not line:
            break
        if line == "/reset":
            history = history[:1] if system else []
            continue
        history.append({"role": "user", "content": line})
        answer = chat_reply(llm, tokenizer, history, **settings)
        history.append({"role": "assistant", "content": answer})
        console.print(f"[bold]model>[/] {answer}")


def _load_for_chat(model: str | None, run: str | None, adapter: str | None):
    from tuneforge.errors import ConfigError
    from tuneforge.models import DEFAULT_MODEL, load_model

    if run and model:
        raise ConfigError("give --model or --run, not both")
    if run:
        from tuneforge.train.runs import load_run_model

        llm, tokenizer = load_run_model(run)
    else:
        llm, tokenizer = load_model(model or DEFAULT_MODEL)
    if adapter:
        from tuneforge.models.adapters import apply_adapter

        llm = apply_adapter(llm, adapter)
    return llm, tokenizer
