"""What is being served: one base model plus named LoRA adapters (peft multi-adapter).

`resolve_target` accepts a model spec (alias, HF folder, .gguf) or a run folder; a run whose `final/`
is an adapter is served as that adapter on its base, under the run's name.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from tuneforge.errors import ModelError


@dataclass
class ServedModel:
    model: Any
    tokenizer: Any
    base_name: str
    adapters: "AdapterSet"
    default: str  # the `model` name used when a request names none we know of... (never: we 404)
    run_dir: Path | None = None
    initial_adapters: dict[str, str] = field(default_factory=dict)


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / "final").is_dir() and (
        (path / "recipe.yaml").is_file() or (path / "manifest.json").is_file()
    )


def is_adapter_dir(path: Path) -> bool:
    return path.is_dir() and (path / "adapter_config.json").is_file()


def _load_base(spec: Any):
    from tuneforge.models import load_model

    model, tokenizer = load_model(spec)
    model.eval()
    return model, tokenizer


def _run_base_spec(run_dir: Path, adapter_dir: Path) -> Any:
    """The base model of a run's adapter: the run's recipe `model` section, else the adapter's own record."""
    recipe_path = run_dir / "recipe.yaml"
    if recipe_path.is_file():
        from tuneforge.config.recipe import load_recipe

        return load_recipe(recipe_path).model
    base = json.loads((adapter_dir / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise ModelError(f"{run_dir}: no recipe.yaml and the adapter names no base model")
    return base


def resolve_target(target: str, adapters: dict[str, str] | None = None) -> ServedModel:
    """Load `target` (model spec or run folder) and attach `adapters` ({name: path})."""
    path = Path(target).expanduser()
    run_dir = None
    extra = dict(adapters or {})
    if is_run_dir(path):
        run_dir = path.resolve()
        final = run_dir / "final"
        if is_adapter_dir(final):
            base_spec = _run_base_spec(run_dir, final)
            extra = {run_dir.name: str(final), **extra}
            base_name = str(getattr(base_spec, "name_or_path", base_spec))
        else:
            base_spec, base_name = str(final), run_dir.name
    elif is_adapter_dir(path):
        base_spec = _run_base_spec(path, path)
        extra = {path.name: str(path), **extra}
        base_name = str(base_spec)
    else:
        base_spec, base_name = target, Path(target).name if path.exists() else target
    model, tokenizer = _load_base(base_spec)
    adapter_set = AdapterSet(model, base_name)
    for name, adapter_path in extra.items():
        adapter_set.add(name, adapter_path)
    default = next(iter(extra)) if run_dir and extra else base_name
    return ServedModel(model, tokenizer, base_name, adapter_set, default, run_dir, extra)


class AdapterSet:
    """Named LoRA adapters on one base. Not thread-safe: the engine calls it from its one worker thread."""

    def __init__(self, base_model: Any, base_name: str):
        self.base_model = base_model
        self.base_name = base_name
        self.peft_model: Any = None
        self.paths: dict[str, str] = {}

    @property
    def model(self) -> Any:
        return self.peft_model if self.peft_model is not None else self.base_model

    def names(self) -> list[str]:
        return list(self.paths)

    def add(self, name: str, path: str) -> None:
        from peft import PeftModel

        folder = Path(path).expanduser()
        if not is_adapter_dir(folder):
            raise ModelError(f"{path}: not a LoRA adapter folder (no adapter_config.json)")
        if name == self.base_name or name in self.paths:
            raise ModelError(f"adapter name {name!r} is already in use")
        try:
            if self.peft_model is None:
                self.peft_model = PeftModel.from_pretrained(self.base_model, str(folder), adapter_name=name)
            else:
                self.peft_model.load_adapter(str(folder), adapter_name=name)
        except (ValueError, RuntimeError, OSError, KeyError) as exc:
            raise ModelError(f"{path}: cannot attach adapter to {self.base_name}: {str(exc).splitlines()[0]}") from None
        self.peft_model.eval()
        self.paths[name] = str(folder)

    def remove(self, name: str) -> None:
        if name not in self.paths:
            raise ModelError(f"no adapter named {name!r}")
        if len(self.paths) == 1:
            # peft cannot hold zero adapters: drop the LoRA layers and go back to the plain base.
            self.base_model = self.peft_model.unload()
            self.peft_model = None
        else:
            if name in self.peft_model.active_adapters:
                other = next(n for n in self.paths if n != name)
                self.peft_model.set_adapter(other)
            self.peft_model.delete_adapter(name)
        del self.paths[name]

    @contextlib.contextmanager
    def active(self, name: str | None) -> Iterator[Any]:
        """Yield the model to generate with, `name`'s adapter on (None: the plain base)."""
        if self.peft_model is None:
            yield self.base_model
        elif name is None:
            with self.peft_model.disable_adapter():
                yield self.peft_model
        else:
            self.peft_model.set_adapter(name)
            yield self.peft_model
