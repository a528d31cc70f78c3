"""Build and run a server from a model spec or run folder: what `tuneforge serve` calls."""

from __future__ import annotations

import os
from pathlib import Path

from tuneforge.serve.security import check_bind


def build_app(target: str, *, adapters: dict[str, str] | None = None, db: str | Path | None = "feedback.sqlite",
              api_key: str | None = None, max_batch: int = 8, queue: int = 64, window_ms: float = 10.0,
              max_prompt_tokens: int | None = None, max_tokens_cap: int = 1024, default_max_tokens: int = 256,
              threads: int | None = None, scheduler: str = "continuous"):
    """Load the model (and adapters) and return the FastAPI app; nothing is bound yet."""
    from tuneforge.errors import ConfigError
    from tuneforge.serve.adapters import resolve_target
    from tuneforge.serve.app import ServeSettings, create_app
    from tuneforge.serve.continuous import ContinuousEngine
    from tuneforge.serve.engine import Engine
    from tuneforge.serve.feedback import FeedbackStore

    if max_batch < 1 or queue < 1 or (threads is not None and threads < 1):
        raise ConfigError("--max-batch, --queue and --threads must be at least 1")
    if scheduler not in ("continuous", "static"):
        raise ConfigError(f"--scheduler: expected continuous or static, got {scheduler!r}")
    served = resolve_target(target, adapters)
    engine_cls = ContinuousEngine if scheduler == "continuous" else Engine
    engine = engine_cls(served, max_batch=max_batch, queue_size=queue, window_s=window_ms / 1000,
                        max_prompt_tokens=max_prompt_tokens, max_tokens_cap=max_tokens_cap, threads=threads)
    store = FeedbackStore(db) if db else None
    settings = ServeSettings(api_key=api_key, default_max_tokens=default_max_tokens)
    return create_app(engine, store, settings)


def serve(target: str, *, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          log_level: str = "info", **kwargs) -> None:
    """Check the binding is safe, load everything, then serve until interrupted."""
    import uvicorn

    api_key = api_key or os.environ.get("TUNEFORGE_API_KEY") or None
    check_bind(host, api_key)  # before the (slow) model load, so a refusal is instant
    app = build_app(target, api_key=api_key, **kwargs)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class BackgroundServer:
    """Run an app on a uvicorn thread (notebooks, tests): `with BackgroundServer(app) as url: ...`."""

    def __init__(self, app, host: str = "127.0.0.1", port: int | None = None):
        import uvicorn

        self.host, self.port = host, port or free_port(host)
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, log_level="warning"))
        self.thread = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> str:
        import threading
        import time

        self.thread = threading.Thread(target=self.server.run, name="tuneforge-uvicorn", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.url} did not start")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
