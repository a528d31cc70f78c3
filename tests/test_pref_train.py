"""Each preference objective trains a few steps on the tiny model and moves in the right direction."""

import json

import pytest

from tuneforge.config.recipe import parse_recipe
from tuneforge.errors import ConfigError
from tuneforge.train import train
from tuneforge.train.monitor import read_metrics

PAIRS = [
    ("What is the capital of France?", "The capital of France is Paris.", "Eat well, sleep enough and exercise."),
    ("Translate to French: good morning.", "Bonjour.", "The quick brown fox jumps over the lazy dog."),
    ("Classify the sentiment: I love this product.", "positive", "negative"),
    ("Give three tips for staying healthy.", "Eat well, sleep enough and exercise.", "Paris."),
]


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pref") / "pairs.jsonl"
    rows = [{"prompt": f"{p} ({i})", "chosen": c, "rejected": r} for i in range(6) for p, c, r in PAIRS]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def recipe_for(model_dir, data_path, out, objective, method="lora", steps=6, **options):
    return parse_recipe({
        "name": objective,
        "model": {"name_or_path": str(model_dir)},
        "data": {"sources": [{"path": str(data_path)}], "val_ratio": 0.2},
        "method": {"type": method, "objective": objective, "options": options},
        "hparams": {"max_steps": steps, "batch_size": 4, "learning_rate": 2e-3, "cutoff_len": 64,
                    "save_each_epoch": False},
        "output_dir": str(out),
    })


def losses(result):
    return [row["train_loss"] for row in read_metrics(result.run_dir / "metrics.jsonl") if "train_loss" in row]


@pytest.mark.slow
def test_dpo_lora_loss_falls_and_margin_grows(tiny_model_dir, pairs_file, tmp_path):
    result = train(recipe_for(tiny_model_dir, pairs_file, tmp_path, "dpo", beta=0.1), quiet=True)
    curve = losses(result)
    assert len(curve) == 6 and curve[-1] < curve[0]
    stats = result.stats
    assert stats["val_logp_margin_after"] > stats["val_logp_margin_before"]
    assert (result.final_dir / "adapter_config.json").is_file()
    assert result.recipe.hparams.learning_rate == 2e-3 and result.status == "finished"


@pytest.mark.slow
def test_ipo_loss_variant_and_full_weights(tiny_model_dir, pairs_file, tmp_path):
    result = train(recipe_for(tiny_model_dir, pairs_file, tmp_path, "dpo", method="full", steps=4,
                              loss_type="ipo"), quiet=True)
    curve = losses(result)
    assert curve[-1] < curve[0]
    assert (result.final_dir / "config.json").is_file()


@pytest.mark.slow
def test_orpo_loss_falls(tiny_model_dir, pairs_file, tmp_path):
    curve = losses(train(recipe_for(tiny_model_dir, pairs_file, tmp_path, "orpo"), quiet=True))
    assert curve[-1] < curve[0]


@pytest.mark.slow
def test_kto_trains_on_unpaired_feedback(tiny_model_dir, tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"{p} ({i})"}, {"role": "assistant", "content": a}],
             "label": good}
            for i in range(4) for p, c, r in PAIRS for a, good in ((c, True), (r, False))]
    path = tmp_path / "feedback.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = train(recipe_for(tiny_model_dir, path, tmp_path, "kto"), quiet=True)
    curve = losses(result)
    assert curve[-1] < curve[0]
    assert result.stats["train_examples"] + result.stats["val_examples"] == len(rows)


@pytest.mark.slow
def test_reward_model_learns_pairwise_ranking(tiny_model_dir, pairs_file, tmp_path):
    result = train(recipe_for(tiny_model_dir, pairs_file, tmp_path, "reward", steps=8), quiet=True)
    curve = losses(result)
    assert curve[-1] < curve[0]
    assert result.stats["val_pairwise_accuracy_after"] > 0.5
    assert (result.final_dir / "adapter_config.json").is_file()


def test_unknown_option_is_a_config_error(tiny_model_dir, pairs_file, tmp_path):
    with pytest.raises(ConfigError, match="betta"):
        train(recipe_for(tiny_model_dir, pairs_file, tmp_path, "dpo", betta=0.1), quiet=True)


def test_long_reward_pairs_are_shortened_not_dropped(tiny_tokenizer):
    from tuneforge.data.records import Conversation, Preference, Turn
    from tuneforge.train.preference.data import fit_pair

    long = "The quick brown fox jumps over the lazy dog. " * 40
    pair = Preference(Conversation([Turn("user", long + "What is the capital of France?")]),
                      "Paris. " + long, "Bonjour. " + long)
    fitted = fit_pair(pair, tiny_tokenizer, 64)
    size = lambda text: len(tiny_tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    for answer in (fitted.chosen, fitted.rejected):
        assert size(fitted.prompt.prompt_text()) + size(answer) <= 64
    assert fitted.prompt.prompt_text().endswith("capital of France?")  # the question survives
    assert fitted.chosen.startswith("Paris") and fitted.rejected.startswith("Bonjour")
    short = Preference(Conversation([Turn("user", "Hi?")]), "Hello.", "Go away.")
    assert fit_pair(short, tiny_tokenizer, 64) == short


def test_long_prompt_pairs_are_scored_after_fitting(tiny_model, tiny_tokenizer):
    """A prompt that fills the window leaves no answer tokens: every margin is 0 and the pair can never count
    as preferred. Fitted to the window, each pair is scored on its answers."""
    from tuneforge.data.records import Conversation, Preference, Turn
    from tuneforge.train.preference.data import fit_pair
    from tuneforge.train.preference.dpo import preference_accuracy

    long = "The quick brown fox jumps over the lazy dog. " * 40
    pairs = [Preference(Conversation([Turn("user", long + f"Question {i}?")]), f"Answer {i} is yes.", "No idea.")
             for i in range(3)]
    raw = preference_accuracy(tiny_model, tiny_tokenizer, pairs, 64)
    assert raw["margins"] == [0.0, 0.0, 0.0]
    fitted = preference_accuracy(tiny_model, tiny_tokenizer, [fit_pair(p, tiny_tokenizer, 64) for p in pairs], 64)
    assert all(m != 0.0 for m in fitted["margins"])
    assert fitted["median_margin"] == sorted(fitted["margins"])[1]
