"""Finished (and unfinished) runs: list them, find one by path or name, load its model.

    info = resolve_run("support-json")            # newest run of that name under ./runs
    model, tokenizer = load_run_model(info)       # base + adapter (peft) or the full model
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.errors import ModelError
from tuneforge.train import checkpoint as ckpt
from tuneforge.train.runfolder import read_status


@dataclass
class RunInfo:
    name: str  # the folder name, <recipe name>-<timestamp>
    path: Path
    status: str  # running / finished / failed / stopped / unknown
    best_val_loss: float | None
    steps: int
    method: str
    model: str
    final_dir: Path | None  # None until the run has saved its final model

    def __fspath__(self) -> str:  # so Path(info) and open(info / ...) work where a folder is expected
        return str(self.path)

    @property
    def is_adapter(self) -> bool:
        return self.final_dir is not None and (self.final_dir / "adapter_config.json").is_file()


def read_run(run_dir: str | Path) -> RunInfo:
    """What a run folder says about itself; a recipe.yaml or summary.json that does not parse (edited by
    hand, cut off) leaves its fields unknown ("?") instead of failing `runs`, `stop` or the dashboard."""
    run_dir = Path(run_dir)
    recipe = read_yaml_mapping(run_dir / "recipe.yaml")
    summary = read_json_mapping(run_dir / "summary.json")
    best = summary.get("best_val_loss")
    steps = summary.get("steps", 0)
    if not summary:  # still running or killed: the metrics log has the story so far
        from tuneforge.train.monitor import read_metrics

        rows = read_metrics(run_dir / "metrics.jsonl")
        vals = [r["val_loss"] for r in rows if "val_loss" in r]
        best = min(vals) if vals else None
        steps = max((r.get("step", 0) for r in rows), default=0)
    final = run_dir / "final"
    return RunInfo(
        name=run_dir.name,
        path=run_dir,
        status=read_status(run_dir),
        best_val_loss=best,
        steps=steps,
        method=str(recipe_field(recipe, "method", "type")),
        model=str(recipe_field(recipe, "model", "name_or_path")),
        final_dir=final if final.is_dir() else None,
    )


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """A run folder's YAML file as a dict; {} when it is missing, unreadable or not a mapping."""
    import yaml

    return _read_mapping(path, yaml.safe_load, (yaml.YAMLError,))


def read_json_mapping(path: Path) -> dict[str, Any]:
    """A run folder's JSON file as a dict; {} when it is missing, unreadable or not a mapping."""
    return _read_mapping(path, json.loads, (json.JSONDecodeError,))


def _read_mapping(path: Path, parse, errors: tuple[type[Exception], ...]) -> dict[str, Any]:
    try:
        value = parse(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, UnicodeDecodeError, *errors):
        return {}
    return value if isinstance(value, dict) else {}


def recipe_field(recipe: dict[str, Any], section: str, key: str, default: Any = "?") -> Any:
    """recipe[section][key] of a parsed recipe.yaml, or `default` when either is missing or not a mapping."""
    value = recipe.get(section)
    return value.get(key, default) if isinstance(value, dict) else default


def list_runs(runs_dir: str | Path = "runs") -> list[RunInfo]:
    """Every run folder (one with a recipe.yaml) under `runs_dir`, newest first."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    folders = [p for p in root.iterdir() if p.is_dir() and (p / "recipe.yaml").is_file()]
    folders.sort(key=lambda p: (p / "recipe.yaml").stat().st_mtime, reverse=True)
    return [read_run(p) for p in folders]


def resolve_run(path_or_name: str | os.PathLike, runs_dir: str | Path = "runs") -> RunInfo:
    """A run folder, its final/ or checkpoint folder, or a run name (newest `<name>-*` under runs_dir)."""
    if isinstance(path_or_name, RunInfo):
        return path_or_name
    path = Path(path_or_name)
    for candidate in (path, path.parent, path.parent.parent):
        if candidate.is_dir() and (candidate / "recipe.yaml").is_file() and (
            candidate == path or path.name == "final" or ckpt.is_valid(path)
        ):
            return read_run(candidate)
    name = str(path_or_name)
    runs = list_runs(runs_dir)
    matches = [r for r in runs if r.name == name or r.name.startswith(f"{name}-")]
    if matches:
        return matches[0]
    known = sorted({r.name for r in runs})[:10]
    raise ModelError(
        f"run not found: {name} (expected a run folder with recipe.yaml or a run name under {runs_dir}/"
        + (f"; known runs: {', '.join(known)})" if known else "; there are no runs yet)")
    )


def load_run_model(run: str | os.PathLike, runs_dir: str | Path = "runs") -> tuple[Any, Any]:
    """(model, tokenizer) of a run's final/ folder: base model + adapter for peft methods, else the model."""
    from transformers import AutoTokenizer

    from tuneforge.models import load_model

    info = resolve_run(run, runs_dir)
    if info.final_dir is None:
        latest = ckpt.latest_checkpoint(info.path)
        hint = f"; resume it to finish (latest checkpoint {latest.name})" if latest else ""
        raise ModelError(f"{info.path}: the run has no final model (status {info.status}){hint}")
    if not info.is_adapter:
        return load_model(str(info.final_dir))
    from tuneforge.config.recipe import Recipe
    from tuneforge.models.adapters import apply_adapter
    import yaml

    recipe = Recipe.model_validate(yaml.safe_load((info.path / "recipe.yaml").read_text(encoding="utf-8")))
    base, _ = load_model(recipe.model)
    model = apply_adapter(base, info.final_dir)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(info.final_dir))
    return model, tokenizer
