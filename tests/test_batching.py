"""Length-grouped batching: determinism, coverage, padding, and packed == unpacked logits."""

from __future__ import annotations

import random

import pytest
import torch

from tuneforge.data.render import IGNORE_INDEX, RenderedExample
from tuneforge.train.batching import LengthGroupedBatcher

PAD = 3


def make_examples(n: int, seed: int = 0, vocab: int = 400, max_len: int = 40) -> list[RenderedExample]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = rng.randint(2, max_len)
        ids = [rng.randrange(4, vocab) for _ in range(length)]
        cut = rng.randint(1, length - 1)
        out.append(RenderedExample(ids, [IGNORE_INDEX] * cut + ids[cut:]))
    return out


def row_examples(batch) -> list[int]:
    return [i for row in batch.example_ids for i in row]


@pytest.mark.parametrize("packing", [False, True])
def test_every_example_once_per_epoch_and_deterministic(packing):
    examples = make_examples(103)
    batcher = LengthGroupedBatcher(examples, batch_size=4, seed=7, pad_id=PAD, packing=packing, max_len=64,
                                   mega_batch_factor=5)
    for epoch in range(2):
        seen = sorted(i for b in batcher.batches(epoch) for i in row_examples(b))
        assert seen == list(range(103))
        assert batcher.num_batches(epoch) == len(batcher.batches(epoch))
    first = [row_examples(b) for b in batcher.batches(0)]
    assert first == [row_examples(b) for b in batcher.batches(0)]  # same (seed, epoch) -> same order
    assert first != [row_examples(b) for b in batcher.batches(1)]  # epochs differ
    resumed = batcher.batches(0)[5:]
    assert [row_examples(b) for b in resumed] == first[5:]


def test_length_grouping_pads_less_than_random_batches():
    examples = make_examples(400)
    grouped = LengthGroupedBatcher(examples, batch_size=8, seed=0, pad_id=PAD, mega_batch_factor=50)
    padded = sum(b.input_ids.numel() for b in grouped.batches(0))
    rng = random.Random(0)
    order = list(range(400))
    rng.shuffle(order)
    random_padded = sum(
        8 * max(len(examples[i].input_ids) for i in order[k : k + 8]) for k in range(0, 400, 8)
    )
    real = sum(len(e.input_ids) for e in examples)
    assert padded < random_padded and (padded - real) < 0.5 * (random_padded - real)


def test_batch_tensors_match_examples():
    examples = make_examples(10)
    batch = LengthGroupedBatcher(examples, batch_size=10, seed=1, pad_id=PAD).batches(0)[0]
    for r, (i,) in enumerate(batch.example_ids):
        n = len(examples[i].input_ids)
        assert batch.input_ids[r, :n].tolist() == examples[i].input_ids
        assert batch.labels[r, 1:n].tolist() == examples[i].labels[1:]
        assert batch.attention_mask[r].sum() == n and (batch.input_ids[r, n:] == PAD).all()
        assert (batch.labels[r, n:] == IGNORE_INDEX).all()
    assert batch.input_ids.shape[1] == max(len(e.input_ids) for e in examples)  # dynamic padding
    assert batch.n_tokens == sum(len(e.input_ids) for e in examples)


def test_packed_rows_respect_max_len_and_restart_positions():
    examples = make_examples(50)
    batcher = LengthGroupedBatcher(examples, batch_size=2, seed=0, pad_id=PAD, packing=True, max_len=64)
    for batch in batcher.batches(0):
        assert batch.input_ids.shape[1] <= 64
        for r, lens in enumerate(batch.seq_lens):
            starts = [sum(lens[:k]) for k in range(len(lens))]
            assert all(batch.position_ids[r, s] == 0 for s in starts)
            assert all(batch.labels[r, s] == IGNORE_INDEX for s in starts)  # no prediction across examples
            mask = batch.attention_mask[r, 0]
            if len(lens) > 1:  # the second example cannot see the first
                assert not mask[starts[1], starts[1] - 1] and mask[starts[1], starts[1]]


