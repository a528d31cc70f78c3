"""Where a model's turn ends: the end-of-turn markers of common chat templates and their token ids.

One place for rendering (which tokens get labels), chat and evaluation (where generation stops).
"""

from __future__ import annotations

from typing import Any

END_OF_TURN_MARKERS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "</s>", "<|endoftext|>")


def has_token(tokenizer: Any, token: str) -> bool:
    # A single-token lookup: `token in tokenizer.get_vocab()` builds the whole vocabulary dict
    # (0.24 s for SmolLM2's 49k entries), which made rendering take over a second per conversation.
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None:
        return False
    return token_id != tokenizer.unk_token_id or token == tokenizer.unk_token


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """EOS (tokenizer's and generation config's) plus every end-of-turn marker the tokenizer has."""
    ids: list[int] = []
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (tokenizer.eos_token_id, configured):
        if isinstance(value, int):
            ids.append(value)
        elif isinstance(value, (list, tuple)):
            ids.extend(int(v) for v in value)
    ids.extend(tokenizer.convert_tokens_to_ids(m) for m in END_OF_TURN_MARKERS if has_token(tokenizer, m))
    return list(dict.fromkeys(ids))
