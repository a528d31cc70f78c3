"""Chunked causal-LM loss == the plain HF loss (sum, mean, gradients), prompt tokens ignored."""

from __future__ import annotations

import pytest
import torch

from tuneforge.data.render import IGNORE_INDEX
from tuneforge.train.batching import LengthGroupedBatcher
from tuneforge.train.loss import causal_lm_loss
from test_batching import make_examples


def hf_loss(model, batch):
    out = model(**batch.model_inputs(), labels=batch.labels)
    return out.loss


def grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("packing", [False, True])
def test_chunked_loss_and_grads_match_hf(tiny_tokenizer, tiny_model, packing):
    examples = make_examples(6, vocab=len(tiny_tokenizer), max_len=30)
    batcher = LengthGroupedBatcher(examples, batch_size=6, seed=0, pad_id=tiny_tokenizer.pad_token_id,
                                   packing=packing, max_len=200)
    batch = batcher.batches(0)[0]
    model = tiny_model.train()

    reference = hf_loss(model, batch)
    reference.backward()
    expected = grads(model)
    model.zero_grad()

    out = causal_lm_loss(model, batch, chunk_size=7)  # several chunks, one ragged
    n_expected = sum(sum(1 for lab in e.labels[1:] if lab != IGNORE_INDEX) for e in examples)
    assert out.n_tokens == n_expected == batch.n_label_tokens
    torch.testing.assert_close(out.loss, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.loss_sum, reference * n_expected, atol=1e-3, rtol=1e-5)
    out.loss.backward()
    got = grads(model)
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=1e-4, msg=name)
    assert 0 <= out.n_correct <= out.n_tokens


def test_prompt_tokens_do_not_change_the_loss(tiny_tokenizer, tiny_model):
    examples = make_examples(4, vocab=len(tiny_tokenizer), max_len=20)
    batch = LengthGroupedBatcher(examples, 4, 0, tiny_tokenizer.pad_token_id).batches(0)[0]
    model = tiny_model.eval()
    with torch.no_grad():
        base = causal_lm_loss(model, batch)
        # the same number from full logits, summing cross-entropy only where the next token is labelled
        logits = model(**batch.model_inputs()).logits[:, :-1]
        per_token = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), batch.labels[:, 1:], ignore_index=IGNORE_INDEX, reduction="none"
        )
        answer = batch.labels[:, 1:] != IGNORE_INDEX
        assert base.n_tokens == int(answer.sum()) < int(batch.attention_mask.sum())
        torch.testing.assert_close(base.loss_sum, per_token[answer].sum())
        # training on every token changes both the count and the loss
        batch.labels = torch.where(batch.attention_mask.bool(), batch.input_ids, IGNORE_INDEX)
        everything = causal_lm_loss(model, batch)
        assert everything.n_tokens > base.n_tokens
        assert not torch.isclose(everything.loss_sum, base.loss_sum)


def test_lora_model_matches_and_prompt_tuning_falls_back(tiny_tokenizer, tiny_model):
    from peft import LoraConfig, PromptTuningConfig, get_peft_model

    examples = make_examples(4, vocab=len(tiny_tokenizer), max_len=20)
    batch = LengthGroupedBatcher(examples, 4, 0, tiny_tokenizer.pad_token_id).batches(0)[0]
    lora = get_peft_model(tiny_model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                 init_lora_weights=False))
    reference = lora(**batch.model_inputs(), labels=batch.labels).loss
    torch.testing.assert_close(causal_lm_loss(lora, batch).loss, reference, atol=1e-5, rtol=1e-5)
    lora.unload()

    from tiny import build_tiny_llama

    prompt = get_peft_model(build_tiny_llama(tiny_tokenizer), PromptTuningConfig(task_type="CAUSAL_LM",
                                                                                 num_virtual_tokens=3))
    out = causal_lm_loss(prompt, batch)
    out.loss.backward()
    assert out.n_tokens == batch.n_label_tokens and torch.isfinite(out.loss)
    assert any(p.grad is not None for p in prompt.parameters() if p.requires_grad)


def test_micro_batches_give_the_batch_gradient(tiny_tokenizer, tiny_model):
    examples = make_examples(8, vocab=len(tiny_tokenizer), max_len=30)
    batch = LengthGroupedBatcher(examples, 8, 0, tiny_tokenizer.pad_token_id).batches(0)[0]
    model = tiny_model.train()
    causal_lm_loss(model, batch).loss.backward()
    expected = grads(model)
    model.zero_grad()
    parts = batch.split(max_tokens=40)
    assert len(parts) > 2
    for part in parts:
        (causal_lm_loss(model, part).loss_sum / batch.n_label_tokens).backward()
    for name, grad in grads(model).items():
        torch.testing.assert_close(grad, expected[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("no_grad_mode", [torch.no_grad, torch.inference_mode])
def test_validation_without_grad_skips_the_gradient_work(tiny_tokenizer, tiny_model, monkeypatch, no_grad_mode):
    from tuneforge.train import loss as loss_module

    asked = []  # the (need_h, need_w, need_b) each chunked pass was run with
    real_forward = loss_module._chunked_forward

    def spy(hidden, weight, bias, targets, chunk_size, need_h, need_w, need_b):
        asked.append((need_h, need_w, need_b))
        return real_forward(hidden, weight, bias, targets, chunk_size, need_h, need_w, need_b)

    monkeypatch.setattr(loss_module, "_chunked_forward", spy)
    examples = make_examples(6, vocab=len(tiny_tokenizer), max_len=30)
    batch = LengthGroupedBatcher(examples, 6, 0, tiny_tokenizer.pad_token_id).batches(0)[0]
    model = tiny_model.eval()

    with_grad = causal_lm_loss(model, batch, chunk_size=7)
    assert with_grad.loss_sum.requires_grad and asked == [(True, True, False)]
    with no_grad_mode():
        without = causal_lm_loss(model, batch, chunk_size=7)
    assert asked[1:] == [(False, False, False)]  # no softmax gradient, no grad buffers
    assert not without.loss_sum.requires_grad and without.loss_sum.grad_fn is None
    assert (without.n_tokens, without.n_correct) == (with_grad.n_tokens, with_grad.n_correct)
    torch.testing.assert_close(without.loss_sum, with_grad.loss_sum.detach(), atol=0, rtol=0)
