"""Training: `train(recipe) -> RunResult`, the library entry point behind `tuneforge train`.

    from tuneforge.config import load_recipe
    from tuneforge.train import train
    result = train(load_recipe("recipe.yaml"), quiet=True)
    result.run_dir, result.final_dir, result.best_val_loss

Pieces other trainers reuse: runfolder (run folders, RunContext, RunResult), monitor (metrics, plots,
progress), checkpoint (atomic save/resume), methods (full/freeze/LoRA/prompt/QLoRA setup), optim, auto.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from rich.console import Console

    from tuneforge.config.recipe import Recipe
    from tuneforge.train.runfolder import RunResult

__all__ = ["train"]


def train(
    recipe: "Recipe",
    *,
    console: "Console | None" = None,
    quiet: bool = False,
    stop_hook: Callable[[int], bool] | None = None,
) -> "RunResult":
    """Run the recipe's training job and return where its outputs went.

    `quiet=True` prints nothing (for notebooks and other tools); `stop_hook(step) -> True` stops cleanly
    after that optimizer step with a checkpoint, status `stopped` (resume with `resume: auto`); so does a
    `stop-request` file in the run folder (`runfolder.request_stop`, `tuneforge stop RUN`).

    Under a launcher (`tuneforge train --nproc N`, `accelerate launch`, `torchrun`, or a Ray Train worker whose
    process group is already up) every process calls this with the same recipe; they share the work as
    `recipe.distributed` says, process 0 writes the run folder and prints (docs/distributed.md).
    """
    from rich.console import Console as _Console

    from tuneforge.train import distributed
    from tuneforge.train.methods import PREFERENCE_OBJECTIVES, check_method_supported
    from tuneforge.train.monitor import check_trackers
    from tuneforge.ui.console import console as shared_console

    if quiet or not distributed.is_main_process():
        console = _Console(quiet=True)
    console = console or shared_console
    check_method_supported(recipe.method)  # before loading anything: e.g. qlora without a GPU
    check_trackers(recipe.hparams.report_to)
    distributed.check_launch(recipe)
    if recipe.method.objective == "ppo":
        from tuneforge.train.preference.ppo import check_single_process

        check_single_process()
    distributed.start_processes(recipe)
    if recipe.method.objective in PREFERENCE_OBJECTIVES:
        return _train_preference(recipe, console, stop_hook)
    if recipe.method.objective == "classification":
        from tuneforge.train import classify

        return _in_run_folder(recipe, console, stop_hook, classify.run)
    if recipe.method.objective == "mlm":
        from tuneforge.train import mlm

        return _in_run_folder(recipe, console, stop_hook, mlm.run)
    if recipe.method.objective == "contrastive":
        from tuneforge.train import contrastive

        return _in_run_folder(recipe, console, stop_hook, contrastive.run)
    if recipe.method.objective == "distill":
        from tuneforge.train.distill import run_distill

        return run_distill(recipe, console, stop_hook)
    from tuneforge.train.sft import run_sft

    return run_sft(recipe, console, stop_hook)


def _train_preference(recipe: "Recipe", console: "Console", stop_hook) -> "RunResult":
    """Preference objectives get a started run folder (recipe.yaml, manifest, status) and write into it."""
    from tuneforge.errors import UnsupportedHere

    try:
        from tuneforge.train import preference
    except ImportError:
        raise UnsupportedHere(
            f"method.objective={recipe.method.objective}: the preference trainers are not available in this build"
        ) from None
    return _in_run_folder(recipe, console, stop_hook, preference.run)


def _in_run_folder(recipe: "Recipe", console: "Console", stop_hook, runner) -> "RunResult":
    """HF-Trainer-based objectives get a started run folder (recipe.yaml, manifest, status) to write into."""
    from tuneforge.train.runfolder import find_resume_point, start_run, with_stop_request

    data_files = [s.path for s in recipe.data.sources if s.path]
    run = start_run(recipe, console, find_resume_point(recipe, console), data_files)
    run.extras["stop_hook"] = with_stop_request(run.run_dir, stop_hook)
    return run.supervise(lambda: runner(recipe, run))
