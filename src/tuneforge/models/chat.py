"""Talk to a model with its chat template: one answer, or a multi-turn session."""

from __future__ import annotations

from typing import Any

from tuneforge.models.stopping import stop_token_ids


def chat_reply(
    model: Any,
    tokenizer: Any,
    messages: list[dict[str, str]],
    *,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
) -> str:
    """Generate the assistant's next message for `messages` (OpenAI-style dicts)."""
    import torch

    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    sampling = temperature > 0
    gen_kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": sampling,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": stop_token_ids(model, tokenizer),
    }
    if sampling:
        gen_kwargs.update(temperature=temperature, top_p=top_p)
    else:
        # Greedy decoding: silence generation_config's sampling defaults instead of warning about them.
        gen_kwargs.update(temperature=None, top_p=None, top_k=None)
    model.eval()
    with torch.inference_mode():
        output = model.generate(**inputs, **gen_kwargs)
    new_tokens = output[0][inputs["input_ids"].shape[1]:]
    return tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
