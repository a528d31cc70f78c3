"""Supervised fine-tuning (and causal-LM pretraining on raw text): setup, loop, cleanup.

The data path is B's: records -> tokenize_dataset (cached) -> LengthGroupedBatcher -> causal_lm_loss
(logits only where a label is trained). Position in the data is (epoch, batch index), which with the
batcher's per-(seed, epoch) order and restored RNG states makes a resumed run match an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from rich.console import Console

from tuneforge.config.recipe import Recipe
from tuneforge.train import checkpoint as ckpt
from tuneforge.train import preflight as pf
from tuneforge.train.auto import resolve_auto
from tuneforge.train.distributed import (LossModule, Processes, batch_line, build_processes, describe_batch, inner,
                                        local, per_process_batch)
from tuneforge.train.loss import LossFn
from tuneforge.train.methods import apply_method, count_parameters, describe_parameters, load_for_training
from tuneforge.train.monitor import Monitor, check_finite, truncate_metrics
from tuneforge.train.multitask import TaskPlan
from tuneforge.train.optim import build_optimizer, build_scheduler
from tuneforge.train.runfolder import RunContext, RunResult, find_resume_point, start_run, with_stop_request
from tuneforge.train.runs import load_run_model

StopHook = Callable[[int], bool]


@dataclass
class TrainState:
    """Everything about progress that a checkpoint must carry besides weights/optimizer/RNG."""

    epoch: int = 0
    batch_index: int = 0  # next micro-batch of `epoch`
    global_step: int = 0  # optimizer steps done
    best_val_loss: float | None = None
    best_step: int | None = None
    bad_evals: int = 0  # evaluations since the last improvement
    tokens_seen: int = 0
    last_train_loss: float | None = None
    last_val_loss: float | None = None


@dataclass
class Prepared:
    """A loaded, tokenized, method-wrapped job, ready for the loop."""

    recipe: Recipe
    model: Any
    tokenizer: Any
    datasets: dict[str, Any]  # split -> TokenizedDataset
    stats: dict[str, Any]
    test_records: list[Any]  # for the before/after evaluation
    plan: TaskPlan  # which task each example belongs to, and the training mixture
    loss_fn: LossFn | None = None  # the training loss; None: causal_lm_loss (distillation brings its own)
    rejected: list[Any] = field(default_factory=list)  # RowIssues of rows the readers refused


# -- setup --------------------------------------------------------------------------------------------

def prepare(recipe: Recipe, console: Console) -> tuple[Prepared, list[str]]:
    """Read and split the data, load the model, tokenize, resolve `auto`. Nothing is written yet."""
    from tuneforge.data import read_data
    from tuneforge.train.threads import configure_threads

    from tuneforge.train.mixture import tag_tasks

    results = read_data(recipe.data)
    tag_tasks(results, recipe.data.sources)
    for result in results:
        if result.rejected:
            console.print(f"[yellow]{result.source}: {len(result.rejected)} row(s) rejected[/] "
                          f"({', '.join(f'{k}: {v}' for k, v in result.counts_by_code().items())})")
    splits = pf.split_records(results, recipe.data.sources, recipe.data.val_ratio,
                              recipe.data.test_ratio, recipe.seed)
    pf.check_record_kinds(splits, recipe.method.objective)
    rejected = [issue for result in results for issue in result.rejected]
    if len(splits.train) < recipe.data.min_examples:  # refuse before the (slow) model load
        pf.check_usable(len(splits.train), len(splits.val), recipe, rejected)
    threads = configure_threads(recipe.hparams.threads)
    model, tokenizer = load_for_training(recipe.model, recipe.method)
    datasets, plan = tokenize_splits(splits, tokenizer, recipe)
    pf.check_usable(len(datasets["train"].examples), len(datasets["val"].examples), recipe, rejected,
                    datasets["train"].stats.get("dropped_no_labels", 0))
    resolved, chosen = resolve_auto(recipe, len(datasets["train"].examples))
    if chosen:
        console.print("auto: " + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in chosen.items()))
    stats = {name: dict(ds.stats) for name, ds in datasets.items()}
    stats["torch_threads"] = threads
    stats["test_records"] = len(splits.test)
    data_files = [r.source for r in results]
    stats["rejected_rows"] = len(rejected)
    return Prepared(resolved, model, tokenizer, datasets, stats, splits.test, plan, rejected=rejected), data_files


def tokenize_splits(splits: pf.Splits, tokenizer: Any, recipe: Recipe) -> tuple[dict[str, Any], TaskPlan]:
    """Tokenized train/val/test (cached on disk) and the task plan: one task per data source."""
    from tuneforge.train.multitask import tokenize_by_task

    return tokenize_by_task(splits, tokenizer, recipe, Path(recipe.output_dir) / ".cache" / "tokens")


def run_sft(recipe: Recipe, console: Console, stop_hook: StopHook | None = None) -> RunResult:
    resume_from = find_resume_point(recipe, console)  # before the slow part: `resume: true` with nothing fails fast
    job, data_files = prepare(recipe, console)
    run = start_run(job.recipe, console, resume_from, data_files)
    file_rejected(run, job)
    return run.supervise(lambda: train_loop(run, job, stop_hook))


def file_rejected(run: RunContext, job: Prepared) -> None:
    """The rows the readers refused go into the run folder with their reason (nothing is lost silently)."""
    from tuneforge.data.issues import write_issues

    if job.rejected and run.is_main:
        write_issues(job.rejected, run.run_dir / "rejected.jsonl")


def _is_quantized(model: Any) -> bool:
    return bool(getattr(model, "is_quantized", False) or getattr(model, "is_loaded_in_4bit", False))


def _autocast(recipe: Recipe, device: torch.device):
    if recipe.hparams.dtype == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup_model(run: RunContext, job: Prepared, device: torch.device) -> Any:
    recipe, hp = job.recipe, job.recipe.hparams
    seed_everything(recipe.seed)  # adapter init and dropout are part of the reproducible result
    model = apply_method(job.model, job.tokenizer, recipe.method, hp)
    if hp.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "config"):
            model.config.use_cache = False
    if not _is_quantized(model):
        model.to(device)
    if hp.compile:
        model.compile()  # in place, so save_pretrained and parameter names are unchanged
    trainable, total = count_parameters(model)
    job.stats["trainable_params"], job.stats["total_params"] = trainable, total
    run.console.print(describe_parameters(model))
    return model


# -- one optimizer step, one evaluation --------------------------------------------------------------

def _loss_module(model, loss_fn: LossFn | None, recipe: Recipe):
    """The prepared LossModule the loop passes, or a model of a library caller wrapped on the spot."""
    from tuneforge.train.loss import causal_lm_loss

    if isinstance(inner(model), LossModule):
        return model
    return LossModule(model, loss_fn or causal_lm_loss, recipe.hparams.loss_chunk_size)


def train_step(model, optimizer, scheduler, micro_batches, recipe: Recipe, device, autocast,
               loss_fn: LossFn | None = None, procs: Processes | None = None) -> tuple[float, int]:
    """Accumulate over micro-batches, average per trained token, clip, step. Returns (mean loss, input tokens).

    Gradients of the summed loss are divided by the step's token count (over all processes) once at the end, so
    every trained token weighs the same however the tokens fall across micro-batches and processes. A non-finite
    loss skips the update. `model` is the loop's prepared LossModule, or a model (trained with `loss_fn`, which
    must return a sum over trained tokens like causal_lm_loss, in this one process when `procs` is None).
    """
    procs = procs or local(device)
    module = _loss_module(model, loss_fn, recipe)
    module.train()
    # DeepSpeed scales the loss before backward, so the global count comes first (one small all-reduce).
    global_tokens = procs.sum([sum(b.n_label_tokens for b in micro_batches)])[0]
    loss_sum, n_input = 0.0, 0
    for i, batch in enumerate(micro_batches):
        with procs.micro_batch(module, last=i == len(micro_batches) - 1):
            with autocast():
                batch_loss, _, _ = module(batch.to(device))
            procs.backward(batch_loss, global_tokens)
        loss_sum += float(batch_loss.detach())
        n_input += batch.n_tokens
    loss_sum, n_input = procs.sum([loss_sum, n_input])
    loss = loss_sum / max(global_tokens, 1)
    if math.isfinite(loss) and global_tokens > 0:
        procs.per_token_gradients(module, global_tokens, recipe.hparams.max_grad_norm)
        optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss, int(n_input)


@torch.no_grad()
def loss_sums(model, batches, recipe: Recipe, device, autocast) -> tuple[float, int, int]:
    """(summed loss, trained tokens, correctly predicted tokens) over `batches`, in this process."""
    from tuneforge.train.loss import causal_lm_loss

    module = _loss_module(model, causal_lm_loss, recipe)
    module.eval()
    loss_sum, n_tokens, n_correct = 0.0, 0, 0
    for batch in batches:
        with autocast():
            batch_loss, batch_tokens, batch_correct = module(batch.to(device), loss_fn=causal_lm_loss)
        loss_sum += float(batch_loss)
        n_tokens += batch_tokens
        n_correct += batch_correct
    module.train()
    return loss_sum, n_tokens, n_correct


def evaluate_loss(model, val_groups: dict[str, list], job: Prepared, procs: Processes,
                  autocast) -> dict[str, float]:
    """val_loss / val_accuracy / val_perplexity over every process's share, plus per task (`val_loss.<task>`)
    for multitask runs."""
    from tuneforge.train.multitask import combine_val

    local_sums = [loss_sums(model, batches, job.recipe, procs.device, autocast) for batches in val_groups.values()]
    flat = procs.sum([value for sums in local_sums for value in sums])
    sums = {task: (flat[3 * i], int(flat[3 * i + 1]), int(flat[3 * i + 2])) for i, task in enumerate(val_groups)}
    return combine_val(sums, job.plan.val_average)


# -- the loop -----------------------------------------------------------------------------------------

def _batchers(job: Prepared, procs: Processes):
    """The training batcher (drawing the task mixture each epoch) and the validation batches by task, each
    global batch shared out over the processes."""
    from tuneforge.train.batching import LengthGroupedBatcher
    from tuneforge.train.multitask import val_groups

    hp, pad_id = job.recipe.hparams, job.tokenizer.pad_token_id
    pad_id = pad_id if pad_id is not None else job.tokenizer.eos_token_id
    max_len = hp.cutoff_len if hp.packing else None
    train = LengthGroupedBatcher(job.datasets["train"].examples, hp.batch_size, job.recipe.seed, pad_id,
                                 packing=hp.packing, max_len=max_len,
                                 epoch_indices=job.plan.sampler(job.recipe.seed), rank=procs.rank,
                                 world=procs.world)
    val = val_groups(job.plan, job.datasets["val"].examples, hp.batch_size, job.recipe.seed, pad_id,
                     rank=procs.rank, world=procs.world)
    return train, val


def total_steps(recipe: Recipe, batches_per_epoch: int) -> int:
    hp = recipe.hparams
    if hp.max_steps:
        return hp.max_steps
    steps_per_epoch = math.ceil(batches_per_epoch / hp.grad_accum)
    return max(1, math.ceil(float(hp.epochs) * steps_per_epoch))


def _probe(trainee, job: Prepared, train_batcher, procs: Processes, autocast) -> float | None:
    """Time a few real steps with a throwaway optimizer; weights and RNG are restored afterwards."""
    hp = job.recipe.hparams
    batches = train_batcher.batches(0)
    model = procs.unwrap(trainee)
    optimizer = build_optimizer(model, hp, float(hp.learning_rate))
    scheduler = build_scheduler(optimizer, hp, 100)
    # Start mid-epoch: the batcher puts the longest batch first, which would make the estimate a worst case.
    cursor = [len(batches) // 2]

    def run_step() -> None:
        chunk = [batches[(cursor[0] + k) % len(batches)] for k in range(hp.grad_accum)]
        cursor[0] += hp.grad_accum
        train_step(trainee, optimizer, scheduler, chunk, job.recipe, procs.device, autocast, procs=procs)

    per_step = pf.measure_step_time(model, run_step, hp.probe_steps)
    del optimizer, scheduler
    return per_step


def _preflight(run: RunContext, job: Prepared, trainee, train_batcher, steps: int, procs: Processes,
               autocast) -> None:
    hp = job.recipe.hparams
    # Sharded weights cannot be saved and restored around the probe by one process: no estimate there.
    probe = hp.probe_steps and not procs.sharded
    per_step = _probe(trainee, job, train_batcher, procs, autocast) if probe else None
    longest = max((len(e.input_ids) for e in job.datasets["train"].examples), default=0)
    mine = per_process_batch(job.recipe, procs.world)
    peak = pf.estimate_peak_memory(procs.unwrap(trainee), hp.optimizer, mine, min(longest, hp.cutoff_len),
                                   hp.gradient_checkpointing)
    job.stats["distributed"] = describe_batch(job.recipe, procs.world, procs.strategy)
    extra = {
        "trainable params": f"{job.stats['trainable_params']:,} / {job.stats['total_params']:,}",
        "optimizer steps": f"{steps:,} ({batch_line(job.stats['distributed'])})",
        "learning rate": f"{float(hp.learning_rate):g} ({hp.scheduler})",
        "peak memory (est.)": pf.format_bytes(peak) + (" per process" if procs.world > 1 else ""),
    }
    if job.plan.per_task or train_batcher.epoch_indices is not None:  # tasks, or weights that mix
        from tuneforge.train.mixture import describe_mixture

        extra["tasks (examples / epoch)"] = describe_mixture(job.plan.slices["train"], job.plan.counts)
        job.stats["task_mixture"] = {t: round(c, 2) for t, c in job.plan.counts.items()}
        job.stats["task_train_examples"] = job.plan.slices["train"].sizes()
    if per_step is not None:
        extra["time (est.)"] = f"{pf.format_seconds(per_step * steps)} ({per_step:.2f}s/step measured)"
        job.stats["probe_s_per_step"] = round(per_step, 4)
    job.stats["peak_memory_estimate_bytes"] = peak
    run.console.print(pf.summary_table(job.stats, extra))


def train_loop(run: RunContext, job: Prepared, stop_hook: StopHook | None = None) -> RunResult:
    from tuneforge.train.before_after import compare_on_test, evaluate_test, report_before_after
    from tuneforge.train.loss import causal_lm_loss

    recipe, hp = job.recipe, job.recipe.hparams
    stop_hook = with_stop_request(run.run_dir, stop_hook)
    before = None
    if compare_on_test(job) and run.resume_from is None and run.is_main:
        before = evaluate_test(job.model, job, run, "before")
    procs = build_processes(recipe, job.model, place=not _is_quantized(job.model))
    model = setup_model(run, job, procs.device)
    autocast = _autocast(recipe, procs.device)
    train_batcher, val_batches = _batchers(job, procs)
    steps = total_steps(recipe, train_batcher.num_batches(0))
    optimizer = build_optimizer(model, hp, float(hp.learning_rate))
    scheduler = build_scheduler(optimizer, hp, steps)
    trainee, optimizer, scheduler = procs.prepare(
        LossModule(model, job.loss_fn or causal_lm_loss, hp.loss_chunk_size), optimizer, scheduler)
    _preflight(run, job, trainee, train_batcher, steps, procs, autocast)
    state = TrainState()
    if run.resume_from is not None:
        state = TrainState(**ckpt.load_checkpoint(run.resume_from, model, optimizer, scheduler)["train"])
        if run.is_main:
            truncate_metrics(run.metrics_path, state.global_step)
        run.console.print(f"resumed from {run.resume_from} (step {state.global_step}, epoch {state.epoch})")
    started = time.perf_counter()
    loop = _Loop(run, job, trainee, optimizer, scheduler, procs, autocast, stop_hook)
    with Monitor(run, steps, state.global_step) as mon:
        outcome = loop.epochs(train_batcher, val_batches, state, steps, mon)
    job.stats["train_seconds"] = round(time.perf_counter() - started, 2)
    if outcome == "stopped":
        return _result(run, job, state, "stopped", None)
    best = run.run_dir / "checkpoints" / ckpt.BEST
    procs.barrier()  # process 0 wrote `best` last
    if hp.early_stopping_patience and ckpt.is_valid(best) and state.best_step != state.global_step:
        ckpt.load_checkpoint(best, model, restore_random=False)
        run.console.print(f"restored the best weights (step {state.best_step}, val loss {state.best_val_loss:.4f})")
    weights = procs.full_state_dict(trainee)  # sharded: gathered onto process 0 (every process takes part)
    final = save_final(model, job.tokenizer, run.final_dir, weights) if run.is_main else run.final_dir
    run.console.print(f"saved {final}")
    if compare_on_test(job) and run.is_main:
        after = evaluate_test(model if not procs.sharded else load_run_model(run.run_dir)[0], job, run, "after")
        report_before_after(run, job, before, after)
    return _result(run, job, state, "finished", final)


def _result(run: RunContext, job: Prepared, state: TrainState, status: str, final: Path | None) -> RunResult:
    return RunResult(run_dir=run.run_dir, final_dir=final, status=status, best_val_loss=state.best_val_loss,
                     best_step=state.best_step, steps=state.global_step, train_loss=state.last_train_loss,
                     val_loss=state.last_val_loss, stats=job.stats, recipe=job.recipe)


class _Loop:
    """Optimizer steps, evaluations and checkpoints of one run, the same in every process (decisions that
    depend on one process, such as a stop request, are agreed on first)."""

    def __init__(self, run: RunContext, job: Prepared, trainee, optimizer, scheduler, procs: Processes,
                 autocast, stop_hook: StopHook) -> None:
        self.run, self.job, self.hp = run, job, job.recipe.hparams
        self.trainee, self.optimizer, self.scheduler = trainee, optimizer, scheduler
        self.procs, self.autocast, self.stop_hook = procs, autocast, stop_hook

    def epochs(self, train_batcher, val_batches, state: TrainState, steps: int, mon: Monitor) -> str:
        """Run optimizer steps until `steps`, early stopping or the stop hook. Returns finished/stopped."""
        hp = self.hp
        while state.global_step < steps:
            batches = train_batcher.batches(state.epoch)
            end = min(state.batch_index + hp.grad_accum, len(batches))
            chunk = [batches[i] for i in range(state.batch_index, end)]
            t0 = time.perf_counter()
            loss, n_input = train_step(self.trainee, self.optimizer, self.scheduler, chunk, self.job.recipe,
                                       self.procs.device, self.autocast, procs=self.procs)
            lr = max(g["lr"] for g in self.optimizer.param_groups)
            check_finite(loss, state.global_step + 1, float(hp.learning_rate))
            speed = n_input / max(time.perf_counter() - t0, 1e-9)
            state.global_step += 1
            state.batch_index = end
            state.tokens_seen += n_input
            state.last_train_loss = loss
            epoch_done = state.batch_index >= len(batches)
            mon.log({"step": state.global_step, "epoch": round(state.epoch + end / len(batches), 4),
                     "train_loss": loss, "lr": lr, "tokens_per_s": round(speed, 1)})
            mon.advance(state.global_step, loss, lr, speed)
            if epoch_done:
                state.epoch += 1
                state.batch_index = 0
            last = state.global_step >= steps
            stop_early = False
            if val_batches and (epoch_done or last or (hp.eval_every and state.global_step % hp.eval_every == 0)):
                stop_early = self.evaluate(val_batches, state, mon)
            if (hp.save_every and state.global_step % hp.save_every == 0) or (epoch_done and hp.save_each_epoch):
                self.save(state)
            if stop_early:
                mon.print(f"early stopping at step {state.global_step}: no val-loss improvement in "
                          f"{hp.early_stopping_patience} evaluation(s)")
                return "finished"
            if not last and self.procs.any(self.stop_hook(state.global_step)):
                self.save(state)
                mon.print(f"stopped at step {state.global_step}; continue with resume: auto")
                return "stopped"
        return "finished"

    def evaluate(self, val_batches, state: TrainState, mon: Monitor) -> bool:
        """Validate, track the best (saved as checkpoints/best), and say whether early stopping triggers."""
        hp = self.hp
        metrics = evaluate_loss(self.trainee, val_batches, self.job, self.procs, self.autocast)
        state.last_val_loss = metrics["val_loss"]
        mon.log({"step": state.global_step, **metrics})
        mon.print(f"step {state.global_step}: val loss {metrics['val_loss']:.4f}, "
                  f"token accuracy {metrics['val_accuracy']:.3f}, perplexity {metrics['val_perplexity']:.2f}")
        if state.best_val_loss is None or metrics["val_loss"] < state.best_val_loss - hp.early_stopping_min_delta:
            state.best_val_loss, state.best_step, state.bad_evals = metrics["val_loss"], state.global_step, 0
            if self.run.is_main:
                ckpt.save_checkpoint(self.run.run_dir, ckpt.BEST, self.procs.unwrap(self.trainee),
                                     {"train": asdict(state)})
            return False
        state.bad_evals += 1
        return bool(hp.early_stopping_patience and state.bad_evals >= hp.early_stopping_patience)

    def save(self, state: TrainState) -> None:
        name = f"step-{state.global_step:07d}"
        if self.run.is_main:
            ckpt.save_checkpoint(self.run.run_dir, name, self.procs.unwrap(self.trainee), {"train": asdict(state)},
                                 self.optimizer, self.scheduler, keep_last=self.hp.keep_last)
        self.procs.barrier()


def save_final(model, tokenizer, final_dir: Path, state_dict: dict | None = None) -> Path:
    """Hugging Face format (adapter only for peft models) + tokenizer, written beside and renamed in.
    `state_dict`: the gathered weights when they were sharded."""
    import shutil

    final_dir = Path(final_dir)
    tmp = final_dir.with_name(final_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True, **({"state_dict": state_dict} if state_dict else {}))
    tokenizer.save_pretrained(str(tmp))
    if final_dir.exists():
        shutil.rmtree(final_dir)
    tmp.rename(final_dir)
    return final_dir