def test_packed_and_unpacked_logits_agree(tiny_tokenizer, tiny_model):
    examples = make_examples(12, vocab=len(tiny_tokenizer), max_len=30)
    pad = tiny_tokenizer.pad_token_id
    model = tiny_model.eval()
    packed = LengthGroupedBatcher(examples, batch_size=2, seed=0, pad_id=pad, packing=True, max_len=80)
    n_rows = 0
    with torch.no_grad():
        for batch in packed.batches(0):
            logits = model(**batch.model_inputs()).logits
            for r, row in enumerate(batch.example_ids):
                pos = 0
                n_rows += len(row) > 1
                for i in row:
                    ids = torch.tensor([examples[i].input_ids])
                    alone = model(input_ids=ids).logits[0]
                    n = ids.shape[1]
                    torch.testing.assert_close(logits[r, pos : pos + n], alone, atol=1e-4, rtol=1e-4)
                    pos += n
    assert n_rows > 0  # some rows really held several examples


@pytest.mark.parametrize("packing", [False, True])
def test_split_into_micro_batches_keeps_every_row(packing):
    examples = make_examples(16)
    batcher = LengthGroupedBatcher(examples, batch_size=8, seed=0, pad_id=PAD, packing=packing, max_len=80)
    for batch in batcher.batches(0):
        parts = batch.split(max_tokens=60)
        assert [i for p in parts for i in row_examples(p)] == row_examples(batch)
        assert sum(p.n_tokens for p in parts) == batch.n_tokens
        assert sum(p.n_label_tokens for p in parts) == batch.n_label_tokens
        for part in parts:
            assert part.input_ids.numel() <= 60 or part.input_ids.shape[0] == 1
            assert part.input_ids.shape[1] == max(part.row_lengths())  # re-trimmed to its longest row


@pytest.mark.parametrize("packing", [False, True])
def test_shares_over_processes_cover_each_global_batch_exactly_once(packing):
    """Every (examples, batch size, processes) combination: at every batch index each process has a batch; the
    processes' shares are disjoint and together are the one-process batch, rows and trained tokens alike; an
    empty share is a stand-in without trained tokens; the epoch's examples are each trained once."""
    for n in (1, 2, 3, 5, 8, 13):
        examples = make_examples(n, seed=n)
        for batch_size in range(1, 7):
            for world in range(1, 5):
                def batcher(rank=0, size=1):
                    return LengthGroupedBatcher(examples, batch_size, seed=3, pad_id=PAD, packing=packing, max_len=64,
                                                mega_batch_factor=2, rank=rank, world=size)
                whole = batcher().batches(0)
                shares = [batcher(rank, world).batches(0) for rank in range(world)]
                assert all(len(s) == len(whole) for s in shares)
                trained = []
                for i, full in enumerate(whole):
                    parts = [s[i] for s in shares]
                    ids = [row_examples(p) for p in parts if not p.stand_in]
                    flat = [e for part in ids for e in part]
                    assert sorted(flat) == sorted(row_examples(full)) and len(set(flat)) == len(flat)
                    assert sum(p.n_label_tokens for p in parts) == full.n_label_tokens
                    assert sum(p.n_tokens for p in parts) == full.n_tokens
                    for p in parts:
                        if p.stand_in:
                            assert p.n_label_tokens == 0 and p.n_tokens == 0 and p.input_ids.shape[0] == 1
                    trained += flat
                assert sorted(trained) == list(range(n))


def test_shares_keep_the_rows_and_their_tensors():
    examples = make_examples(11, seed=4)
    whole = LengthGroupedBatcher(examples, 4, seed=1, pad_id=PAD).batches(0)
    share = LengthGroupedBatcher(examples, 4, seed=1, pad_id=PAD, rank=1, world=3).batches(0)
    for full, part in zip(whole, share):
        if part.stand_in:
            assert len(row_examples(full)) < 2
            continue
        rows = [full.example_ids.index(row) for row in part.example_ids]
        assert rows == list(range(1, len(full.example_ids), 3))  # rows 1, 4, 7, ... of the length-sorted batch
        width = part.input_ids.shape[1]
        assert torch.equal(part.input_ids, full.input_ids[rows, :width])
        assert torch.equal(part.labels, full.labels[rows, :width])
    with pytest.raises(ValueError, match="rank must be in"):
        LengthGroupedBatcher(examples, 4, seed=1, pad_id=PAD, rank=3, world=3)
