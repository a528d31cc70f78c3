"""The recipe's `distributed:` section -> accelerate's plugins (FSDP2, DeepSpeed with a generated JSON config).

ddp needs no plugin (accelerate wraps the model in DistributedDataParallel when launched with several
processes). `accelerate_config` adds none either: the launcher (`tuneforge train`, `accelerate launch
--config_file`) exports that file's settings and the Accelerator reads them from the environment.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from tuneforge.config.recipe import Recipe
from tuneforge.errors import UnsupportedHere
from tuneforge.train.distributed import per_process_batch


def mixed_precision(recipe: Recipe) -> str:
    """accelerate's name for hparams.dtype (the one place mixed precision is decided)."""
    return "bf16" if recipe.hparams.dtype == "bf16" else "no"


def deepspeed_config(recipe: Recipe, world: int) -> dict[str, Any]:
    """A complete DeepSpeed config (no "auto" values: there is no HF Trainer to fill them in).

    The loop marks the accumulation boundary itself (accelerate's sync_gradients) and scales the loss by
    processes / global trained tokens, so DeepSpeed accumulates 1 step and must not divide again."""
    hp, section = recipe.hparams, recipe.distributed
    stage = section.stage
    zero: dict[str, Any] = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True}
    if section.offload == "cpu":
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True  # final/ gets whole weights
    return {
        "train_micro_batch_size_per_gpu": per_process_batch(recipe, world),
        "gradient_accumulation_steps": 1,
        "gradient_clipping": float(hp.max_grad_norm or 0.0),  # the gradients are DeepSpeed's: it clips them
        "zero_optimization": zero,
        "bf16": {"enabled": hp.dtype == "bf16"},
        "fp16": {"enabled": False},
        "zero_allow_untested_optimizer": True,  # the recipe's torch optimizer (optim.build_optimizer)
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 2**31 - 1,  # the run's Monitor reports progress
        "wall_clock_breakdown": False,
    }


def fsdp_plugin(recipe: Recipe, model: Any):
    """FSDP2: each decoder layer (the model's own `_no_split_modules`) one shard unit, full state dicts."""
    from accelerate.utils import FullyShardedDataParallelPlugin

    layers = getattr(model, "_no_split_modules", None) or getattr(
        getattr(model, "base_model", None), "_no_split_modules", None)
    if not layers:
        raise UnsupportedHere(f"distributed.strategy=fsdp: {type(model).__name__} names no layer classes to shard "
                              "(_no_split_modules); use strategy: ddp or deepspeed")
    return FullyShardedDataParallelPlugin(
        fsdp_version=2, auto_wrap_policy="transformer_based_wrap", transformer_cls_names_to_wrap=list(layers),
        reshard_after_forward=True, cpu_offload=recipe.distributed.offload == "cpu",
        state_dict_type="FULL_STATE_DICT", cpu_ram_efficient_loading=False, activation_checkpointing=False)


def accelerator_plugins(recipe: Recipe, world: int, model: Any = None) -> dict[str, Any]:
    """Keyword arguments for `accelerate.Accelerator` that make the recipe's strategy."""
    strategy = recipe.distributed.strategy
    if recipe.distributed.accelerate_config or strategy == "ddp":
        return {}
    if strategy == "fsdp":
        return {"fsdp_plugin": fsdp_plugin(recipe, model), "mixed_precision": mixed_precision(recipe)}
    from accelerate.utils import DeepSpeedPlugin

    if importlib.util.find_spec("deepspeed") is None:
        raise UnsupportedHere("distributed.strategy=deepspeed needs the deepspeed package (pip install deepspeed, "
                              "on a machine with CUDA to build its kernels); on CPU use strategy: ddp")
    return {"deepspeed_plugin": DeepSpeedPlugin(hf_ds_config=deepspeed_config(recipe, world)),
            "mixed_precision": mixed_precision(recipe)}


def applied_strategy(recipe: Recipe, accelerator: Any) -> str:
    """What the Accelerator actually runs (ddp / fsdp / deepspeed); refuses an FSDP request it dropped."""
    from accelerate import __version__
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if kind == DistributedType.FSDP:
        return "fsdp"
    if kind == DistributedType.DEEPSPEED:
        return "deepspeed"
    if recipe.distributed.strategy == "fsdp" and accelerator.num_processes > 1:
        # accelerate switches to FSDP only on GPU-like devices; on CPU processes (MULTI_CPU) it keeps DDP.
        raise UnsupportedHere(f"distributed.strategy=fsdp: accelerate {__version__} shards with FSDP only on GPUs "
                              f"(this run's processes are on {accelerator.device.type}, where it runs DDP); use "
                              "distributed.strategy: ddp here")
    return "ddp"
