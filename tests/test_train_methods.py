"""Methods: each trains with falling loss, touches only its own parameters, and reports its size."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch

from test_train_common import PROMPTS, make_recipe
from tuneforge.data.records import Conversation, Turn
from tuneforge.errors import ConfigError, UnsupportedHere
from tuneforge.train import train
from tuneforge.train.methods import apply_method, count_parameters, decoder_layers

METHOD_LR = {"full": 3e-3, "freeze": 3e-3, "lora": 1e-2, "prompt_tuning": 0.3, "p_tuning": 3e-3,
             "prefix_tuning": 0.1}


@pytest.mark.parametrize("method", sorted(METHOD_LR))
def test_every_method_trains_and_loss_falls(method, tmp_path, tiny_model_dir):
    recipe = make_recipe(tmp_path, tiny_model_dir, f"method.type={method}",
                         f"hparams.learning_rate={METHOD_LR[method]}", "method.freeze.trainable_last_n=1")
    result = train(recipe, quiet=True)
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in rows if "train_loss" in r]
    assert len(losses) == 6  # 12 examples in one batch, 6 epochs
    assert losses[-1] < losses[0] - 0.05, losses
    assert result.status == "finished" and (result.final_dir / "tokenizer_config.json").is_file()
    trainable, total = result.stats["trainable_params"], result.stats["total_params"]
    assert 0 < trainable <= total
    assert (trainable == total) == (method == "full")


def _records(n=12):
    return [Conversation([Turn("user", f"Classify the sentiment: {PROMPTS[i % 8]}"),
                          Turn("assistant", "positive" if i % 2 else "negative")]) for i in range(n)]


def _train_steps(model, tokenizer, recipe, steps=3):
    """A few real optimizer steps through the engine's step function."""
    from tuneforge.train.batching import LengthGroupedBatcher
    from tuneforge.train.optim import build_optimizer, build_scheduler
    from tuneforge.train.sft import train_step
    from tuneforge.train.tokcache import tokenize_dataset

    examples = tokenize_dataset(_records(), tokenizer, 128, "answer").examples
    batches = list(LengthGroupedBatcher(examples, 16, 0, tokenizer.pad_token_id).batches(0))
    opt = build_optimizer(model, recipe.hparams, float(recipe.hparams.learning_rate))
    sched = build_scheduler(opt, recipe.hparams, steps)
    for _ in range(steps):
        train_step(model, opt, sched, batches, recipe, torch.device("cpu"), contextlib.nullcontext)


@pytest.mark.parametrize("method", ["lora", "prompt_tuning", "p_tuning", "prefix_tuning", "freeze"])
def test_method_changes_only_its_own_parameters(method, tmp_path, tiny_model, tiny_tokenizer):
    recipe = make_recipe(tmp_path, tmp_path, f"method.type={method}", "method.freeze.trainable_last_n=1",
                         "method.lora.dropout=0.0", data=[{"path": "unused.jsonl"}])
    model = apply_method(tiny_model, tiny_tokenizer, recipe.method, recipe.hparams)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    _train_steps(model, tiny_tokenizer, recipe)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed, "nothing was trained"
    assert changed <= trainable
    if method == "lora":
        assert trainable and all("lora_" in n for n in trainable)
    elif method == "freeze":
        assert all(".layers.1." in n for n in trainable)
        frozen_layer = decoder_layers(model)[0]
        for name, p in frozen_layer.named_parameters():
            assert torch.equal(p, before[f"model.layers.0.{name}"])  # bit-identical
    else:
        assert all("prompt_encoder" in n for n in trainable)


