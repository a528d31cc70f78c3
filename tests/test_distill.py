"""Distillation: the loss, the layer-cut student, a run that moves the student toward its teacher, refusals."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from test_train_common import make_recipe
from tiny import build_tiny_llama, build_tiny_tokenizer
from trained_tiny import train_tiny_run
from tuneforge.cli import main
from tuneforge.config.recipe import dump_recipe
from tuneforge.errors import ConfigError, ModelError
from tuneforge.export.prune import drop_layers, select_layers
from tuneforge.train import train
from tuneforge.train.distill import DistillLoss
from tuneforge.train.loss import causal_lm_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DISTILL = ("method.objective=distill", "method.type=full", "hparams.learning_rate=1e-3", "hparams.epochs=6",
           "hparams.batch_size=8", "data.test_ratio=0.25", "eval.metrics=[likelihood]")


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory, tiny_model_dir):
    return train_tiny_run(tmp_path_factory.mktemp("teacher"), tiny_model_dir)


def _batch(tokenizer):
    from tuneforge.data.records import Conversation, Turn
    from tuneforge.data.render import render_conversation
    from tuneforge.train.batching import LengthGroupedBatcher

    conv = [Conversation(turns=[Turn("user", f"Classify the sentiment: hello {i}"), Turn("assistant", "positive")])
            for i in range(4)]
    examples = [render_conversation(c, tokenizer, 64, loss_on="answer") for c in conv]
    return LengthGroupedBatcher(examples, 4, 0, tokenizer.pad_token_id).batches(0)[0]


def test_loss_is_ce_at_alpha_0_and_zero_kl_against_itself(tiny_tokenizer):
    student, other = build_tiny_llama(tiny_tokenizer, seed=0), build_tiny_llama(tiny_tokenizer, seed=1)
    batch, vocab = _batch(tiny_tokenizer), len(tiny_tokenizer)
    ce = causal_lm_loss(student, batch)
    plain = DistillLoss(other, temperature=2.0, alpha=0.0, vocab=vocab)(student, batch)
    assert plain.n_tokens == ce.n_tokens > 0
    assert torch.allclose(plain.loss_sum, ce.loss_sum, rtol=1e-5)  # alpha 0: plain SFT
    self_kl = DistillLoss(copy.deepcopy(student), temperature=2.0, alpha=1.0, vocab=vocab)(student, batch)
    assert float(self_kl.loss_sum.detach()) == pytest.approx(0.0, abs=1e-4)
    kl = DistillLoss(other, temperature=2.0, alpha=1.0, vocab=vocab)(student, batch)
    assert float(kl.loss_sum.detach()) > 0.01 and kl.loss_sum.requires_grad
    kl.loss_sum.backward()
    assert student.model.layers[0].mlp.up_proj.weight.grad.abs().sum() > 0


def test_layer_selection_and_the_cut_copy_keeps_the_teachers_weights(tiny_tokenizer):
    assert select_layers(30, 15) == [0, 2, 4, 6, 8, 10, 12, 15, 17, 19, 21, 23, 25, 27, 29]
    assert select_layers(30, 30) == list(range(30)) and select_layers(2, 1) == [0]
    assert select_layers(4, [1, 3]) == [1, 3]
    for bad in (0, 31, [3, 1], [0, 30], [1, 1]):
        with pytest.raises(ConfigError, match="student_layers"):
            select_layers(30, bad)
    teacher = build_tiny_llama(tiny_tokenizer)
    student = drop_layers(copy.deepcopy(teacher), [1])
    assert student.config.num_hidden_layers == 1 and len(student.model.layers) == 1
    assert torch.equal(student.model.layers[0].self_attn.q_proj.weight, teacher.model.layers[1].self_attn.q_proj.weight)
    assert torch.equal(student.model.embed_tokens.weight, teacher.model.embed_tokens.weight)
    assert student.model.layers[0].self_attn.layer_idx == 0  # the KV cache has one slot now
    ids = tiny_tokenizer("hello hi", return_tensors="pt").input_ids
    out = student.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=tiny_tokenizer.pad_token_id)
    assert out.shape[1] == ids.shape[1] + 3


def test_distilling_a_half_depth_copy_moves_it_toward_the_teacher(tmp_path, teacher_run):
    # alpha 1: pure distillation (with a CE share the student can overtake this small teacher and drift away)
    recipe = make_recipe(tmp_path, teacher_run.final_dir, *DISTILL, "method.options.student_layers=1",
                         "method.options.alpha=1.0", n=32)
    result = train(recipe, quiet=True)
    stats = result.stats["distill"]
    before, after, teacher = stats["student_before"], stats["student_after"], stats["teacher_scores"]
    assert stats["held_out"] == "test" and before["tokens"] == after["tokens"] > 0
    assert after["kl_to_teacher"] < 0.5 * before["kl_to_teacher"]
    assert after["loss"] < before["loss"] and teacher["loss"] < before["loss"]
    assert result.stats["student_layers"] == {"of": 2, "kept": [0]}
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in rows if "train_loss" in r]
    assert losses[-1] < losses[0]
    saved = AutoModelForCausalLM.from_pretrained(result.final_dir)  # a normal 1-layer model
    assert saved.config.num_hidden_layers == 1
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["stats"]["distill"]["student_after"]["loss"] == pytest.approx(after["loss"])
    assert result.stats["test_after"]["loss"] == pytest.approx(after["loss"], rel=1e-4)  # same split, same loss


def test_a_lora_student_learns_from_a_teacher_run_found_by_name(tmp_path, tiny_model_dir, teacher_run):
    runs = teacher_run.run_dir.parent
    recipe = make_recipe(tmp_path, tiny_model_dir, *DISTILL, "method.type=lora", "hparams.learning_rate=1e-2",
                         "method.options.alpha=1.0", f"method.options.teacher={teacher_run.run_dir.name}",
                         f"output_dir={runs}", n=32)
    result = train(recipe, quiet=True)
    stats = result.stats["distill"]
    assert stats["teacher"] == f"run {teacher_run.run_dir.name}"
    assert (result.final_dir / "adapter_config.json").is_file()
    assert stats["student_after"]["kl_to_teacher"] <= stats["student_before"]["kl_to_teacher"]


def test_a_teacher_with_another_tokenizer_is_refused_before_the_run_starts(tmp_path, tiny_model_dir):
    other_tok = build_tiny_tokenizer(vocab_size=400)
    other = tmp_path / "other"
    build_tiny_llama(other_tok).save_pretrained(other)
    other_tok.save_pretrained(other)
    recipe = make_recipe(tmp_path, tiny_model_dir, *DISTILL, f"method.options.teacher={other}", n=32)
    with pytest.raises(ConfigError, match="different tokenizer.*same tokenizer"):
        train(recipe, quiet=True)
    assert not list((tmp_path / "runs").glob("t-*"))  # no run folder (only the token cache)


def test_a_teacher_that_does_not_exist_names_the_option(tmp_path, tiny_model_dir):
    recipe = make_recipe(tmp_path, tiny_model_dir, *DISTILL, f"method.options.teacher={tmp_path / 'nope'}", n=32)
    with pytest.raises(ModelError, match=r"^method.options.teacher: model `.*nope` not found"):
        train(recipe, quiet=True)
    assert not list((tmp_path / "runs").glob("t-*"))


@pytest.mark.parametrize("override, message", [
    ("method.options.alpha=1.5", "method.options.alpha: Input should be less than or equal to 1"),
    ("method.options.temprature=2", "temprature.*options of objective=distill: teacher, temperature"),
    ("method.options.student_layers=5", "student_layers: expected 1 to 2"),
    ("method.type=prompt_tuning", "prompt methods add virtual tokens"),
])
def test_bad_options_fail_with_the_field(tmp_path, tiny_model_dir, override, message):
    recipe = make_recipe(tmp_path, tiny_model_dir, *DISTILL, "method.options.student_layers=1", override, n=32)
    with pytest.raises(ConfigError, match=message):
        train(recipe, quiet=True)


@pytest.mark.parametrize("extra, message", [
    ((), "method.options.teacher: required"),
    (("method.type=lora", "method.options.student_layers=1"), "full or freeze"),
])
def test_cli_prints_one_line_for_a_missing_teacher_or_a_lora_cut_student(tmp_path, tiny_model_dir, capsys,
                                                                         extra, message):
    path = tmp_path / "r.yaml"
    dump_recipe(make_recipe(tmp_path, tiny_model_dir, *DISTILL, *extra, n=32), path)
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr()
    assert message in err.out + err.err and "Traceback" not in err.out + err.err


def test_the_example_recipe_parses_and_points_at_real_data():
    from conftest import REPO_ROOT
    from tuneforge.config.recipe import load_recipe
    from tuneforge.train.distill import parse_options

    recipe = load_recipe(REPO_ROOT / "examples" / "distill.yaml")
    options = parse_options(recipe)
    assert recipe.method.objective == "distill" and options.teacher is None and options.student_layers == 20
    assert all(Path(s.path).is_file() for s in recipe.data.sources)
