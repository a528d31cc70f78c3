"""Contrastive objective on the tiny BERT: in-batch-negatives loss falls and test-split retrieval improves on a
synthetic pair set, the saved model loads in sentence-transformers with the same embeddings, duplicate positives
are never negatives, the pairs reader accepts anchor/query/positive/negative and rejects pairs that teach
nothing with a reason, and a decoder is refused."""

from __future__ import annotations

import json
import random

import pytest

from tiny import BERT_WORDS
from tuneforge.config.recipe import parse_recipe
from tuneforge.errors import ConfigError, DataError
from tuneforge.train import train
from tuneforge.train.contrastive import mnrl_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")
W = BERT_WORDS


def write_pairs(path, negatives=True, seed=0):
    """'the cat in the river' -> 'meow near the bridge': each animal has its sound, each place its building, so
    test pairs (unseen combinations) are retrievable only by learning both maps; the hard negative swaps the sound."""
    rows = []
    for i, animal in enumerate(W["animal"]):
        for j, place in enumerate(W["place"]):
            row = {"anchor": f"the {animal} in the {place}", "positive": f"{W['sound'][i]} near the {W['building'][j]}"}
            if negatives:
                row["negative"] = f"{W['sound'][(i + 1) % 8]} near the {W['building'][j]}"
            rows.append(row)
    random.Random(seed).shuffle(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def recipe_for(model_dir, data, out, method="full", **hparams):
    return parse_recipe({
        "name": "emb", "model": {"name_or_path": str(model_dir)},
        "data": {"sources": [{"path": str(data)}], "val_ratio": 0.15, "test_ratio": 0.2},
        "method": {"type": method, "objective": "contrastive"},
        "hparams": {"learning_rate": 2e-3, "epochs": 8, "batch_size": 8, "cutoff_len": 16,
                    "save_each_epoch": False, **hparams},
        "output_dir": str(out), "seed": 0,
    })


def test_loss_falls_and_held_out_retrieval_improves(tiny_bert_dir, tmp_path):
    result = train(recipe_for(tiny_bert_dir, write_pairs(tmp_path / "p.jsonl"), tmp_path), quiet=True)
    stats = result.stats
    assert stats["hard_negatives"] and stats["held_out"] == "test" and stats["test_pairs"] == 13
    rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in rows if "train_loss" in r]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0, losses
    before, after = stats["before"], stats["after"]
    assert before["queries"] == 13 and 13 < before["candidates"] <= 26  # distinct test positives + negatives
    assert after["accuracy_at_1"] >= before["accuracy_at_1"] + 0.5, (before, after)
    assert after["mrr"] > before["mrr"] and after["recall_at_5"] >= before["recall_at_5"]
    assert after["positive_cosine"] - after["negative_cosine"] > before["positive_cosine"] - before["negative_cosine"]
    for name in ("modules.json", "1_Pooling/config.json", "model.safetensors"):
        assert (result.final_dir / name).is_file()


def test_the_saved_model_embeds_the_same_in_sentence_transformers(tiny_bert_dir, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    from tuneforge.models import load_model
    from tuneforge.train.contrastive import Embedder

    recipe = recipe_for(tiny_bert_dir, write_pairs(tmp_path / "p.jsonl", negatives=False), tmp_path,
                        method="lora", max_steps=3)
    result = train(recipe, quiet=True)
    assert (result.final_dir / "adapter" / "adapter_config.json").is_file()  # kept; final/ is merged
    texts = ["the cat in the river", "meow near the bridge"]
    model, tokenizer = load_model(result.final_dir, head="encoder")
    expected = Embedder(tokenizer, "mean", 16, 8).embed(model, texts)
    got = st.SentenceTransformer(str(result.final_dir), device="cpu").encode(texts, convert_to_tensor=True)
    assert (got - expected).abs().max().item() < 1e-5


def test_rows_sharing_a_positive_are_not_each_others_negatives():
    import torch
    import torch.nn.functional as F

    anchors = F.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), dim=-1)
    positives = anchors.clone()
    positives[1] = positives[0]  # rows 0 and 1 share their positive text
    masked = mnrl_loss(anchors, positives, None, torch.tensor([0, 0, 1]), 20.0, False)
    unmasked = mnrl_loss(anchors, positives, None, torch.tensor([0, 1, 2]), 20.0, False)
    assert masked.item() < 0.01 < unmasked.item()  # a duplicate counted as a negative costs ~ln 2 per row


