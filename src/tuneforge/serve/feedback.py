"""Completion log and feedback store: SQLite in WAL mode, one writer thread, fsync on every commit.

Every served completion is logged (id, prompt messages, outputs, adapter, time) before its response is
sent, and feedback is acknowledged only after its row is committed with `synchronous=FULL`, so a
200 from the server means the row survives a SIGKILL. The writer drains whatever is queued into one
transaction (group commit), which keeps one fsync per batch rather than per row under load.
"""

from __future__ import annotations

import concurrent.futures
import json
import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    model TEXT NOT NULL,
    adapter TEXT,
    kind TEXT NOT NULL,              -- chat | text
    messages TEXT NOT NULL,          -- JSON: OpenAI messages (text prompts: one user message)
    outputs TEXT NOT NULL,           -- JSON list, one text per choice
    params TEXT NOT NULL,            -- JSON sampling settings
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    response_id TEXT NOT NULL REFERENCES completions(id),
    created REAL NOT NULL,
    rating INTEGER,
    correction TEXT,
    choice INTEGER,
    comment TEXT
);
CREATE INDEX IF NOT EXISTS feedback_response ON feedback(response_id);
CREATE INDEX IF NOT EXISTS completions_created ON completions(created);
"""


def connect(path: str | Path, readonly: bool = False) -> sqlite3.Connection:
    path = Path(path)
    if readonly:
        if not path.is_file():
            from tuneforge.errors import DataError

            raise DataError(f"{path}: feedback database not found")
        # Not `mode=ro`: a reader of a WAL database may need to recover it after a crash.
        conn = sqlite3.connect(str(path), check_same_thread=False)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA)
    conn.row_factory = sqlite3.Row
    return conn


class FeedbackStore:
    """Owns the one writer connection; reads use short-lived connections (WAL lets them run alongside)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._writer = connect(self.path)
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._write_loop, name="tuneforge-feedback", daemon=True)
        self._thread.start()
        self.rows_written = 0

    # -- writes ------------------------------------------------------------------------------------
    def log_completion(self, *, id: str, model: str, adapter: str | None, kind: str,
                       messages: list[dict], outputs: list[str], params: dict, prompt_tokens: int,
                       completion_tokens: int) -> concurrent.futures.Future:
        row = (id, time.time(), model, adapter, kind, json.dumps(messages, ensure_ascii=False),
               json.dumps(outputs, ensure_ascii=False), json.dumps(params), prompt_tokens, completion_tokens)
        return self._submit("INSERT INTO completions VALUES (?,?,?,?,?,?,?,?,?,?)", row)

    def add_feedback(self, *, response_id: str, rating: int | None, correction: str | None,
                     choice: int | None, comment: str | None) -> concurrent.futures.Future:
        row = (response_id, time.time(), rating, correction, choice, comment)
        return self._submit(
            "INSERT INTO feedback (response_id, created, rating, correction, choice, comment) "
            "VALUES (?,?,?,?,?,?)", row)

    def _submit(self, sql: str, params: tuple) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((sql, params, fut))
        return fut

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            items = [item]
            while len(items) < 256:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                items.append(nxt)
            self._commit(items)

    def _commit(self, items: list) -> None:
        done: list[tuple[concurrent.futures.Future, Any]] = []
        self._writer.execute("BEGIN")
        for sql, params, fut in items:
            try:
                self._writer.execute("SAVEPOINT row")
                cur = self._writer.execute(sql, params)
                self._writer.execute("RELEASE row")
                done.append((fut, cur.lastrowid))
            except sqlite3.Error as exc:  # one bad row must not lose the others in this transaction
                self._writer.execute("ROLLBACK TO row")
                self._writer.execute("RELEASE row")
                done.append((fut, exc))
        try:
            self._writer.execute("COMMIT")
        except sqlite3.Error as exc:
            for fut, _ in done:
                fut.set_exception(exc)
            return
        for fut, result in done:
            if isinstance(result, Exception):
                fut.set_exception(result)
            else:
                self.rows_written += 1
                fut.set_result(result)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)
        self._writer.close()

    # -- reads -------------------------------------------------------------------------------------
    def completion(self, response_id: str) -> dict | None:
        with _reader(self.path) as conn:
            row = conn.execute("SELECT * FROM completions WHERE id = ?", (response_id,)).fetchone()
        return completion_row(row) if row else None


class _reader:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> sqlite3.Connection:
        self.conn = connect(self.path, readonly=True)
        return self.conn

    def __exit__(self, *exc: Any) -> None:
        self.conn.close()


def completion_row(row: sqlite3.Row) -> dict:
    out = dict(row)
    for key in ("messages", "outputs", "params"):
        out[key] = json.loads(out[key])
    return out


def read_all(path: str | Path) -> tuple[list[dict], list[dict]]:
    """(completions, feedback) as dicts, oldest first."""
    with _reader(Path(path)) as conn:
        completions = [completion_row(r) for r in conn.execute("SELECT * FROM completions ORDER BY created")]
        feedback = [dict(r) for r in conn.execute("SELECT * FROM feedback ORDER BY created, id")]
    return completions, feedback
