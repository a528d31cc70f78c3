"""The OpenAI-compatible server on the tiny model, through the official `openai` client and raw HTTP."""

from __future__ import annotations

import httpx
import openai
import pytest

from tuneforge.serve.launch import BackgroundServer, build_app

KEY = "test-key-123456"
HEADERS = {"Authorization": f"Bearer {KEY}"}


def make_adapter(model_dir, out_dir, seed: int):
    """A random (non-zero) LoRA adapter on the tiny model, so it visibly changes the output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    cfg = LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    get_peft_model(base, cfg).save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return {"alpha": make_adapter(tiny_model_dir, root / "alpha", 1),
            "beta": make_adapter(tiny_model_dir, root / "beta", 2)}


@pytest.fixture(scope="module", params=["continuous", "static"])
def server(request, tiny_model_dir, adapters, tmp_path_factory):
    db = tmp_path_factory.mktemp("serve") / "feedback.sqlite"
    app = build_app(str(tiny_model_dir), adapters={"alpha": str(adapters["alpha"])}, db=db, api_key=KEY,
                    max_batch=4, queue=32, max_tokens_cap=64, threads=1, scheduler=request.param)
    with BackgroundServer(app) as url:
        yield {"url": url, "db": db, "base": tiny_model_dir.name, "app": app}


@pytest.fixture()
def client(server):
    return openai.OpenAI(base_url=server["url"] + "/v1", api_key=KEY, max_retries=0)


def chat(client, model, content="hello", **kw):
    kw.setdefault("max_tokens", 8)
    kw.setdefault("temperature", 0)
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}], **kw)


def test_openai_client_plain_and_streaming_agree(server, client):
    plain = chat(client, server["base"], max_tokens=12)
    assert plain.id.startswith("chatcmpl-")
    assert plain.usage.completion_tokens == 12 and plain.usage.prompt_tokens > 0
    assert plain.usage.total_tokens == plain.usage.prompt_tokens + 12
    assert plain.choices[0].finish_reason == "length"
    stream = chat(client, server["base"], max_tokens=12, stream=True, stream_options={"include_usage": True})
    parts, usage, finish = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            parts.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(parts) == plain.choices[0].message.content  # greedy: same text both ways
    assert finish == "length" and usage.completion_tokens == 12


def test_text_completions_n_choices_and_stop(server, client):
    out = client.completions.create(model=server["base"], prompt="The quick brown", max_tokens=6, n=3,
                                    temperature=1.0, seed=7)
    assert out.id.startswith("cmpl-") and len(out.choices) == 3
    assert out.usage.completion_tokens == 3 * 6  # n rows, each to max_tokens (random tiny model: no EOS)
    full = chat(client, server["base"], max_tokens=16).choices[0].message.content
    stop = full[3:5]
    cut = chat(client, server["base"], max_tokens=16, stop=[stop])
    assert cut.choices[0].message.content == full[: full.find(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_models_list_and_adapter_changes_output(server, client):
    ids = [m.id for m in client.models.list().data]
    assert ids == [server["base"], "alpha"]
    base = chat(client, server["base"], max_tokens=12).choices[0].message.content
    tuned = chat(client, "alpha", max_tokens=12).choices[0].message.content
    assert base != tuned
    assert chat(client, server["base"], max_tokens=12).choices[0].message.content == base  # base restored
    with pytest.raises(openai.NotFoundError):
        chat(client, "no-such-model")


def test_admin_adapter_routes_need_the_key(server, adapters, client):
    url = server["url"]
    body = {"name": "beta", "path": str(adapters["beta"])}
    assert httpx.post(f"{url}/admin/adapters", json=body).status_code == 401
    wrong = {"Authorization": "Bearer nope-nope-nope"}
    assert httpx.post(f"{url}/admin/adapters", json=body, headers=wrong).status_code == 401
    r = httpx.post(f"{url}/admin/adapters", json=body, headers=HEADERS, timeout=60)
    assert r.status_code == 200, r.text
    assert "beta" in [m.id for m in client.models.list().data]
    beta = chat(client, "beta", max_tokens=12).choices[0].message.content
    assert beta != chat(client, "alpha", max_tokens=12).choices[0].message.content
    bad = httpx.post(f"{url}/admin/adapters", json={"name": "x", "path": "/nonexistent"}, headers=HEADERS)
    assert bad.status_code == 400 and "adapter" in bad.json()["error"]["message"]
    assert httpx.delete(f"{url}/admin/adapters/beta").status_code == 401
    assert httpx.delete(f"{url}/admin/adapters/beta", headers=HEADERS, timeout=60).status_code == 200
    assert "beta" not in [m.id for m in client.models.list().data]
    assert httpx.delete(f"{url}/admin/adapters/beta", headers=HEADERS).status_code == 404


@pytest.mark.parametrize("body, param", [
    (b"{not json", None),
    (b'["a list"]', None),
    (b'{"model": "m", "messages": "hi"}', "messages"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": "many"}', "max_tokens"),
    (b'{"model": "m", "messages": [{"role": "wizard", "content": "x"}]}', "messages.0.role"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 9}', "temperature"),
    (b'{"model": "m", "messages": []}', "messages"),
    (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
])
def test_malformed_requests_get_openai_style_400(server, body, param):
    r = httpx.post(server["url"] + "/v1/chat/completions", content=body,
                   headers={**HEADERS, "Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    if param:
        assert err["param"] == param


def test_limits_prompt_length_and_max_tokens(server, client):
    with pytest.raises(openai.BadRequestError) as too_long:
        chat(client, server["base"], content="fox " * 2000)
    assert too_long.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as too_many:
        chat(client, server["base"], max_tokens=65)
    assert too_many.value.body["param"] == "max_tokens"
    r = httpx.post(server["url"] + "/v1/completions", headers=HEADERS, json={"model": "x", "prompt": ["a", "b"]})
    assert r.status_code == 400


def test_auth_required_and_health_open(server):
    assert httpx.get(server["url"] + "/health").json()["status"] == "ok"
    r = httpx.get(server["url"] + "/v1/models")
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_concurrent_requests_are_batched(server, client):
    import concurrent.futures

    engine = server["app"].state.engine
    before_batches, before_rows = engine.batches_run, engine.rows_run
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda i: chat(client, server["base"], content=f"hi {i}", max_tokens=12), range(8)))
    assert all(o.usage.completion_tokens == 12 for o in outs)
    assert engine.rows_run - before_rows == 8
    assert engine.batches_run - before_batches < 8  # some requests shared a generate call


def test_feedback_route(server, client):
    out = chat(client, server["base"], n=2, temperature=1.0)
    url = server["url"] + "/v1/feedback"
    ok = httpx.post(url, headers=HEADERS, json={"response_id": out.id, "rating": 1, "choice": 1})
    assert ok.status_code == 200 and ok.json()["stored"]
    assert httpx.post(url, headers=HEADERS, json={"response_id": "nope", "rating": 1}).status_code == 404
    assert httpx.post(url, headers=HEADERS, json={"response_id": out.id, "choice": 5}).status_code == 400
    assert httpx.post(url, headers=HEADERS, json={"response_id": out.id, "rating": 3}).status_code == 400
    assert httpx.post(url, headers=HEADERS, json={"response_id": out.id}).status_code == 400
