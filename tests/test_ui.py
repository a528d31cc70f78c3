"""`tuneforge ui`: the dashboard API over a real tiny run folder, its guards, launching and stopping runs."""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from test_train_common import make_recipe, write_chat_data  # noqa: E402
from tuneforge.errors import ConfigError  # noqa: E402
from tuneforge.train import train  # noqa: E402
from tuneforge.ui.web import CSRF_HEADER, UISettings, create_ui_app  # noqa: E402

POST = {CSRF_HEADER: "1"}
KEY = "s3cret-token-123"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_model_dir):
    """runs/ with one finished LoRA run (val split, 2 epochs), and examples/ with a recipe for the tiny model."""
    tmp = tmp_path_factory.mktemp("ui")
    result = train(make_recipe(tmp, tiny_model_dir, "name=tiny", "data.val_ratio=0.2", "hparams.epochs=2"),
                   quiet=True)
    data = write_chat_data(tmp / "examples" / "data" / "chat.jsonl", 16)
    (tmp / "examples" / "tiny.yaml").write_text(
        "# A tiny LoRA run for the dashboard tests.\n"
        f"name: tiny-ex\nmodel: {{name_or_path: {tiny_model_dir}}}\ndata: [{{path: data/{data.name}}}]\n"
        "output_dir: runs\n"
        "hparams: {threads: 1, probe_steps: 0, epochs: 1, learning_rate: 0.01, batch_size: 16}\n",
        encoding="utf-8")
    return tmp, result


def client_for(tmp: Path, **kw) -> TestClient:
    settings = UISettings(runs_dir=Path("runs"), examples_dir=Path("examples"), cwd=tmp, **kw)
    return TestClient(create_ui_app(settings), base_url="http://127.0.0.1:7860")


def copy_run(result, tmp: Path, name: str) -> Path:
    dest = tmp / "runs" / name
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(result.run_dir, dest, ignore=shutil.ignore_patterns("final", "checkpoint-*"))
    return dest


def make_running(run_dir: Path) -> None:
    """A run folder that reads as running: status file plus this (live) process as its owner."""
    (run_dir / "status").write_text("running\n", encoding="utf-8")
    (run_dir / "pid").write_text(f"{os.getpid()}@{platform.node()}\n", encoding="utf-8")
    (run_dir / "summary.json").unlink(missing_ok=True)


def test_runs_list_detail_and_pages(workspace):
    tmp, result = workspace
    client = client_for(tmp)
    rows = client.get("/api/runs").json()["runs"]
    row = next(r for r in rows if r["name"] == result.run_dir.name)
    assert row["status"] == "finished" and row["steps"] == result.steps and row["has_final"]
    assert row["best_val_loss"] == pytest.approx(result.best_val_loss)
    assert (row["objective"], row["method"]) == ("sft", "lora")

    detail = client.get(f"/api/runs/{row['name']}").json()
    assert "name: tiny" in detail["recipe_yaml"] and "recipe.yaml" in detail["files"]
    assert detail["summary"]["steps"] == result.steps and detail["job"] is None
    recipe = client.get(f"/api/runs/{row['name']}/files/recipe.yaml")
    assert recipe.status_code == 200 and "sandbox" in recipe.headers["content-security-policy"]
    assert client.get("/api/runs/nope-1").status_code == 404

    for path in ("/", "/new", "/compare", "/chat", f"/runs/{row['name']}"):
        page = client.get(path)
        assert page.status_code == 200 and '<script type="module" src="/static/app.js">' in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
    for asset in ("app.js", "style.css", "views/run.js", "views/chart.js", "views/newrun.js"):
        assert client.get(f"/static/{asset}").status_code == 200, asset

    compared = client.get(f"/api/compare?runs={row['name']}").json()
    curves = compared["runs"][0]["curves"]
    assert len(curves["train_loss"]) == result.steps and curves["val_loss"]
    assert "best_val_loss" in compared["metrics"]


def test_metrics_cursor_returns_only_new_rows(workspace):
    tmp, result = workspace
    run = copy_run(result, tmp, "cursor-1")
    client = client_for(tmp)
    first = client.get("/api/runs/cursor-1/metrics").json()
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert first["rows"] == rows and not first["reset"]

    again = client.get("/api/runs/cursor-1/metrics", params={"cursor": first["cursor"]}).json()
    assert again["rows"] == [] and again["cursor"] == first["cursor"]
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"step": 99, "train_loss": 0.5}) + "\n" + '{"step": 100, "train_')  # half a line
    new = client.get("/api/runs/cursor-1/metrics", params={"cursor": first["cursor"]}).json()
    assert new["rows"] == [{"step": 99, "train_loss": 0.5}] and not new["reset"]

    # rewritten under the reader (a resume truncates): the old cursor no longer matches, start over
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "train_loss": 9.0}) + "\n", encoding="utf-8")
    reset = client.get("/api/runs/cursor-1/metrics", params={"cursor": new["cursor"]}).json()
    assert reset["reset"] and reset["rows"] == [{"step": 1, "train_loss": 9.0}]


