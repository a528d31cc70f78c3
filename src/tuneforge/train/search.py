"""Hyperparameter search: each trial is an ordinary training run of the recipe with some fields changed,
and its best validation loss is the score. A pruner (median or ASHA) stops trials whose validation loss
trails the others at the same step, so a search costs less than `trials` full runs.

Two backends sample the same space with the same Optuna sampler: `optuna` runs one trial at a time in this
process; `ray` (search_ray.py) runs trials in parallel on a Ray cluster, Optuna's sampler as Ray Tune's
search algorithm and Ray's scheduler as the pruner.

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
from tuneforge.errors import ConfigError, UnsupportedHere


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
    for i, point in enumerate(recipe.search.points_to_evaluate):
        for key, value in point.items():
            if key not in space:
                raise ConfigError(f"search.points_to_evaluate[{i}]: `{key}` is not a key of search.space "
                                  f"(keys: {', '.join(space)})")
            if not in_space(space[key], value):
                raise ConfigError(f"search.points_to_evaluate[{i}].{key}={value!r} is outside search.space.{key}")


def in_space(spec: SearchParam, value: Any) -> bool:
    if spec.type == "categorical":
        return value in spec.choices
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (spec.type == "int" and value != int(value)):
        return False
    return spec.low <= value <= spec.high


def suggest(trial: Any, key: str, spec: SearchParam) -> Any:
    if spec.type == "categorical":
        return trial.suggest_categorical(key, spec.choices)
    if spec.type == "int":
        step = int(spec.step) if spec.step else 1
        return trial.suggest_int(key, int(spec.low), int(spec.high), step=step, log=spec.log)
    return trial.suggest_float(key, spec.low, spec.high, step=spec.step, log=spec.log)


def make_sampler(optuna: Any, recipe: Recipe, done: int = 0) -> Any:
    """The Optuna sampler both backends draw trials from, seeded by the recipe. `done` (trials already in the
    study) shifts the seed: a continued study would otherwise replay the first search's draws."""
    seed = recipe.seed + done
    if recipe.search.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def study_storage(root: Path) -> str:
    return f"sqlite:///{Path(root) / 'study.db'}"


def trials_so_far(optuna: Any, recipe: Recipe, root: Path) -> int:
    """How many trials the study in `root` already has (0 for a new search)."""
    try:
        return len(optuna.load_study(study_name=recipe.name, storage=study_storage(root)).trials)
    except KeyError:  # no study of that name yet
        return 0


def trial_recipe(recipe: Recipe, params: dict[str, Any], number: int, root: Path, **extra: Any) -> Recipe:
    """The recipe of trial `number`: the sampled values (and `extra` dotted fields), run folder in trial-NNN/."""
    return with_params(recipe, {**params, **extra}, output_dir=str(trial_dir(root, number)),
                       name=f"{recipe.name}-t{number}")


def trial_dir(root: Path, number: int) -> Path:
    return Path(root) / f"trial-{number:03d}"


class ValLossTail:
    """The validation losses a trial's run appended to its metrics.jsonl since the last call, as (step,
    loss) pairs; the run folder is the only one in `trial_dir`. Both backends' pruners are fed from this."""

    def __init__(self, trial_dir: Path) -> None:
        self.trial_dir, self.offset = Path(trial_dir), 0

    def new(self) -> list[tuple[int, float]]:
        files = list(self.trial_dir.glob("*/metrics.jsonl"))
        if not files:
            return []
        with files[0].open("rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read()
        complete = chunk[:chunk.rfind(b"\n") + 1]  # a line being written is read next time
        self.offset += len(complete)
        rows = [json.loads(line) for line in complete.decode("utf-8").splitlines() if line.strip()]
        return [(int(row["step"]), float(row["val_loss"])) for row in rows if "val_loss" in row]


class PruneHook:
    """A `stop_hook` for `train()`: reports each new validation loss of the trial's run to Optuna and stops
    the run when the pruner says so."""

    def __init__(self, trial: Any, trial_dir: Path) -> None:
        self.trial, self.tail = trial, ValLossTail(trial_dir)
        self.reported, self.pruned = False, False

    def __call__(self, step: int) -> bool:
        for at, loss in self.tail.new():
            self.trial.report(loss, at)
            self.reported = True
        if self.reported and self.trial.should_prune():
            self.pruned = True
        return self.pruned


def search(recipe: Recipe, *, quiet: bool = False, console: Any = None, trials: int | None = None,
           search_dir: str | Path | None = None) -> SearchResult:
    """Run the recipe's search; `search_dir` of an earlier search continues its study (same study.db)."""
    if recipe.search.backend == "ray":
        ray_tune()  # a clear error before anything else when Ray is not installed
        from tuneforge.train.search_ray import search_ray

        return search_ray(recipe, quiet=quiet, trials=trials, search_dir=search_dir)
    optuna = _optuna()
    from tuneforge.train import train

    check_space(recipe)
    cfg = recipe.search
    root = study_dir(recipe, search_dir)
    # asha: rungs at 1, 4, 16, ... steps, as the Ray backend's ASHAScheduler.
    pruners = {"median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2),
               "asha": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=4),
               "none": optuna.pruners.NopPruner}
    sampler = make_sampler(optuna, recipe, trials_so_far(optuna, recipe, root))
    study = optuna.create_study(study_name=recipe.name, storage=study_storage(root), load_if_exists=True,
                                direction=cfg.direction, sampler=sampler, pruner=pruners[cfg.pruner]())
    for point in cfg.points_to_evaluate:
        study.enqueue_trial(point, skip_if_exists=True)

    def objective(trial) -> float:
        params = {key: suggest(trial, key, spec) for key, spec in cfg.space.items()}
        hook = PruneHook(trial, trial_dir(root, trial.number))
        result = train(trial_recipe(recipe, params, trial.number, root), quiet=quiet, console=console,
                       stop_hook=hook)
        value = result.best_val_loss if result.best_val_loss is not None else result.val_loss
        state = "pruned" if hook.pruned else result.status
        log_trial(root, {"trial": trial.number, "params": params, "value": value, "state": state,
                         "steps": result.steps, "run_dir": str(result.run_dir)})
        if hook.pruned:
            raise optuna.TrialPruned()
        if value is None:
            raise ConfigError(f"trial {trial.number}: the run reported no validation loss to score")
        return float(value)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=trials or cfg.trials, timeout=cfg.timeout_s)
    return search_result(study, recipe, root)


def study_dir(recipe: Recipe, search_dir: str | Path | None) -> Path:
    """The search folder: an earlier one to continue, or a new <output_dir>/<name>-search-<stamp>/."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = Path(search_dir) if search_dir else Path(recipe.output_dir) / f"{recipe.name}-search-{stamp}"
    root.mkdir(parents=True, exist_ok=True)
    return root


def log_trial(root: Path, row: dict[str, Any]) -> None:
    """Append one finished trial to trials.jsonl: trial, params, value, state, steps, run_dir."""
    with (Path(root) / "trials.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def search_result(study, recipe: Recipe, root: Path) -> SearchResult:
    """Every trial of the study (this search and earlier ones); the best complete one is written out."""
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


def ray_tune() -> Any:
    """`ray.tune`, or a clear error naming the extra that installs it (Optuna too: it samples for Ray)."""
    try:
        import optuna  # noqa: F401
        from ray import tune
        from ray.tune.search.optuna import OptunaSearch  # noqa: F401
    except ImportError:
        raise UnsupportedHere("search.backend: ray needs Ray Tune and Optuna: pip install 'tuneforge[cluster]'"
                              ) from None
    return tune
