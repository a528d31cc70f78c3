"""Several processes, one run: the SFT engine on accelerate (DDP; FSDP and DeepSpeed ZeRO on GPUs).

A launcher (`tuneforge train --nproc N`, `accelerate launch`, `torchrun`, a Ray Train worker) starts one process
per device with RANK / WORLD_SIZE / LOCAL_RANK in the environment; accelerate's PartialState joins them into a
process group (or adopts the one a Ray worker already set up). What this module adds:

* `Processes`: the run's Accelerator plus the few collectives the loop needs (sum, any, barrier, share), each
  a no-op in one process, so the loop reads the same alone and in a group.
* `LossModule`: model and loss as one module. DDP and FSDP only sync/shard through their wrapper's forward, and
  the loss (causal_lm_loss) calls the transformer body and lm_head itself to compute logits only where a label is
  trained; wrapped together, it still does that, inside the wrapper's forward.
* The loss normalisation: every process sums its micro-batches' losses; DDP/FSDP average the gradients over the
  processes; the step divides by (global trained tokens / processes). So every trained token weighs the same
  wherever it falls, and N processes compute the update one process computes on the same global batch.

Rank 0 alone writes the run folder (runfolder.start_run shares its path); `is_main_process()` works before
any Accelerator exists.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch

from tuneforge.config.recipe import Recipe
from tuneforge.errors import ConfigError


# -- who am I: from the launcher's environment (or a process group someone else started) ----------------

def _dist_ready() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def process_index() -> int:
    return torch.distributed.get_rank() if _dist_ready() else int(os.environ.get("RANK", "0"))


def process_count() -> int:
    return torch.distributed.get_world_size() if _dist_ready() else int(os.environ.get("WORLD_SIZE", "1"))


def local_process_count() -> int:
    """Processes on this machine (they share its cores)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if process_count() > 1 else 1


def is_main_process() -> bool:
    return process_index() == 0


def start_processes(recipe: Recipe) -> None:
    """Join the launcher's process group (accelerate's PartialState reads the environment); alone: nothing."""
    if process_count() <= 1:
        return
    import datetime

    from accelerate import PartialState

    # cpu=True is how accelerate makes CPU processes one group (MULTI_CPU, gloo); GPUs get nccl.
    PartialState(cpu=not torch.cuda.is_available(),
                 timeout=datetime.timedelta(minutes=recipe.distributed.timeout_minutes))


def share_from_main(value: Any) -> Any:
    """Process 0's `value` on every process (e.g. the run folder only process 0 created)."""
    if not _dist_ready() or process_count() == 1:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def any_process(flag: bool) -> bool:
    """True on every process when it is true on any (a stop request seen by one stops all together)."""
    if not _dist_ready() or process_count() == 1:
        return bool(flag)
    return bool(_all_reduce([1.0 if flag else 0.0])[0] > 0)


def wait_for_everyone() -> None:
    if _dist_ready() and process_count() > 1:
        torch.distributed.barrier()


def _all_reduce(values: list[float]) -> list[float]:
    device = "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return tensor.tolist()


def per_process_batch(recipe: Recipe, world: int) -> int:
    """Rows per process per micro-batch (at most: a share may be a row shorter). hparams.batch_size is the
    global micro-batch, so a recipe trains the same global batch however many processes run it."""
    return max(1, math.ceil(recipe.hparams.batch_size / max(world, 1)))


def describe_batch(recipe: Recipe, world: int, strategy: str | None = None) -> dict[str, Any]:
    """The batch arithmetic (pre-flight, manifest.json, summary stats)."""
    hp = recipe.hparams
    return {"processes": world, "strategy": strategy or recipe.distributed.strategy,
            "per_process_batch": per_process_batch(recipe, world), "grad_accum": hp.grad_accum,
            "batch_size": hp.batch_size, "global_batch": hp.batch_size * hp.grad_accum}


def batch_line(info: dict[str, Any]) -> str:
    if info["processes"] == 1:
        return f"batch {info['batch_size']} x accum {info['grad_accum']}"
    return (f"{info['per_process_batch']} per process x {info['processes']} processes x accum "
            f"{info['grad_accum']} = global batch {info['global_batch']}, {info['strategy']}")


def check_launch(recipe: Recipe) -> None:
    """Refuse, before loading anything, what a launcher asked for that the recipe contradicts."""
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    wanted = "bf16" if recipe.hparams.dtype == "bf16" else "no"
    if launched not in ("no", wanted) and recipe.hparams.dtype != "auto":
        raise ConfigError(f"the launcher asked for mixed precision {launched} but hparams.dtype="
                          f"{recipe.hparams.dtype}: the recipe decides (set hparams.dtype=bf16, or launch without "
                          "--mixed_precision)")
    if process_count() > 1 and recipe.hparams.batch_size < process_count():
        raise ConfigError(f"hparams.batch_size={recipe.hparams.batch_size} is the global batch, shared by "
                          f"{process_count()} processes: give each at least one row (batch_size >= "
                          f"{process_count()}, or fewer processes)")


# -- one run's processes and their Accelerator --------------------------------------------------------

