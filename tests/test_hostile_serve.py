"""Issue 15 items 1, 3 and 7 against the tiny model server: out-of-range numbers are refused at the schema,
an error while admitting a request fails only that request, bodies are limited by the bytes received,
and adapters that cannot be loaded get a 4xx."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tuneforge.serve.adapters import resolve_target
from tuneforge.serve.continuous import ContinuousEngine
from tuneforge.serve.engine import Job
from tuneforge.serve.launch import BackgroundServer, build_app

KEY = "test-key-123456"
HEADERS = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def url(tiny_model_dir):
    app = build_app(str(tiny_model_dir), db=None, api_key=KEY, max_batch=4, queue=16, max_tokens_cap=32,
                    threads=1)
    with BackgroundServer(app) as base:
        yield base


def _chat(**extra):
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, **extra}


@pytest.mark.parametrize("field, value", [
    ("seed", 2**80), ("seed", -(2**63) - 1), ("max_tokens", 2**80), ("n", 2**70), ("top_p", 2**1100),
])
def test_out_of_range_numbers_are_a_400_naming_the_field(url, field, value):
    r = httpx.post(url + "/v1/chat/completions", json=_chat(**{field: value}), headers=HEADERS, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == field


@pytest.mark.parametrize("raw", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_floats_are_a_400(url, raw):
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": ' + raw + b"}"
    r = httpx.post(url + "/v1/chat/completions", content=body,
                   headers={**HEADERS, "Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["param"] == "temperature", r.text


def test_largest_int64_seed_is_served(url, tiny_model_dir):
    body = {**_chat(seed=2**63 - 1, temperature=1.0), "model": tiny_model_dir.name}
    r = httpx.post(url + "/v1/chat/completions", json=body, headers=HEADERS, timeout=60)
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def served(tiny_model_dir):
    return resolve_target(str(tiny_model_dir))


def test_failing_prefill_fails_only_its_own_request(served):
    """Three requests admitted in one prefill, the middle one breaks the forward pass: it gets the error,
    its neighbours their answers, nothing hangs; then one breaks while another is decoding."""
    good = served.tokenizer("hello there")["input_ids"]
    bad = [served.model.config.vocab_size + 100]  # out of the embedding: IndexError inside prefill

    async def run():
        engine = ContinuousEngine(served, max_batch=4, queue_size=16, threads=1)
        await engine.start()
        try:
            busy = asyncio.ensure_future(engine.run_admin(time.sleep, 0.3))  # holds the worker: all 3 queue up
            await asyncio.sleep(0.05)
            together = [engine.enqueue(Job(prompt_ids=ids, max_tokens=5, temperature=0))
                        for ids in (good, bad, good)]
            await busy
            first = await asyncio.wait_for(asyncio.gather(*together, return_exceptions=True), 60)
            running = engine.enqueue(Job(prompt_ids=good, max_tokens=30, temperature=0))
            await asyncio.sleep(0.05)
            joining = engine.enqueue(Job(prompt_ids=bad, max_tokens=5, temperature=0))
            second = await asyncio.wait_for(asyncio.gather(running, joining, return_exceptions=True), 60)
            return first, second
        finally:
            await engine.stop()

    (a, b, c), (long_run, late_bad) = asyncio.run(run())
    assert isinstance(b, IndexError)
    assert a[0].tokens == 5 and c[0].tokens == 5 and a[0].text == c[0].text
    assert isinstance(late_bad, IndexError)
    assert not isinstance(long_run, Exception) and long_run[0].tokens == 30


def test_chunked_body_over_the_limit_is_a_413(url, tiny_model_dir):
    def chunks():  # Transfer-Encoding: chunked, no Content-Length; 3 MB against the 2 MB limit
        for _ in range(30):
            yield b" " * 100_000

    r = httpx.post(url + "/v1/chat/completions", content=chunks(),
                   headers={**HEADERS, "Content-Type": "application/json"}, timeout=60)
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    unauthenticated = httpx.post(url + "/v1/chat/completions", content=chunks(), timeout=60)
    assert unauthenticated.status_code == 401  # the key is checked before the body is read
    body = {**_chat(), "model": tiny_model_dir.name}
    assert httpx.post(url + "/v1/chat/completions", json=body, headers=HEADERS, timeout=60).status_code == 200


def test_admin_adapter_with_pickle_or_broken_weights_is_a_400(url, tiny_model_dir, tmp_path):
    from test_hostile_models import pickle_adapter

    folder = pickle_adapter(tiny_model_dir, tmp_path / "pickled")
    r = httpx.post(url + "/admin/adapters", json={"name": "pickled", "path": str(folder)}, headers=HEADERS,
                   timeout=60)
    assert r.status_code == 400 and "pickle" in r.json()["error"]["message"], r.text
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text((folder / "adapter_config.json").read_text())
    (broken / "adapter_model.safetensors").write_bytes(b"\x00" * 64)  # not a safetensors file
    r = httpx.post(url + "/admin/adapters", json={"name": "broken", "path": str(broken)}, headers=HEADERS,
                   timeout=60)
    assert r.status_code == 400 and "cannot attach adapter" in r.json()["error"]["message"], r.text
    models = httpx.get(url + "/v1/models", headers=HEADERS).json()["data"]
    assert {m["id"] for m in models} == {tiny_model_dir.name}  # neither was half-added
