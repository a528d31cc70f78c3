"""What does shrinking SmolLM2-135M-Instruct cost? Perplexity, size and CPU decode speed of GGUF f16 / q8_0 /
q4_0, of unstructured magnitude sparsity, of MLP-channel pruning and (with --layers) of layer dropping, all
through `tuneforge.export.compress.compress_model` on the same held-out rows.

Run by hand. The defaults (100 rows, 7 calls) take well over 10 min on the shared 2-core box; the measured
run quoted in docs/compress.md was
    .venv/bin/python bench/compress_tradeoffs.py --limit 8 --cutoff-len 256 --speed-tokens 16 \
        --quant q8_0 q4_0 --sparsity 0.3 0.5 --structured 0.25 --layers 0.33 --no-int8
Writes bench/results/compress_tradeoffs-<date>.json after every call (the reports, a summary table, the load
average, `complete: false` until the last call is done), so a run stopped by a time-out keeps what it measured.
Model outputs go to --work (default /tmp/tuneforge-compress-bench), not into the repository.

Without --no-int8 it also measures, in memory only, torch's dynamic int8 quantization
(`torch.ao.quantization.quantize_dynamic`) on the CPU, a variant `tuneforge compress` does not offer.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

ALPACA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "llamafactory" / "alpaca_en_demo.json"


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def table_rows(report: dict, label: str) -> list[dict]:
    rows = []
    for name, row in report["variants"].items():
        if name == "original" and label != "baseline":
            continue
        rows.append({"variant": label if name == "pruned" else ("fp32 (original)" if name == "original" else name),
                     "size_mb": round(row["size_bytes"] / 1e6, 1), "parameters": row["parameters"],
                     "nonzero": row["nonzero"], "loss": round(row["metrics"]["loss"], 4),
                     "perplexity": round(row["metrics"]["perplexity"], 3), "tokens_per_s": row["tokens_per_s"]})
    return rows


def dynamic_int8(model_spec: str, records, settings) -> dict:
    """torch dynamic int8 on every nn.Linear, measured in memory (it is not saved: see the docstring)."""
    import warnings

    import torch

    from tuneforge.export.compress import measure
    from tuneforge.models import load_model

    model, tokenizer = load_model(model_spec)
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in torch 2.x
        quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        row = measure(quantized, tokenizer, settings, None)
    return {"variant": "torch dynamic int8 (in memory)", "loss": round(row["metrics"]["loss"], 4),
            "perplexity": round(row["metrics"]["perplexity"], 3), "tokens_per_s": row["tokens_per_s"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data", default=str(ALPACA))
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--quant", nargs="*", default=["f16", "q8_0", "q4_0"])
    parser.add_argument("--sparsity", nargs="*", type=float, default=[0.1, 0.3, 0.5])
    parser.add_argument("--structured", nargs="*", type=float, default=[0.25])
    parser.add_argument("--layers", nargs="*", type=float, default=[], help="fractions of decoder layers dropped")
    parser.add_argument("--no-int8", action="store_true", help="skip the in-memory torch dynamic int8 row")
    parser.add_argument("--speed-tokens", type=int, default=32)
    parser.add_argument("--cutoff-len", type=int, default=1024, help="tokens per held-out row scored")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default="/tmp/tuneforge-compress-bench")
    parser.add_argument("--out", default=f"bench/results/compress_tradeoffs-{dt.date.today()}.json")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tuneforge.export.compress import MeasureSettings, compress_model, held_out_records
    from tuneforge.train.threads import configure_threads

    configure_threads(args.threads)
    started, load_start = time.perf_counter(), loadavg()
    work = Path(args.work)
    common = dict(data=args.data, limit=args.limit, speed_tokens=args.speed_tokens, cutoff_len=args.cutoff_len)
    calls = [("quantize", dict(quantize=args.quant))] if args.quant else []
    calls += [(f"unstructured {s:.0%}", dict(prune=s)) for s in args.sparsity]
    calls += [(f"MLP channels -{s:.0%}", dict(prune=s, prune_kind="structured")) for s in args.structured]
    calls += [(f"layers -{s:.0%}", dict(prune=s, prune_kind="layers")) for s in args.layers]
    reports, table = [], []
    for label, kwargs in calls:
        t0 = time.perf_counter()
        result = compress_model(args.model, work / label.replace(" ", "_").replace("%", ""), **common, **kwargs)
        seconds = time.perf_counter() - t0
        reports.append({"label": label, "seconds": round(seconds, 1), "report": result.report})
        table += table_rows(result.report, "baseline" if not table else label)
        print(f"{label}: {seconds:.0f} s", flush=True)
        for row in table_rows(result.report, label):
            print("   ", row, flush=True)
        write(args, started, load_start, table, reports, complete=False)  # a time-out keeps what was measured
    if not args.no_int8:
        records, _, _ = held_out_records(args.model, args.data, args.limit, "runs")
        settings = MeasureSettings(records, ["likelihood"], args.cutoff_len, 8, 128, args.speed_tokens, 3)
        table.append(dynamic_int8(args.model, records, settings))
        print(table[-1], flush=True)
    out = write(args, started, load_start, table, reports, complete=True)
    print(f"wrote {args.out} ({out['wall_s']:.0f} s, load {load_start} -> {out['loadavg_end']})")


def write(args, started: float, load_start: str, table: list, reports: list, complete: bool) -> dict:
    speeds = [r["report"]["variants"]["original"]["tokens_per_s"] for r in reports]
    out = {"date": str(dt.date.today()), "model": args.model, "data": f"{args.data} (first {args.limit} rows)",
           "command": "python bench/compress_tradeoffs.py " + " ".join(sys.argv[1:]), "complete": complete,
           "threads": args.threads, "loadavg_start": load_start, "loadavg_end": loadavg(),
           "wall_s": round(time.perf_counter() - started, 1), "original_tokens_per_s_each_call": speeds,
           "table": table, "calls": reports}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=str) + "\n", encoding="utf-8")
    return out


if __name__ == "__main__":
    main()
