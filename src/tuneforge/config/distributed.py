"""The `distributed:` section: how several processes share one run.

Several processes come from a launcher (`tuneforge train --nproc N`, `accelerate launch`, `torchrun`, a Ray
worker); this section only says how they split the work. Alone (one process) it changes nothing.

    distributed: {strategy: ddp}                                   # default: every process holds the model
    distributed: {strategy: fsdp, offload: cpu}                     # parameters/grads/optimizer sharded
    distributed: {strategy: deepspeed, zero_stage: 3, offload: cpu} # DeepSpeed ZeRO (generated JSON config)
    distributed: {accelerate_config: accelerate.yaml}               # an `accelerate config` file, as is

Mixed precision is `hparams.dtype` (one place decides it): bf16 there is bf16 in FSDP's policy and in
DeepSpeed's config.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tuneforge.config.base import Section


class DistributedConfig(Section):
    """How processes share the run; see docs/distributed.md."""

    strategy: Literal["ddp", "fsdp", "deepspeed"] = Field(
        "ddp", description="ddp: a full copy per process, gradients averaged; fsdp: parameters, gradients and "
        "optimizer state sharded over the processes (GPUs); deepspeed: ZeRO stage `zero_stage` (GPUs)")
    zero_stage: Literal[2, 3] | None = Field(
        None, description="deepspeed: 2 shards gradients + optimizer state, 3 also the parameters (default 2)")
    offload: Literal["none", "cpu"] = Field(
        "none", description="fsdp: parameters to CPU between uses; deepspeed: optimizer state (stage 3: and "
        "parameters) to CPU")
    accelerate_config: str | None = Field(
        None, description="an `accelerate config` YAML, passed to accelerate's launcher by `tuneforge train` "
        "(instead of strategy/zero_stage/offload)")
    timeout_minutes: float = Field(
        60, gt=0, description="how long a process waits for the others at a collective (e.g. while process 0 "
        "runs the before/after evaluation) before the run fails")

    @model_validator(mode="after")
    def _settings_of_their_strategy(self) -> "DistributedConfig":
        if self.zero_stage is not None and self.strategy != "deepspeed":
            raise ValueError(f"distributed.zero_stage is a setting of strategy: deepspeed (strategy is "
                             f"{self.strategy})")
        if self.offload != "none" and self.strategy == "ddp":
            raise ValueError("distributed.offload needs strategy: fsdp or deepspeed (ddp keeps a full copy per "
                             "process)")
        if self.accelerate_config and (self.strategy != "ddp" or self.zero_stage is not None
                                       or self.offload != "none"):
            raise ValueError("distributed.accelerate_config replaces strategy/zero_stage/offload: set one or the "
                             "other")
        return self

    @property
    def stage(self) -> int:
        """The DeepSpeed ZeRO stage in effect."""
        return self.zero_stage or 2
