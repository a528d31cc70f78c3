"""`search.backend: ray`: the recipe's search on a Ray cluster, trials in parallel through `ray.tune.Tuner`.

The same pieces as the Optuna backend (search.py), placed where Ray wants them:
- sampling: Optuna's sampler (TPE or random, seeded alike) is Ray's search algorithm (`OptunaSearch`), over
  the same `search.space`, writing the same study.db, so `--continue` works on either backend's folder;
- pruning: Ray's scheduler (median stopping or ASHA) is fed the per-step validation losses that each trial
  reads from its run's metrics.jsonl (`ValLossTail`), reported with `ray.tune.report`;
- outputs: each trial is an ordinary run folder in <search folder>/trial-NNN/, trials.jsonl gets one row
  per trial, best_recipe.yaml the best finished trial's values; Ray's own records go to ray-<stamp>/.

On a cluster of several machines the search folder (`output_dir`) must be on storage that every node sees
(NFS or similar): trials write their run folders there, and Ray keeps its experiment state there.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any, Callable

import optuna
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule
from ray.tune.search.optuna import OptunaSearch

from tuneforge.config.recipe import Recipe
from tuneforge.config.search import SearchParam
from tuneforge.errors import ConfigError, TuneforgeError
from tuneforge.train.runfolder import write_status
from tuneforge.train.search import (SearchResult, ValLossTail, check_space, log_trial, make_sampler,
                                    search_result, study_dir, study_storage, suggest, trial_dir, trial_recipe,
                                    trials_so_far)

TRIAL_KEY = "_trial"  # the Optuna trial number, carried in each Ray trial's config (names trial-NNN/)


class SpaceSampler:
    """Ray's define-by-run space: draws `search.space` with the same `suggest` as the Optuna backend.
    A class, not a closure, because Ray pickles the search algorithm (with its space) to checkpoint it."""

    def __init__(self, space: dict[str, SearchParam]) -> None:
        self.space = space

    def __call__(self, trial: Any) -> dict[str, Any]:
        for key, spec in self.space.items():
            suggest(trial, key, spec)
        return {TRIAL_KEY: trial.number}


class StudySearch(OptunaSearch):
    """Ray's Optuna searcher, recording a trial the scheduler stopped as `pruned` in study.db (Ray's own
    would record it complete, with the loss it had when stopped, and it could then be picked as the best)."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        # Only a trial that trained to its end reports its outcome row (with `status`); see run_trial.
        ended = result is not None and "status" in result
        super().on_trial_complete(trial_id, result if ended else None, error)


class TuneReportHook:
    """A `stop_hook` for a trial's `train()`: each new validation loss goes to Ray's scheduler through
    `report` (ray.tune.report), with the best so far for the search algorithm; stops the run once Tune
    has stopped the trial."""

    def __init__(self, trial_dir: Path, report: Callable[[dict[str, Any]], None]) -> None:
        self.tail, self.report = ValLossTail(trial_dir), report
        self.best: float | None = None
        self.stopped = False

    def __call__(self, step: int) -> bool:
        for at, loss in self.tail.new():
            if self.stopped:
                break
            self.best = loss if self.best is None else min(self.best, loss)
            try:
                self.report({"step": at, "val_loss": loss, "best_val_loss": self.best})
            except SystemExit:
                # Tune ends a trial its scheduler stopped by raising SystemExit from report(); catching it
                # lets train() stop as an Optuna-pruned trial does: a checkpoint and status `stopped`.
                self.stopped = True
        return self.stopped


def run_trial(config: dict[str, Any], recipe: Recipe, root: str) -> None:
    """One Ray trial (runs in a Ray worker): train the recipe with the sampled values into trial-NNN/."""
    from tuneforge.train import train

    number = int(config[TRIAL_KEY])
    params = {key: config[key] for key in recipe.search.space}
    # Torch would use every core of the node; a trial gets the cores it reserved.
    threads = recipe.hparams.threads or max(1, int(recipe.search.resources_per_trial.cpu))
    hook = TuneReportHook(trial_dir(Path(root), number), tune.report)
    result = train(trial_recipe(recipe, params, number, Path(root), **{"hparams.threads": threads}),
                   quiet=True, stop_hook=hook)
    if hook.stopped:
        return
    value = result.best_val_loss if result.best_val_loss is not None else result.val_loss
    # The last evaluation (train() calls no stop_hook after the last step) and the trial's outcome row; a
    # stop decision on it comes as SystemExit after the row is recorded, when the run has ended anyway.
    with contextlib.suppress(SystemExit):
        tune.report({"step": result.steps, "val_loss": result.val_loss, "best_val_loss": value,
                     "status": result.status, "run_dir": str(result.run_dir)})


