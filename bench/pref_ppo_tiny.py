"""PPO with a rule-based reward on the 2-layer tiny Llama: does the mean reward rise?

    python bench/pref_ppo_tiny.py            # writes bench/results/pref_ppo_tiny.json

Reward: the share of characters that are the letter "e" (dense, so a random tiny model gets a signal).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))


def share_of_e(prompts, completions):
    return [c.count("e") / max(len(c), 1) for c in completions]


def main(steps: int = 16) -> dict:
    from tiny import save_tiny_model

    from tuneforge.config.recipe import parse_recipe
    from tuneforge.train import train
    from tuneforge.train.monitor import read_metrics

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = save_tiny_model(tmp / "tiny")
        data = tmp / "prompts.jsonl"
        data.write_text("".join(json.dumps({"instruction": f"Say something ({i}).", "output": "hi"}) + "\n"
                                for i in range(16)))
        recipe = parse_recipe({
            "name": "ppo-tiny", "model": {"name_or_path": str(model_dir)},
            "data": {"sources": [{"path": str(data)}], "val_ratio": 0.0},
            "method": {"type": "full", "objective": "ppo",
                       "options": {"reward_fn": "pref_ppo_tiny:share_of_e", "max_new_tokens": 4,
                                   "kl_coef": 0.01, "ppo_epochs": 4}},
            "hparams": {"max_steps": steps, "batch_size": 16, "learning_rate": 1e-2},
            "output_dir": str(tmp / "runs"), "seed": 0,
        })
        start = time.time()
        result = train(recipe, quiet=True)
        rows = read_metrics(result.run_dir / "metrics.jsonl")
    out = {"steps": steps, "seconds": round(time.time() - start, 1),
           "reward_by_step": [round(r["train_reward"], 4) for r in rows],
           "kl_by_step": [round(r["train_kl"], 3) for r in rows],
           **{k: result.stats[k] for k in ("reward_first", "reward_last", "kl_last", "value_loss_last")}}
    path = ROOT / "bench" / "results" / "pref_ppo_tiny.json"
    path.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
