"""Held-out effect of a finished DPO run, pair by pair, with uncertainty: rescore the run's validation pairs
(the same split and the same shortening to the window as training) under the base model and under the
run's policy, then report preference accuracy, log-prob margins, the share of pairs whose margin grew
(DPO's implicit-reward accuracy) with a sign test, and a bootstrap interval for the mean margin change.

    python bench/pref_dpo_heldout.py --run runs/dpo-smollm2-<stamp>
Writes bench/results/pref_dpo_heldout-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
from math import comb
from pathlib import Path


def sign_test(successes: int, n: int) -> float:
    """One-sided P(X >= successes) for X ~ Binomial(n, 0.5)."""
    return sum(comb(n, k) for k in range(successes, n + 1)) / 2 ** n


def bootstrap_mean(values: list[float], rounds: int = 10000, seed: int = 0) -> tuple[float, float]:
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(values, k=len(values))) for _ in range(rounds))
    return means[int(0.025 * rounds)], means[int(0.975 * rounds)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", required=True)
    parser.add_argument("--out", default=f"bench/results/pref_dpo_heldout-{dt.date.today()}.json")
    args = parser.parse_args()

    import yaml

    from tuneforge.config.recipe import Recipe
    from tuneforge.models import load_model
    from tuneforge.models.adapters import apply_adapter
    from tuneforge.train.preference.data import fit_pair, load_preference_data
    from tuneforge.train.preference.dpo import preference_accuracy

    run = Path(args.run)
    recipe = Recipe.model_validate(yaml.safe_load((run / "recipe.yaml").read_text()))
    data = load_preference_data(recipe)
    model, tokenizer = load_model(recipe.model, head="causal_lm")
    cutoff = recipe.hparams.cutoff_len
    pairs = [fit_pair(p, tokenizer, cutoff) for p in data.val]
    before = preference_accuracy(model, tokenizer, pairs, cutoff, recipe.eval.batch_size)
    policy = apply_adapter(model, run / "final")
    after = preference_accuracy(policy, tokenizer, pairs, cutoff, recipe.eval.batch_size)
    change = [a - b for a, b in zip(after["margins"], before["margins"])]
    grew = sum(c > 0 for c in change)
    low, high = bootstrap_mean(change)
    report = {
        "run": str(run), "pairs": len(pairs),
        "pref_accuracy_before": before["accuracy"], "pref_accuracy_after": after["accuracy"],
        "mean_margin_before": before["margin"], "mean_margin_after": after["margin"],
        "median_margin_before": before["median_margin"], "median_margin_after": after["median_margin"],
        "pairs_margin_grew": grew, "implicit_reward_accuracy": grew / len(change),
        "sign_test_p_one_sided": sign_test(grew, len(change)),
        "mean_margin_change": statistics.fmean(change), "median_margin_change": statistics.median(change),
        "mean_margin_change_95ci_bootstrap": [low, high],
        "margins_before": before["margins"], "margins_after": after["margins"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if not k.startswith("margins_")}, indent=2))


if __name__ == "__main__":
    main()
