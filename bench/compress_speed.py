"""CPU decode speed of SmolLM2-135M-Instruct and its pruned variants, measured interleaved.

On a shared CPU the same model's tokens/s moves by several times from one minute to the next (see
bench/results/compress_tradeoffs-2026-12-02.json, `original_tokens_per_s_each_call`), so separate calls cannot
show a 1.3x difference. Here every variant lives in memory at once and each round times all of them back to
back, in a rotated order; the per-round ratio to the original is what the result reports (median over rounds).

    .venv/bin/python bench/compress_speed.py --rounds 5 --speed-tokens 16
Writes bench/results/compress_speed-<date>.json.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

ALPACA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "llamafactory" / "alpaca_en_demo.json"


def variants(model):
    from tuneforge.export.compress import apply_pruning

    out = {"original": model}
    for name, sparsity, kind in (("unstructured 30%", 0.3, "unstructured"), ("MLP channels -25%", 0.25, "structured"),
                                 ("layers -33%", 0.33, "layers")):
        pruned = copy.deepcopy(model)
        apply_pruning(pruned, sparsity, kind)
        out[name] = pruned
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--speed-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=f"bench/results/compress_speed-{dt.date.today()}.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tuneforge.export.compress import MeasureSettings, decode_speed, held_out_records
    from tuneforge.models import load_model
    from tuneforge.train.threads import configure_threads

    configure_threads(args.threads)
    model, tokenizer = load_model(args.model)
    models = {k: m.eval() for k, m in variants(model.eval()).items()}
    records, _, _ = held_out_records(args.model, str(ALPACA), 1, "runs")
    settings = MeasureSettings(records, ["likelihood"], 256, 8, 128, args.speed_tokens, 1)
    names, speeds = list(models), {k: [] for k in models}
    started, load_start = time.perf_counter(), Path("/proc/loadavg").read_text().strip()
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotate who goes first
            speeds[name].append(decode_speed(models[name], tokenizer, settings))
        print(r, {k: v[-1] for k, v in speeds.items()}, flush=True)
    ratios = {k: statistics.median(s / o for s, o in zip(v, speeds["original"])) for k, v in speeds.items()}
    out = {"date": str(dt.date.today()), "model": args.model,
           "command": "python bench/compress_speed.py " + " ".join(sys.argv[1:]), "threads": args.threads,
           "speed": f"greedy decode of {args.speed_tokens} tokens, batch 1, one alpaca prompt, per round",
           "loadavg_start": load_start, "loadavg_end": Path("/proc/loadavg").read_text().strip(),
           "wall_s": round(time.perf_counter() - started, 1), "tokens_per_s_each_round": speeds,
           "median_tokens_per_s": {k: statistics.median(v) for k, v in speeds.items()},
           "median_ratio_to_original_same_round": {k: round(v, 3) for k, v in ratios.items()}}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(out["median_ratio_to_original_same_round"]), f"wrote {args.out}")


if __name__ == "__main__":
    main()
