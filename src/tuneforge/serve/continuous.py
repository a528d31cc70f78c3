"""Continuous batching: requests join and leave a running batch at every decoding step.

`Engine` (static batching) runs each gathered batch to its end, so a request arriving one step
after a batch started waits for the whole batch. Here one worker thread owns a shared, left-padded
KV cache (transformers `DynamicCache`): new requests are prefilled and spliced into it between
steps, finished rows are dropped at once, and each row keeps its own sampling settings (temperature,
top_p, seed via a per-row generator) and its own LoRA adapter (peft's mixed-adapter `adapter_names`).
transformers' own continuous batching (`generate_batch`) needs paged attention and has no
per-request adapters, hence this small hand-written loop.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import queue
import threading
from typing import Any

import torch
import torch.nn.functional as F

from tuneforge.serve.engine import Engine, Job, QueueFull, RowResult, RowTracker, _Row


class _Live:
    """The running batch: rows, their cache, attention mask, next input tokens and positions."""

    def __init__(self, rows: list[_Row], cache: Any, mask: torch.Tensor, last: torch.Tensor, pos: torch.Tensor):
        self.rows, self.cache, self.mask, self.last, self.pos = rows, cache, mask, last, pos

    def merge(self, other: "_Live") -> None:
        width = max(self.mask.shape[1], other.mask.shape[1])
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            mine.keys = torch.cat([_left_pad(mine.keys, width, 2), _left_pad(theirs.keys, width, 2)])
            mine.values = torch.cat([_left_pad(mine.values, width, 2), _left_pad(theirs.values, width, 2)])
        self.mask = torch.cat([_left_pad(self.mask, width, 1), _left_pad(other.mask, width, 1)])
        self.rows += other.rows
        self.last = torch.cat([self.last, other.last])
        self.pos = torch.cat([self.pos, other.pos])

    def keep(self, keep: list[int]) -> None:
        index = torch.tensor(keep, dtype=torch.long)
        self.rows = [self.rows[i] for i in keep]
        self.mask, self.last, self.pos = self.mask[index], self.last[index], self.pos[index]
        first = int(self.mask.any(0).nonzero().min())  # columns that are padding in every remaining row
        self.mask = self.mask[:, first:]
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys[index, :, first:], layer.values[index, :, first:]


def _left_pad(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - t.shape[dim]
    if missing == 0:
        return t
    pad = [0, 0] * (t.dim() - dim - 1) + [missing, 0]
    return F.pad(t, pad)


class ContinuousEngine(Engine):
    """Same interface as `Engine`; a persistent worker thread steps one shared batch."""

    def __init__(self, served: Any, **kwargs: Any):
        super().__init__(served, **kwargs)
        self.threads = kwargs.get("threads")
        self._intake: queue.Queue[Job] = queue.Queue()
        self._admin: queue.Queue = queue.Queue()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self.steps_run = 0
        self.joined_running = 0  # admissions into a batch that was already decoding
        # Jobs taken off the queue and not yet settled (worker thread only): whatever goes wrong, each one
        # gets an answer or an error, never silence.
        self._held: list[Job] = []

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = True  # marks "started" for the base class
        self._thread = threading.Thread(target=self._worker, name="tuneforge-continuous", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._halt.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)
        self._executor.shutdown(wait=False)

    def enqueue(self, job: Job) -> asyncio.Future:
        if self._thread is None:
            raise RuntimeError("engine not started")
        if self._waiting >= self.queue_size:
            raise QueueFull(f"{self._waiting} requests are waiting (queue size {self.queue_size})")
        job.future = self._loop.create_future()
        self._waiting += 1
        self._intake.put(job)
        return job.future

    async def run_admin(self, fn: Any, *args: Any) -> Any:
        """Adapter changes run on the worker when the batch is empty (new requests wait meanwhile)."""
        done: concurrent.futures.Future = concurrent.futures.Future()
        self._admin.put((fn, args, done))
        return await asyncio.wrap_future(done)

    # -- worker thread -------------------------------------------------------------------------------
    def _worker(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        pending: collections.deque[Job] = collections.deque()
        live: _Live | None = None
        while not self._halt.is_set():
            if live is None:
                self._run_admin_ops()
                if not pending:
                    try:
                        pending.append(self._intake.get(timeout=0.05))
                    except queue.Empty:
                        continue
            while not self._intake.empty():
                pending.append(self._intake.get_nowait())
            try:
                live = self._admit(live, pending)
                if live is not None:
                    live = self._step(live)
            except Exception as exc:  # fail every request the worker holds (live or being admitted), keep serving
                for job in list(self._held):
                    self._resolve(job, exc)
                live = None

    def _run_admin_ops(self) -> None:
        while not self._admin.empty():
            fn, args, done = self._admin.get_nowait()
            try:
                done.set_result(fn(*args))
            except Exception as exc:
                done.set_exception(exc)

    def _admit(self, live: _Live | None, pending: collections.deque) -> _Live | None:
        if not self._admin.empty():
            return live  # drain the batch so the adapter change sees no running rows
        room = self.max_batch - (len(live.rows) if live else 0)
        jobs: list[Job] = []
        while pending and pending[0].n <= room:
            job = pending.popleft()
            self._loop.call_soon_threadsafe(self._took, 1)
            if job.cancelled or job.future.done():
                continue
            jobs.append(job)
            self._held.append(job)
            room -= job.n
        if not jobs:
            return live
        new = self._prefill_isolated(jobs)
        if new is None:
            return live
        self.batches_run += 1
        self.rows_run += len(new.rows)
        if live is None:
            return self._drop_finished(new)
        live.merge(new)
        self.joined_running += 1
        return self._drop_finished(live)

    def _took(self, n: int) -> None:
        self._waiting -= n

    def _forward(self, rows: list[_Row], **inputs: Any) -> Any:
        adapters = self.served.adapters
        if adapters.peft_model is None:
            return adapters.base_model(**inputs, use_cache=True)
        names = [row.job.adapter or "__base__" for row in rows]
        return adapters.peft_model(**inputs, use_cache=True, adapter_names=names)

    def _prefill_isolated(self, jobs: list[Job]) -> _Live | None:
        """Prefill `jobs`; when that fails, prefill each alone so only the jobs at fault get the error and
        the running batch (and the other newcomers) go on."""
        try:
            return self._prefill(jobs)
        except Exception as exc:
            for job in jobs:
                job.rows.clear()
            if len(jobs) == 1:
                self._resolve(jobs[0], exc)
                return None
        parts = [part for part in (self._prefill_isolated([job]) for job in jobs) if part is not None]
        if not parts:
            return None
        for part in parts[1:]:
            parts[0].merge(part)
        return parts[0]

    @torch.inference_mode()
    def _prefill(self, jobs: list[Job]) -> _Live:
        from transformers import DynamicCache

        rows = [_Row(job, i) for job in jobs for i in range(job.n)]
        for row in rows:
            row.generator = _generator(row)
            row.job.rows.append(row)
        width = max(len(r.job.prompt_ids) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row.job.prompt_ids)
            ids[i, width - n:] = torch.tensor(row.job.prompt_ids, dtype=torch.long)
            mask[i, width - n:] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self._forward(rows, input_ids=ids, attention_mask=mask, position_ids=positions,
                            past_key_values=DynamicCache())
        last = self._choose(out.logits[:, -1, :], rows)
        pos = torch.tensor([len(r.job.prompt_ids) for r in rows], dtype=torch.long)
        self._track(rows, last)
        return _Live(rows, out.past_key_values, mask, last, pos)

    @torch.inference_mode()
    def _step(self, live: _Live) -> _Live | None:
        live.mask = torch.cat([live.mask, torch.ones((len(live.rows), 1), dtype=torch.long)], dim=1)
        out = self._forward(live.rows, input_ids=live.last[:, None], attention_mask=live.mask,
                            position_ids=live.pos[:, None], past_key_values=live.cache)
        live.cache = out.past_key_values
        live.last = self._choose(out.logits[:, -1, :], live.rows)
        live.pos = live.pos + 1
        self.steps_run += 1
        self._track(live.rows, live.last)
        return self._drop_finished(live)

    def _choose(self, logits: torch.Tensor, rows: list[_Row]) -> torch.Tensor:
        tokens = logits.argmax(-1)
        for i, row in enumerate(rows):
            job = row.job
            if job.temperature > 0:
                probs = torch.softmax(logits[i].float() / job.temperature, -1)
                if job.top_p < 1:
                    ordered, order = probs.sort(descending=True)
                    beyond = ordered.cumsum(-1) - ordered > job.top_p  # keep the smallest set reaching top_p
                    probs = probs.scatter(0, order[beyond], 0.0)
                tokens[i] = torch.multinomial(probs, 1, generator=row.generator)[0]
        return tokens

    def _track(self, rows: list[_Row], tokens: torch.Tensor) -> None:
        tracker = RowTracker(rows, 0, self.tokenizer, self.eos_ids)
        for row, token in zip(rows, tokens.tolist()):
            if row.finish is None:
                tracker.step(row, token)

    def _drop_finished(self, live: _Live) -> _Live | None:
        keep = [i for i, row in enumerate(live.rows) if row.finish is None]
        for row in live.rows:
            siblings = row.job.rows
            if row.finish is not None and all(r.finish is not None for r in siblings):
                self._resolve(row.job, [RowResult(r.text, r.finish, len(r.ids)) for r in siblings])
        if not keep:
            return None
        if len(keep) < len(live.rows):
            live.keep(keep)
        return live

    def _resolve(self, job: Job, result: Any) -> None:
        self._held = [held for held in self._held if held is not job]  # by identity: Jobs compare by value

        def settle() -> None:
            if job.future.done():
                return
            if isinstance(result, Exception):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)

        self._loop.call_soon_threadsafe(settle)


def _generator(row: _Row) -> torch.Generator:
    gen = torch.Generator()
    if row.job.seed is not None:  # any int64 seed: the row's seed wraps into the generator's 64 bits
        gen.manual_seed((row.job.seed * 1000 + row.index) % 2**64)
    else:
        gen.seed()
    return gen
