"""Benchmark `tuneforge data prepare` on a 52,000-row Alpaca-shaped file with injected near duplicates.

    python bench/data_prepare.py [--rows 52000] [--dup-rate 0.2] [--threshold 0.8] [--seed 0]

How the file is built (all seeded):
  * base rows: alpaca_en_demo.json rows cycled, each with a unique filler paragraph of random words from the
    demo's vocabulary (at least 40 words, about as long as the row) appended to `output`. Two base rows made
    from the same demo row therefore share < 1/3 of their word shingles: every base row is its own
    ground-truth cluster.
  * duplicate rows (dup_rate of all rows): a copy of a random base row with 1 + words//60 (max 5) word
    swaps/deletions, random casing and punctuation changes; 10% of them are exact copies. Ground truth: the
    base row's cluster id.
  * ~2% of rows get an email/phone/credit card, ~0.5% an empty output (exercise PII and filter).
Measured: wall time of `prepare()` (and of the imports, separately), rows/s, peak RSS, and pairwise
precision/recall of the dedup step (exact + near) against the injected clusters: a pair of rows is
predicted positive when dedup put them in one cluster, truly positive when they share a ground-truth id.
Results go to bench/results/data_prepare-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import random
import re
import resource
import sys
import tempfile
import time
from collections import defaultdict
from itertools import combinations
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO.parent / "shared" / "data" / "llamafactory" / "alpaca_en_demo.json"
PII = ["Contact me at jane.doe{n}@example.org.", "Call +1 212-555-01{n:02d} after 5pm.",
       "My card is 4111 1111 1111 1111."]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]{3,}", text.lower())


def perturb(row: dict, rng: random.Random) -> dict:
    out = dict(row)
    words = out["output"].split()
    for _ in range(min(5, 1 + len(words) // 60)):
        i = rng.randrange(len(words))
        if rng.random() < 0.5 and len(words) > 1:
            j = min(len(words) - 1, i + 1)
            words[i], words[j] = words[j], words[i]
        elif len(words) > 1:
            del words[i]
    text = " ".join(words)
    if rng.random() < 0.5:
        text = text.upper() if rng.random() < 0.2 else text.lower()
    out["output"] = text.replace(".", rng.choice([".", "!", " ."]))
    out["instruction"] = out["instruction"].rstrip("?.") + rng.choice(["?", ".", "", "!"])
    return out


def build(rows: int, dup_rate: float, seed: int, path: Path) -> list[int]:
    rng = random.Random(seed)
    demo = json.loads(DEMO.read_text(encoding="utf-8"))
    vocab = sorted({w for r in demo for w in _words(r["instruction"] + " " + r["output"])})
    n_dups = int(rows * dup_rate)
    bases = []
    for i in range(rows - n_dups):
        src = demo[i % len(demo)]
        n = max(40, len(src["output"].split()))
        filler = " ".join(rng.choice(vocab) for _ in range(n))
        bases.append({"instruction": src["instruction"], "input": src["input"],
                      "output": src["output"] + "\n\n" + filler})
    data = [(row, cid) for cid, row in enumerate(bases)]
    for _ in range(n_dups):
        cid = rng.randrange(len(bases))
        copy = dict(bases[cid]) if rng.random() < 0.1 else perturb(bases[cid], rng)
        data.append((copy, cid))
    rng.shuffle(data)
    for n, (row, _) in enumerate(data):
        roll = rng.random()
        if roll < 0.02:
            row["input"] = (row["input"] + " " + rng.choice(PII).format(n=n % 100)).strip()
        elif roll < 0.025:
            row["output"] = "   "
    # one row per line, so row n starts on line n + 2 and reader rejects map back to rows
    body = ",\n".join(json.dumps(row, ensure_ascii=False) for row, _ in data)
    path.write_text("[\n" + body + "\n]\n", encoding="utf-8")
    return [cid for _, cid in data]


def pairs_of(groups: dict[int, list[int]]) -> set[tuple[int, int]]:
    return {p for members in groups.values() for p in combinations(sorted(members), 2)}


def score(truth: list[int], quarantine: Path, surviving_dedup: set[int]) -> dict:
    """Pairwise precision/recall over the records (by uid) that reached the dedup step."""
    predicted: dict[int, list[int]] = defaultdict(list)
    for line in quarantine.open(encoding="utf-8"):
        entry = json.loads(line)
        if entry["step"] == "dedup":
            predicted[entry["cluster"]].append(entry["uid"])
            predicted[entry["cluster"]].append(entry["kept_uid"])
    predicted = {k: sorted(set(v)) for k, v in predicted.items()}
    true_groups: dict[int, list[int]] = defaultdict(list)
    for uid, cid in enumerate(truth):
        if uid in surviving_dedup:
            true_groups[cid].append(uid)
    t, p = pairs_of(true_groups), pairs_of(predicted)
    tp = len(t & p)
    return {"level": "pairwise", "true_pairs": len(t), "predicted_pairs": len(p), "true_positive_pairs": tp,
            "precision": round(tp / len(p), 4) if p else 1.0, "recall": round(tp / len(t), 4) if t else 1.0}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=52000)
    ap.add_argument("--dup-rate", type=float, default=0.2)
    ap.add_argument("--threshold", type=float, default=None, help="dedup.threshold (default: the config's)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    t0 = time.perf_counter()
    import presidio_analyzer  # noqa: F401  (imports torch/transformers: timed apart from the pipeline)
    import spacy  # noqa: F401

    from tuneforge.data.prepare import PrepareConfig, prepare

    imports_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "alpaca_52k.json"
        # built in a child process so that peak RSS below is the pipeline's, not the generator's
        with multiprocessing.get_context("fork").Pool(1) as pool:
            truth = pool.apply(build, (args.rows, args.dup_rate, args.seed, src))
        cfg = PrepareConfig()
        if args.threshold:
            cfg.dedup.threshold = args.threshold
        t1, c1 = time.perf_counter(), time.process_time()
        result = prepare(src, cfg, Path(tmp) / "out", seed=args.seed, val=0.05, test=0.05)
        wall, cpu = time.perf_counter() - t1, time.process_time() - c1
        out_dir = Path(tmp) / "out"
        steps = {s["step"]: s for s in result.report["step_counts"]}
        # uids number the records the reader accepted, in row order: map them back to ground truth
        rejected_rows = {json.loads(line)["line"] - 2 for line in (out_dir / "rejected.jsonl").open()}
        uid_truth = [cid for row, cid in enumerate(truth) if row not in rejected_rows]
        assert len(uid_truth) == result.counts["records"]
        removed_before = {e["uid"] for e in map(json.loads, (out_dir / "quarantine.jsonl").open())
                          if e["action"] == "removed" and e["step"] in ("filter", "pii")}
        reached = set(range(len(uid_truth))) - removed_before
        quality = score(uid_truth, out_dir / "quarantine.jsonl", reached)
    out = {
        "date": dt.date.today().isoformat(), "rows": args.rows, "dup_rate": args.dup_rate,
        "threshold": cfg.dedup.threshold, "seed": args.seed, "prepare_wall_s": round(wall, 2),
        "prepare_cpu_s": round(cpu, 2),
        "imports_s": round(imports_s, 2), "rows_per_s": round(args.rows / wall, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "step_wall_s": result.report["timings_s"], "step_cpu_s": result.report["cpu_s"], "counts": result.counts,
        "removed_by_step": {k: v["removed_by_reason"] for k, v in steps.items()},
        "pii_found": result.report["steps"]["pii"]["found_by_type"],
        "near_dup_quality": quality, "cpu_count": os.cpu_count(), "load_avg_1m_at_end": os.getloadavg()[0],
        "command": "python bench/data_prepare.py " + " ".join(sys.argv[1:]),
    }
    results = REPO / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    suffix = f"-t{args.threshold}" if args.threshold else ""
    path = results / f"data_prepare-{out['date']}{suffix}.json"
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
