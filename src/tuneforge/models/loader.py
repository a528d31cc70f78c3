"""Load a base model and its tokenizer from an alias, a local Hugging Face folder or a GGUF file.

Safe by default: nothing is downloaded, `trust_remote_code` is off unless the recipe says so, and pickle
`.bin` weights (which can run code when loaded) are refused unless `allow_pickle: true`.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tuneforge.config.sections import ModelConfig
from tuneforge.errors import ModelError
from tuneforge.models.registry import ALIASES, Alias

Head = Literal["auto", "causal_lm", "encoder", "masked_lm", "sequence_classification"]

ENCODER_TYPES = {
    "bert", "roberta", "distilbert", "deberta", "deberta-v2", "xlm-roberta", "electra", "mpnet",
    "albert", "modernbert", "camembert",
}


@dataclass
class ResolvedModel:
    """Where a model spec points: an HF folder, or a GGUF file (converted to a cached HF folder on load)."""

    spec: str
    kind: Literal["hf", "gguf"]
    path: Path
    alias: Alias | None = None

    @property
    def is_encoder_alias(self) -> bool:
        return self.alias is not None and self.alias.kind == "encoder"


def as_config(spec: str | Path | ModelConfig) -> ModelConfig:
    if isinstance(spec, ModelConfig):
        return spec
    return ModelConfig(name_or_path=str(spec))


def resolve_model(spec: str | Path | ModelConfig) -> ResolvedModel:
    cfg = as_config(spec)
    name = cfg.name_or_path
    if name in ALIASES:
        alias = ALIASES[name]
        path = alias.require()
        return ResolvedModel(name, "gguf" if path.suffix == ".gguf" else "hf", path, alias)
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ResolvedModel(name, "gguf", path.resolve())
    if path.is_dir():
        if cfg.gguf_file:
            return ResolvedModel(name, "gguf", (path / cfg.gguf_file).resolve())
        ggufs = sorted(path.glob("*.gguf"))
        if not (path / "config.json").exists() and len(ggufs) == 1:
            return ResolvedModel(name, "gguf", ggufs[0].resolve())
        if not (path / "config.json").exists():
            raise ModelError(f"{path}: not a Hugging Face model folder (no config.json) and no single .gguf file")
        return ResolvedModel(name, "hf", path.resolve())
    raise ModelError(_not_found_message(name))


def _not_found_message(name: str) -> str:
    hint = difflib.get_close_matches(name, list(ALIASES), n=1, cutoff=0.5)
    msg = f"model `{name}` not found: not an alias, a local folder or a .gguf file"
    if "/" in name and not name.startswith((".", "/", "~")) and not Path(name).parent.exists():
        msg += " (it looks like a hub id: tuneforge never downloads; pass a local folder or a .gguf file)"
    elif hint:
        msg += f" (did you mean `{hint[0]}`?)"
    return msg + f". Aliases: {', '.join(ALIASES)} (see `tuneforge models`)"


def hf_folder(spec: str | Path | ModelConfig) -> Path:
    """A local HF folder for the spec; GGUF files are dequantized once into a cache folder."""
    resolved = resolve_model(spec)
    if resolved.kind == "gguf":
        from tuneforge.models.gguf import converted_folder

        return converted_folder(resolved.path)
    return resolved.path


def load_tokenizer(spec: str | Path | ModelConfig):
    from transformers import AutoTokenizer

    cfg = as_config(spec)
    folder = Path(cfg.tokenizer) if cfg.tokenizer else hf_folder(cfg)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder}: cannot load tokenizer: {_first_line(exc)}") from None
    if cfg.chat_template:
        tokenizer.chat_template = cfg.chat_template
    if tokenizer.pad_token is None:
        # Padding positions are masked out of attention and loss, so reusing EOS is safe.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    spec: str | Path | ModelConfig,
    *,
    head: Head = "auto",
    num_labels: int | None = None,
    dtype: str | None = None,
) -> tuple[Any, Any]:
    """Return `(model, tokenizer)`, trainable and saveable, on the CPU in fp32 unless asked otherwise."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-tensor bars drown the CLI's own progress output
    cfg = as_config(spec)
    folder = hf_folder(cfg)
    _check_weights_safe(folder, cfg.allow_pickle)
    tokenizer = load_tokenizer(cfg)
    auto_cls = _auto_class(folder, head, cfg.trust_remote_code)
    kwargs: dict[str, Any] = {
        "trust_remote_code": cfg.trust_remote_code,
        "dtype": _torch_dtype(dtype or cfg.dtype),
        "use_safetensors": not cfg.allow_pickle or _has_safetensors(folder),
    }
    if num_labels is not None:
        kwargs["num_labels"] = num_labels
        # A checkpoint that already has a classifier for another label set gets a fresh head of the new size.
        kwargs["ignore_mismatched_sizes"] = True
    try:
        model = auto_cls.from_pretrained(folder, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder}: cannot load model: {_first_line(exc)}") from None
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def model_kind(folder: Path) -> Literal["decoder", "encoder"]:
    import json

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return "encoder" if config.get("model_type") in ENCODER_TYPES else "decoder"


def _auto_class(folder: Path, head: Head, trust_remote_code: bool):
    import transformers as tf

    if head == "auto":
        head = "encoder" if model_kind(folder) == "encoder" else "causal_lm"
    return {
        "causal_lm": tf.AutoModelForCausalLM,
        "encoder": tf.AutoModel,
        "masked_lm": tf.AutoModelForMaskedLM,
        "sequence_classification": tf.AutoModelForSequenceClassification,
    }[head]


def _has_safetensors(folder: Path) -> bool:
    return any(folder.glob("*.safetensors"))


def _check_weights_safe(folder: Path, allow_pickle: bool) -> None:
    pickles = [p.name for p in folder.glob("*.bin") if "model" in p.name]
    if pickles and not _has_safetensors(folder) and not allow_pickle:
        raise ModelError(
            f"{folder}: only pickle weights ({', '.join(sorted(pickles))}), which can run code when loaded; "
            "convert them to safetensors or set `model.allow_pickle: true` if you trust the source"
        )


def _torch_dtype(name: str):
    import torch

    if name in ("auto", "fp32", None):
        return torch.float32
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[name]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def cache_root() -> Path:
    return Path(os.environ.get("TUNEFORGE_CACHE", Path.home() / ".cache" / "tuneforge"))
