"""Hyperparameter search on Optuna: each trial is an ordinary training run of the recipe with some fields
changed, and its best validation loss is the score. A median pruner stops trials whose validation loss
trails the earlier ones at the same step, so a search costs less than `trials` full runs.

    from tuneforge.train.search import search
    found = search(load_recipe("examples/demo.yaml"))      # the recipe's `search:` section says what to try
    found.best_params, found.best_recipe_path

Layout: <output_dir>/<name>-search-<stamp>/ holds study.db (Optuna's SQLite storage), trials.jsonl (one
row per finished trial), best_recipe.yaml, and trial-NNN/ run folders.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.config.recipe import Recipe, apply_override, dump_recipe, parse_recipe
from tuneforge.config.search import SearchParam
from tuneforge.errors import ConfigError


@dataclass
class SearchResult:
    search_dir: Path
    best_params: dict[str, Any]
    best_value: float | None
    best_recipe_path: Path | None
    trials: list[dict[str, Any]] = field(default_factory=list)


def with_params(recipe: Recipe, params: dict[str, Any], **top: Any) -> Recipe:
    """The recipe with dotted-path fields replaced (validated like a command-line override)."""
    raw = recipe.model_dump(mode="json")
    raw.update(top)
    for key, value in params.items():
        apply_override(raw, f"{key}={json.dumps(value)}")
    return parse_recipe(raw, origin=f"search params {params}")


def check_space(recipe: Recipe) -> None:
    """Fail before any training if the space is empty or names a field the recipe does not have."""
    space = recipe.search.space
    if not space:
        raise ConfigError("search.space is empty; expected e.g. `hparams.learning_rate: {type: float, low: 1e-5, "
                          "high: 1e-3, log: true}`")
    if not (recipe.data.val_ratio > 0 or any(s.split == "val" for s in recipe.data.sources)):
        raise ConfigError("search needs a validation split to score trials: set data.val_ratio > 0 or mark a "
                          "source `split: val`")
    sample = {key: spec.choices[0] if spec.type == "categorical" else int(spec.low) if spec.type == "int"
              else spec.low for key, spec in space.items()}
    try:
        with_params(recipe, sample)
    except ConfigError as exc:
        raise ConfigError(f"search.space: a key is not a recipe field or its values do not fit it:\n{exc}") from None


def suggest(trial: Any, key: str, spec: SearchParam) -> Any:
    if spec.type == "categorical":
        return trial.suggest_categorical(key, spec.choices)
    if spec.type == "int":
        step = int(spec.step) if spec.step else 1
        return trial.suggest_int(key, int(spec.low), int(spec.high), step=step, log=spec.log)
    return trial.suggest_float(key, spec.low, spec.high, step=spec.step, log=spec.log)


class PruneHook:
    """A `stop_hook` for `train()`: reports each new validation loss of the trial's run to Optuna and stops
    the run when the pruner says so. Reads what was appended to the run's metrics.jsonl since the last call
    (the run folder is the only one in `trial_dir`)."""

    def __init__(self, trial: Any, trial_dir: Path) -> None:
        self.trial, self.trial_dir = trial, trial_dir
        self.offset, self.reported, self.pruned = 0, False, False

    def __call__(self, step: int) -> bool:
        files = list(self.trial_dir.glob("*/metrics.jsonl"))
        if not files:
            return False
        with files[0].open("rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read()
        complete = chunk[:chunk.rfind(b"\n") + 1]  # a line being written is read next time
        self.offset += len(complete)
        for line in complete.decode("utf-8").splitlines():
            row = json.loads(line) if line.strip() else {}
            if "val_loss" in row:
                self.trial.report(float(row["val_loss"]), int(row["step"]))
                self.reported = True
        if self.reported and self.trial.should_prune():
            self.pruned = True
        return self.pruned


def search(recipe: Recipe, *, quiet: bool = False, console: Any = None, trials: int | None = None,
           search_dir: str | Path | None = None) -> SearchResult:
    """Run the recipe's search; `search_dir` of an earlier search continues its study (same study.db)."""
    optuna = _optuna()
    from tuneforge.train import train

    check_space(recipe)
    cfg = recipe.search
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = Path(search_dir) if search_dir else Path(recipe.output_dir) / f"{recipe.name}-search-{stamp}"
    root.mkdir(parents=True, exist_ok=True)
    sampler = (optuna.samplers.TPESampler(seed=recipe.seed) if cfg.sampler == "tpe"
               else optuna.samplers.RandomSampler(seed=recipe.seed))
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=2) if cfg.pruner == "median"
              else optuna.pruners.NopPruner())
    study = optuna.create_study(study_name=recipe.name, storage=f"sqlite:///{root / 'study.db'}",
                                load_if_exists=True, direction=cfg.direction, sampler=sampler, pruner=pruner)
    log = root / "trials.jsonl"

    def objective(trial) -> float:
        params = {key: suggest(trial, key, spec) for key, spec in cfg.space.items()}
        trial_dir = root / f"trial-{trial.number:03d}"
        trial_recipe = with_params(recipe, params, output_dir=str(trial_dir),
                                   name=f"{recipe.name}-t{trial.number}")
        hook = PruneHook(trial, trial_dir)
        result = train(trial_recipe, quiet=quiet, console=console, stop_hook=hook)
        value = result.best_val_loss if result.best_val_loss is not None else result.val_loss
        state = "pruned" if hook.pruned else result.status
        row = {"trial": trial.number, "params": params, "value": value, "state": state, "steps": result.steps,
               "run_dir": str(result.run_dir)}
        with log.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        if hook.pruned:
            raise optuna.TrialPruned()
        if value is None:
            raise ConfigError(f"trial {trial.number}: the run reported no validation loss to score")
        return float(value)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=trials or cfg.trials, timeout=cfg.timeout_s)
    return _result(study, recipe, root)


def _result(study, recipe: Recipe, root: Path) -> SearchResult:
    rows = [{"trial": t.number, "state": t.state.name.lower(), "value": t.value, "params": t.params}
            for t in study.trials]
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not done:
        return SearchResult(root, {}, None, None, rows)
    best = study.best_trial
    best_path = dump_recipe(with_params(recipe, best.params), root / "best_recipe.yaml")
    return SearchResult(root, dict(best.params), best.value, best_path, rows)


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("tuneforge search needs Optuna: pip install 'tuneforge[search]'") from None
    return optuna
