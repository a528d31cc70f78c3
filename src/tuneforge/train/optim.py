"""Optimizer and schedule: parameter groups (weight decay, layer-wise LR decay), optimizer, scheduler."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from tuneforge.config.sections import HParams
from tuneforge.train.methods import layer_depth

_NO_DECAY = ("bias", "norm", "ln_", "layernorm")


def param_groups(model: nn.Module, hparams: HParams, lr: float) -> list[dict[str, Any]]:
    """Trainable parameters grouped by (depth, decay?).

    With `layerwise_lr_decay=d`, depth k of K gets lr * d**(K-k): the head keeps `lr`, each layer below
    it is multiplied by d once more, the embeddings least of all.
    """
    n_layers = getattr(getattr(model, "config", None), "num_hidden_layers", 0) or 0
    decay_factor = hparams.layerwise_lr_decay
    top = n_layers + 1
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        depth = layer_depth(name, n_layers) if decay_factor else top
        no_decay = param.ndim < 2 or any(key in name.lower() for key in _NO_DECAY)
        key = (depth, no_decay)
        if key not in groups:
            scale = decay_factor ** (top - depth) if decay_factor else 1.0
            groups[key] = {
                "params": [],
                "names": [],
                "lr": lr * scale,
                "weight_decay": 0.0 if no_decay else hparams.weight_decay,
                "depth": depth,
            }
        groups[key]["params"].append(param)
        groups[key]["names"].append(name)
    if not groups:
        raise RuntimeError("no trainable parameters: the method setup froze everything")
    return [groups[k] for k in sorted(groups)]


def build_optimizer(model: nn.Module, hparams: HParams, lr: float) -> torch.optim.Optimizer:
    groups = param_groups(model, hparams, lr)
    for group in groups:
        group.pop("names")
    name = hparams.optimizer
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=hparams.momentum)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, momentum=hparams.momentum)
    if name == "adafactor":
        from transformers.optimization import Adafactor

        # A fixed, external learning rate so schedules and layer-wise decay apply as for the others.
        return Adafactor(groups, lr=lr, scale_parameter=False, relative_step=False, warmup_init=False)
    raise ValueError(f"unknown optimizer {name}")  # unreachable: the recipe validates it


def warmup_steps(hparams: HParams, total_steps: int) -> int:
    if hparams.warmup_steps is not None:
        return min(hparams.warmup_steps, total_steps)
    return int(math.ceil(hparams.warmup_ratio * total_steps))


def build_scheduler(optimizer: torch.optim.Optimizer, hparams: HParams, total_steps: int):
    from transformers import get_scheduler

    return get_scheduler(
        hparams.scheduler,
        optimizer=optimizer,
        num_warmup_steps=warmup_steps(hparams, total_steps),
        num_training_steps=max(total_steps, 1),
    )
