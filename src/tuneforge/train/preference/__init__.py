"""Preference training and RLHF: reward models, DPO / ORPO / KTO (TRL trainers) and PPO.

    from tuneforge.train import train
    result = train(load_recipe("examples/dpo.yaml"))     # method.objective: reward | dpo | orpo | kto | ppo

`run(recipe, run)` is what `tuneforge.train.train` calls with a started run folder; it writes metrics.jsonl,
the loss plot, checkpoints (<run>/checkpoints, HF Trainer layout) and the final weights (<run>/final),
and returns a `RunResult` whose `stats` hold the objective's measured effect (e.g. held-out preference
accuracy before/after DPO, the reward model's pairwise accuracy, PPO's mean reward first/last).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuneforge.config.recipe import Recipe
    from tuneforge.train.runfolder import RunContext, RunResult

__all__ = ["run", "run_trainer"]


def run(recipe: "Recipe", run: "RunContext") -> "RunResult":
    from tuneforge.errors import ConfigError

    objective = recipe.method.objective
    if objective == "reward":
        from tuneforge.train.preference.reward import train_reward as trainer
    elif objective in ("dpo", "orpo", "kto"):
        from tuneforge.train.preference.dpo import train_dpo_family as trainer
    elif objective == "ppo":
        from tuneforge.train.preference.ppo import train_ppo as trainer
    else:
        raise ConfigError(f"method.objective={objective} is not a preference objective")
    return run_trainer(recipe, run, trainer)


def run_trainer(recipe: "Recipe", run: "RunContext", trainer) -> "RunResult":
    """Call `trainer(recipe, run) -> stats` in a started run folder and file what it returns: the resolved
    recipe, rejected rows, `auto` choices, and the RunResult (shared with the classification trainer)."""
    import datasets

    from tuneforge.config.recipe import dump_recipe
    from tuneforge.data.issues import write_issues
    from tuneforge.train.runfolder import RunResult

    datasets.disable_progress_bars()  # HF/TRL's tokenizing passes; the run's Monitor draws the progress
    stats: dict[str, Any] = trainer(recipe, run)
    resolved = stats.pop("recipe", recipe)
    dump_recipe(resolved, run.run_dir / "recipe.yaml")  # `auto` values replaced by what was used
    rejected = stats.pop("rejected_rows", [])
    if rejected:
        write_issues(rejected, run.run_dir / "rejected.jsonl")
    for key, value in stats.pop("auto", {}).items():
        run.console.print(f"[dim]auto: {key} = {value}[/dim]")
    stopped = bool(stats.pop("stopped", False))
    return RunResult(
        run_dir=run.run_dir,
        final_dir=run.final_dir if run.final_dir.is_dir() else None,
        status="stopped" if stopped else "finished",
        steps=int(stats.get("steps", 0)),
        train_loss=stats.get("train_loss"),
        val_loss=stats.get("val_loss"),
        stats=stats,
        recipe=resolved,
    )
