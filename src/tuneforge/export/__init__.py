"""tuneforge.export: a trained run (or any model) as a standalone artefact.

    from tuneforge.export import export_model
    export_model("runs/support-json-…", "exports/support", format="ollama", quant="q8_0")

Formats: `hf` (LoRA merged, safetensors folder), `gguf` (one llama.cpp file, f32/f16/q8_0/q5_x/q4_x),
`ollama` (the GGUF plus a Modelfile).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.errors import ModelError

FORMATS = ("hf", "gguf", "ollama")


@dataclass
class ExportResult:
    out_dir: Path
    format: str
    files: list[Path]
    details: dict[str, Any] = field(default_factory=dict)


def export_model(target: str | os.PathLike, out_dir: str | os.PathLike, *, format: str = "hf",
                 quant: str = "f16", dtype: str = "fp32", name: str | None = None,
                 runs_dir: str | os.PathLike = "runs", pre_tokenizer: str | None = None,
                 system: str | None = None) -> ExportResult:
    """Merge `target` (run or model spec) and write it to `out_dir` in `format`. `system` becomes the
    Modelfile's default system prompt (a run trained with a fixed system prompt wants it back)."""
    from tuneforge.export.merge import load_export_source, save_hf, write_provenance

    if format not in FORMATS:
        raise ModelError(f"--format: {format!r} is not one of {', '.join(FORMATS)}")
    source = load_export_source(target, runs_dir)
    out = Path(out_dir)
    if format == "hf":
        save_hf(source, out, dtype)
        return ExportResult(out, format, sorted(p for p in out.iterdir() if p.is_file()), {"dtype": dtype})

    from tuneforge.export.gguf_export import write_gguf

    stem = _safe_name(name or Path(str(target)).name or "model")
    pre = pre_tokenizer or source_pre_tokenizer(source.base_model)
    gguf = write_gguf(source.model, source.tokenizer, out / f"{stem}-{quant}.gguf", quant, name=stem,
                      pre_tokenizer=pre)
    details = {"format": format, "quant": quant, "gguf": gguf.path.name, "tensors": gguf.tensors,
               "quantized_tensors": gguf.quantized_tensors, "size_bytes": gguf.size_bytes,
               "pre_tokenizer": pre}
    files = [gguf.path]
    if format == "ollama":
        from tuneforge.export.ollama import write_modelfile

        files.append(write_modelfile(out, source.tokenizer, gguf.path.name, system=system))
    write_provenance(source, out, details)
    return ExportResult(out, format, files + [out / "export.json"], details)


def source_pre_tokenizer(base_model: str) -> str:
    """llama.cpp picks its pre-tokenizer regex by name (`tokenizer.ggml.pre`); a model that came from a GGUF
    keeps the name its file had. Others get "default" (GPT-2's regex), which `--pre-tokenizer` overrides."""
    from tuneforge.models.loader import resolve_model

    try:
        resolved = resolve_model(base_model)
    except ModelError:
        return "default"
    if resolved.kind != "gguf":
        return "default"
    import gguf

    field_ = gguf.GGUFReader(str(resolved.path)).fields.get("tokenizer.ggml.pre")
    return str(field_.contents()) if field_ is not None else "default"


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "model"


__all__ = ["FORMATS", "ExportResult", "export_model"]
