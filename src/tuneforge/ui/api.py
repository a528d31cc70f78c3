"""The dashboard's JSON API (`/api/...`): what every page shows and does, usable without a browser.

    GET  /api/config                        runs folders, examples folder, default overrides
    GET  /api/runs                          runs table rows (every allowed folder) and dashboard jobs
    GET  /api/runs/{run}                    one run: recipe, summary, before/after, files, checkpoints, job
    GET  /api/runs/{run}/metrics?cursor=C   metrics.jsonl rows appended since cursor C (see read_metrics_from)
    GET  /api/runs/{run}/files/{rel}        one of the servable files (report.html, loss.png, ...)
    POST /api/runs/{run}/stop               write the stop-request file (the trainer stops after its step)
    GET  /api/compare?runs=a,b              headline metrics side by side and loss curves
    GET  /api/examples                      example recipes
    POST /api/recipes/validate              {example | text, overrides} -> {ok, problems [{path, message}]}
    GET  /api/jobs, POST /api/jobs          dashboard-started trainings; launch = validate + `tuneforge train`
    GET  /api/jobs/{id}/log, POST /api/jobs/{id}/stop
    GET  /api/chat, POST /api/chat/load, POST /api/chat/reply

Handlers are plain `def`: FastAPI runs them in its thread pool, so file reads and generation do not block
the event loop that answers the polls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field

from tuneforge.errors import ConfigError
from tuneforge.train.runfolder import read_status, request_stop
from tuneforge.ui import recipes
from tuneforge.ui.chat import ChatModel
from tuneforge.ui.jobs import JobManager
from tuneforge.ui.runs_view import (RunNotFound, RunsView, compare_runs, read_metrics_from, run_detail,
                                    run_file, run_path)

# Reports are written by tuneforge with inline CSS and data: images; sandboxed so nothing in one can script.
REPORT_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"
MAX_COMPARE = 8


class RecipeRequest(BaseModel):
    example: str | None = None  # a file name in the examples folder
    text: str | None = Field(None, max_length=recipes.MAX_RECIPE_BYTES)  # pasted YAML instead
    overrides: list[str] = Field(default_factory=list, max_length=200)


class ChatLoad(BaseModel):
    run: str


class ChatTurn(BaseModel):
    role: str = Field(pattern="^(system|user|assistant)$")
    content: str = Field(max_length=20_000)


class ChatRequest(BaseModel):
    run: str
    messages: list[ChatTurn] = Field(min_length=1, max_length=100)
    max_new_tokens: int = Field(128, ge=1, le=1024)
    temperature: float = Field(0.0, ge=0.0, le=2.0)


class UIState:
    """Everything the routes share: the runs views (one per allowed folder), the jobs, the chat model."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.views = [RunsView(root) for root in settings.roots]
        self.jobs = JobManager(settings.roots, settings.state_dir, Path(settings.cwd))
        self.chat = ChatModel()

    def find_run(self, name: str) -> Path:
        return self._locate(name)[0]

    def detail(self, name: str) -> tuple[Path, dict[str, Any]]:
        """The run page's data; its row (status, steps, best val loss) comes from the table's cache, so a
        live run's metrics.jsonl is not re-read in full on every poll."""
        run_dir, view = self._locate(name)
        return run_dir, run_detail(run_dir, view.row(run_dir))

    def _locate(self, name: str) -> tuple[Path, RunsView]:
        for root, view in zip(self.settings.roots, self.views):
            try:
                return run_path(root, name), view
            except RunNotFound:
                continue
        raise RunNotFound(f"run not found: {name}")

    def rows(self) -> list[dict[str, Any]]:
        rows = [row for view in self.views for row in view.rows()]
        return sorted(rows, key=lambda r: r["started"], reverse=True)

    def recipe_file(self, req: RecipeRequest) -> tuple[Path, str | None]:
        """The recipe to validate or train, and how to name it in messages (drafts are files under .ui/)."""
        if bool(req.example) == bool(req.text):
            raise ConfigError("send either `example` (a name from /api/examples) or `text` (recipe YAML)")
        if req.example:
            return recipes.example_path(self.settings.examples_root, req.example), None
        return recipes.save_draft(self.settings.state_dir / "drafts", req.text), "recipe text"

    def validate(self, req: RecipeRequest) -> tuple[Path, dict[str, Any]]:
        path, origin = self.recipe_file(req)
        return path, recipes.validate_recipe(path, req.overrides, self.settings.roots,
                                             Path(self.settings.cwd), origin=origin,
                                             read_dirs=[self.settings.examples_root])



