"""Self-Instruct-style synthesis with SmolLM2-135M-Instruct on the CPU: how much of what it writes survives
the filters, how novel and diverse the survivors are, and how long it takes.

Run by hand:
    python bench/synthesize_seeds.py                       # 20 seeds, 100 candidates, output_mode chat
    python bench/synthesize_seeds.py --compare-inline 40   # and 40 candidates with the output inline
Writes bench/results/synthesize-<date>.json (the report of each run, load averages, 10 accepted examples
drawn with a fixed seed for the spot check, and the command line). The seeds are the first `--max-seeds`
of Self-Instruct's 175 seed tasks (../shared/data/self_instruct/seed_tasks.jsonl beside the checkout).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO.parent / "shared" / "data" / "self_instruct" / "seed_tasks.jsonl"


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def run_once(generator, args, mode: str, candidates: int, out: Path) -> dict:
    from tuneforge.config.synthesize import SynthesizeConfig
    from tuneforge.data.synthesize import synthesize

    cfg = SynthesizeConfig(max_seeds=args.max_seeds, max_candidates=candidates, if_exists="overwrite")
    cfg.prompt.output_mode = mode
    before, started = loadavg(), time.perf_counter()

    def progress(event: dict) -> None:
        print(f"[{mode}] round {event['round']}: {event['accepted']} accepted / {event['candidates']} candidates "
              f"({event['elapsed_s']:.0f} s, load {loadavg()[0]})", flush=True)

    # n = candidates: keep generating until the candidate budget is spent, so every run sees the same count.
    result = synthesize(args.seeds, generator, n=candidates, config=cfg, out=out, seed=args.seed, progress=progress)
    wall = time.perf_counter() - started
    report = dict(result.report)
    report.pop("config")
    rng = random.Random(0)
    sample = rng.sample(result.accepted, min(10, len(result.accepted)))
    return {
        "output_mode": mode, "wall_s": round(wall, 1), "loadavg_before": before, "loadavg_after": loadavg(),
        "report": report, "spot_check": [{k: r[k] for k in ("instruction", "input", "output")} for r in sample],
        "rejected_examples": [{k: r[k] for k in ("reason", "detail", "instruction", "output")}
                              for r in result.rejected[:12]],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default=str(SEEDS))
    parser.add_argument("--max-seeds", type=int, default=20)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--mode", choices=("chat", "inline"), default="chat")
    parser.add_argument("--compare-inline", type=int, default=0, help="also run N candidates with output_mode inline")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is faster on a shared CPU)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / f"synthesize-{dt.date.today()}.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from tuneforge.data.synthesize import LocalGenerator

    load_started = time.perf_counter()
    generator = LocalGenerator.load("smollm2-135m-instruct", top_p=0.95, batch_size=args.batch_size,
                                    threads=args.threads)
    load_s = time.perf_counter() - load_started
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        runs.append(run_once(generator, args, args.mode, args.candidates, Path(tmp) / args.mode))
        if args.compare_inline:
            runs.append(run_once(generator, args, "inline", args.compare_inline, Path(tmp) / "inline"))
    result = {
        "command": "python " + " ".join(sys.argv),
        "date": str(dt.date.today()),
        "model": "smollm2-135m-instruct",
        "threads": args.threads,
        "load_s": round(load_s, 1),
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for run in runs:
        r = run["report"]
        print(f"{run['output_mode']}: {r['accepted']}/{r['candidates']} accepted ({r['acceptance_rate']}), "
              f"rejected {r['rejected_by_reason']}, ROUGE-L to seeds mean {r['rouge_l_to_nearest_seed'].get('mean')}, "
              f"distinct-2 {r['diversity']['instruction']['distinct_2']}, wall {run['wall_s']} s, "
              f"{r['tokens_per_s']} tokens/s, load {run['loadavg_after']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