def test_rows_sharing_an_anchor_are_not_each_others_negatives():
    # One query with two relevant passages (two rows): each row's positive is right for the other row too.
    import torch
    import torch.nn.functional as F

    from tuneforge.data.records import Pair
    from tuneforge.train.contrastive import encode_pairs, retrieval_score
    from tiny import build_tiny_bert_tokenizer

    anchors = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), dim=-1)
    positives = F.normalize(torch.tensor([[1.0, 0.05], [1.0, -0.05], [0.0, 1.0]]), dim=-1)
    pos_ids = torch.tensor([0, 1, 2])
    rows = encode_pairs(build_tiny_bert_tokenizer(), [Pair("the cat", "meow"), Pair("the cat", "purr"),
                                                      Pair("the dog", "woof")], 8, False)
    assert rows["anchor_id"] == [0, 0, 1]
    masked = mnrl_loss(anchors, positives, None, pos_ids, 20.0, True, torch.tensor(rows["anchor_id"]))
    assert masked.item() < 0.01 < mnrl_loss(anchors, positives, None, pos_ids, 20.0, True).item()

    class Lookup:  # the embeddings above, by text
        table = {"the cat": anchors[0], "the dog": anchors[2], "meow": positives[0], "purr": positives[1],
                 "woof": positives[2]}

        def embed(self, model, texts):
            return torch.stack([self.table[t] for t in texts])

    pairs = [Pair("the cat", "meow"), Pair("the cat", "purr"), Pair("the dog", "woof")]
    assert retrieval_score(None, Lookup(), pairs)["accuracy_at_1"] == 1.0  # "purr" is no miss for "the cat"


def test_retrieval_ties_do_not_count_as_hits():
    # An encoder that maps every text to the same vector retrieves nothing: with ties counted in the anchor's
    # favour it scored accuracy@1 = MRR = 1.0, so a collapsed model looked perfect.
    import torch

    from tuneforge.data.records import Pair
    from tuneforge.train.contrastive import retrieval_score

    class Collapsed:
        def embed(self, model, texts):
            return torch.ones(len(texts), 4) / 2.0

    pairs = [Pair(f"query {i}", f"passage {i}") for i in range(4)]
    score = retrieval_score(None, Collapsed(), pairs)
    assert score["candidates"] == 4 and score["accuracy_at_1"] == 0.0 and score["recall_at_5"] == 1.0
    assert score["mrr"] == pytest.approx(0.25)  # last among 4 tied candidates


def test_pairs_reader_accepts_anchor_or_query_and_rejects_pairs_that_teach_nothing(tmp_path):
    from tuneforge.data import read_source
    from tuneforge.data.records import Pair

    rows = [{"anchor": "a cat", "positive": "meow"},
            {"query": "a dog", "positive": "bark", "negative": "meow"},
            {"anchor": "a cow", "positive": "a cow"},
            {"anchor": "a pig", "positive": " "},
            {"anchor": "a fox", "positive": "yip", "negative": "yip"}]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    recipe = recipe_for("unused", path, tmp_path)
    result = read_source(recipe.data.sources[0])
    assert [(r.anchor, r.positive, r.negative) for r in result.records] == [("a cat", "meow", None),
                                                                           ("a dog", "bark", "meow")]
    assert all(isinstance(r, Pair) for r in result.records)
    reasons = {issue.line: (issue.code, issue.field, issue.message) for issue in result.rejected}
    assert reasons[3][:2] == ("identical_pair", "anchor/positive") and "same text twice" in reasons[3][2]
    assert reasons[4][:2] == ("empty_content", "positive")
    assert reasons[5][:2] == ("identical_pair", "positive/negative")