class TrialsTable(tune.Callback):
    """Driver side: one trials.jsonl row per ended trial, the same row the Optuna backend writes."""

    def __init__(self, root: Path, space: dict[str, SearchParam]) -> None:
        self.root, self.space = root, space

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._log(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._log(trial, failed=True)

    def _log(self, trial: Any, failed: bool) -> None:
        number, last = int(trial.config[TRIAL_KEY]), trial.last_result or {}
        # A trial with no outcome row ended before training did: the scheduler (or timeout_s) stopped it.
        state = "failed" if failed else last.get("status", "pruned")
        runs = sorted(trial_dir(self.root, number).glob("*/recipe.yaml"))
        run_dir = last.get("run_dir") or (str(runs[0].parent) if runs else None)
        if state == "pruned" and run_dir:
            # Ray may end the trial's worker before its run records the stop; record it here (the same
            # status the run writes itself when it gets there first).
            write_status(Path(run_dir), "stopped")
        log_trial(self.root, {"trial": number, "params": {key: trial.config[key] for key in self.space},
                              "value": last.get("best_val_loss"), "state": state, "steps": last.get("step"),
                              "run_dir": run_dir})


def search_ray(recipe: Recipe, *, quiet: bool = False, trials: int | None = None,
               search_dir: str | Path | None = None) -> SearchResult:
    """Run the recipe's search with Ray Tune; see `tuneforge.train.search.search`."""
    check_space(recipe)
    cfg = recipe.search
    root = study_dir(recipe, search_dir).resolve()  # Ray workers run in other folders: absolute paths only
    done = trials_so_far(optuna, recipe, root)
    mode = "min" if cfg.direction == "minimize" else "max"
    searcher = StudySearch(
        space=SpaceSampler(cfg.space), metric="best_val_loss", mode=mode, sampler=make_sampler(optuna, recipe, done),
        study_name=recipe.name, storage=optuna.storages.RDBStorage(study_storage(root)),
        points_to_evaluate=None if done else (cfg.points_to_evaluate or None))  # once per study
    started = _connect(cfg.address, quiet)
    # A failed trial's error is raised after fit() (_raise_first_error): a tuneforge error as its one line,
    # anything else as Ray reports it, traceback included; Ray logging it as it happens printed a traceback
    # for a typo in the recipe.
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    try:
        _check_fits(cfg)
        trainable = tune.with_resources(tune.with_parameters(run_trial, recipe=_absolute(recipe), root=str(root)),
                                        {"cpu": cfg.resources_per_trial.cpu, "gpu": cfg.resources_per_trial.gpu})
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher, scheduler=_scheduler(cfg.pruner, mode), num_samples=trials or cfg.trials,
                max_concurrent_trials=cfg.max_concurrent, time_budget_s=cfg.timeout_s,
                reuse_actors=True,  # a worker imports torch and transformers once, not once per trial
                trial_dirname_creator=lambda t: trial_dir(Path("."), int(t.config[TRIAL_KEY])).name),
            run_config=tune.RunConfig(name=f"ray-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=str(root),
                                      verbose=0 if quiet else 1, callbacks=[TrialsTable(root, cfg.space)],
                                      # As Optuna does: the first trial that raises ends the search.
                                      failure_config=tune.FailureConfig(fail_fast=True)))
        _raise_first_error(tuner.fit())
    finally:
        if started:
            ray.shutdown()
    return search_result(optuna.load_study(study_name=recipe.name, storage=study_storage(root)), recipe, root)


def _raise_first_error(grid: Any) -> None:
    """A trial's error, raised here as the Optuna backend raises it: a tuneforge error (a bad data file, a
    missing model) as itself, so the CLI prints its one-line message; anything else as Ray reports it."""
    for result in grid:
        if result.error is None:
            continue
        err = result.error
        while isinstance(getattr(err, "cause", None), BaseException):  # Ray's wrappers carry the original
            err = err.cause
        raise (err if isinstance(err, TuneforgeError) else result.error) from None


def _scheduler(pruner: str, mode: str) -> Any:
    """Ray's counterpart of the Optuna backend's pruner, on the same per-step validation loss."""
    if pruner == "median":
        # Like Optuna's MedianPruner(n_startup_trials=2); never pause a trial for lack of samples (a paused
        # function trial would start over), hence the endless time slice.
        return MedianStoppingRule(time_attr="step", metric="val_loss", mode=mode, grace_period=0,
                                  min_samples_required=2, min_time_slice=float("inf"))
    if pruner == "asha":
        # Rungs at 1, 4, 16, ... steps; max_t only bounds the rungs, trials end by their own recipe.
        return ASHAScheduler(time_attr="step", metric="val_loss", mode=mode, grace_period=1,
                             reduction_factor=4, max_t=10**9)
    return FIFOScheduler()


def _connect(address: str | None, quiet: bool) -> bool:
    """Join `address`, or start a local Ray instance sized to this machine; reuse one already started (a
    notebook's). Returns whether this call started it (and so shuts it down)."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # tuneforge sends nothing anywhere by default
    try:
        if address:
            ray.init(address=address, log_to_driver=not quiet)
        else:
            ray.init(include_dashboard=False, log_to_driver=not quiet)
    except ConnectionError as exc:
        raise ConfigError(f"search.address={address}: no Ray cluster answered there ({exc}); start one with "
                          "`ray start --head` and use `search.address: auto` on that machine") from None
    return True


def _check_fits(cfg: Any) -> None:
    """Without `search.address` (a local instance) a trial that asks for more than the machine has would
    wait forever; a cluster may have an autoscaler that adds the nodes, so it is left to Ray there."""
    if cfg.address:
        return
    have = ray.cluster_resources()
    for name, want in (("CPU", cfg.resources_per_trial.cpu), ("GPU", cfg.resources_per_trial.gpu)):
        if want > have.get(name, 0):
            raise ConfigError(f"search.resources_per_trial.{name.lower()}={want:g}, but the local Ray "
                              f"instance has {have.get(name, 0):g} {name}s; ask for less or set search.address")


def _absolute(recipe: Recipe) -> Recipe:
    """The recipe with the local paths it names made absolute (a Ray worker's working folder is its own)."""
    raw = recipe.model_dump(mode="json")
    slots = [(raw["model"], key) for key in ("name_or_path", "tokenizer", "init_from_run")]
    slots += [(src, key) for src in raw["data"]["sources"] for key in ("path", "dataset_info")]
    for section, key in slots:
        if isinstance(section.get(key), str) and Path(section[key]).exists():
            section[key] = str(Path(section[key]).resolve())
    return Recipe.model_validate(raw)
