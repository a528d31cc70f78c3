"""Apply a saved PEFT adapter (LoRA, prompt tuning, ...) to a loaded base model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.errors import ModelError


def apply_adapter(model: Any, adapter_dir: str | Path, *, trainable: bool = False) -> Any:
    from peft import PeftModel

    path = Path(adapter_dir)
    if not (path / "adapter_config.json").is_file():
        raise ModelError(f"{path}: not a PEFT adapter folder (no adapter_config.json)")
    return PeftModel.from_pretrained(model, str(path), is_trainable=trainable)