class LossModule(torch.nn.Module):
    """The model and its training loss as one module, so the loss runs inside DDP's/FSDP's forward.

    `loss_fn(model, batch, chunk_size) -> LossOutput` is kept as a plain attribute: distillation's loss holds
    the frozen teacher, which must not become a submodule (DDP would sync it, FSDP shard it)."""

    def __init__(self, model: torch.nn.Module, loss_fn: Callable, chunk_size: int):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn
        self.chunk_size = chunk_size

    def forward(self, batch, loss_fn: Callable | None = None):
        out = (loss_fn or self.loss_fn)(self.model, batch, self.chunk_size)
        return out.loss_sum, out.n_tokens, out.n_correct  # a tuple: what the wrappers' output hooks traverse


def inner(module: torch.nn.Module) -> torch.nn.Module:
    """The LossModule inside a DDP/DeepSpeed wrapper (FSDP2 shards it in place: it is its own inner)."""
    while not isinstance(module, LossModule) and hasattr(module, "module"):
        module = module.module
    return module


@dataclass
class Processes:
    """The processes of one run and the Accelerator that prepares, syncs and reduces for them.

    `accelerator` None: plain torch in this one process (library callers of sft.train_step without a run)."""

    accelerator: Any
    device: torch.device
    strategy: str = "ddp"

    @property
    def rank(self) -> int:
        return self.accelerator.process_index if self.accelerator is not None else 0

    @property
    def world(self) -> int:
        return self.accelerator.num_processes if self.accelerator is not None else 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """Whether no process holds the whole model (fsdp, deepspeed): saving and loading weights gather."""
        return self.strategy in ("fsdp", "deepspeed")

    # -- collectives (metrics, decisions every process must take alike) --------------------------------
    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over the processes, in float64 (token counts stay exact)."""
        if self.world == 1:
            return [float(v) for v in values]
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        return self.accelerator.reduce(tensor, reduction="sum").tolist()

    def any(self, flag: bool) -> bool:
        return any_process(flag) if self.world > 1 else bool(flag)

    def barrier(self) -> None:
        if self.world > 1:
            self.accelerator.wait_for_everyone()

    # -- preparing and stepping --------------------------------------------------------------------
    def prepare(self, module: LossModule, optimizer, scheduler):
        """Wrap for the strategy (DDP / FSDP2 / DeepSpeed engine); one process: placed on the device, as is."""
        if self.accelerator is None:
            return module, optimizer, scheduler
        return self.accelerator.prepare(module, optimizer, scheduler)

    @contextlib.contextmanager
    def micro_batch(self, module, last: bool):
        """One micro-batch's forward + backward; gradients are exchanged on the step's last one only."""
        if self.accelerator is None:
            yield
            return
        self.accelerator.sync_gradients = last  # DeepSpeed's engine steps at this boundary, DDP/FSDP ignore it
        with contextlib.nullcontext() if last else self.accelerator.no_sync(module):
            yield

    def backward(self, loss_sum: torch.Tensor, global_tokens: float) -> None:
        if self.accelerator is None:
            loss_sum.backward()
        elif self.strategy == "deepspeed":
            # DeepSpeed owns (and partitions) the gradients and steps inside backward: scale the loss instead.
            self.accelerator.backward(loss_sum * (self.world / max(global_tokens, 1.0)))
        else:
            self.accelerator.backward(loss_sum)

    def per_token_gradients(self, module, global_tokens: float, max_grad_norm: float | None) -> None:
        """Gradients of the summed loss -> of the mean over the global batch's trained tokens, then clipped.
        DDP/FSDP averaged them over the processes, so the divisor is global tokens / processes."""
        if self.strategy != "deepspeed":
            divisor = global_tokens / self.world if self.world > 1 else global_tokens
            for p in module.parameters():
                if p.grad is not None:
                    p.grad.div_(divisor)
        if not max_grad_norm:
            return
        if self.accelerator is None:
            torch.nn.utils.clip_grad_norm_([p for p in module.parameters() if p.grad is not None], max_grad_norm)
        else:
            self.accelerator.clip_grad_norm_(module.parameters(), max_grad_norm)  # DeepSpeed: its config clips

    def unwrap(self, module) -> torch.nn.Module:
        """The Hugging Face / peft model inside the prepared LossModule."""
        if self.accelerator is not None:
            module = self.accelerator.unwrap_model(module)
        return inner(module).model

    def full_state_dict(self, module) -> dict[str, torch.Tensor] | None:
        """Sharded strategies: the whole model's state dict, gathered onto process 0 (a collective: every process
        calls it); None elsewhere, and for ddp, where the unwrapped model already is the whole model."""
        if not self.sharded:
            return None
        state = self.accelerator.get_state_dict(module)
        if not self.is_main:
            return None
        return {k.removeprefix("model."): v for k, v in state.items()}


def local(device: torch.device) -> Processes:
    """One process, no Accelerator: what a library caller of train_step gets."""
    return Processes(None, device)


def build_processes(recipe: Recipe, model: torch.nn.Module, place: bool = True) -> Processes:
    """The run's Accelerator, with the plugins the recipe's `distributed:` section asks for. `place`: move the
    model to this process's device (not for quantized models, which load where they run)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    from tuneforge.train.strategies import accelerator_plugins, applied_strategy

    plugins = accelerator_plugins(recipe, process_count(), model)
    # The loop steps the scheduler once per optimizer step, counted in global steps (accelerate's default steps it
    # once per process). Buffers (rotary tables) are equal everywhere: no broadcast before every forward.
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), step_scheduler_with_optimizer=False,
                              device_placement=place,
                              kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)], **plugins)
    device = accelerator.device if place else next(model.parameters()).device
    return Processes(accelerator, device, applied_strategy(recipe, accelerator))
