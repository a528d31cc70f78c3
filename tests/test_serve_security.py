"""Binding rules, Bearer auth, and the bounded queue (429) of the server."""

from __future__ import annotations

import concurrent.futures

import httpx
import pytest

from tuneforge.errors import ConfigError
from tuneforge.serve.launch import BackgroundServer, build_app
from tuneforge.serve.security import bearer_ok, check_bind, is_loopback


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("127.0.0.2", True), ("0.0.0.0", False), ("::", False),
                                            ("192.168.1.5", False), ("example.com", False)])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_non_loopback_without_key_refuses():
    with pytest.raises(ConfigError, match="--api-key"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "long-enough-key")
    check_bind("127.0.0.1", None)
    with pytest.raises(ConfigError, match="at least 8"):
        check_bind("127.0.0.1", "short")


def test_cli_refuses_public_bind_before_loading(monkeypatch, capsys):
    from tuneforge.cli import main

    monkeypatch.delenv("TUNEFORGE_API_KEY", raising=False)
    # the model path does not exist: the refusal must come first, without a traceback
    assert main(["serve", "/no/such/model", "--host", "0.0.0.0"]) == 2
    assert "--api-key" in capsys.readouterr().err


def test_bearer_check():
    assert bearer_ok("Bearer secret-key", "secret-key")
    assert bearer_ok("bearer secret-key", "secret-key")
    assert not bearer_ok("Bearer secret-kez", "secret-key")
    assert not bearer_ok("secret-key", "secret-key")
    assert not bearer_ok(None, "secret-key")


def test_full_queue_answers_429_and_never_5xx(tiny_model_dir, tmp_path):
    app = build_app(str(tiny_model_dir), db=None, max_batch=1, queue=1, max_tokens_cap=64, threads=1)
    body = {"model": tiny_model_dir.name, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    with BackgroundServer(app) as url:
        def post(_):
            return httpx.post(url + "/v1/chat/completions", json=body, timeout=120)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            pending = [pool.submit(post, i) for i in range(8)]
            # generation runs off the event loop: the server keeps answering while it decodes
            assert httpx.get(url + "/health", timeout=5).status_code == 200
            replies = [f.result() for f in pending]
        codes = sorted(r.status_code for r in replies)
        assert 429 in codes and 200 in codes, codes
        assert all(c in (200, 429) for c in codes)
        busy = next(r for r in replies if r.status_code == 429).json()["error"]
        assert busy["type"] == "rate_limit_error" and busy["code"] == "queue_full"
        # the server recovers once the queue drains
        assert post(0).status_code == 200
        # feedback is off without --db: a clear 400
        assert httpx.post(url + "/v1/feedback", json={"response_id": "x", "rating": 1}).status_code == 400
        # admin routes are off without a key
        assert httpx.post(url + "/admin/adapters", json={"name": "a", "path": "/x"}).status_code == 403
