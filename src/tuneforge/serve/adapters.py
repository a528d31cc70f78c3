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
    default: str  # the model name a run is served under (its adapter), else the base
    run_dir: Path | None = None
    initial_adapters: dict[str, str] = field(default_factory=dict)


def is_adapter_dir(path: Path) -> bool:
    return path.is_dir() and (path / "adapter_config.json").is_file()


def _load_base(spec: Any, tokenizer_dir: Path | None = None):
    from tuneforge.models import load_model

    model, tokenizer = load_model(spec)
    if tokenizer_dir is not None and (tokenizer_dir / "tokenizer_config.json").is_file():
        # A run saves the tokenizer it trained with (chat template included): serve with that one.
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


def _adapter_base(adapter_dir: Path) -> str:
    base = json.loads((adapter_dir / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise ModelError(f"{adapter_dir}: the adapter names no base model; serve the base with --adapter NAME=PATH")
    return base


def _find_run(target: str, path: Path):
    """The RunInfo when `target` is a run folder or a run name under ./runs, else None."""
    from tuneforge.models import ALIASES
    from tuneforge.train.runs import resolve_run

    if path.is_dir() and (path / "recipe.yaml").is_file():
        return resolve_run(path)
    if path.exists() or target in ALIASES:
        return None
    try:
        return resolve_run(target)
    except ModelError:
        return None  # not a run either: let the model loader say what it could not find


def resolve_target(target: str, adapters: dict[str, str] | None = None) -> ServedModel:
    """Load `target` (model spec, adapter folder, run folder or run name) and attach `adapters` ({name: path})."""
    path = Path(target).expanduser()
    extra = dict(adapters or {})
    run = _find_run(target, path)
    run_dir, tokenizer_dir = None, None
    if run is not None:
        if run.final_dir is None:
            raise ModelError(f"{run.path}: the run has no final model yet (status {run.status})")
        from tuneforge.config.recipe import load_recipe

        run_dir, tokenizer_dir = run.path.resolve(), run.final_dir
        if run.is_adapter:
            base_spec = load_recipe(run.path / "recipe.yaml").model
            base_name = str(base_spec.name_or_path)
            extra = {run.name: str(run.final_dir), **extra}
        else:
            base_spec, base_name = str(run.final_dir), run.name
    elif is_adapter_dir(path):
        base_spec = base_name = _adapter_base(path)
        extra, tokenizer_dir = {path.name: str(path), **extra}, path
    else:
        base_spec, base_name = target, path.name if path.exists() else target
    model, tokenizer = _load_base(base_spec, tokenizer_dir)
    adapter_set = AdapterSet(model, base_name)
    for name, adapter_path in extra.items():
        adapter_set.add(name, adapter_path)
    # A run (or adapter folder) is served under its own name by default; the base stays reachable.
    default = next(iter(extra)) if (run_dir or tokenizer_dir) and extra else base_name
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

        from tuneforge.models.adapters import LOAD_ERRORS, check_adapter_folder

        folder = check_adapter_folder(path)  # no pickle weights: a 400 with the reason, never an unpickling
        if name == self.base_name or name in self.paths:
            raise ModelError(f"adapter name {name!r} is already in use")
        try:
            if self.peft_model is None:
                self.peft_model = PeftModel.from_pretrained(self.base_model, str(folder), adapter_name=name)
            else:
                self.peft_model.load_adapter(str(folder), adapter_name=name)
        except LOAD_ERRORS as exc:
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
