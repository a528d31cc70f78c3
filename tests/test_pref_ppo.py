"""PPO with a rule-based Python reward raises the mean reward on the tiny model; bad reward specs are
config errors."""

import json

import pytest

from tuneforge.config.recipe import parse_recipe
from tuneforge.errors import ConfigError
from tuneforge.train import train
from tuneforge.train.monitor import read_metrics
from tuneforge.train.preference.ppo import _until_eos, gae, load_reward_fn


def share_of_e(prompts, completions):
    """Dense rule-based reward: the share of characters that are the letter e (random text gets ~5%)."""
    return [c.count("e") / max(len(c), 1) for c in completions]


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ppo") / "prompts.jsonl"
    rows = [{"instruction": f"Say something ({i}).", "output": "hello"} for i in range(16)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def ppo_recipe(model_dir, data, out, steps=12, **options):
    return parse_recipe({
        "name": "ppo", "model": {"name_or_path": str(model_dir)},
        "data": {"sources": [{"path": str(data)}], "val_ratio": 0.0},
        "method": {"type": "full", "objective": "ppo",
                   "options": {"max_new_tokens": 4, "kl_coef": 0.01, "ppo_epochs": 4, **options}},
        "hparams": {"max_steps": steps, "batch_size": 16, "learning_rate": 1e-2},
        "output_dir": str(out), "seed": 0,
    })


@pytest.mark.slow
def test_ppo_raises_mean_reward(tiny_model_dir, prompts_file, tmp_path):
    recipe = ppo_recipe(tiny_model_dir, prompts_file, tmp_path, reward_fn="test_pref_ppo:share_of_e")
    result = train(recipe, quiet=True)
    rows = read_metrics(result.run_dir / "metrics.jsonl")
    assert len(rows) == 12 and {"train_reward", "train_kl", "train_value_loss"} <= set(rows[0])
    assert result.stats["reward_last"] > result.stats["reward_first"] + 0.05
    assert result.stats["kl_last"] > 0  # the policy moved away from the reference
    assert (result.final_dir / "value_head.pt").is_file()


def test_long_prompts_are_cut_from_the_left_to_the_cutoff(tiny_model_dir, prompts_file, tmp_path):
    from tuneforge.train.preference.common import load_policy
    from tuneforge.train.preference.ppo import PPOLoop

    recipe = ppo_recipe(tiny_model_dir, prompts_file, tmp_path, reward_fn="test_pref_ppo:share_of_e")
    recipe.hparams.cutoff_len = 48
    policy, tokenizer = load_policy(recipe)
    loop = PPOLoop(recipe, policy, tokenizer, share_of_e, [])
    long = "The quick brown fox jumps over the lazy dog. " * 30 + "What is the capital of France?"
    sides = tokenizer.padding_side, tokenizer.truncation_side
    enc = loop.encode_prompts([long, "Hi?"])
    assert enc["input_ids"].shape[1] == 48 - 4  # cutoff minus max_new_tokens
    assert tokenizer.decode(enc["input_ids"][0]).endswith("What is the capital of France?")
    assert enc["attention_mask"][1, 0] == 0 and enc["attention_mask"][1, -1] == 1  # short one padded on the left
    assert (tokenizer.padding_side, tokenizer.truncation_side) == sides  # restored for everyone else


def test_reward_spec_errors(tiny_model_dir, prompts_file, tmp_path):
    with pytest.raises(ConfigError, match="exactly one"):
        train(ppo_recipe(tiny_model_dir, prompts_file, tmp_path), quiet=True)
    with pytest.raises(ConfigError, match="module:function"):
        load_reward_fn("no_colon")
    with pytest.raises(ConfigError, match="cannot import"):
        load_reward_fn("test_pref_ppo:missing")


def test_response_mask_stops_after_first_eos():
    import torch

    mask = _until_eos(torch.tensor([[5, 6, 2, 7, 2], [5, 5, 5, 5, 5]]), eos_id=2)
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]


def test_gae_credits_the_final_reward_to_every_token():
    import torch

    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    adv, returns = gae(rewards, torch.zeros(1, 3), torch.ones(1, 3), gamma=1.0, lam=1.0)
    assert returns.tolist() == [[1.0, 1.0, 1.0]]
    assert torch.allclose(adv, torch.zeros(1, 3))  # whitened: equal advantages become zero


def test_builtin_rule_rewards():
    from tuneforge.train.preference.rewards import concise, ends_with_word

    assert ends_with_word([], ["ok, thanks!", "thanks, ok", "nope"], word="Thanks") == [1.0, 0.5, 0.0]
    short, long = concise([], ["Yes.", " ".join(["word"] * 30)], max_words=20)
    assert short == 1.0 and long == 0.0


@pytest.mark.parametrize("name", ["dpo", "reward", "ppo"])
def test_example_recipes_are_valid_and_point_at_shared_data(name, shared_data):
    from pathlib import Path

    from tuneforge.config.recipe import load_recipe

    recipe = load_recipe(Path(__file__).parents[1] / "examples" / f"{name}.yaml")
    assert recipe.method.objective == name
    assert Path(recipe.data.sources[0].path).resolve() == (shared_data / "dpo_en_demo.json").resolve()
