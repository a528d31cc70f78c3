"""Feedback durability (SIGKILL), export to SFT + preference files, next-round recipe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tuneforge.config.recipe import dump_recipe, load_recipe, parse_recipe
from tuneforge.serve.export_feedback import export_feedback, next_round_recipe
from tuneforge.serve.feedback import FeedbackStore, read_all
from tuneforge.serve.launch import free_port


def test_feedback_survives_sigkill(tiny_model_dir, tmp_path):
    db, port = tmp_path / "fb.sqlite", free_port()
    code = (f"from tuneforge.cli import main; main(['serve', {str(tiny_model_dir)!r}, '--port', '{port}', "
            f"'--db', {str(db)!r}, '--threads', '1'])")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        ids = []
        for i in range(3):
            r = httpx.post(url + "/v1/chat/completions", timeout=60, json={
                "model": tiny_model_dir.name, "max_tokens": 4, "messages": [{"role": "user", "content": f"q{i}"}]})
            ids.append(r.json()["id"])
            fb = httpx.post(url + "/v1/feedback", json={"response_id": ids[-1], "rating": 1 if i else -1,
                                                        "correction": "fixed" if i == 0 else None})
            assert fb.status_code == 200
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no shutdown hook runs: only committed rows survive
        proc.wait(timeout=30)
    completions, feedback = read_all(db)
    assert [c["id"] for c in completions] == ids
    assert [f["rating"] for f in feedback] == [-1, 1, 1]
    assert feedback[0]["correction"] == "fixed"
    assert completions[0]["messages"] == [{"role": "user", "content": "q0"}]


def _log(store, cid, prompt, outputs):
    return store.log_completion(id=cid, model="m", adapter=None, kind="chat",
                                messages=[{"role": "user", "content": prompt}], outputs=outputs,
                                params={}, prompt_tokens=3, completion_tokens=5)


def _fb(store, cid, rating=None, correction=None, choice=None):
    return store.add_feedback(response_id=cid, rating=rating, correction=correction, choice=choice, comment=None)


@pytest.fixture()
def feedback_db(tmp_path):
    db = tmp_path / "fb.sqlite"
    store = FeedbackStore(db)
    futures = [
        _log(store, "c1", "Capital of France?", ["Lyon"]),
        _log(store, "c2", "Name a colour.", ["red", "blue", "green"]),
        _log(store, "c3", "Say hi.", ["hello there"]),
        _log(store, "c4", "Say hi.", ["go away"]),
        _log(store, "c5", "What is 2+2?", ["4"]),
        _log(store, "c6", "What is 2+2?", ["4"]),  # same answer again: a within-export duplicate
    ]
    futures += [
        _fb(store, "c1", rating=-1, correction="Paris"),
        _fb(store, "c2", choice=1),
        _fb(store, "c3", rating=1),
        _fb(store, "c4", rating=-1),
        _fb(store, "c5", rating=1),
        _fb(store, "c6", rating=1),
        _fb(store, "missing", rating=1),  # stored, but has no completion
    ]
    for f in futures:
        try:
            f.result(timeout=10)
        except Exception:
            pass
    store.close()
    return db


def test_export_sft_and_preferences_with_dedup(feedback_db, tmp_path):
    previous = tmp_path / "previous.jsonl"
    previous.write_text(json.dumps({"messages": [{"role": "user", "content": "say  HI."},
                                                 {"role": "assistant", "content": "Hello there"}]}) + "\n")
    summary = export_feedback(feedback_db, tmp_path / "out", previous=[previous])
    sft = [json.loads(l) for l in (tmp_path / "out" / "sft.jsonl").read_text().splitlines()]
    prefs = [json.loads(l) for l in (tmp_path / "out" / "preferences.jsonl").read_text().splitlines()]
    pairs = {(p["prompt"][-1]["content"], p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in prefs}
    answers = {(r["messages"][0]["content"], r["messages"][-1]["content"]) for r in sft}
    # correction, chosen choice, +1 answer; "Say hi." / "hello there" was in the previous data
    assert answers == {("Capital of France?", "Paris"), ("Name a colour.", "blue"), ("What is 2+2?", "4")}
    assert pairs == {
        ("Capital of France?", "Paris", "Lyon"),
        ("Name a colour.", "blue", "red"), ("Name a colour.", "blue", "green"),
        ("Say hi.", "hello there", "go away"),
    }
    assert summary.sft == 3 and summary.preferences == 4
    assert summary.duplicates_previous == 1 and summary.duplicates_within == 1
    assert summary.orphan_feedback == 1  # feedback naming an id the log never had
    # the exported SFT file reads back through tuneforge's own reader
    from tuneforge.data import read_source

    assert len(read_source(tmp_path / "out" / "sft.jsonl").records) == 3


def test_next_round_recipe(feedback_db, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("")
    run = tmp_path / "runs" / "demo-20260101-000000"
    (run / "final").mkdir(parents=True)
    dump_recipe(parse_recipe({"name": "demo", "data": {"sources": [{"path": str(data)}]}}), run / "recipe.yaml")
    export_feedback(feedback_db, tmp_path / "out")
    raw = next_round_recipe(run, tmp_path / "out")
    recipe = load_recipe(tmp_path / "out" / "next_recipe.yaml")
    assert recipe.model.init_from_run == str(run.resolve()) == raw["model"]["init_from_run"]
    assert [s.path for s in recipe.data.sources] == [str((tmp_path / "out" / "sft.jsonl").resolve()), str(data)]
    assert recipe.name == "demo-next"


def test_export_cli_prints_counts(feedback_db, tmp_path, capsys):
    from tuneforge.cli import main

    assert main(["feedback", "export", "--db", str(feedback_db), "--out", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    # no --previous: "Say hi." / "hello there" is exported this time
    assert "sft: 4 ->" in out and "preferences: 4 ->" in out and "1 feedback rows without" in out
    assert main(["feedback", "export", "--db", str(tmp_path / "missing.sqlite"), "--out", str(tmp_path)]) == 2
