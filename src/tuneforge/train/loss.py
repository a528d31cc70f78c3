"""Causal-LM loss that only computes vocabulary logits where a label is trained.

`model(**batch).logits` materializes (B, L, V) fp32 logits for every prompt and padding position, then
autograd keeps their softmax for backward: with V=49k and prompts that are most of each row this is the
largest tensor of a step. Here the transformer body runs once, hidden states are gathered only at
positions whose *next* token is labelled, and lm_head + cross-entropy run in chunks inside one autograd
function that computes the gradients on the fly (the idea of Liger's fused linear cross-entropy), so at
most chunk_size x V logits exist at any time and none are kept for backward. Hand-written because neither
transformers nor peft offer it on CPU; the test checks it against the plain HF loss and its gradients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from tuneforge.data.render import IGNORE_INDEX
from tuneforge.train.batching import Batch


@dataclass
class LossOutput:
    loss_sum: torch.Tensor  # scalar, summed over trained tokens (divide by n_tokens for the mean)
    n_tokens: int
    n_correct: int

    @property
    def loss(self) -> torch.Tensor:
        return self.loss_sum / max(self.n_tokens, 1)


# (model, batch, chunk_size) -> LossOutput: the training loss the SFT loop optimizes (causal_lm_loss by default)
LossFn = Callable[[Any, Batch, int], LossOutput]


def _chunked_forward(hidden, weight, bias, targets, chunk_size, need_h: bool, need_w: bool, need_b: bool):
    """(loss sum, n correct, grad_h, grad_w, grad_b) chunk by chunk; each grad is None unless asked for, and
    with none asked for (validation under no_grad) no softmax gradient is computed at all."""
    grad_h = torch.empty_like(hidden) if need_h else None
    grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_w else None
    grad_b = torch.zeros_like(bias, dtype=torch.float32) if need_b else None
    loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
    correct = torch.zeros((), dtype=torch.long, device=hidden.device)
    for start in range(0, hidden.shape[0], chunk_size):
        h = hidden[start : start + chunk_size]
        y = targets[start : start + chunk_size]
        logits = F.linear(h, weight, bias).float()
        lse = torch.logsumexp(logits, -1)
        loss += (lse - logits.gather(1, y[:, None]).squeeze(1)).sum()
        correct += (logits.argmax(-1) == y).sum()
        if need_h or need_w or need_b:
            # d(sum CE)/d(logits) = softmax - onehot, computed in place: one chunk x V buffer
            grad = logits.sub_(lse[:, None]).exp_()
            grad[torch.arange(len(y), device=y.device), y] -= 1.0
            if need_h:
                grad_h[start : start + chunk_size] = (grad.to(weight.dtype) @ weight).to(hidden.dtype)
            if need_w:
                grad_w += grad.t() @ h.float()
            if need_b:
                grad_b += grad.sum(0)
    return loss, correct, grad_h, grad_w, grad_b


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """sum_i CE(h_i @ W^T (+ b), y_i), with grads for h and W computed chunk by chunk in forward."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_size):
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        need_b = bias is not None and ctx.needs_input_grad[2]
        loss, correct, grad_h, grad_w, grad_b = _chunked_forward(
            hidden, weight, bias, targets, chunk_size, need_h, need_w, need_b)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.has = (need_h, need_w, need_b)
        ctx.param_dtype = weight.dtype
        return loss, correct

    @staticmethod
    def backward(ctx, grad_loss, _grad_correct):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        need_h, need_w, need_b = ctx.has
        return (
            grad_h * grad_loss.to(grad_h.dtype) if need_h else None,
            (grad_w * grad_loss).to(ctx.param_dtype) if need_w else None,
            (grad_b * grad_loss).to(ctx.param_dtype) if need_b else None,
            None,
            None,
        )


def _unwrap(model):
    """(body, lm_head) of a *ForCausalLM (through a peft LoRA wrapper), or None when not applicable."""
    peft_config = getattr(model, "peft_config", None)
    if peft_config is not None:
        active = getattr(model, "active_adapter", None)
        config = peft_config.get(active) if isinstance(active, str) else next(iter(peft_config.values()))
        if getattr(config, "is_prompt_learning", False):
            return None  # prompt/prefix tuning inject virtual tokens inside PeftModel.forward
        model = model.get_base_model()
    body = getattr(model, "model", None)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if body is None or not isinstance(head, torch.nn.Linear) or not callable(body):
        return None
    return body, head


def _attention_dtype(body, batch: Batch):
    """Eager attention adds the mask to the scores, so a packed bool mask must become additive."""
    impl = getattr(getattr(body, "config", None), "_attn_implementation", "sdpa")
    if batch.attention_mask.dim() == 4 and impl == "eager":
        return next(body.parameters()).dtype
    return None


def _fallback_loss(model, batch: Batch) -> LossOutput:
    """Full logits: for peft prompt-learning models and anything without a (body, lm_head) split."""
    out = model(**batch.model_inputs())
    logits = out.logits[:, -batch.labels.shape[1] :]  # prompt learning prepends virtual tokens
    targets = batch.labels[:, 1:]
    logits = logits[:, :-1].float()
    mask = targets != IGNORE_INDEX
    loss_sum = F.cross_entropy(logits[mask], targets[mask], reduction="sum")
    n_correct = int((logits[mask].argmax(-1) == targets[mask]).sum())
    return LossOutput(loss_sum, int(mask.sum()), n_correct)


def labelled_hidden(model, batch: Batch):
    """(hidden states at positions whose next token is trained (N, H), lm_head, their targets (N,)), or None
    for models without a (body, lm_head) split. Other losses over the same positions start here too."""
    parts = _unwrap(model)
    if parts is None:
        return None
    body, head = parts
    out = body(**batch.model_inputs(_attention_dtype(body, batch)), use_cache=False)
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    targets = batch.labels[:, 1:]
    mask = targets != IGNORE_INDEX
    return hidden[:, :-1][mask], head, targets[mask]


def causal_lm_loss(model, batch: Batch, chunk_size: int = 1024) -> LossOutput:
    """Summed next-token cross-entropy over the batch's labelled tokens, + token count and accuracy."""
    parts = labelled_hidden(model, batch)
    if parts is None:
        return _fallback_loss(model, batch)
    selected, head, targets = parts
    inputs = (selected, head.weight, head.bias, targets, chunk_size)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs[:3]):
        loss_sum, correct = _ChunkedLinearCrossEntropy.apply(*inputs)
    else:
        # Autograd functions see needs_input_grad from requires_grad even under no_grad / inference_mode,
        # so validation would pay for the gradients it then drops: go around the function instead.
        loss_sum, correct, *_ = _chunked_forward(*inputs, need_h=False, need_w=False, need_b=False)
    return LossOutput(loss_sum, len(targets), int(correct))
