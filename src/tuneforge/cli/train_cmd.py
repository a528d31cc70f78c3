"""`tuneforge train recipe.yaml` and `tuneforge runs`: thin layers over `tuneforge.train`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from tuneforge.ui.console import console


def register(app: typer.Typer) -> None:
    """Add `train`, `search`, `runs` and `stop` to the main app."""
    app.command("train")(train_cmd)
    app.command("search")(search_cmd)
    app.command("runs")(runs_cmd)
    app.command("stop")(stop_cmd)


def train_cmd(
    recipe: Path = typer.Argument(..., help="recipe YAML"),
    overrides_: Optional[List[str]] = typer.Argument(None, metavar="[KEY.SUB=VALUE]...", help="recipe overrides"),
    set_: List[str] = typer.Option([], "--set", "-s", help="override a recipe value: key.sub=value (repeatable)"),
    resume: Optional[str] = typer.Option(
        None, "--resume", help="auto (newest checkpoint of this run name), or a checkpoint/run folder"
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print nothing but errors"),
) -> None:
    """Fine-tune a model as the recipe says; writes runs/<name>-<timestamp>/."""
    from tuneforge.config.recipe import load_recipe
    from tuneforge.train import train

    overrides = list(overrides_ or []) + list(set_)
    if resume is not None:
        overrides.append(f"resume={resume}")
    from tuneforge.train.distributed import is_main_process

    result = train(load_recipe(recipe, overrides), quiet=quiet)
    if not quiet and is_main_process():
        best = f"{result.best_val_loss:.4f}" if result.best_val_loss is not None else "-"
        console.print(f"{result.status}: {result.run_dir} (best val loss {best}, {result.steps} steps)")


def search_cmd(
    recipe: Path = typer.Argument(..., help="recipe YAML with a `search:` section"),
    overrides_: Optional[List[str]] = typer.Argument(None, metavar="[KEY.SUB=VALUE]...", help="recipe overrides"),
    set_: List[str] = typer.Option([], "--set", "-s", help="override a recipe value: key.sub=value (repeatable)"),
    trials: Optional[int] = typer.Option(None, "--trials", "-n", help="number of trials (default: search.trials)"),
    continue_: Optional[Path] = typer.Option(None, "--continue", help="an earlier search folder to add trials to"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print only the result table"),
) -> None:
    """Hyperparameter search (Optuna, or Ray Tune with search.backend=ray): train variants of the recipe,
    keep the best by validation loss."""
    from rich.table import Table

    from tuneforge.config.recipe import load_recipe
    from tuneforge.train.search import search

    found = search(load_recipe(recipe, list(overrides_ or []) + list(set_)), quiet=quiet, trials=trials,
                   search_dir=continue_)
    table = Table(show_header=True, header_style="bold")
    keys = sorted({k for row in found.trials for k in row["params"]})
    for col in ["trial", "state", "val loss", *keys]:
        table.add_column(col)
    for row in found.trials:
        value = f"{row['value']:.4f}" if row["value"] is not None else "-"
        table.add_row(str(row["trial"]), row["state"], value, *(str(row["params"].get(k, "")) for k in keys))
    console.print(table)
    if found.best_recipe_path is None:
        console.print(f"no trial finished; see {found.search_dir}")
        return
    console.print(f"best val loss {found.best_value:.4f} with {found.best_params}")
    console.print(f"best recipe: {found.best_recipe_path}  (train it: tuneforge train {found.best_recipe_path})")


def runs_cmd(
    directory: Path = typer.Option(Path("runs"), "--dir", help="folder holding run folders"),
) -> None:
    """List training runs with their status and best validation loss."""
    from rich.table import Table

    from tuneforge.train.runs import list_runs

    runs = list_runs(directory)
    if not runs:
        console.print(f"no runs under {directory}/")
        return
    table = Table(show_header=True, header_style="bold")
    for col in ("run", "status", "method", "model", "steps", "best val loss", "final"):
        table.add_column(col, justify="right" if col in ("steps", "best val loss") else "left")
    for r in runs:
        best = f"{r.best_val_loss:.4f}" if r.best_val_loss is not None else "-"
        table.add_row(r.name, r.status, r.method, Path(r.model).name or r.model, str(r.steps), best,
                      "yes" if r.final_dir else "no")
    console.print(table)


def stop_cmd(
    run: str = typer.Argument(..., help="run folder or run name (newest of that name under --dir)"),
    directory: Path = typer.Option(Path("runs"), "--dir", help="folder holding run folders"),
) -> None:
    """Ask a running training run to stop after its current step, with a checkpoint (resume: auto continues)."""
    from tuneforge.errors import ConfigError
    from tuneforge.train.runfolder import request_stop
    from tuneforge.train.runs import resolve_run

    info = resolve_run(run, directory)
    status = request_stop(info.path)
    if status is not None:
        raise ConfigError(f"{info.path}: not running (status {status}); nothing to stop")
    console.print(f"stop requested: {info.path} stops after its current step (status `stopped`, with a checkpoint)")
