"""A run (or a base model) as one standalone model: LoRA adapters merged into the weights, saved as an HF
safetensors folder that loads without peft or tuneforge."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.errors import ModelError

# peft's prompt-learning methods add virtual tokens, not weight deltas: there is nothing to fold in.
UNMERGEABLE = ("PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING")
DTYPES = ("fp32", "fp16", "bf16")


@dataclass
class ExportSource:
    """Where the exported weights came from, written next to them so an export can be traced."""
    model: Any
    tokenizer: Any
    description: str  # "run support-json-2026…" or "model smollm2-135m-instruct"
    base_model: str  # the recipe's model.name_or_path (or the model spec itself)
    merged_adapter: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def load_export_source(target: str | os.PathLike, runs_dir: str | Path = "runs") -> ExportSource:
    """A run folder/name (its final weights, adapter merged) or any model spec `load_model` takes."""
    from tuneforge.models import load_model
    from tuneforge.train.runs import load_run_model, resolve_run

    try:
        info = resolve_run(target, runs_dir)
    except ModelError:
        info = None
    if info is None:
        model, tokenizer = load_model(str(target), head="causal_lm")
        return ExportSource(model, tokenizer, f"model {target}", str(target))
    model, tokenizer = load_run_model(info, runs_dir)
    merged = None
    if info.is_adapter:
        model = merge_adapter(model, info.final_dir)
        merged = str(info.final_dir)
    return ExportSource(model, tokenizer, f"run {info.name}", info.model, merged,
                        {"run_dir": str(info.path), "steps": info.steps, "method": info.method})


def merge_adapter(peft_model: Any, adapter_dir: Path | str) -> Any:
    """The base model with the adapter's deltas added in (peft's merge_and_unload)."""
    peft_type = str(getattr(peft_model.peft_config.get("default"), "peft_type", "")).split(".")[-1]
    if peft_type in UNMERGEABLE:
        raise ModelError(f"{adapter_dir}: a {peft_type.lower()} adapter adds virtual tokens, not weights, so it "
                         "cannot be merged; serve it as an adapter instead (`tuneforge serve RUN`)")
    return peft_model.merge_and_unload()


def save_hf(source: ExportSource, out_dir: str | Path, dtype: str = "fp32") -> Path:
    """Safetensors weights + config + tokenizer (+ chat template) + export.json in `out_dir`."""
    import torch

    if dtype not in DTYPES:
        raise ModelError(f"--dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = source.model.to({"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype])
    model.save_pretrained(out, safe_serialization=True)
    source.tokenizer.save_pretrained(out)
    write_provenance(source, out, {"format": "hf-safetensors", "dtype": dtype})
    return out


def write_provenance(source: ExportSource, out: Path, details: dict[str, Any]) -> None:
    from tuneforge import __version__

    record = {"source": source.description, "base_model": source.base_model,
              "merged_adapter": source.merged_adapter, "tuneforge": __version__, **source.extra, **details}
    (out / "export.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