def test_host_check_and_csrf_header(workspace):
    tmp, result = workspace
    client = client_for(tmp)
    rebound = client.get("/api/runs", headers={"host": "evil.example.com"})
    assert rebound.status_code == 403 and "localhost only" in rebound.json()["error"]
    assert client.get("/api/runs", headers={"host": "localhost:7860"}).status_code == 200
    for host in ("[::1]:7860", "127.0.0.2:7860", "ip6-localhost"):  # loopback as serve/security.py defines it
        assert client.get("/api/runs", headers={"host": host}).status_code == 200, host

    run = copy_run(result, tmp, "csrf-1")
    make_running(run)
    refused = client.post("/api/runs/csrf-1/stop")
    assert refused.status_code == 403 and CSRF_HEADER in refused.json()["error"]
    assert not (run / "stop-request").exists()
    assert client.post("/api/recipes/validate", json={"example": "tiny.yaml"}).status_code == 403


def test_a_hand_edited_recipe_does_not_take_the_runs_table_down(workspace):
    tmp, result = workspace
    run = copy_run(result, tmp, "edited-1")
    (run / "recipe.yaml").write_text("name: edited\nmethod: lora\nmodel: [not, a, mapping]\n", encoding="utf-8")
    got = client_for(tmp).get("/api/runs")
    assert got.status_code == 200
    row = next(r for r in got.json()["runs"] if r["name"] == "edited-1")
    assert (row["method"], row["model"], row["objective"]) == ("?", "?", "sft")


