"""`compress_model`: prune and/or quantize a run or model, and measure what it cost on held-out data.

    from tuneforge.export.compress import compress_model
    result = compress_model("runs/support-json-…", "exports/small", prune=0.3, quantize=["q8_0", "q4_0"],
                            data="test.jsonl")
    result.report["variants"]["gguf-q4_0"]["metrics"]["perplexity"]

Every variant (the original, the pruned HF model, each GGUF) gets the same measurements: parameters,
non-zero parameters, bytes on disk, loss / perplexity / token accuracy on the held-out set (plus task
metrics with `metrics=["auto"]`) and greedy decode tokens/s on this CPU. A GGUF is scored by loading it
back through transformers' GGUF reader, which dequantizes it: the quality numbers are those of the
quantized weights, while speed is left to llama.cpp (dequantized, it runs at fp32 speed; not reported).
The report is written to `<out>/compress_report.json`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from tuneforge.data.issues import write_issues
from tuneforge.errors import ConfigError, DataError, ModelError

PRUNE_KINDS = ("unstructured", "structured", "layers")
REPORT_NAME = "compress_report.json"


@dataclass
class CompressResult:
    out_dir: Path
    report: dict[str, Any]
    report_path: Path
    files: list[Path]


def check_compress_args(prune: float | None, prune_kind: str, quantize: Sequence[str]) -> None:
    """Refuse bad arguments before anything loads."""
    from tuneforge.export.gguf_export import QUANT_TYPES

    if prune is None and not quantize:
        raise ConfigError("nothing to do: give --prune SPARSITY and/or --quantize TYPE")
    if prune is not None and not 0.0 < float(prune) < 1.0:
        raise ConfigError(f"--prune: sparsity must be between 0 and 1 (0.3 = remove 30 %), got {prune}")
    if prune_kind not in PRUNE_KINDS:
        raise ConfigError(f"--prune-kind: {prune_kind!r} is not one of {', '.join(PRUNE_KINDS)}")
    for quant in quantize:
        if quant not in QUANT_TYPES:
            raise ConfigError(f"--quantize: {quant!r} is not one of {', '.join(QUANT_TYPES)}")


def compress_model(target: str | os.PathLike, out_dir: str | os.PathLike, *, prune: float | None = None,
                   prune_kind: str = "unstructured", quantize: Sequence[str] | str = (),
                   data: str | os.PathLike | None = None, limit: int | None = 100,
                   metrics: Sequence[str] = ("likelihood",), runs_dir: str | os.PathLike = "runs",
                   cutoff_len: int = 1024, batch_size: int = 8, max_new_tokens: int = 128,
                   speed_tokens: int = 32, speed_prompts: int = 3, name: str | None = None,
                   progress: Callable[[str], None] | None = None) -> CompressResult:
    """Prune (`prune` = fraction removed, `prune_kind`) and/or write GGUFs (`quantize`), measure each variant
    against the original on `data` (default: the run's own test split), and write the report."""
    from tuneforge.export import _safe_name
    from tuneforge.export.merge import load_export_source, save_hf

    quantize = [quantize] if isinstance(quantize, str) else list(quantize)
    check_compress_args(prune, prune_kind, quantize)
    if Path(out_dir).exists() and not Path(out_dir).is_dir():  # before the model loads
        raise ConfigError(f"--out {out_dir}: is a file; expected a folder for the report, pruned model and GGUFs")
    say = progress or (lambda _msg: None)
    records, data_desc, rejected = held_out_records(target, data, limit, runs_dir)
    source = load_export_source(target, runs_dir)
    source.model.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if rejected:  # rows of --data that could not be scored: kept with their reason, not dropped silently
        data_desc["rejected_file"] = str(write_issues(rejected, out / "rejected.jsonl"))
        data_desc["first_rejected"] = str(rejected[0])
    settings = MeasureSettings(records, list(metrics), cutoff_len, batch_size, max_new_tokens, speed_tokens,
                               speed_prompts)
    say("measuring the original")
    variants = {"original": measure(source.model, source.tokenizer, settings, weight_bytes(source.model))}
    report: dict[str, Any] = {"source": source.description, "target": str(target), "data": data_desc,
                              "settings": settings.describe(), "variants": variants}
    files: list[Path] = []
    if prune is not None:
        say(f"pruning ({prune_kind}, {prune:g})")
        report["pruning"] = apply_pruning(source.model, float(prune), prune_kind)
    run_dir = source.extra.get("run_dir")  # runs/<name>/final is named after the run, not "final"
    stem = _safe_name(name or (Path(run_dir).name if run_dir else Path(str(target)).name) or "model")
    for quant in quantize:
        say(f"writing and scoring GGUF {quant}")
        variants[f"gguf-{quant}"], path = _gguf_variant(source, out / f"{stem}-{quant}.gguf", quant, settings)
        files.append(path)
    if prune is not None:
        say("measuring the pruned model")
        pruned = measure(source.model, source.tokenizer, settings, None)
        save_hf(source, out)
        pruned["size_bytes"] = (out / "model.safetensors").stat().st_size
        pruned["path"] = str(out)
        variants = {"original": variants["original"], "pruned": pruned,
                    **{k: v for k, v in variants.items() if k != "original"}}
        report["variants"] = variants
        files += sorted(p for p in out.iterdir() if p.is_file() and p.suffix != ".gguf")
    report["changes"] = changes(variants)
    path = out / REPORT_NAME
    path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    return CompressResult(out, report, path, sorted(set(files + [path])))


def apply_pruning(model: Any, sparsity: float, kind: str) -> dict[str, Any]:
    """Prune `model` in place; what was asked, what was reached, and the new shape."""
    from tuneforge.export import prune as P

    before = P.describe(model)
    details: dict[str, Any] = {"kind": kind, "requested": sparsity}
    if kind == "unstructured":
        details["reached"] = P.prune_unstructured(model, sparsity)
        details["scope"] = "linear weights of the decoder blocks (embeddings and LM head kept)"
    elif kind == "structured":
        width = before["intermediate_size"]
        keep = P.prune_mlp_channels(model, sparsity)
        details.update(reached=1 - keep / width, intermediate_size=[width, keep],
                       scope="MLP channels (gate/up rows, down columns), same count per layer")
    else:
        n = before["layers"]
        keep = P.select_layers(n, max(1, round(n * (1 - sparsity))), "--prune")
        P.drop_layers(model, keep)
        details.update(reached=1 - len(keep) / n, layers_kept=keep, scope="whole decoder layers")
    return details


@dataclass
class MeasureSettings:
    records: list[Any]
    metrics: list[str]
    cutoff_len: int
    batch_size: int
    max_new_tokens: int
    speed_tokens: int
    speed_prompts: int

    def describe(self) -> dict[str, Any]:
        import torch

        return {"metrics": self.metrics, "cutoff_len": self.cutoff_len, "batch_size": self.batch_size,
                "speed": f"greedy decode of {self.speed_tokens} tokens, batch 1, {self.speed_prompts} prompts",
                "torch_threads": torch.get_num_threads(), "loadavg": _loadavg()}


def measure(model: Any, tokenizer: Any, settings: MeasureSettings, size_bytes: int | None,
            speed: bool = True) -> dict[str, Any]:
    from tuneforge.evaluate.api import evaluate_model
    from tuneforge.export.prune import describe

    result = evaluate_model(model, tokenizer, settings.records, settings.metrics, cutoff_len=settings.cutoff_len,
                            batch_size=settings.batch_size, max_new_tokens=settings.max_new_tokens)
    row = {**describe(model), "size_bytes": size_bytes, "metrics": result.metrics}
    row["tokens_per_s"] = decode_speed(model, tokenizer, settings) if speed and settings.speed_tokens else None
    return row


def _gguf_variant(source: Any, path: Path, quant: str, settings: MeasureSettings) -> tuple[dict[str, Any], Path]:
    from transformers import AutoModelForCausalLM

    from tuneforge.export import source_pre_tokenizer
    from tuneforge.export.gguf_export import write_gguf

    written = write_gguf(source.model, source.tokenizer, path, quant, name=path.stem,
                         pre_tokenizer=source_pre_tokenizer(source.base_model))
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()
    except (ValueError, KeyError, RuntimeError, OSError) as exc:  # transformers' GGUF reader's reasons
        raise ModelError(f"{path}: written, but transformers cannot read it back: {exc}") from None
    row = measure(model, source.tokenizer, settings, written.size_bytes, speed=False)
    row.update(path=str(path), quantized_tensors=written.quantized_tensors,
               speed_note="not measured: transformers dequantizes GGUF to fp32; llama.cpp runs it quantized")
    return row, path


def weight_bytes(model: Any) -> int:
    """Bytes of the weights as loaded (tied tensors once): the size of a plain safetensors export."""
    from tuneforge.train.methods import unique_parameters

    return sum(p.numel() * p.element_size() for p in unique_parameters(model))


def decode_speed(model: Any, tokenizer: Any, settings: MeasureSettings) -> float | None:
    """Generated tokens per second: greedy, batch 1, exactly `speed_tokens` new tokens per prompt."""
    import torch

    prompts = _speed_prompts(tokenizer, settings)
    if not prompts:
        return None
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    common = dict(do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=pad)
    with torch.no_grad():
        model.generate(input_ids=prompts[0], max_new_tokens=2, **common)  # warm-up (allocations, caches)
        started = time.perf_counter()
        for ids in prompts:
            model.generate(input_ids=ids, max_new_tokens=settings.speed_tokens,
                           min_new_tokens=settings.speed_tokens, **common)
        elapsed = time.perf_counter() - started
    return round(len(prompts) * settings.speed_tokens / elapsed, 2)


def _speed_prompts(tokenizer: Any, settings: MeasureSettings) -> list[Any]:
    import torch

    from tuneforge.data.render import render_prompt
    from tuneforge.data.records import Conversation, Text

    out = []
    for record in settings.records[: settings.speed_prompts]:
        if isinstance(record, Conversation):
            ids = render_prompt(record, tokenizer)
        elif isinstance(record, Text):
            ids = tokenizer(record.text, add_special_tokens=False)["input_ids"][:64]
        else:
            continue
        out.append(torch.tensor([ids[-settings.cutoff_len:]]))
    return out


def changes(variants: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Each variant against the original: loss difference, perplexity / size / parameter ratios, speedup."""
    base = variants["original"]
    out = {}
    for name, row in variants.items():
        if name == "original":
            continue
        delta: dict[str, float] = {}
        for key, value in row["metrics"].items():
            if key in base["metrics"]:
                delta[f"{key}_delta"] = value - base["metrics"][key]
        if "perplexity" in row["metrics"] and base["metrics"].get("perplexity"):
            delta["perplexity_ratio"] = row["metrics"]["perplexity"] / base["metrics"]["perplexity"]
        for key, label in (("size_bytes", "size_ratio"), ("parameters", "parameter_ratio"),
                           ("nonzero", "nonzero_ratio")):
            if row.get(key) and base.get(key):
                delta[label] = row[key] / base[key]
        if row.get("tokens_per_s") and base.get("tokens_per_s"):
            delta["speedup"] = row["tokens_per_s"] / base["tokens_per_s"]
        out[name] = delta
    return out


def held_out_records(target: str | os.PathLike, data: str | os.PathLike | None, limit: int | None,
                     runs_dir: str | os.PathLike) -> tuple[list[Any], dict[str, Any], list[Any]]:
    """The records to score on: `data`, or else the run's own test split (re-drawn with its recipe's seed),
    the data's description and the rows of `data` that were rejected (RowIssues)."""
    from tuneforge.data import read_source

    rejected: list[Any] = []
    if data is not None:
        result = read_source(str(data))
        records, rejected = result.records, result.rejected
        desc = {"path": str(data), "rejected": len(rejected)}
    else:
        records, desc = _run_test_split(target, runs_dir)
    records = records[:limit] if limit else records
    if not records:
        first = f" ({len(rejected)} rows rejected, e.g. {rejected[0]})" if rejected else ""
        raise DataError(f"{desc.get('path', target)}: no usable examples to score the model on{first}")
    return records, {**desc, "examples": len(records)}, rejected


def _run_test_split(target: str | os.PathLike, runs_dir: str | os.PathLike) -> tuple[list[Any], dict[str, Any]]:
    from tuneforge.config.recipe import load_recipe
    from tuneforge.data import read_data, read_source
    from tuneforge.train.preflight import split_records
    from tuneforge.train.runs import resolve_run

    need = "--data TEST.jsonl is needed to measure quality"
    try:
        info = resolve_run(target, runs_dir)
    except ModelError:
        raise ConfigError(f"{need} ({target} is a model, not a run with a test split)") from None
    recipe = load_recipe(info.path / "recipe.yaml")
    if recipe.eval.data:
        return read_source(recipe.eval.data).records, {"path": recipe.eval.data, "split": "eval.data"}
    try:
        results = read_data(recipe.data)
    except (OSError, DataError) as exc:
        raise DataError(f"{need}: the data of run {info.name} cannot be read again ({exc})") from None
    splits = split_records(results, recipe.data.sources, recipe.data.val_ratio, recipe.data.test_ratio,
                           recipe.seed)
    if not splits.test:
        raise ConfigError(f"{need} (run {info.name} has no test split)")
    return list(splits.test), {"path": f"{info.name}: test split (seed {recipe.seed})", "split": "test"}


def _loadavg() -> str | None:
    try:
        return Path("/proc/loadavg").read_text(encoding="utf-8").strip()
    except OSError:
        return None
