"""`tuneforge export` and `tuneforge compress`: thin layers over tuneforge.export."""

from __future__ import annotations

from typing import Optional

import typer

from tuneforge.ui.console import console, print_warning


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
    app.command("compress")(compress_cmd)


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


def compress_cmd(
    target: str = typer.Argument(..., help="a run folder or run name (LoRA merged), or any model spec"),
    out: str = typer.Option(..., "--out", "-o", help="folder to write (pruned HF model, GGUFs, report)"),
    prune: Optional[float] = typer.Option(None, "--prune", help="fraction to remove, 0 < SPARSITY < 1"),
    prune_kind: str = typer.Option("unstructured", "--prune-kind",
                                   help="unstructured (zero smallest weights) | structured (remove MLP channels) "
                                        "| layers (drop whole decoder layers)"),
    quantize: Optional[str] = typer.Option(None, "--quantize", "-q",
                                           help="GGUF types, comma-separated: f32 f16 q8_0 q5_1 q5_0 q4_1 q4_0"),
    data: Optional[str] = typer.Option(None, "--data", help="held-out file (default: the run's test split)"),
    limit: int = typer.Option(100, "--limit", min=1, help="score the first N held-out examples"),
    metrics: str = typer.Option("likelihood", "--metrics",
                                help="likelihood (loss, perplexity) or e.g. auto to add the task's metrics"),
    speed_tokens: int = typer.Option(32, "--speed-tokens", min=0, help="tokens decoded per prompt for tokens/s"),
    runs_dir: str = typer.Option("runs", "--runs-dir", help="where run names are looked up"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads (default: physical cores)"),
) -> None:
    """Prune and/or quantize a run or model and measure what it costs: size, perplexity, tokens/s."""
    from tuneforge.cli.eval_cmd import check_metric_names, split_list
    from tuneforge.export.compress import compress_model
    from tuneforge.train.threads import configure_threads

    quant, wanted = split_list(quantize) or [], split_list(metrics) or []
    check_metric_names(wanted)  # compress_model checks the rest before it loads anything
    configure_threads(threads)
    with console.status("compressing") as status:
        result = compress_model(target, out, prune=prune, prune_kind=prune_kind, quantize=quant, data=data,
                                limit=limit, metrics=wanted, runs_dir=runs_dir, speed_tokens=speed_tokens,
                                progress=lambda step: status.update(f"compressing: {step}"))
    data = result.report["data"]
    if data.get("rejected"):
        print_warning(f"{data['path']}: {data['rejected']} row(s) rejected and not scored, e.g. "
                      f"{data['first_rejected']}; all with their reason in {data['rejected_file']}")
    _print_variants(result.report)
    console.print(f"report: {result.report_path}")


def _print_variants(report: dict) -> None:
    from rich.table import Table

    from tuneforge.cli.eval_cmd import format_number

    table = Table(title=f"held-out: {report['data']['path']} ({report['data']['examples']} examples)",
                  title_justify="left")
    for column in ("variant", "parameters", "non-zero", "MB", "loss", "perplexity", "tokens/s"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name, row in report["variants"].items():
        metrics = row["metrics"]
        size = row.get("size_bytes")
        table.add_row(name, f"{row['parameters']:,}", f"{row['nonzero']:,}",
                      f"{size / 1e6:.1f}" if size else "-", format_number(metrics.get("loss")),
                      format_number(metrics.get("perplexity")), format_number(row.get("tokens_per_s")))
    console.print(table)
