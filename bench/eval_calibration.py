"""Calibration of SmolLM2-135M-Instruct on a small sentiment label task, before/after temperature scaling.

Run by hand:  python bench/eval_calibration.py [--threads 1]
Writes bench/results/eval_calibration-<date>.json. The sentences are written for this bench (no download);
validation and test are disjoint halves.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path

import torch

POSITIVE = [
    "I love this product, it works perfectly.", "Absolutely fantastic service, thank you!",
    "The food was delicious and the staff were friendly.", "Best purchase I have made this year.",
    "What a wonderful movie, I would watch it again.", "The hotel room was clean and comfortable.",
    "Great value for the price, highly recommended.", "The update made the app so much faster.",
    "My package arrived early and well packed.", "The concert was amazing from start to finish.",
    "This book kept me hooked, a real delight.", "Customer support solved my issue in minutes.",
    "The new design looks beautiful.", "I am very happy with the quality.",
    "Such a pleasant surprise, everything just worked.", "The kids loved the game.",
    "Setup was easy and the instructions were clear.", "Lovely atmosphere and great coffee.",
    "It exceeded all my expectations.", "The battery lasts for days, brilliant.",
]
NEGATIVE = [
    "This is terrible, it broke after one day.", "Worst customer service I have ever had.",
    "The food was cold and tasteless.", "I want a refund, this is useless.",
    "The movie was boring and far too long.", "The room smelled bad and the bed was dirty.",
    "Overpriced and poorly made.", "The update made the app crash constantly.",
    "My package arrived late and damaged.", "The sound at the concert was awful.",
    "This book was a waste of time.", "Support never answered my emails.",
    "The new design is ugly and confusing.", "I am very disappointed with the quality.",
    "Nothing works as advertised.", "The kids got bored after five minutes.",
    "Setup was a nightmare and the manual is wrong.", "Rude staff and weak coffee.",
    "It fell far short of my expectations.", "The battery dies within an hour.",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from tuneforge.data.records import Labelled
    from tuneforge.evaluate import evaluate_model
    from tuneforge.models import load_model

    def records(rows, label):
        return [Labelled(text=f"Is the sentiment of this review positive or negative? Answer with one word.\n{t}",
                         label=label) for t in rows]

    val = records(POSITIVE[::2], "positive") + records(NEGATIVE[::2], "negative")
    test = records(POSITIVE[1::2], "positive") + records(NEGATIVE[1::2], "negative")
    started = time.perf_counter()
    model, tokenizer = load_model("smollm2-135m-instruct")
    loaded = time.perf_counter()
    result = evaluate_model(model, tokenizer, test, ["accuracy", "macro_f1", "calibration"], val_records=val,
                            labels=["negative", "positive"], batch_size=8,
                            out_dir="/tmp/eval_calibration-report")
    done = time.perf_counter()
    out = {
        "bench": "eval_calibration",
        "model": "smollm2-135m-instruct",
        "n_val": len(val), "n_test": len(test), "threads": args.threads,
        "metrics": result.metrics,
        "temperature": result.calibration["temperature"],
        "nll_before": result.calibration["nll_before"], "nll_after": result.calibration["nll_after"],
        "load_s": round(loaded - started, 1), "eval_s": round(done - loaded, 1),
        "command": "python bench/eval_calibration.py --threads %d" % args.threads,
    }
    path = Path(__file__).parent / "results" / f"eval_calibration-{dt.date.today()}.json"
    path.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
