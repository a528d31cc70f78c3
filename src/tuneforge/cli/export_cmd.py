"""`tuneforge export`: a thin layer over tuneforge.export."""

from __future__ import annotations

from typing import Optional

import typer

from tuneforge.ui.console import console


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)


def export_cmd(
    target: str = typer.Argument(..., help="a run folder or run name (LoRA merged), or any model spec"),
    out: str = typer.Option(..., "--out", "-o", help="folder to write"),
    format: str = typer.Option("hf", "--format", "-f",
                               help="hf (safetensors folder) | gguf | ollama (gguf + Modelfile)"),
    quant: str = typer.Option("f16", "--quant", "-q", help="GGUF tensor type: f32 f16 q8_0 q5_1 q5_0 q4_1 q4_0"),
    dtype: str = typer.Option("fp32", "--dtype", help="hf weights: fp32 fp16 bf16"),
    name: Optional[str] = typer.Option(None, "--name", help="model name inside the GGUF and its file name"),
    runs_dir: str = typer.Option("runs", "--runs-dir", help="where run names are looked up"),
    system: Optional[str] = typer.Option(None, "--system",
                                         help="ollama: default system prompt (e.g. the one the run trained with)"),
    pre_tokenizer: Optional[str] = typer.Option(None, "--pre-tokenizer",
                                                help="llama.cpp pre-tokenizer name (default: the base GGUF's)"),
) -> None:
    """Export a run or model: merged HF safetensors, GGUF (llama.cpp), or GGUF + Ollama Modelfile."""
    from tuneforge.export import export_model

    result = export_model(target, out, format=format, quant=quant, dtype=dtype, name=name, runs_dir=runs_dir,
                          pre_tokenizer=pre_tokenizer, system=system)
    console.print(f"exported {target} as {result.format} to {result.out_dir}")
    for path in result.files:
        console.print(f"  {path.name:<40} {path.stat().st_size / 1e6:9.1f} MB")
    if result.format == "ollama":
        console.print(f"next: cd {result.out_dir} && ollama create <name> -f Modelfile && ollama run <name>")