def test_a_decoder_is_refused_before_loading(tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError, match="contrastive needs an encoder.*is a decoder.*minilm-l6"):
        train(recipe_for(tiny_model_dir, write_pairs(tmp_path / "p.jsonl"), tmp_path), quiet=True)


def test_options_are_validated_with_the_allowed_names(tiny_bert_dir, tmp_path):
    recipe = recipe_for(tiny_bert_dir, write_pairs(tmp_path / "p.jsonl"), tmp_path)
    recipe.method.options = {"temperature": 0.05}
    with pytest.raises(ConfigError, match="method.options.temperature.*scale, pooling, symmetric"):
        train(recipe, quiet=True)


def test_early_stopping_ends_the_run_on_a_flat_validation_loss(tiny_bert_dir, tmp_path):
    recipe = recipe_for(tiny_bert_dir, write_pairs(tmp_path / "p.jsonl"), tmp_path, epochs=40,
                        early_stopping_patience=1, early_stopping_min_delta=0.5)
    result = train(recipe, quiet=True)
    rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    val = [r["val_loss"] for r in rows if "val_loss" in r]
    assert result.status == "finished" and result.steps < 40 * 5, result.steps  # 5 steps an epoch, 40 epochs
    gains = [a - b for a, b in zip(val, val[1:])]
    assert result.steps == 5 * len(val)  # stopped at an evaluation (one per epoch)
    assert gains[-1] < 0.5 and all(g >= 0.5 for g in gains[:-1]), val  # the first gain under min_delta stopped it


def test_negatives_on_only_some_rows_fall_back_to_in_batch_negatives_with_a_warning(tiny_bert_dir, tmp_path):
    path = write_pairs(tmp_path / "p.jsonl")
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    for row in rows[::2]:
        del row["negative"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = train(recipe_for(tiny_bert_dir, path, tmp_path, max_steps=2), quiet=True)
    assert result.stats["hard_negatives"] is False and "hard negatives are not used" in result.stats["warnings"][0]


@pytest.mark.parametrize("name, kind, rows", [("contrastive", "Pair", 480), ("mlm", "Text", 160)])
def test_the_examples_read_their_data(name, kind, rows, shared_data):
    from pathlib import Path

    from tuneforge.config import load_recipe
    from tuneforge.data import read_source

    recipe = load_recipe(Path(__file__).parents[1] / "examples" / f"{name}.yaml")
    assert recipe.method.objective == name and recipe.model.name_or_path == "minilm-l6"
    result = read_source(recipe.data.sources[0])
    assert len(result.records) == rows and not result.rejected
    assert {type(r).__name__ for r in result.records} == {kind}


def test_too_few_pairs_after_rejections_says_why_and_keeps_the_rejected_rows(tiny_bert_dir, tmp_path):
    good = [{"anchor": f"the {a} in the river", "positive": f"{s} near the mill"}
            for a, s in zip(W["animal"][:6], W["sound"][:6])]
    bad = ['{"anchor": "the cat"}', '{"anchor": 5, "positive": ["meow"]}', '{"anchor": "the dog", "positive": "bark",']
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in good) + "\n".join(bad) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        train(recipe_for(tiny_bert_dir, path, tmp_path, max_steps=1), quiet=True)
    message = str(info.value)
    assert "usable training example(s)" in message and "3 row(s) were rejected" in message
    assert f"{path}:7: positive: expected" in message  # the first reason: file, line, field, expected
    (run_dir,) = tmp_path.glob("emb-*")
    rejected = [json.loads(x) for x in (run_dir / "rejected.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejected] == [7, 8, 9] and rejected[0]["field"] == "positive"
