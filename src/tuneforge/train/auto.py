"""`auto` hyperparameters, chosen the way the OpenAI fine-tuning API does: from the data size and the method.

The chosen values replace `auto` in the run's saved recipe.yaml, so a run can be reproduced exactly.
"""

from __future__ import annotations

import math

from tuneforge.config.recipe import Recipe

# Learning rates that work across model sizes for each method (LLaMA-Factory / PEFT / OpenAI defaults).
DEFAULT_LR = {
    "full": 2e-5,
    "freeze": 5e-5,
    "lora": 2e-4,
    "qlora": 2e-4,
    "prompt_tuning": 3e-2,
    "p_tuning": 1e-2,
    "prefix_tuning": 1e-2,
}

TARGET_EPOCHS = 3
# Aim to show the model at least MIN_TARGET and at most MAX_TARGET examples in total (OpenAI's rule).
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_EPOCHS, MAX_EPOCHS = 1, 10


def auto_epochs(n_train: int) -> int:
    if n_train <= 0:
        return TARGET_EPOCHS
    epochs = TARGET_EPOCHS
    if n_train * epochs < MIN_TARGET_EXAMPLES:
        epochs = math.ceil(MIN_TARGET_EXAMPLES / n_train)
    elif n_train * epochs > MAX_TARGET_EXAMPLES:
        epochs = MAX_TARGET_EXAMPLES // n_train
    return max(MIN_EPOCHS, min(MAX_EPOCHS, epochs))


def resolve_auto(recipe: Recipe, n_train: int) -> tuple[Recipe, dict[str, object]]:
    """Return a copy of the recipe with every `auto` replaced, and {field: chosen value} for printing."""
    resolved = recipe.model_copy(deep=True)
    chosen: dict[str, object] = {}
    hp = resolved.hparams
    if hp.learning_rate == "auto":
        hp.learning_rate = DEFAULT_LR[resolved.method.type]
        chosen["hparams.learning_rate"] = hp.learning_rate
    if hp.epochs == "auto":
        hp.epochs = float(auto_epochs(n_train))
        chosen["hparams.epochs"] = hp.epochs
    if hp.dtype == "auto":
        hp.dtype = _auto_dtype()
        chosen["hparams.dtype"] = hp.dtype
    return resolved, chosen


def _auto_dtype() -> str:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"
