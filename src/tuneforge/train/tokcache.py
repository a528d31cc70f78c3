"""Tokenize a dataset once: rendered examples cached on disk, keyed by everything that changes them.

The key hashes the records' content, the tokenizer's identity (its name and a hash of its full
serialization or vocabulary), the chat template, cutoff_len, loss_on and a render version. The cache is
one .npz (flat int32 ids/labels + offsets) and a .json of stats, written atomically, so a rerun or a
resumed job skips tokenization and a stale cache can never be read for a changed template or cutoff.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tuneforge.data.records import Conversation, Text, record_to_dict
from tuneforge.data.render import LossOn, RenderedExample, render_conversation, render_text
from tuneforge.errors import DataError

RENDER_VERSION = 1  # bump when render.py changes what it produces


@dataclass
class TokenizedDataset:
    examples: list[RenderedExample]
    stats: dict[str, int] = field(default_factory=dict)
    cache_path: Path | None = None
    from_cache: bool = False


def tokenizer_fingerprint(tokenizer) -> str:
    """Name + hash of the tokenizer's full definition (vocab, merges, normalizer, special tokens)."""
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(json.dumps([tokenizer.eos_token, tokenizer.bos_token, tokenizer.pad_token]).encode())
    return f"{Path(str(tokenizer.name_or_path)).name}-{h.hexdigest()[:16]}"


def cache_key(records, tokenizer, cutoff_len: int, loss_on: str) -> str:
    h = hashlib.sha256()
    for record in records:
        h.update(json.dumps(record_to_dict(record), sort_keys=True, default=str).encode())
        h.update(b"\0")
    meta = [RENDER_VERSION, tokenizer_fingerprint(tokenizer), tokenizer.chat_template or "", cutoff_len, loss_on]
    h.update(json.dumps(meta).encode())
    return h.hexdigest()[:32]


def _render_all(records, tokenizer, cutoff_len: int, loss_on: LossOn) -> TokenizedDataset:
    examples: list[RenderedExample] = []
    truncated = dropped = 0
    for n, record in enumerate(records):
        if isinstance(record, Conversation):
            rendered = [render_conversation(record, tokenizer, cutoff_len, loss_on)]
        elif isinstance(record, Text):
            rendered = render_text(record, tokenizer, cutoff_len)
        else:
            raise DataError(f"record {n}: SFT takes conversations or text, got {type(record).__name__}")
        for example in rendered:
            truncated += example.truncated
            if example.n_label_tokens == 0:
                dropped += 1  # e.g. the answer starts beyond cutoff_len: nothing to learn from it
                continue
            examples.append(example)
    stats = {
        "examples": len(examples),
        "tokens": sum(len(e.input_ids) for e in examples),
        "label_tokens": sum(e.n_label_tokens for e in examples),
        "truncated": truncated,
        "dropped_no_labels": dropped,
    }
    return TokenizedDataset(examples, stats)


def _save(dataset: TokenizedDataset, path: Path) -> None:
    lengths = np.array([len(e.input_ids) for e in dataset.examples], dtype=np.int64)
    flat_ids = np.array([t for e in dataset.examples for t in e.input_ids], dtype=np.int32)
    flat_labels = np.array([t for e in dataset.examples for t in e.labels], dtype=np.int32)
    truncated = np.array([e.truncated for e in dataset.examples], dtype=bool)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, lengths=lengths, input_ids=flat_ids, labels=flat_labels, truncated=truncated,
             stats=np.array(json.dumps(dataset.stats)))
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written cache behind


def _load(path: Path) -> TokenizedDataset:
    with np.load(path) as data:
        ends = np.cumsum(data["lengths"])
        ids = np.split(data["input_ids"], ends[:-1]) if len(ends) else []
        labels = np.split(data["labels"], ends[:-1]) if len(ends) else []
        examples = [
            RenderedExample(i.tolist(), lab.tolist(), bool(t))
            for i, lab, t in zip(ids, labels, data["truncated"])
        ]
        stats = json.loads(str(data["stats"]))
    return TokenizedDataset(examples, stats, path, from_cache=True)


def tokenize_dataset(
    records: list[Conversation | Text],
    tokenizer,
    cutoff_len: int,
    loss_on: LossOn = "answer",
    cache_dir: Path | None = None,
) -> TokenizedDataset:
    """Render every record (dropping those left without trained tokens), reusing the on-disk cache if any."""
    if cutoff_len < 2:
        raise DataError(f"cutoff_len must be >= 2, got {cutoff_len}")
    if cache_dir is None:
        return _render_all(records, tokenizer, cutoff_len, loss_on)
    path = Path(cache_dir) / f"tokens-{cache_key(records, tokenizer, cutoff_len, loss_on)}.npz"
    if path.exists():
        try:
            return _load(path)
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # unreadable cache: re-tokenize rather than fail
    dataset = _render_all(records, tokenizer, cutoff_len, loss_on)
    _save(dataset, path)
    dataset.cache_path = path
    return dataset
