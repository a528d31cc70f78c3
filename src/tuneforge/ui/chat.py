"""The dashboard's chat: one finished run's model at a time, loaded on request in a background thread.

One at a time because the dashboard shares the machine with training runs: a second model would double the
memory for a side panel. Loading takes seconds to minutes (GGUF bases are dequantized on first use), so it
happens off the request, and the page polls `state` (empty -> loading -> ready | failed) to show it.
Generation is `tuneforge.models.chat.chat_reply`, the same as `tuneforge chat --run`.
"""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path
from typing import Any

from tuneforge.errors import ModelError


class ChatBusy(RuntimeError):
    """A model is loading (HTTP 409): try again when `state` is ready."""


class ChatModel:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # state changes
        self._generate = threading.Lock()  # one generation at a time: they would only share the cores
        self.state, self.run, self.error, self.load_s = "empty", None, None, None
        self._model = self._tokenizer = None

    def status(self) -> dict[str, Any]:
        with self._lock:
            return self._status_unlocked()

    def load(self, run_dir: Path) -> dict[str, Any]:
        """Start loading `run_dir`'s final model (dropping the current one); returns the new status."""
        from tuneforge.train.runs import read_run

        info = read_run(run_dir)
        if info.final_dir is None:
            raise ModelError(f"{info.name}: the run has no final model yet (status {info.status})")
        with self._lock:
            if self.state == "loading":
                raise ChatBusy(f"{self.run} is still loading")
            if self.state == "ready" and self.run == info.name:
                return self._status_unlocked()
            self.state, self.run, self.error, self.load_s = "loading", info.name, None, None
            self._model = self._tokenizer = None
        gc.collect()
        threading.Thread(target=self._load, args=(info,), name="tuneforge-ui-chat-load",
                         daemon=True).start()
        return self.status()

    def reply(self, run: str, messages: list[dict[str, str]], **settings: Any) -> str:
        from tuneforge.models.chat import chat_reply

        with self._lock:
            if self.state != "ready" or self.run != run:
                raise ChatBusy(f"{run} is not loaded (state {self.state}{', run ' + self.run if self.run else ''})")
            model, tokenizer = self._model, self._tokenizer
        with self._generate:
            return chat_reply(model, tokenizer, messages, **settings)

    def _load(self, info) -> None:
        """In a thread: the run's model (`info`, the RunInfo `load` read: not resolved a second time)."""
        from tuneforge.train.runs import load_run_model

        started = time.perf_counter()
        try:
            model, tokenizer = load_run_model(info)
        except Exception as exc:  # shown on the page; a bad run must not take the dashboard down
            with self._lock:
                self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"
            return
        with self._lock:
            self._model, self._tokenizer = model, tokenizer
            self.state, self.load_s = "ready", round(time.perf_counter() - started, 1)

    def _status_unlocked(self) -> dict[str, Any]:
        return {"state": self.state, "run": self.run, "error": self.error, "load_s": self.load_s}
