"""Drift: a shifted served set warns, a same-distribution one does not (TF-IDF features)."""

from __future__ import annotations

import json
import random

import pytest

from tuneforge.config.recipe import dump_recipe, parse_recipe
from tuneforge.serve.drift import compute_drift, psi
from tuneforge.serve.feedback import FeedbackStore

SUBJECTS = ["the capital of France", "photosynthesis", "a healthy breakfast", "the water cycle", "gravity",
            "a short poem", "the French revolution", "prime numbers", "rainbows", "volcanoes", "the moon"]
VERBS = ["Explain", "Describe", "Summarize", "Tell me about", "Give three facts about", "Write a sentence on"]
CODE = ["def parse_config(path): raise KeyError('port') traceback in line {} of server.py",
        "SELECT id, total FROM orders WHERE status = 'late' LIMIT {} ; -- why is this query so slow on postgres",
        "npm ERR! code ERESOLVE could not resolve dependency peer react@{} while installing webpack loader"]


def general_prompt(rng):
    return f"{rng.choice(VERBS)} {rng.choice(SUBJECTS)}."


def shifted_prompt(rng):
    return " ".join(rng.choice(CODE).format(rng.randint(1, 99)) for _ in range(rng.randint(2, 4)))


def make_run(tmp_path, n=150):
    rng = random.Random(0)
    data = tmp_path / "train.jsonl"
    rows = [{"messages": [{"role": "user", "content": general_prompt(rng)}, {"role": "assistant", "content": "ok"}]}
            for _ in range(n)]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    run = tmp_path / "run-1"
    (run / "final").mkdir(parents=True)
    dump_recipe(parse_recipe({"name": "run", "data": {"sources": [{"path": str(data)}]}}), run / "recipe.yaml")
    return run


def make_db(path, prompts, ratings=()):
    store = FeedbackStore(path)
    futures = []
    for i, prompt in enumerate(prompts):
        futures.append(store.log_completion(id=f"c{i}", model="m", adapter=None, kind="chat",
                                            messages=[{"role": "user", "content": prompt}], outputs=["x"],
                                            params={}, prompt_tokens=1, completion_tokens=1))
    for i, rating in enumerate(ratings):
        futures.append(store.add_feedback(response_id=f"c{i}", rating=rating, correction=None, choice=None,
                                          comment=None))
    for f in futures:
        f.result(timeout=10)
    store.close()
    return path


def test_same_distribution_is_ok(tmp_path):
    run = make_run(tmp_path)
    rng = random.Random(1)
    db = make_db(tmp_path / "same.sqlite", [general_prompt(rng) for _ in range(80)], ratings=[1, 1, -1, 1] * 5)
    report = compute_drift(run, db, window=500, encoder="tfidf")
    assert report["domain"]["features"] == "tfidf"
    assert report["train_prompts"] == 150 and report["served_prompts"] == 80
    assert report["length"]["status"] == "ok", report["length"]
    assert report["domain"]["status"] == "ok", report["domain"]
    assert report["ratings"]["status"] == "ok"
    assert report["status"] == "ok"


def test_shifted_prompts_and_falling_ratings_warn(tmp_path):
    run = make_run(tmp_path)
    rng = random.Random(2)
    db = make_db(tmp_path / "shift.sqlite", [shifted_prompt(rng) for _ in range(80)], ratings=[1] * 10 + [-1] * 10)
    report = compute_drift(run, db, window=500, encoder="tfidf")
    assert report["length"]["status"] == "warn" and report["length"]["ks"] > 0.9
    assert report["domain"]["status"] == "warn" and report["domain"]["roc_auc"] > 0.95
    assert report["ratings"]["status"] == "warn" and report["ratings"]["drop"] == 2.0
    assert report["status"] == "warn"


def test_window_and_too_few_prompts(tmp_path):
    run = make_run(tmp_path)
    rng = random.Random(3)
    db = make_db(tmp_path / "few.sqlite", [shifted_prompt(rng) for _ in range(30)])
    report = compute_drift(run, db, window=5, encoder="tfidf")
    assert report["served_prompts"] == 5 and report["domain"]["status"] == "n/a"


def test_psi_zero_for_identical_and_large_for_disjoint():
    import numpy as np

    a = np.arange(100, dtype=float)
    assert psi(a, a) == pytest.approx(0.0, abs=1e-9)
    assert psi(a, a + 1000) > 1.0


def test_drift_cli_writes_json(tmp_path, monkeypatch):
    from tuneforge.cli import main

    run = make_run(tmp_path)
    rng = random.Random(4)
    db = make_db(tmp_path / "cli.sqlite", [shifted_prompt(rng) for _ in range(40)])
    out = tmp_path / "drift.json"
    assert main(["drift", "--run", str(run), "--db", str(db), "--encoder", "tfidf", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["status"] == "warn"
    assert main(["drift", "--run", str(run), "--db", str(tmp_path / "none.sqlite")]) == 2


@pytest.mark.real
def test_minilm_embeddings_separate_shifted_prompts(tmp_path):
    run = make_run(tmp_path, n=60)
    rng = random.Random(5)
    db = make_db(tmp_path / "real.sqlite", [shifted_prompt(rng) for _ in range(30)])
    report = compute_drift(run, db, encoder="minilm")
    assert report["domain"]["features"] == "minilm-l6" and report["domain"]["status"] == "warn"


def test_serving_a_run_folder_and_drift_route(tiny_model_dir, tiny_tokenizer, tmp_path):
    """A run whose final/ is an adapter is served under the run's name; /v1/drift compares its data."""
    import httpx
    from test_serve_api import make_adapter

    from tuneforge.serve.launch import BackgroundServer, build_app

    run = make_run(tmp_path)
    recipe = {"name": "run", "model": {"name_or_path": str(tiny_model_dir)},
              "data": {"sources": [{"path": str(tmp_path / "train.jsonl")}]}}
    dump_recipe(parse_recipe(recipe), run / "recipe.yaml")
    make_adapter(tiny_model_dir, run / "final", 3)
    tiny_tokenizer.save_pretrained(run / "final")
    app = build_app(str(run), db=tmp_path / "fb.sqlite", max_tokens_cap=16, threads=1)
    with BackgroundServer(app) as url:
        assert [m["id"] for m in httpx.get(url + "/v1/models").json()["data"]] == [str(tiny_model_dir), "run-1"]
        rng = random.Random(6)
        for _ in range(12):
            r = httpx.post(url + "/v1/chat/completions", timeout=60, json={
                "model": "run-1", "max_tokens": 2, "messages": [{"role": "user", "content": shifted_prompt(rng)}]})
            assert r.status_code == 200, r.text
        report = httpx.get(url + "/v1/drift", params={"window": 50, "encoder": "tfidf"}, timeout=120).json()
    assert report["served_prompts"] == 12 and report["train_prompts"] == 150
    assert report["length"]["status"] == "warn" and report["domain"]["features"] == "tfidf"
