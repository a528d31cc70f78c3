"""Classification objective: a K-way head learns a keyword rule on the tiny Llama (LoRA) and a tiny BERT
(full weights), beats the majority baseline on the held-out split, reports per-group accuracy, and rejects
rows it cannot use."""

from __future__ import annotations

import json
import random

import pytest

from tuneforge.config.recipe import parse_recipe
from tuneforge.errors import DataError
from tuneforge.train import train
from tuneforge.train.classify import load_labelled

WORDS = {"billing": ["invoice", "charge", "refund"], "technical": ["crash", "error", "bug"],
         "shipping": ["parcel", "courier", "delivery"]}
FILLER = "the my a this please today again now".split()


def write_labelled(path, n=90, seed=0, extra_rows=()):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = list(WORDS)[i % 3]
        words = rng.sample(FILLER, 4) + [rng.choice(WORDS[label])]  # the cue last: a decoder pools there
        rows.append({"text": " ".join(words), "label": label, "groups": {"region": "north" if i % 2 else "south"}})
    rows += list(extra_rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def recipe_for(model_dir, data, out, method="lora", **hparams):
    return parse_recipe({
        "name": "cls", "model": {"name_or_path": str(model_dir)},
        "data": {"sources": [{"path": str(data), "format": "labelled"}], "val_ratio": 0.2, "test_ratio": 0.2},
        "method": {"type": method, "objective": "classification"},
        "hparams": {"learning_rate": 5e-3, "epochs": 6, "batch_size": 8, "cutoff_len": 32,
                    "save_each_epoch": False, **hparams},
        "output_dir": str(out), "seed": 0,
    })


def test_split_is_stratified_and_bad_rows_are_rejected(tmp_path):
    data_path = write_labelled(tmp_path / "d.jsonl", extra_rows=[{"text": "no label here"}])
    data = load_labelled(recipe_for("unused", data_path, tmp_path))
    assert data.labels == sorted(WORDS)
    for split in (data.val, data.test):  # every class keeps its share
        counts = {label: sum(r.label == label for r in split) for label in WORDS}
        assert min(counts.values()) >= 5, counts
    assert len(data.train) + len(data.val) + len(data.test) == 90
    assert [(issue.line, issue.field) for issue in data.rejected] == [(91, "label")]


def test_a_given_test_split_is_kept_and_unseen_labels_rejected(tmp_path):
    test_path = tmp_path / "t.jsonl"
    test_path.write_text(json.dumps({"text": "my invoice", "label": "billing"}) + "\n"
                         + json.dumps({"text": "pineapple", "label": "fruit"}) + "\n")
    recipe = recipe_for("unused", write_labelled(tmp_path / "d.jsonl"), tmp_path)
    recipe.data.sources.append(recipe.data.sources[0].model_copy(update={"path": str(test_path), "split": "test"}))
    data = load_labelled(recipe)
    assert [r.text for r in data.test] == ["my invoice"]
    assert len(data.train) + len(data.val) == 90  # the pool only gives up a validation split now
    assert [(i.code, i.line) for i in data.rejected] == [("unseen_label", 2)]


@pytest.mark.slow
def test_lora_head_on_the_tiny_llama_beats_the_majority_baseline(tiny_model_dir, tmp_path):
    result = train(recipe_for(tiny_model_dir, write_labelled(tmp_path / "d.jsonl"), tmp_path), quiet=True)
    stats = result.stats
    assert stats["held_out"] == "test" and stats["test_examples"] == 18
    assert stats["accuracy"] >= stats["majority_accuracy"] + 0.3, stats
    assert set(stats["per_class_f1"]) == set(WORDS) and len(stats["confusion"]) == 3
    assert set(stats["bias_audit"]["attributes"]) == {"region"}
    assert (result.final_dir / "adapter_config.json").is_file()
    rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("val_accuracy" in r for r in rows)  # validation accuracy watched during training


def test_reported_train_loss_does_not_grow_with_grad_accum(tiny_model_dir, tmp_path):
    # The sequence-classification heads take **kwargs but return a per-batch mean whatever num_items_in_batch
    # says, so HF's Trainer took it as already scaled for accumulation: loss and gradients were grad_accum x.
    data = write_labelled(tmp_path / "d.jsonl")
    losses = {}
    for accum, batch in ((1, 16), (4, 4)):
        result = train(recipe_for(tiny_model_dir, data, tmp_path / str(accum), learning_rate=1e-9, max_steps=2,
                                  warmup_steps=0, batch_size=batch, grad_accum=accum), quiet=True)
        rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
        losses[accum] = [r["train_loss"] for r in rows if "train_loss" in r]
    assert sum(losses[4]) == pytest.approx(sum(losses[1]), rel=0.25), losses  # ~ln 3 each, not 4 ln 3


@pytest.mark.real
def test_full_weights_on_the_embedded_minilm_encoder(tmp_path):
    recipe = recipe_for("minilm-l6", write_labelled(tmp_path / "d.jsonl"), tmp_path, method="full",
                        learning_rate=1e-4, epochs=4)
    result = train(recipe, quiet=True)
    stats = result.stats
    assert stats["accuracy"] >= stats["majority_accuracy"] + 0.4, stats
    from transformers import AutoConfig

    saved = AutoConfig.from_pretrained(result.final_dir)
    assert saved.id2label == {0: "billing", 1: "shipping", 2: "technical"}  # label names travel with the model


def test_one_label_is_a_data_error(tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text("".join(json.dumps({"text": f"row {i}", "label": "same"}) + "\n" for i in range(20)))
    with pytest.raises(DataError, match="2 labels"):
        load_labelled(recipe_for("unused", path, tmp_path))
