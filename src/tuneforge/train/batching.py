"""Length-grouped, dynamically padded (optionally packed) batches of rendered examples.

Each epoch: shuffle with a (seed, epoch) RNG, cut the order into mega-batches, sort each mega-batch by
length and slice it into batches, then shuffle the batch order. Epochs stay random while a batch holds
examples of similar length, so padding to the batch maximum wastes little compute.

With several processes each global batch is shared out by rows (`rank`, `world`): rank r takes rows r, r + world,
... of the batch's length-sorted rows, so the shares have similar lengths, and every process gets a batch at every
index (DDP/FSDP need the same number of forward/backward passes everywhere). A process whose share is empty (a
batch with fewer rows than processes) gets a stand-in: one row with no trained token, which adds nothing to the
loss or the gradients but takes part in the collectives. Every example is trained on exactly once per epoch.

Packing puts several examples in one row (up to max_len) with position ids restarting at 0 per example and
a block-diagonal causal 4D mask, so no example attends to another: on CPU/SDPA transformers only detects
packed sequences from position_ids with flash attention, so the mask is built here explicitly.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from tuneforge.data.render import IGNORE_INDEX, RenderedExample


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, L) long
    attention_mask: torch.Tensor  # (B, L) long, or (B, 1, L, L) bool (True = attend) when packed
    labels: torch.Tensor  # (B, L) long, IGNORE_INDEX on padding / untrained tokens
    position_ids: torch.Tensor | None = None  # (B, L), restarting at 0 per packed example
    seq_lens: list[list[int]] | None = None  # per row, the lengths of the examples packed in it
    example_ids: list[list[int]] | None = None  # per row, the indices of its examples
    stand_in: bool = False  # an empty share's placeholder row: no trained token, no throughput

    @property
    def n_tokens(self) -> int:
        """Real (non-padding) tokens: what throughput counts."""
        if self.stand_in:
            return 0
        if self.seq_lens is not None:
            return sum(sum(row) for row in self.seq_lens)
        return int(self.attention_mask.sum())

    @property
    def n_label_tokens(self) -> int:
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())

    def model_inputs(self, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        """Keyword arguments for a HF model; `dtype` turns a packed bool mask into an additive one (eager attention)."""
        mask = self.attention_mask
        if mask.dim() == 4 and dtype is not None:
            mask = torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, torch.finfo(dtype).min)
        out = {"input_ids": self.input_ids, "attention_mask": mask}
        if self.position_ids is not None:
            out["position_ids"] = self.position_ids
        return out

    def row_lengths(self) -> list[int]:
        if self.seq_lens is not None:
            return [sum(row) for row in self.seq_lens]
        return self.attention_mask.sum(1).tolist()

    def split(self, max_tokens: int) -> list[Batch]:
        """Micro-batches of whole rows with at most max_tokens padded tokens each (at least one row).

        Summing `loss_sum` over the micro-batches and dividing by this batch's label count gives exactly
        the batch loss and gradient, while activations only exist for one micro-batch at a time and each
        micro-batch is padded to its own longest row (rows come sorted by length, so padding shrinks too).
        """
        lengths = self.row_lengths()
        groups: list[list[int]] = [[]]
        for r, n in enumerate(lengths):
            rows = groups[-1] + [r]
            if groups[-1] and len(rows) * max(lengths[i] for i in rows) > max_tokens:
                groups.append([r])
            else:
                groups[-1] = rows
        return [self._select(rows, max(lengths[i] for i in rows)) for rows in groups]

    def _select(self, rows: list[int], width: int) -> Batch:
        index = torch.tensor(rows)
        mask = self.attention_mask[index]
        mask = mask[:, :, :width, :width] if mask.dim() == 4 else mask[:, :width]
        pick = lambda t: None if t is None else t[index, :width]  # noqa: E731
        seq_lens = None if self.seq_lens is None else [self.seq_lens[r] for r in rows]
        example_ids = None if self.example_ids is None else [self.example_ids[r] for r in rows]
        return Batch(pick(self.input_ids), mask, pick(self.labels), pick(self.position_ids), seq_lens, example_ids,
                     self.stand_in)

    def to(self, device) -> Batch:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(move(self.input_ids), move(self.attention_mask), move(self.labels),
                     move(self.position_ids), self.seq_lens, self.example_ids, self.stand_in)


class _LazyBatches(Sequence):
    """The batches of one epoch, built into tensors on access (a packed 4D mask per batch adds up)."""

    def __init__(self, build, plans: list[list[list[int]]]):
        self._build, self._plans = build, plans

    def __len__(self) -> int:
        return len(self._plans)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return _LazyBatches(self._build, self._plans[index])
        return self._build(self._plans[index])


class LengthGroupedBatcher:
    def __init__(
        self,
        examples: list[RenderedExample],
        batch_size: int,
        seed: int,
        pad_id: int,
        packing: bool = False,
        max_len: int | None = None,
        mega_batch_factor: int = 50,
        epoch_indices: Callable[[int], list[int]] | None = None,
        rank: int = 0,
        world: int = 1,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in [0, {world}), got {rank}")
        if not examples:
            raise ValueError("no examples to batch")
        self.examples = examples
        self.batch_size, self.seed, self.pad_id = batch_size, seed, pad_id
        self.packing, self.mega_batch_factor = packing, max(1, mega_batch_factor)
        self.epoch_indices = epoch_indices  # a task mixture's draw for the epoch (repeats allowed)
        self.rank, self.world = rank, world
        longest = max(len(e.input_ids) for e in examples)
        self.max_len = max_len or longest
        if packing and longest > self.max_len:
            raise ValueError(f"an example has {longest} tokens, more than max_len={self.max_len}")

    def num_batches(self, epoch: int) -> int:
        """Global batches in the epoch (the same on every process)."""
        return len(self._plan(epoch))

    def batches(self, epoch: int) -> Sequence[Batch]:
        """This process's share of each global batch of the epoch (the whole batch in one process)."""
        return _LazyBatches(self._build_share, self._plan(epoch))

    def share(self, rows: list[list[int]]) -> list[list[int]]:
        """The rows of a global batch this process trains on (empty: it gets a stand-in)."""
        return rows[self.rank :: self.world]

    def _build_share(self, rows: list[list[int]]) -> Batch:
        mine = self.share(rows)
        return self._build(mine) if mine else self._stand_in(rows[0])

    def _stand_in(self, row: list[int]) -> Batch:
        batch = self._build([row])
        batch.labels.fill_(IGNORE_INDEX)
        batch.example_ids, batch.stand_in = [], True
        return batch

    # -- planning: which example indices go in which row of which batch ------------------------------
    def _plan(self, epoch: int) -> list[list[list[int]]]:
        rng = random.Random(f"{self.seed}:{epoch}")  # str seeds hash deterministically across runs
        order = list(self.epoch_indices(epoch)) if self.epoch_indices else list(range(len(self.examples)))
        if not order:
            raise ValueError(f"epoch {epoch} draws no examples")
        rng.shuffle(order)
        length = lambda i: len(self.examples[i].input_ids)  # noqa: E731
        mega = self.batch_size * self.mega_batch_factor
        plans: list[list[list[int]]] = []
        for start in range(0, len(order), mega):
            group = sorted(order[start : start + mega], key=length, reverse=True)
            rows = self._pack(group, length) if self.packing else [[i] for i in group]
            plans += [rows[k : k + self.batch_size] for k in range(0, len(rows), self.batch_size)]
        rng.shuffle(plans)
        # The longest batch first: an out-of-memory shows up at step 0, not hours in.
        tokens = [sum(length(i) for row in p for i in row) for p in plans]
        first = max(range(len(plans)), key=tokens.__getitem__)
        plans[0], plans[first] = plans[first], plans[0]
        return plans

    def _pack(self, group: list[int], length) -> list[list[int]]:
        """First-fit decreasing into rows of at most max_len tokens (group is sorted longest first)."""
        rows: list[list[int]] = []
        free: list[int] = []
        for i in group:
            n = length(i)
            slot = next((r for r, space in enumerate(free) if space >= n), None)
            if slot is None:
                rows.append([i])
                free.append(self.max_len - n)
            else:
                rows[slot].append(i)
                free[slot] -= n
        return rows

    # -- building tensors ---------------------------------------------------------------------------
    def _build(self, rows: list[list[int]]) -> Batch:
        width = max(sum(len(self.examples[i].input_ids) for i in row) for row in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        segments = torch.full((len(rows), width), -1, dtype=torch.long)
        seq_lens = []
        for r, row in enumerate(rows):
            pos = 0
            for s, i in enumerate(row):
                ex = self.examples[i]
                n = len(ex.input_ids)
                ids[r, pos : pos + n] = torch.tensor(ex.input_ids)
                labels[r, pos : pos + n] = torch.tensor(ex.labels)
                # The first token of a packed example has no in-example context: never predicted across examples.
                labels[r, pos] = IGNORE_INDEX
                positions[r, pos : pos + n] = torch.arange(n)
                segments[r, pos : pos + n] = s
                pos += n
            positions[r, pos:] = torch.arange(width - pos)  # padding forms its own segment (no all-masked rows)
            seq_lens.append([len(self.examples[i].input_ids) for i in row])
        if not self.packing:
            return Batch(ids, (segments >= 0).long(), labels, None, None, rows)
        same = segments[:, :, None] == segments[:, None, :]
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        return Batch(ids, (same & causal)[:, None], labels, positions, seq_lens, rows)
