"""Batched generation: an asyncio scheduler groups waiting requests and one worker thread runs them.

Requests that arrive within `window_s` of each other and share an adapter and sampling settings run
as one left-padded `model.generate` call. A per-row stopping criterion gives each request its own
`max_tokens`, stop strings and streaming deltas inside the shared batch: rows that are done are
frozen by `generate` (padded) while the others continue. The event loop never runs torch code.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import concurrent.futures
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from tuneforge.models.stopping import stop_token_ids


class QueueFull(Exception):
    """More requests are waiting than the queue allows (HTTP 429)."""


@dataclass
class Job:
    """One request: `n` rows of the same prompt."""

    prompt_ids: list[int]
    max_tokens: int
    adapter: str | None = None
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    on_event: Callable[[tuple], None] | None = None  # streaming: ("delta", index, text)
    cancelled: bool = False
    future: asyncio.Future | None = None
    rows: list = field(default_factory=list, repr=False)  # continuous batching: this job's rows

    def key(self) -> tuple:
        sampled = self.temperature > 0
        return (self.adapter, sampled, self.temperature if sampled else 0.0,
                self.top_p if sampled else 1.0, self.seed)


@dataclass
class RowResult:
    text: str
    finish_reason: str
    tokens: int


class _Row:
    def __init__(self, job: Job, index: int):
        self.job, self.index = job, index
        self.ids: list[int] = []
        self.emitted = 0
        self.text = ""
        self.finish: str | None = None


class RowTracker(StoppingCriteria):
    """Per-row stop logic for a shared `generate` call, called by transformers after every step."""

    def __init__(self, rows: list[_Row], prompt_len: int, tokenizer: Any, eos_ids: set[int]):
        self.rows, self.prompt_len, self.tokenizer, self.eos_ids = rows, prompt_len, tokenizer, eos_ids

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if input_ids.shape[1] <= self.prompt_len:
            return done
        last = input_ids[:, -1].tolist()
        for i, row in enumerate(self.rows):
            if row.finish is None:
                self.step(row, last[i])
            done[i] = row.finish is not None
        return done

    def step(self, row: _Row, token: int) -> None:
        job = row.job
        if job.cancelled:
            row.finish = "cancelled"
            return
        if token in self.eos_ids:
            row.finish = "stop"
        else:
            row.ids.append(token)
            row.text = self.tokenizer.decode(row.ids, skip_special_tokens=True)
            cut = min((i for i in (row.text.find(s) for s in job.stop) if i >= 0), default=-1)
            if cut >= 0:
                row.text, row.finish = row.text[:cut], "stop"
            elif len(row.ids) >= job.max_tokens:
                row.finish = "length"
        self._emit(row)

    def _emit(self, row: _Row) -> None:
        if row.job.on_event is None:
            return
        safe = len(row.text)
        if row.finish is None:
            # Hold back what could be the start of a stop string, and half-decoded UTF-8.
            safe -= max((len(s) for s in row.job.stop), default=1) - 1
            if row.text.endswith("\ufffd"):
                safe = min(safe, len(row.text) - 1)
        if safe > row.emitted:
            row.job.on_event(("delta", row.index, row.text[row.emitted:safe]))
            row.emitted = safe

    def finish_all(self) -> None:
        for row in self.rows:
            if row.finish is None:  # generate stopped for a reason of its own (e.g. context end)
                row.finish = "length"
                self._emit(row)


class Engine:
    """Owns the model; `submit` queues a job and resolves to its rows' results."""

    def __init__(self, served: Any, *, max_batch: int = 8, queue_size: int = 64, window_s: float = 0.01,
                 max_prompt_tokens: int | None = None, max_tokens_cap: int = 1024, threads: int | None = None):
        self.served = served
        self.tokenizer = served.tokenizer
        self.max_batch, self.queue_size, self.window_s = max_batch, queue_size, window_s
        self.context_len = int(getattr(served.model.config, "max_position_embeddings", 2048) or 2048)
        self.max_prompt_tokens = max_prompt_tokens or self.context_len - 1
        self.max_tokens_cap = max_tokens_cap
        self.eos_ids = _eos_ids(served.model, self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos_ids)
        # OpenMP thread counts are per calling thread: this sets the generation thread only, leaving the
        # rest of the process alone. On an oversubscribed CPU, 1 thread measured ~8x faster than 2 (docs/serving.md).
        init = (torch.set_num_threads, (threads,)) if threads else (None, ())
        self._executor = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="tuneforge-gen", initializer=init[0], initargs=init[1])
        self._queue: asyncio.Queue[Job] | None = None
        self._pending: collections.deque[Job] = collections.deque()
        self._waiting = 0
        self._task: asyncio.Task | None = None
        self.batches_run = 0
        self.rows_run = 0

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._schedule(), name="tuneforge-scheduler")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True, cancel_futures=True)

    # -- public API --------------------------------------------------------------------------------
    def model_names(self) -> list[str]:
        return [self.served.base_name, *self.served.adapters.names()]

    def adapter_for(self, model_name: str) -> str | None | bool:
        """None for the base, the adapter name, or False when unknown."""
        if model_name == self.served.base_name:
            return None
        return model_name if model_name in self.served.adapters.paths else False

    def enqueue(self, job: Job) -> asyncio.Future:
        """Queue `job` now (raises QueueFull at once, before any response is started)."""
        if self._queue is None:
            raise RuntimeError("engine not started")
        if self._waiting >= self.queue_size:
            raise QueueFull(f"{self._waiting} requests are waiting (queue size {self.queue_size})")
        job.future = asyncio.get_running_loop().create_future()
        self._waiting += 1
        self._queue.put_nowait(job)
        return job.future

    async def submit(self, job: Job) -> list[RowResult]:
        future = self.enqueue(job)
        try:
            return await future
        except asyncio.CancelledError:
            job.cancelled = True  # the client went away: free its rows at the next step
            raise

    async def run_admin(self, fn: Callable, *args: Any) -> Any:
        """Run an adapter change on the generation thread, between batches."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- scheduling --------------------------------------------------------------------------------
    async def _next_job(self, timeout: float | None) -> Job | None:
        if self._pending:
            return self._pending.popleft()
        if timeout is None:
            return await self._queue.get()
        if timeout <= 0:
            return self._queue.get_nowait() if not self._queue.empty() else None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def _collect(self) -> list[Job]:
        loop = asyncio.get_running_loop()
        first = await self._next_job(None)
        batch, rows = [first], first.n
        deadline = loop.time() + self.window_s
        skipped: list[Job] = []
        while rows < self.max_batch:
            job = await self._next_job(deadline - loop.time())
            if job is None:
                break
            if job.key() == first.key() and rows + job.n <= self.max_batch:
                batch.append(job)
                rows += job.n
            else:
                skipped.append(job)
                if len(skipped) >= self.queue_size:
                    break
        self._pending.extendleft(reversed(skipped))  # keep arrival order for the next batch
        return batch

    async def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            self._waiting -= len(batch)
            live = [j for j in batch if not (j.cancelled or j.future.done())]
            if not live:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self._generate, live)
            except Exception as exc:  # a bug or OOM must fail these requests, not the server
                for job in live:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            for job, res in zip(live, results):
                if not job.future.done():
                    job.future.set_result(res)

    # -- generation (worker thread) ------------------------------------------------------------------
    def _generate(self, jobs: list[Job]) -> list[list[RowResult]]:
        rows = [_Row(job, i) for job in jobs for i in range(job.n)]
        width = max(len(r.job.prompt_ids) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):  # left padding: every row's next token is at the same column
            ids = row.job.prompt_ids
            input_ids[i, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
            attention[i, width - len(ids):] = 1
        tracker = RowTracker(rows, width, self.tokenizer, self.eos_ids)
        first = jobs[0]
        sampling: dict[str, Any] = {"do_sample": first.temperature > 0}
        if first.temperature > 0:
            sampling.update(temperature=first.temperature, top_p=first.top_p, top_k=0)
        if first.seed is not None:
            torch.manual_seed(first.seed)
        with self.served.adapters.active(first.adapter) as model, torch.inference_mode():
            model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                max_new_tokens=max(r.job.max_tokens for r in rows),
                min_new_tokens=0,
                pad_token_id=self.pad_id,
                eos_token_id=sorted(self.eos_ids),
                stopping_criteria=StoppingCriteriaList([tracker]),
                **sampling,
            )
        tracker.finish_all()
        self.batches_run += 1
        self.rows_run += len(rows)
        out: list[list[RowResult]] = []
        for job in jobs:
            out.append([RowResult(r.text, r.finish or "length", len(r.ids)) for r in rows if r.job is job])
        return out


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    # The same stop set as chat and evaluation, so a served answer ends where a trained turn ends.
    return set(stop_token_ids(model, tokenizer))
