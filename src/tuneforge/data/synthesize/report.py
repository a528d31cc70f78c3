"""report.json: how many candidates, how many accepted, why the rest were rejected, how novel and how
diverse the accepted ones are, and how fast the generator ran."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any, Callable, Sequence

from tuneforge.data.synthesize.filters import REASONS

MAX_IDS = 50  # seed ids listed in the report (all of them are in each accepted row's meta that used them)


def distinct_n(token_lists: Sequence[Sequence[str]], n: int) -> float | None:
    """Corpus-level distinct-n (Li et al., 2016): unique n-grams / all n-grams over every text."""
    grams = [tuple(t[i:i + n]) for t in token_lists for i in range(len(t) - n + 1)]
    return round(len(set(grams)) / len(grams), 4) if grams else None


def distribution(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def q(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 4)

    bins = Counter(min(9, int(v * 10)) for v in values)
    return {
        "count": len(values), "mean": round(statistics.fmean(values), 4), "min": round(ordered[0], 4),
        "p10": q(0.10), "p50": q(0.50), "p90": q(0.90), "max": round(ordered[-1], 4),
        "histogram": {f"{b / 10:.1f}-{(b + 1) / 10:.1f}": bins.get(b, 0) for b in range(10)},
    }


def build_report(*, accepted: list[dict], rejected: list[dict], seeds: list, target: int, stopped: str,
                 generator: str, timing: dict[str, float], tokens: int | None, rounds: int,
                 tokenize: Callable[[str], list[str]], config: dict[str, Any], seed: int) -> dict[str, Any]:
    candidates = len(accepted) + len(rejected)
    reasons = Counter(r["reason"] for r in rejected)
    to_seed = [r["meta"]["rouge_l_to_seeds"] for r in accepted if "rouge_l_to_seeds" in r.get("meta", {})]
    instructions = [tokenize(r["instruction"]) for r in accepted]
    outputs = [tokenize(r["output"]) for r in accepted]
    gen_s = timing.get("generation_s", 0.0)
    return {
        "generator": generator,
        "seeds": {"count": len(seeds), "ids": [s.id for s in seeds[:MAX_IDS]]},
        "target": target,
        "stopped": stopped,
        "candidates": candidates,
        "accepted": len(accepted),
        "rejected": len(rejected),
        "acceptance_rate": round(len(accepted) / candidates, 4) if candidates else None,
        "rejected_by_reason": {k: reasons[k] for k in [*REASONS, *sorted(set(reasons) - set(REASONS))] if reasons[k]},
        "rejected_by_stage": dict(Counter(r.get("stage", "?") for r in rejected)),
        "rouge_l_to_nearest_seed": distribution(to_seed),
        "diversity": {
            "instruction": {"distinct_1": distinct_n(instructions, 1), "distinct_2": distinct_n(instructions, 2)},
            "output": {"distinct_1": distinct_n(outputs, 1), "distinct_2": distinct_n(outputs, 2)},
        },
        "mean_words": {
            "instruction": _mean_len(r["instruction"] for r in accepted),
            "input": _mean_len(r["input"] for r in accepted),
            "output": _mean_len(r["output"] for r in accepted),
        },
        "with_input": sum(1 for r in accepted if r["input"]),
        "time_s": {k: round(v, 2) for k, v in timing.items()},
        "generated_tokens": tokens,
        "tokens_per_s": round(tokens / gen_s, 1) if tokens and gen_s > 0 else None,
        "rounds": rounds,
        "seed": seed,
        "config": config,
    }


def _mean_len(texts) -> float | None:
    lengths = [len(t.split()) for t in texts]
    return round(statistics.fmean(lengths), 1) if lengths else None


def summary_lines(report: dict[str, Any]) -> list[str]:
    """What the CLI prints."""
    rate = report["acceptance_rate"]
    lines = [
        f"{report['accepted']} accepted of {report['candidates']} candidates "
        f"({rate:.0%} accepted; target {report['target']}, {report['stopped']})" if rate is not None
        else f"no candidates ({report['stopped']})",
    ]
    if report["rejected_by_reason"]:
        lines.append("rejected: " + ", ".join(f"{k} {v}" for k, v in report["rejected_by_reason"].items()))
    rouge = report["rouge_l_to_nearest_seed"]
    if rouge.get("count"):
        lines.append(f"ROUGE-L to the nearest seed: mean {rouge['mean']}, p50 {rouge['p50']}, max {rouge['max']}")
    div = report["diversity"]["instruction"]
    if div["distinct_2"] is not None:
        lines.append(f"instructions: distinct-1 {div['distinct_1']}, distinct-2 {div['distinct_2']}")
    speed = f", {report['tokens_per_s']} tokens/s" if report["tokens_per_s"] else ""
    lines.append(f"time {report['time_s'].get('total_s', 0):.1f} s (generation "
                 f"{report['time_s'].get('generation_s', 0):.1f} s{speed})")
    return lines