def test_freeze_first_n_and_head(tmp_path, tiny_model, tiny_tokenizer):
    recipe = make_recipe(tmp_path, tmp_path, "method.type=freeze", "method.freeze.freeze_first_n=1",
                         "method.freeze.train_head=true", data=[{"path": "unused.jsonl"}])
    model = apply_method(tiny_model, tiny_tokenizer, recipe.method, recipe.hparams)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("model.layers.1.") for n in names)
    assert not any(n.startswith("model.layers.0.") for n in names)
    assert "model.norm.weight" in names
    assert count_parameters(model)[0] == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_prompt_init_text_copies_token_embeddings(tmp_path, tiny_model, tiny_tokenizer):
    recipe = make_recipe(tmp_path, tmp_path, "method.type=prompt_tuning", "method.prompt.num_virtual_tokens=5",
                         "method.prompt.init_text=positive or negative", data=[{"path": "unused.jsonl"}])
    model = apply_method(tiny_model, tiny_tokenizer, recipe.method, recipe.hparams)
    ids = tiny_tokenizer("positive or negative", add_special_tokens=False)["input_ids"]
    ids = (ids * 5)[:5]
    virtual = model.prompt_encoder["default"].embedding.weight
    assert torch.equal(virtual, model.get_input_embeddings().weight[ids])


def test_dropout_overrides_reach_the_modules(tmp_path, tiny_model, tiny_tokenizer):
    recipe = make_recipe(tmp_path, tmp_path, "method.type=full", "hparams.attention_dropout=0.2",
                         data=[{"path": "unused.jsonl"}])
    model = apply_method(tiny_model, tiny_tokenizer, recipe.method, recipe.hparams)
    assert model.config.attention_dropout == 0.2
    assert model.model.layers[0].self_attn.attention_dropout == 0.2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
def test_qlora_on_cpu_fails_before_loading(tmp_path):
    recipe = make_recipe(tmp_path, tmp_path / "no-such-model", "method.type=qlora",
                         data=[{"path": str(tmp_path / "no-such-data.jsonl")}])
    with pytest.raises(UnsupportedHere, match="method.type=lora"):
        train(recipe, quiet=True)  # a load attempt would raise DataError/ModelError instead
    assert not (tmp_path / "runs").exists()


def test_unknown_lora_target_lists_the_choices(tmp_path, tiny_model, tiny_tokenizer):
    recipe = make_recipe(tmp_path, tmp_path, "method.lora.target_modules=[q_proj, qkv]",
                         data=[{"path": "unused.jsonl"}])
    with pytest.raises(ConfigError, match=r"\['qkv'\] not found.*q_proj"):
        apply_method(tiny_model, tiny_tokenizer, recipe.method, recipe.hparams)


def test_unsupported_objective_is_clear():
    # Every objective a recipe can name is wired in now; an engine without one (an older build) still says so.
    from tuneforge.config.sections import MethodConfig
    from tuneforge.train.methods import check_method_supported

    method = MethodConfig().model_copy(update={"objective": "ranking_loss"})
    with pytest.raises(UnsupportedHere, match="objective=ranking_loss is not supported.*supported: .*contrastive"):
        check_method_supported(method)


@pytest.mark.parametrize("override, field, allowed", [
    ("method.type=lorra", "method.type", "'lora'"),
    ("hparams.scheduler=cosin", "hparams.scheduler", "'cosine'"),
    ("hparams.optimizer=adamww", "hparams.optimizer", "'adamw'"),
    ("hparams.lerning_rate=0.1", "hparams.lerning_rate", "learning_rate"),
])
def test_bad_recipe_values_name_field_and_choices(override, field, allowed, tmp_path):
    with pytest.raises(ConfigError) as err:
        make_recipe(tmp_path, tmp_path, override, data=[{"path": "x.jsonl"}])
    assert field in str(err.value) and allowed in str(err.value)


def test_freeze_rules_are_exclusive(tmp_path):
    with pytest.raises(ConfigError, match="either `trainable_last_n` or `freeze_first_n`"):
        make_recipe(tmp_path, tmp_path, "method.freeze.trainable_last_n=1", "method.freeze.freeze_first_n=1",
                    data=[{"path": "x.jsonl"}])