def register_api(app: FastAPI, state: UIState) -> None:
    _register_runs(app, state)
    _register_new_runs(app, state)
    _register_chat(app, state)


def _register_runs(app: FastAPI, state: UIState) -> None:
    @app.get("/api/config")
    def config() -> dict[str, Any]:
        roots = [str(r) for r in state.settings.roots]
        return {"runs_dirs": roots, "examples_dir": str(state.settings.examples_root),
                "default_overrides": [f"output_dir={roots[0]}"]}

    @app.get("/api/runs")
    def runs() -> dict[str, Any]:
        return {"runs": state.rows(), "jobs": state.jobs.jobs(), "dirs": [str(r) for r in state.settings.roots]}

    @app.get("/api/runs/{name}")
    def run(name: str) -> dict[str, Any]:
        run_dir, detail = state.detail(name)
        job = state.jobs.for_run(run_dir)
        return {**detail, "job": state.jobs.describe(job) if job else None}

    @app.get("/api/runs/{name}/metrics")
    def metrics(name: str, cursor: str | None = Query(None, max_length=64)) -> dict[str, Any]:
        run_dir = state.find_run(name)
        return {**read_metrics_from(run_dir / "metrics.jsonl", cursor), "status": read_status(run_dir)}

    @app.get("/api/runs/{name}/files/{rel:path}")
    def files(name: str, rel: str) -> FileResponse:
        path = run_file(state.find_run(name), rel)
        headers = {"Content-Security-Policy": REPORT_CSP, "Cache-Control": "no-cache"}
        media = "text/plain; charset=utf-8" if path.suffix in (".yaml", ".jsonl") else None
        return FileResponse(path, headers=headers, media_type=media)

    @app.post("/api/runs/{name}/stop")
    def stop(name: str) -> JSONResponse:
        status = request_stop(state.find_run(name))
        if status is not None:
            return JSONResponse({"error": f"{name} is not running (status {status}); nothing to stop"},
                                status_code=409)
        return JSONResponse({"message": f"stop requested: {name} stops after its current step, "
                                        "with a checkpoint", "stop_requested": True})

    @app.get("/api/compare")
    def compare(runs: str = Query(..., max_length=4000)) -> dict[str, Any]:
        names = [n for n in (s.strip() for s in runs.split(",")) if n]
        if not 1 <= len(names) <= MAX_COMPARE:
            raise ConfigError(f"compare: name 1 to {MAX_COMPARE} runs, comma-separated (got {len(names)})")
        return compare_runs([state.find_run(n) for n in dict.fromkeys(names)])


def _register_new_runs(app: FastAPI, state: UIState) -> None:
    @app.get("/api/examples")
    def examples() -> dict[str, Any]:
        return {"examples": recipes.list_examples(state.settings.examples_root)}

    @app.post("/api/recipes/validate")
    def validate(req: RecipeRequest) -> dict[str, Any]:
        return state.validate(req)[1]

    @app.get("/api/jobs")
    def jobs() -> dict[str, Any]:
        return {"jobs": state.jobs.jobs()}

    @app.post("/api/jobs")
    def launch(req: RecipeRequest) -> JSONResponse:
        path, checked = state.validate(req)
        if not checked["ok"]:  # the same problems the page shows by field; nothing is started
            return JSONResponse({"error": checked["message"], **checked}, status_code=422)
        job = state.jobs.launch(path, checked["overrides"])
        return JSONResponse({"job": state.jobs.describe(job), "name": checked["name"]}, status_code=201)

    @app.get("/api/jobs/{job_id}/log")
    def log(job_id: str) -> dict[str, Any]:
        return {"log": state.jobs.log_tail(job_id)}

    @app.post("/api/jobs/{job_id}/stop")
    def stop_job(job_id: str) -> dict[str, Any]:
        return {"message": state.jobs.stop(job_id)}


def _register_chat(app: FastAPI, state: UIState) -> None:
    @app.get("/api/chat")
    def chat_status() -> dict[str, Any]:
        return state.chat.status()

    @app.post("/api/chat/load")
    def chat_load(req: ChatLoad) -> dict[str, Any]:
        return state.chat.load(state.find_run(req.run))

    @app.post("/api/chat/reply")
    def chat_reply(req: ChatRequest) -> dict[str, Any]:
        messages = [m.model_dump() for m in req.messages]
        text = state.chat.reply(req.run, messages, max_new_tokens=req.max_new_tokens,
                                temperature=req.temperature)
        return {"role": "assistant", "content": text}