def test_token_required_off_loopback(workspace):
    tmp, _ = workspace
    with pytest.raises(ConfigError, match="--api-key"):
        create_ui_app(UISettings(runs_dir=tmp / "runs", host="0.0.0.0"))
    client = client_for(tmp, host="0.0.0.0", api_key=KEY)
    missing = client.get("/api/runs")
    assert missing.status_code == 401 and "token" in missing.json()["error"]
    assert client.get("/", headers={"authorization": "Bearer wrong-token-1"}).status_code == 401
    assert client.get("/api/runs", headers={"authorization": f"Bearer {KEY}"}).status_code == 200

    login = client.get(f"/new?token={KEY}&example=tiny.yaml", follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/new?example=tiny.yaml"
    assert "httponly" in login.headers["set-cookie"].lower()
    assert client.get("/api/runs").status_code == 200  # the cookie from the login


def test_invalid_recipe_returns_field_errors(workspace):
    tmp, _ = workspace
    client = client_for(tmp)
    assert [e["name"] for e in client.get("/api/examples").json()["examples"]] == ["tiny.yaml"]
    ok = client.post("/api/recipes/validate", headers=POST,
                     json={"example": "tiny.yaml", "overrides": [f"output_dir={tmp / 'runs'}"]}).json()
    assert ok["ok"] and ok["name"] == "tiny-ex" and ok["problems"] == []

    bad = client.post("/api/jobs", headers=POST,
                      json={"example": "tiny.yaml", "overrides": ["method.type=lorra", "hparams.learning_rate=fast"]})
    assert bad.status_code == 422
    fields = {p["path"]: p["message"] for p in bad.json()["problems"]}
    assert "did you mean 'lora'" in fields["method.type"] and "hparams.learning_rate" in fields
    # checks the CLI makes only once running: a missing data file, an output_dir outside the runs folder
    late = client.post("/api/jobs", headers=POST, json={
        "text": "name: x\nmodel: {name_or_path: m}\ndata: [{path: /nowhere/d.jsonl}]\noutput_dir: /tmp/elsewhere\n"})
    assert late.status_code == 422
    fields = {p["path"] for p in late.json()["problems"]}
    assert fields == {"data.sources.0.path", "output_dir"}
    yaml_error = client.post("/api/recipes/validate", headers=POST, json={"text": "name: [unclosed\n"}).json()
    assert not yaml_error["ok"] and "recipe text" in yaml_error["message"]
    assert client.get("/api/jobs").json()["jobs"] == []  # nothing was started


def test_stop_button_writes_the_stop_request(workspace):
    tmp, result = workspace
    client = client_for(tmp)
    run = copy_run(result, tmp, "stop-1")
    make_running(run)
    assert client.get("/api/runs/stop-1").json()["status"] == "running"
    stopped = client.post("/api/runs/stop-1/stop", headers=POST)
    assert stopped.status_code == 200 and "stop requested" in stopped.json()["message"]
    assert (run / "stop-request").is_file()
    assert client.get("/api/runs/stop-1").json()["stop_requested"] is True

    finished = client.post(f"/api/runs/{result.run_dir.name}/stop", headers=POST)
    assert finished.status_code == 409 and "not running" in finished.json()["error"]
    assert not (result.run_dir / "stop-request").exists()


def test_path_traversal_on_run_files_is_refused(workspace, tmp_path):
    tmp, result = workspace
    client = client_for(tmp)
    name = result.run_dir.name
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve", encoding="utf-8")
    run = copy_run(result, tmp, "links-1")
    (run / "loss.png").unlink(missing_ok=True)
    (run / "loss.png").symlink_to(secret)  # a servable name pointing out of the run folder
    for url in (f"/api/runs/{name}/files/..%2F..%2Fexamples%2Ftiny.yaml",
                f"/api/runs/{name}/files/%2E%2E/recipe.yaml",
                f"/api/runs/{name}/files/final/adapter_config.json",  # inside, but not a servable file
                f"/api/runs/{name}/files/eval/..%2F..%2Frecipe.yaml/report.html",
                "/api/runs/links-1/files/loss.png",
                "/api/runs/..%2Fexamples/files/recipe.yaml",
                "/api/runs/%2E%2E/metrics"):
        got = client.get(url)
        assert got.status_code == 404, url
        assert "do not serve" not in got.text and "tiny-ex" not in got.text


def test_launch_and_stop_a_real_job(workspace):
    """The whole loop: New run starts `tuneforge train`, the job finds its run folder, Stop ends it cleanly."""
    tmp, _ = workspace
    client = client_for(tmp)
    started = client.post("/api/jobs", headers=POST, json={"example": "tiny.yaml", "overrides": [
        f"output_dir={tmp / 'runs'}", "hparams.epochs=400", "hparams.batch_size=1",
        "hparams.save_each_epoch=false"]})
    assert started.status_code == 201, started.text
    job_id = started.json()["job"]["id"]
    manager = client.app.state.ui.jobs
    try:
        run = _wait(lambda: _running_run(client, job_id), 120, "the job's run folder")
        assert client.post(f"/api/runs/{run}/stop", headers=POST).status_code == 200
        detail = _wait(lambda: _ended(client, run), 120, "the run to stop")
        assert detail["status"] == "stopped" and detail["checkpoints"] and detail["job"]["id"] == job_id
        assert "$ tuneforge train" in client.get(f"/api/jobs/{job_id}/log").json()["log"]
    finally:
        manager.kill_all()


def _running_run(client, job_id):
    job = next(j for j in client.get("/api/jobs").json()["jobs"] if j["id"] == job_id)
    assert job["state"] != "failed", client.get(f"/api/jobs/{job_id}/log").json()["log"]
    if job["run"] and client.get(f"/api/runs/{job['run']}/metrics").json()["rows"]:
        return job["run"]  # training has taken at least one step
    return None


def _ended(client, run):
    detail = client.get(f"/api/runs/{run}").json()
    return detail if detail["status"] != "running" else None


def _wait(probe, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_before_after_tables_from_summary_stats():
    from tuneforge.ui.runs_view import before_after

    tables = before_after({"test_before": {"exact_match": 0.1, "loss": 2.0},
                           "test_after": {"exact_match": 0.8, "loss": 1.5},
                           "pref_accuracy_before": 0.5, "pref_accuracy_after": 0.75})
    assert tables[0] == {"title": "test split", "rows": [
        {"metric": "exact_match", "before": 0.1, "after": 0.8}, {"metric": "loss", "before": 2.0, "after": 1.5}]}
    assert tables[1]["rows"] == [{"metric": "pref_accuracy", "before": 0.5, "after": 0.75}]


def test_cli_ui_refuses_a_public_bind_without_token(capsys):
    from tuneforge.cli import main

    assert main(["ui", "--host", "0.0.0.0", "--port", "7999"]) == 2
    err = capsys.readouterr().err
    assert "--api-key" in err and "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (["--runs-dir", "{file}"], "--runs-dir {file}: is a file; expected a folder"),
    (["--examples-dir", "{file}"], "--examples-dir {file}: is a file; expected a folder"),
    (["--port", "99999"], "Invalid value for '--port': Input should be less than or equal to 65535"),
])
def test_cli_ui_refuses_bad_folders_and_ports_in_one_line(tmp_path, capsys, args, message):
    from tuneforge.cli import main

    file = tmp_path / "runs.txt"
    file.write_text("not a folder\n")
    assert main(["ui", *[a.format(file=file) for a in args]]) == 2
    err = capsys.readouterr().err
    assert message.format(file=file) in " ".join(err.replace("│", " ").split()) and "Traceback" not in err


def test_missing_folders_are_named_before_serving(tmp_path):
    from tuneforge.ui.web import check_folders

    settings = UISettings(runs_dir=Path("rnus"), examples_dir=Path("examples"), cwd=tmp_path)
    notes = check_folders(settings)
    assert notes == [f"--runs-dir {tmp_path / 'rnus'} does not exist yet: no runs to list there until a run creates it",
                     f"--examples-dir {tmp_path / 'examples'} does not exist: New run offers no example recipes"]
    (tmp_path / "rnus").mkdir()
    (tmp_path / "examples").mkdir()
    assert check_folders(settings) == []
