"""Issue 15 items 2 and 3 on the dashboard: every path-like recipe field is resolved and refused when it
leaves the dashboard's folders, and the body limit counts the bytes received (chunked bodies too)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from test_train_common import write_chat_data  # noqa: E402
from tuneforge.ui.web import CSRF_HEADER, UISettings, create_ui_app  # noqa: E402

POST = {CSRF_HEADER: "1"}


@pytest.fixture()
def workspace(tmp_path):
    """cwd/ with runs/ and examples/ (one recipe whose own data lives outside, as the shipped ones do),
    and an `outside/` folder next to it holding a run folder and a data file."""
    cwd, outside = tmp_path / "cwd", tmp_path / "outside"
    (cwd / "runs").mkdir(parents=True)
    write_chat_data(outside / "shared" / "chat.jsonl", 12)
    (outside / "other-run").mkdir()
    (outside / "other-run" / "recipe.yaml").write_text("name: other\n")
    (cwd / "examples").mkdir()
    (cwd / "examples" / "tiny.yaml").write_text(
        "name: tiny-ex\nmodel: {name_or_path: m}\ndata: [{path: ../../outside/shared/chat.jsonl}]\n"
        "output_dir: runs\n", encoding="utf-8")
    settings = UISettings(runs_dir=Path("runs"), examples_dir=Path("examples"), cwd=cwd)
    client = TestClient(create_ui_app(settings), base_url="http://127.0.0.1:7860")
    try:
        yield client, cwd, outside
    finally:
        client.app.state.ui.jobs.kill_all()  # only if a refused launch started one after all


def _launch(client, *overrides, **body):
    return client.post("/api/jobs", headers=POST, json={"example": "tiny.yaml", "overrides": list(overrides),
                                                        **body})


def test_the_example_as_shipped_validates(workspace):
    client, _, _ = workspace
    checked = client.post("/api/recipes/validate", headers=POST, json={"example": "tiny.yaml"}).json()
    assert checked["ok"], checked["message"]  # its own data path outside cwd is the operator's choice


@pytest.mark.parametrize("override, field", [
    ("name=../outside/escape", "name"),
    ("name=..", "name"),
    ("resume={outside}/other-run", "resume"),
    ("resume=runs/../../outside/other-run", "resume"),
    ("model.init_from_run={outside}/other-run", "model.init_from_run"),
    ("data.0.path={outside}/other-run/recipe.yaml", None),  # next to the example's data, but not named by it
    ("data.0.path=/etc/hostname", "data.sources.0.path"),
    ("data.0.dataset_info={outside}/shared", "data.sources.0.dataset_info"),
])
def test_path_fields_leaving_the_allowed_folders_are_refused(workspace, override, field):
    client, _, outside = workspace
    override = override.format(outside=outside)
    refused = _launch(client, override)
    assert refused.status_code == 422, refused.text
    fields = {p["path"] for p in refused.json()["problems"]}
    assert (field or "data.sources.0.path") in fields, refused.json()["message"]
    assert client.get("/api/jobs").json()["jobs"] == []  # nothing launched
    assert not (outside / "other-run" / "status").exists() and not (outside / "escape").exists()


def test_a_pasted_recipe_gets_no_trust_for_its_data(workspace):
    client, cwd, outside = workspace
    text = (cwd / "examples" / "tiny.yaml").read_text().replace("../../outside", str(outside))
    refused = client.post("/api/recipes/validate", headers=POST, json={"text": text}).json()
    assert not refused["ok"] and {p["path"] for p in refused["problems"]} == {"data.sources.0.path"}


def test_output_dir_through_a_symlink_out_of_runs_is_refused(workspace):
    client, cwd, outside = workspace
    (cwd / "runs" / "link").symlink_to(outside, target_is_directory=True)
    refused = _launch(client, "output_dir=runs/link")
    assert refused.status_code == 422 and "output_dir" in {p["path"] for p in refused.json()["problems"]}


def test_chunked_body_over_the_limit_is_a_413(workspace):
    client, _, _ = workspace

    def chunks():  # no Content-Length: the old header check never saw this body's size
        for _ in range(30):
            yield b" " * 100_000

    r = client.post("/api/recipes/validate", headers=POST, content=chunks())
    assert r.status_code == 413 and "over 1000000 bytes" in r.json()["error"]
    small = client.post("/api/recipes/validate", headers=POST, json={"example": "tiny.yaml"})
    assert small.status_code == 200
