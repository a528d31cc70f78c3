"""Scheduler correctness: batched rows (joining mid-flight, with padding) decode exactly as alone."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest
import torch

from tuneforge.serve.adapters import resolve_target
from tuneforge.serve.continuous import ContinuousEngine
from tuneforge.serve.engine import Engine, Job

PROMPTS = ["The quick brown fox", "What is the capital of France?", "hi",
           "Classify the sentiment: I love this product. positive and more words here", "0 1 2 3"]


@pytest.fixture(scope="module")
def served(tiny_model_dir):
    return resolve_target(str(tiny_model_dir))


def solo_greedy(served, prompt_ids, max_tokens):
    ids = torch.tensor([prompt_ids])
    with torch.inference_mode():
        out = served.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens,
                                    do_sample=False, pad_token_id=served.tokenizer.pad_token_id,
                                    eos_token_id=served.tokenizer.eos_token_id)
    return served.tokenizer.decode(out[0, len(prompt_ids):], skip_special_tokens=True)


@pytest.mark.parametrize("engine_cls", [ContinuousEngine, Engine])
def test_staggered_batched_rows_match_solo_decoding(served, engine_cls):
    tok = served.tokenizer
    jobs_spec = [(tok(p)["input_ids"], 6 + 3 * i) for i, p in enumerate(PROMPTS)]
    # one torch thread, on a helper thread (the setting is per thread): the CI box is oversubscribed
    with concurrent.futures.ThreadPoolExecutor(1, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        expected = list(pool.map(lambda spec: solo_greedy(served, *spec), jobs_spec))

    async def run():
        engine = engine_cls(served, max_batch=3, queue_size=16, threads=1)
        await engine.start()
        try:
            tasks = []
            for ids, n in jobs_spec:  # arrive one by one while earlier ones are decoding
                tasks.append(asyncio.create_task(engine.submit(Job(prompt_ids=list(ids), max_tokens=n,
                                                                   temperature=0))))
                await asyncio.sleep(0.003)
            return await asyncio.gather(*tasks), engine
        finally:
            await engine.stop()

    results, engine = asyncio.run(run())
    assert [r[0].text for r in results] == expected
    assert [r[0].tokens for r in results] == [n for _, n in jobs_spec]
    assert engine.rows_run == len(PROMPTS)
    if engine_cls is ContinuousEngine:
        assert engine.joined_running > 0  # some rows really joined a running batch (cache splice)


def test_continuous_seeded_sampling_is_reproducible_and_n_rows_differ(served):
    ids = served.tokenizer("hello")["input_ids"]

    async def run(seed):
        engine = ContinuousEngine(served, max_batch=8, threads=1)
        await engine.start()
        try:
            return await engine.submit(Job(prompt_ids=list(ids), max_tokens=12, n=3, temperature=1.0,
                                           top_p=0.9, seed=seed))
        finally:
            await engine.stop()

    first, again, other = asyncio.run(run(1)), asyncio.run(run(1)), asyncio.run(run(2))
    assert [r.text for r in first] == [r.text for r in again]
    assert len({r.text for r in first}) > 1
    assert [r.text for r in first] != [r.text for r in other]


def test_continuous_batch_mixes_adapters_per_row(tiny_model_dir, tmp_path):
    from test_serve_api import make_adapter

    served = resolve_target(str(tiny_model_dir), {"alpha": str(make_adapter(tiny_model_dir, tmp_path / "a", 1))})
    ids = list(served.tokenizer("The quick brown fox")["input_ids"])

    async def run(adapters):
        engine = ContinuousEngine(served, max_batch=4, threads=1)
        await engine.start()
        try:
            gate = threading.Event()  # hold the worker (in an admin op) until every job is queued
            held = asyncio.ensure_future(engine.run_admin(gate.wait, 30))
            jobs = [Job(prompt_ids=ids, max_tokens=10, temperature=0, adapter=a) for a in adapters]
            futures = [engine.enqueue(j) for j in jobs]
            gate.set()
            await held
            return [r[0].text for r in await asyncio.gather(*futures)], engine
        finally:
            await engine.stop()

    (alone_base,), _ = asyncio.run(run([None]))
    (alone_alpha,), _ = asyncio.run(run(["alpha"]))
    mixed, engine = asyncio.run(run([None, "alpha", None, "alpha"]))
    assert alone_base != alone_alpha
    assert mixed == [alone_base, alone_alpha, alone_base, alone_alpha]
    assert engine.batches_run == 1  # one prefill for all four rows, two adapters


@pytest.mark.real
def test_real_smollm2_continuous_matches_static():
    from tuneforge.serve.generation import encode_chat

    served = resolve_target("smollm2-135m-instruct")
    ids = encode_chat([{"role": "user", "content": "What is the capital of France?"}], served.tokenizer)

    async def run(engine_cls):
        engine = engine_cls(served, max_batch=2, threads=1)
        await engine.start()
        try:
            return (await engine.submit(Job(prompt_ids=ids, max_tokens=12, temperature=0)))[0]
        finally:
            await engine.stop()

    continuous, static = asyncio.run(run(ContinuousEngine)), asyncio.run(run(Engine))
    assert continuous.text == static.text and "Paris" in continuous.text
