"""Apply a saved PEFT adapter (LoRA, prompt tuning, ...) to a loaded base model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.errors import ModelError


SAFE_WEIGHTS = "adapter_model.safetensors"
PICKLE_WEIGHTS = "adapter_model.bin"


def check_adapter_folder(path: str | Path) -> Path:
    """An adapter folder peft can load without unpickling anything: adapter_config.json plus safetensors
    weights. Pickle weights (`adapter_model.bin`) can run code when loaded, so they are refused here, as the
    base model's are (models.loader), with a one-line reason instead of an UnpicklingError."""
    path = Path(path).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise ModelError(f"{path}: not a PEFT adapter folder (no adapter_config.json)")
    if not (path / SAFE_WEIGHTS).is_file():
        if (path / PICKLE_WEIGHTS).is_file():
            raise ModelError(f"{path}: the adapter's weights are pickle ({PICKLE_WEIGHTS}), which can run code "
                             f"when loaded; convert them to {SAFE_WEIGHTS} (peft save_pretrained does by default)")
        raise ModelError(f"{path}: the adapter folder has no weights ({SAFE_WEIGHTS})")
    return path


def apply_adapter(model: Any, adapter_dir: str | Path, *, trainable: bool = False) -> Any:
    from peft import PeftModel

    path = check_adapter_folder(adapter_dir)
    try:
        return PeftModel.from_pretrained(model, str(path), is_trainable=trainable)
    except LOAD_ERRORS as exc:
        raise ModelError(f"{path}: cannot load the adapter: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _load_errors() -> tuple[type[BaseException], ...]:
    # What a damaged or mismatched adapter raises inside peft / safetensors / torch (not tuneforge bugs).
    import pickle

    errors: list[type[BaseException]] = [ValueError, RuntimeError, OSError, KeyError, EOFError,
                                         pickle.UnpicklingError]
    try:
        from safetensors import SafetensorError

        errors.append(SafetensorError)
    except ImportError:
        pass
    return tuple(errors)


LOAD_ERRORS = _load_errors()
