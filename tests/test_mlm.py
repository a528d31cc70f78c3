"""MLM objective on the tiny BERT (no MLM head, like MiniLM): the masked-token loss falls, held-out perplexity
and accuracy are measured before/after on the same masks, a fresh head is announced, decoders and non-text
rows are refused with a reason, and a stopped run resumes from its checkpoint."""

from __future__ import annotations

import json
import random

import pytest

from tiny import BERT_WORDS
from tuneforge.config.recipe import parse_recipe
from tuneforge.errors import ConfigError, DataError
from tuneforge.train import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_corpus(path, n=240, seed=0):
    """Each animal always makes its own sound: a masked sound is predictable from the animal, and back."""
    rng = random.Random(seed)
    pairs = list(zip(BERT_WORDS["animal"], BERT_WORDS["sound"]))
    lines = []
    for _ in range(n):
        animal, sound = rng.choice(pairs)
        lines.append(f"the {animal} says {sound} in the {rng.choice(BERT_WORDS['place'])}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def recipe_for(model_dir, data, out, method="full", fmt="text", **hparams):
    return parse_recipe({
        "name": "mlm", "model": {"name_or_path": str(model_dir)},
        "data": {"sources": [{"path": str(data), "format": fmt}], "val_ratio": 0.1, "test_ratio": 0.2},
        "method": {"type": method, "objective": "mlm", "options": {"mlm_probability": 0.25}},
        "hparams": {"learning_rate": 5e-3, "max_steps": 100, "warmup_steps": 10, "batch_size": 16, "cutoff_len": 32,
                    "save_each_epoch": False, **hparams},
        "output_dir": str(out), "seed": 0,
    })


def train_losses(run_dir) -> list[float]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["train_loss"] for r in rows if "train_loss" in r]


def test_masked_token_loss_falls_and_held_out_scores_improve(tiny_bert_dir, tmp_path):
    result = train(recipe_for(tiny_bert_dir, write_corpus(tmp_path / "c.txt"), tmp_path), quiet=True)
    stats = result.stats
    assert result.status == "finished" and stats["steps"] == 100
    losses = train_losses(result.run_dir)
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 0.3, losses
    before, after = stats["before"], stats["after"]
    assert stats["held_out"] == "test" and before["masked_tokens"] == after["masked_tokens"] > 50  # same masks
    assert after["perplexity"] < before["perplexity"] * 0.8, (before, after, losses)
    assert after["accuracy"] > before["accuracy"], (before, after)
    assert stats["fresh_head"] and "no MLM head weights" in stats["warnings"][0]
    from transformers import AutoModelForMaskedLM

    AutoModelForMaskedLM.from_pretrained(result.final_dir)  # a full MLM model, head included


def test_lora_run_saves_the_adapter_and_a_merged_model(tiny_bert_dir, tmp_path):
    result = train(recipe_for(tiny_bert_dir, write_corpus(tmp_path / "c.txt"), tmp_path, method="lora",
                              max_steps=4), quiet=True)
    assert (result.final_dir / "adapter" / "adapter_config.json").is_file()
    assert (result.final_dir / "model.safetensors").is_file() and not (result.final_dir / "adapter_config.json").exists()


def test_stopped_run_resumes_from_its_checkpoint(tiny_bert_dir, tmp_path):
    corpus = write_corpus(tmp_path / "c.txt", n=120)
    full = train(recipe_for(tiny_bert_dir, corpus, tmp_path / "a", max_steps=8), quiet=True)
    stopped = train(recipe_for(tiny_bert_dir, corpus, tmp_path / "b", max_steps=8), quiet=True,
                    stop_hook=lambda step: step == 4)
    assert stopped.status == "stopped" and stopped.steps == 4
    assert train_losses(stopped.run_dir) == pytest.approx(train_losses(full.run_dir)[:4], abs=1e-5)  # seeded
    resumed = train(recipe_for(tiny_bert_dir, corpus, tmp_path / "b", max_steps=8).model_copy(
        update={"resume": "auto"}), quiet=True)
    rows = [json.loads(x) for x in (resumed.run_dir / "metrics.jsonl").read_text().splitlines()]
    # HF's Trainer continues from checkpoint-4 (weights, optimizer, schedule); its masks after a resume are
    # drawn afresh, so the losses are not bit-identical to the uninterrupted run's.
    assert [r["step"] for r in rows if "train_loss" in r] == [5, 6, 7, 8]
    assert resumed.status == "finished" and resumed.steps == 8 and resumed.final_dir is not None


def test_reported_train_loss_does_not_grow_with_grad_accum(tiny_bert_dir, tmp_path):
    # BertForMaskedLM takes **kwargs but ignores num_items_in_batch, so HF's Trainer took its per-batch mean as
    # already scaled for accumulation: loss (and gradients) came out grad_accum times too large.
    corpus = write_corpus(tmp_path / "c.txt", n=120)
    frozen = dict(learning_rate=1e-9, max_steps=2, warmup_steps=0)  # the model barely moves: same loss level
    one = train(recipe_for(tiny_bert_dir, corpus, tmp_path / "a", batch_size=16, grad_accum=1, **frozen), quiet=True)
    four = train(recipe_for(tiny_bert_dir, corpus, tmp_path / "b", batch_size=4, grad_accum=4, **frozen), quiet=True)
    mean_one, mean_four = (sum(train_losses(r.run_dir)) / 2 for r in (one, four))
    assert mean_four == pytest.approx(mean_one, rel=0.25), (train_losses(one.run_dir), train_losses(four.run_dir))
    assert mean_four == pytest.approx(four.stats["before"]["loss"], rel=0.25)


def test_a_decoder_is_refused_before_loading(tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError, match="needs an encoder.*is a decoder.*objective: pretrain"):
        train(recipe_for(tiny_model_dir, write_corpus(tmp_path / "c.txt"), tmp_path), quiet=True)


def test_records_that_are_not_raw_text_are_rejected_with_the_reason(tiny_bert_dir, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"anchor": "the cat", "positive": "meow"}) + "\n", encoding="utf-8")
    recipe = recipe_for(tiny_bert_dir, write_corpus(tmp_path / "c.txt", n=60), tmp_path, max_steps=2)
    recipe.data.sources.append(recipe.data.sources[0].model_copy(update={"path": str(pairs), "format": "pairs"}))
    result = train(recipe, quiet=True)
    rejected = [json.loads(x) for x in (result.run_dir / "rejected.jsonl").read_text().splitlines()]
    assert [(r["line"], r["code"]) for r in rejected] == [(1, "wrong_type")]
    assert "expected raw text for objective=mlm, got a Pair" in rejected[0]["message"]


def test_data_of_the_wrong_kind_fails_with_the_reason_and_keeps_the_rows(tiny_bert_dir, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"anchor": f"the {a}", "positive": "meow"}) + "\n" for a in BERT_WORDS["animal"]),
                     encoding="utf-8")
    recipe = recipe_for(tiny_bert_dir, pairs, tmp_path, fmt="pairs", max_steps=1)
    with pytest.raises(DataError, match=r"8 row\(s\) were rejected, e.g. .*pairs.jsonl:1: text: expected raw text "
                                        r"for objective=mlm, got a Pair"):
        train(recipe, quiet=True)
    (run_dir,) = tmp_path.glob(f"{recipe.name}-*")
    assert len((run_dir / "rejected.jsonl").read_text().splitlines()) == 8
