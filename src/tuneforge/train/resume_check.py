"""Before resuming: is the checkpoint's run the same shape (method, adapter, base model) as the recipe?

Loading an r=8 adapter's weights into an r=16 model ends in a torch size-mismatch deep in the loop; the run
folder's recipe.yaml says what the checkpoint was trained as, so the difference is named up front instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tuneforge.config.recipe import Recipe
from tuneforge.errors import ConfigError

_SUBSECTION = {"lora": "lora", "qlora": "lora", "freeze": "freeze", "prompt_tuning": "prompt",
               "p_tuning": "prompt", "prefix_tuning": "prompt"}


def shape_of(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe fields that decide which weights a checkpoint holds and their sizes (dotted names)."""
    model, method = recipe.get("model") or {}, recipe.get("method") or {}
    shape = {
        "model.name_or_path": model.get("name_or_path"),
        "model.gguf_file": model.get("gguf_file"),
        "method.type": method.get("type"),
        "method.objective": method.get("objective"),
    }
    sub = _SUBSECTION.get(method.get("type"))
    keys = {"lora": ("r", "alpha", "target_modules", "use_rslora", "use_dora"),
            "freeze": ("trainable_last_n", "freeze_first_n", "train_embeddings", "train_head"),
            "prompt": ("num_virtual_tokens", "encoder_hidden_size")}.get(sub, ())
    section = (method.get(sub) or {}) if sub else {}
    for key in keys:
        shape[f"method.{sub}.{key}"] = section.get(key)
    return shape


def _same(key: str, was: Any, now: Any) -> bool:
    if was == now:
        return True
    if key == "model.name_or_path" and isinstance(was, str) and isinstance(now, str):
        return Path(was).exists() and Path(now).exists() and Path(was).resolve() == Path(now).resolve()
    return False


def check_resume_shape(recipe: Recipe, checkpoint: Path) -> None:
    """Raise a ConfigError naming every shape field where the checkpoint's run and the recipe differ."""
    run_recipe = Path(checkpoint).parent.parent / "recipe.yaml"
    try:
        before = yaml.safe_load(run_recipe.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return  # no record of how it was trained: loading will say whether the weights fit
    if not isinstance(before, dict):
        return
    was, now = shape_of(before), shape_of(recipe.model_dump(mode="json"))
    differs = [f"{key}: checkpoint {was.get(key)!r}, recipe {now.get(key)!r}"
               for key in sorted(set(was) | set(now)) if not _same(key, was.get(key), now.get(key))]
    if differs:
        raise ConfigError(
            f"resume: {checkpoint} was trained with a different method/shape than this recipe:\n  - "
            + "\n  - ".join(differs)
            + "\n(set these back to the checkpoint's values, or start a new run with resume: false)")
