"""evaluate_model / compare_models on the tiny Llama: likelihood, batched generation, outputs, ranking."""

from __future__ import annotations

import json

import pytest
import torch

from tuneforge.data.records import Conversation, Labelled, Turn
from tuneforge.data.render import render_conversation
from tuneforge.evaluate.api import evaluate_model
from tuneforge.evaluate.compare import compare_models
from tuneforge.evaluate.examples import to_examples
from tuneforge.evaluate.generate import GenerationSettings, generate_answers


pytestmark = pytest.mark.usefixtures("one_torch_thread")


SENTIMENT = [
    ("Classify the sentiment: I love this product.", "positive"),
    ("Classify the sentiment: this is terrible.", "negative"),
]


def _labelled(n: int = 6, groups: bool = False) -> list[Labelled]:
    rows = []
    for i in range(n):
        text, label = SENTIMENT[i % 2]
        rows.append(Labelled(text=text, label=label, groups={"group": "ab"[i // 3 % 2]} if groups else {}))
    return rows


def _chat(prompt: str, answer: str) -> Conversation:
    return Conversation(turns=[Turn("user", prompt), Turn("assistant", answer)])


def _train_on(model, tokenizer, records, steps: int = 40):
    """A few full-batch steps on the answers, so the model gets the test set right."""
    rendered = [render_conversation(ex.conversation, tokenizer, 128) for ex in to_examples(records)]
    width = max(len(r.input_ids) for r in rendered)
    ids = torch.full((len(rendered), width), tokenizer.pad_token_id)
    labels = torch.full((len(rendered), width), -100)
    for i, r in enumerate(rendered):
        ids[i, : len(r.input_ids)] = torch.tensor(r.input_ids)
        labels[i, : len(r.labels)] = torch.tensor(r.labels)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=(ids != tokenizer.pad_token_id).long(), labels=labels).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
    model.eval()
    return model


def test_loss_matches_transformers_loss(tiny_model, tiny_tokenizer):
    conv = _chat("What is the capital of France?", "The capital of France is Paris.")
    result = evaluate_model(tiny_model, tiny_tokenizer, [conv], ["likelihood"])
    r = render_conversation(conv, tiny_tokenizer, 1024)
    with torch.no_grad():
        expected = tiny_model(input_ids=torch.tensor([r.input_ids]), labels=torch.tensor([r.labels])).loss.item()
    assert result.metrics["loss"] == pytest.approx(expected, rel=1e-4)
    assert result.metrics["perplexity"] == pytest.approx(torch.tensor(expected).exp().item(), rel=1e-4)
    assert 0.0 <= result.metrics["token_accuracy"] <= 1.0
    assert result.examples[0]["prediction"] is None  # likelihood only: nothing generated


def _noisy(model):
    """Large random weights: the untrained model then emits varied tokens instead of only newlines."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    return model


def test_batched_left_padded_generation_matches_one_by_one(tiny_model, tiny_tokenizer):
    model = _noisy(tiny_model)
    prompts = ["hi", "What is the capital of France?", "Give three tips for staying healthy. Eat well", "who are you"]
    examples = to_examples([_chat(p, "x") for p in prompts])
    batched = generate_answers(model, tiny_tokenizer, examples, GenerationSettings(6, batch_size=4))
    single = generate_answers(model, tiny_tokenizer, examples, GenerationSettings(6, batch_size=1))
    assert len(set(single)) == len(prompts) and all(single)  # distinct, non-empty: padding errors would show
    assert batched == single


def test_outputs_one_prediction_row_per_example(tiny_model, tiny_tokenizer, tmp_path):
    records = _labelled(6, groups=True)
    result = evaluate_model(tiny_model, tiny_tokenizer, records, max_new_tokens=4, out_dir=tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == len(records)
    assert [r["index"] for r in rows] == list(range(len(records)))
    assert {"prompt", "reference", "prediction", "scores", "groups"} <= set(rows[0])
    assert rows[0]["reference"] == "positive" and "loss" in rows[0]["scores"]
    assert result.task == "label" and result.labels == ["negative", "positive"]
    assert result.bias is not None and "group" in result.bias["attributes"]
    assert json.loads((tmp_path / "report.json").read_text())["models"][0]["n_examples"] == 6


def test_compare_ranks_trained_model_above_untrained(tiny_tokenizer, tmp_path):
    from tiny import build_tiny_llama

    records = _labelled(6)
    trained = _train_on(build_tiny_llama(tiny_tokenizer, seed=0), tiny_tokenizer, records)
    untrained = build_tiny_llama(tiny_tokenizer, seed=1)
    result = compare_models(
        [("untrained", untrained, tiny_tokenizer), ("trained", trained, tiny_tokenizer)],
        records, max_new_tokens=4, out_dir=tmp_path,
    )
    assert result.ranked_by == "accuracy"
    assert [r.name for r in result.results] == ["trained", "untrained"]
    assert result.best.metrics["accuracy"] == 1.0
    assert result.results[1].metrics["loss"] > result.best.metrics["loss"]
    assert (tmp_path / "predictions" / "trained.jsonl").is_file()
    header, rows = result.table()
    assert rows[0][:2] == ["1", "trained"] and "accuracy" in header


def test_calibration_saved_with_run_and_reused(tiny_tokenizer, tmp_path):
    from tiny import build_tiny_llama

    records = _labelled(8)
    model = _train_on(build_tiny_llama(tiny_tokenizer, seed=0), tiny_tokenizer, records, steps=15)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    first = evaluate_model(model, tiny_tokenizer, records, ["calibration"], val_records=records, run_dir=run_dir)
    assert first.calibration["fitted_on"] == 8
    assert (run_dir / "calibration.json").is_file()
    again = evaluate_model(model, tiny_tokenizer, records, ["calibration"], run_dir=run_dir)
    assert again.calibration["fitted_on"] == 0
    assert again.calibration["temperature"] == pytest.approx(first.calibration["temperature"])
    assert again.metrics["ece_calibrated"] == pytest.approx(first.metrics["ece_calibrated"])
    assert first.metrics["label_accuracy"] == 1.0  # trained on these answers: the right label scores highest


def test_group_field_names_the_audit_attribute(tiny_model, tiny_tokenizer):
    convs = [Conversation(turns=[Turn("user", f"q{i}"), Turn("assistant", "hello there friend")],
                          meta={"dialect": "ab"[i % 2]}) for i in range(4)]
    result = evaluate_model(tiny_model, tiny_tokenizer, convs, ["exact_match"], max_new_tokens=2,
                            group_field="dialect")
    entry = result.bias["attributes"]["dialect"]
    assert set(entry["by_group"]) == {"a", "b"} and entry["status"] == "pass"  # both groups equally wrong


def test_classifier_head_predictions_and_calibration(tiny_tokenizer):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, pad_token_id=tiny_tokenizer.pad_token_id,
        id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1},
    )
    model = LlamaForSequenceClassification(config).eval()
    records = _labelled(6)
    result = evaluate_model(model, tiny_tokenizer, records, ["auto", "calibration"], val_records=records)
    assert result.labels == ["negative", "positive"]
    assert "loss" not in result.metrics  # a head has no answer-token likelihood
    assert {row["prediction"] for row in result.examples} <= {"negative", "positive"}
    # The head's own argmax is the prediction, so generation accuracy equals label-score accuracy.
    assert result.metrics["accuracy"] == pytest.approx(result.metrics["label_accuracy"])
    assert result.calibration["source"] == "classifier-head" and result.calibration["fitted_on"] == 6


def test_text_and_preference_records(tiny_model, tiny_tokenizer):
    from tuneforge.data.records import Preference, Text

    lm = evaluate_model(tiny_model, tiny_tokenizer, [Text("The quick brown fox jumps over the lazy dog.")])
    assert lm.task == "lm" and set(lm.metrics) == {"loss", "perplexity", "token_accuracy"}
    pref = Preference(prompt=Conversation(turns=[Turn("user", "hi")]), chosen="hello", rejected="go away")
    result = evaluate_model(tiny_model, tiny_tokenizer, [pref], ["exact_match"], max_new_tokens=2)
    assert result.examples[0]["reference"] == "hello" and result.task == "text"


def test_label_generation_budget_is_capped(tiny_model, tiny_tokenizer):
    result = evaluate_model(_noisy(tiny_model), tiny_tokenizer, _labelled(4), ["accuracy"], max_new_tokens=128)
    longest = max(len(tiny_tokenizer(lab, add_special_tokens=False)["input_ids"]) for lab in result.labels)
    assert result.settings["max_new_tokens_used"] == longest + 8
    assert all(len(row["prediction"]) < 8 * (longest + 8) for row in result.examples)  # not 128 tokens of text
