"""Optimizer groups, layer-wise LR decay, schedulers and `auto` hyperparameters."""

from __future__ import annotations

import pytest
import torch

from test_train_common import make_recipe
from tuneforge.train.auto import auto_epochs, resolve_auto
from tuneforge.train.methods import apply_method
from tuneforge.train.optim import build_optimizer, build_scheduler, param_groups


def _recipe(tmp_path, *overrides):
    return make_recipe(tmp_path, tmp_path, *overrides, data=[{"path": "unused.jsonl"}])


def test_layerwise_decay_gives_expected_rates(tmp_path, tiny_model, tiny_tokenizer):
    recipe = _recipe(tmp_path, "method.type=full", "hparams.layerwise_lr_decay=0.5", "hparams.weight_decay=0.1")
    model = apply_method(tiny_model, tiny_tokenizer, recipe.method, recipe.hparams)
    opt = build_optimizer(model, recipe.hparams, 1.0)
    rate = {}
    for group in opt.param_groups:
        for p in group["params"]:
            rate[id(p)] = (group["lr"], group["weight_decay"])
    names = dict(model.named_parameters())
    # 2 layers: embeddings depth 0, layer i depth i+1, final norm depth 3 = top
    assert rate[id(names["model.embed_tokens.weight"])] == (0.125, 0.1)
    assert rate[id(names["model.layers.0.self_attn.q_proj.weight"])] == (0.25, 0.1)
    assert rate[id(names["model.layers.1.mlp.up_proj.weight"])] == (0.5, 0.1)
    assert rate[id(names["model.layers.1.input_layernorm.weight"])] == (0.5, 0.0)  # norms: no decay
    assert rate[id(names["model.norm.weight"])] == (1.0, 0.0)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(names)


def test_layerwise_decay_applies_to_lora_adapters(tmp_path, tiny_model, tiny_tokenizer):
    recipe = _recipe(tmp_path, "hparams.layerwise_lr_decay=0.8")
    model = apply_method(tiny_model, tiny_tokenizer, recipe.method, recipe.hparams)
    by_depth = {g["depth"]: g["lr"] for g in param_groups(model, recipe.hparams, 1e-3)}
    assert by_depth == pytest.approx({1: 1e-3 * 0.8**2, 2: 1e-3 * 0.8})


def test_without_decay_every_group_has_the_base_rate(tmp_path, tiny_model, tiny_tokenizer):
    recipe = _recipe(tmp_path, "method.type=full")
    model = apply_method(tiny_model, tiny_tokenizer, recipe.method, recipe.hparams)
    assert {g["lr"] for g in param_groups(model, recipe.hparams, 3e-4)} == {3e-4}


@pytest.mark.parametrize("name, kind", [("adamw", "AdamW"), ("adam", "Adam"), ("sgd", "SGD"),
                                        ("rmsprop", "RMSprop"), ("adafactor", "Adafactor")])
def test_optimizers_build_and_step(name, kind, tmp_path, tiny_model, tiny_tokenizer):
    recipe = _recipe(tmp_path, f"hparams.optimizer={name}", "hparams.momentum=0.5")
    model = apply_method(tiny_model, tiny_tokenizer, recipe.method, recipe.hparams)
    opt = build_optimizer(model, recipe.hparams, 1e-2)
    assert type(opt).__name__ == kind
    if name == "sgd":
        assert opt.param_groups[0]["momentum"] == 0.5
    p = next(p for p in model.parameters() if p.requires_grad)
    before = p.detach().clone()
    p.grad = torch.ones_like(p)
    opt.step()
    assert not torch.equal(before, p)


@pytest.mark.parametrize("scheduler, at_end", [("linear", 0.0), ("cosine", 0.0), ("constant", 1.0),
                                               ("constant_with_warmup", 1.0), ("cosine_with_restarts", 0.0)])
def test_schedulers_warm_up_then_follow_their_shape(scheduler, at_end, tmp_path, tiny_model, tiny_tokenizer):
    recipe = _recipe(tmp_path, f"hparams.scheduler={scheduler}", "hparams.warmup_ratio=0.2")
    model = apply_method(tiny_model, tiny_tokenizer, recipe.method, recipe.hparams)
    opt = build_optimizer(model, recipe.hparams, 1.0)
    sched = build_scheduler(opt, recipe.hparams, 10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected_first = 1.0 if scheduler == "constant" else 0.0  # 2 warm-up steps from 0
    assert lrs[0] == pytest.approx(expected_first)
    assert max(lrs) == pytest.approx(1.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(at_end, abs=1e-6)


@pytest.mark.parametrize("n, epochs", [(5, 10), (20, 5), (40, 3), (1000, 3), (20000, 1)])
def test_auto_epochs_target_about_three(n, epochs):
    assert auto_epochs(n) == epochs


def test_auto_lr_depends_on_method_and_is_recorded(tmp_path):
    for method, lr in (("full", 2e-5), ("lora", 2e-4), ("prompt_tuning", 3e-2)):
        recipe = _recipe(tmp_path, f"method.type={method}", "hparams.learning_rate=auto", "hparams.epochs=auto")
        resolved, chosen = resolve_auto(recipe, 50)
        assert resolved.hparams.learning_rate == lr and chosen["hparams.learning_rate"] == lr
        assert resolved.hparams.epochs == 3.0
        assert recipe.hparams.learning_rate == "auto"  # the original is untouched
