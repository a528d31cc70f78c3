"""Tokenization cache: stats, reuse without re-tokenizing, invalidation on template / cutoff / data change."""

from __future__ import annotations

import pytest

import tuneforge.train.tokcache as tokcache
from tuneforge.data.records import Conversation, Labelled, Text, Turn
from tuneforge.errors import DataError
from tuneforge.train.threads import configure_threads
from tuneforge.train.tokcache import tokenize_dataset


def records():
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 10
    return [
        Conversation(turns=[Turn("user", "hello"), Turn("assistant", "hi who are you")]),
        Conversation(turns=[Turn("user", "What is the capital of France?"), Turn("assistant", "Paris.")]),
        Conversation(turns=[Turn("user", long_prompt), Turn("assistant", "ok")]),  # answer beyond cutoff 64
        Text("Translate to French: good morning. Bonjour."),
    ]


@pytest.fixture()
def count_renders(monkeypatch):
    calls = {"n": 0}
    real = tokcache.render_conversation

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(tokcache, "render_conversation", counting)
    return calls


def test_stats_and_reuse(tmp_path, tiny_tokenizer, count_renders):
    first = tokenize_dataset(records(), tiny_tokenizer, 64, "answer", tmp_path)
    assert not first.from_cache and count_renders["n"] == 3
    assert first.stats["dropped_no_labels"] == 1 and first.stats["truncated"] == 1
    assert first.stats["examples"] == len(first.examples) == 3
    assert first.stats["tokens"] == sum(len(e.input_ids) for e in first.examples)
    assert first.stats["label_tokens"] == sum(e.n_label_tokens for e in first.examples)

    again = tokenize_dataset(records(), tiny_tokenizer, 64, "answer", tmp_path)
    assert again.from_cache and count_renders["n"] == 3  # nothing re-rendered
    assert [e.input_ids for e in again.examples] == [e.input_ids for e in first.examples]
    assert [e.labels for e in again.examples] == [e.labels for e in first.examples]
    assert again.stats == first.stats


def test_invalidation(tmp_path, tiny_tokenizer):
    base = tokenize_dataset(records(), tiny_tokenizer, 64, "answer", tmp_path)
    assert tokenize_dataset(records(), tiny_tokenizer, 65, "answer", tmp_path).cache_path != base.cache_path
    assert tokenize_dataset(records(), tiny_tokenizer, 64, "all", tmp_path).cache_path != base.cache_path
    changed = records()
    changed[0].turns[1].content = "hi"
    assert tokenize_dataset(changed, tiny_tokenizer, 64, "answer", tmp_path).cache_path != base.cache_path

    import copy

    other = copy.deepcopy(tiny_tokenizer)
    other.chat_template = tiny_tokenizer.chat_template.replace("helpful assistant", "terse assistant")
    new = tokenize_dataset(records(), other, 64, "answer", tmp_path)
    assert new.cache_path != base.cache_path and not new.from_cache
    assert new.examples[0].input_ids != base.examples[0].input_ids


def test_wrong_record_kind_is_a_data_error(tiny_tokenizer):
    with pytest.raises(DataError, match="record 0"):
        tokenize_dataset([Labelled("x", "y")], tiny_tokenizer, 64, "answer", None)


def test_configure_threads():
    import torch

    n = configure_threads(1)
    assert n == 1 == torch.get_num_threads()
    assert configure_threads(None) >= 1
