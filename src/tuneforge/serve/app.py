"""The FastAPI app: OpenAI-compatible routes, feedback, admin adapter routes, drift, health.

Every error leaves as OpenAI-style JSON `{"error": {"message", "type", "param", "code"}}` with a 4xx
status when the request is at fault; a 500 means a bug in tuneforge.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tuneforge.errors import TuneforgeError
from tuneforge.serve.body_limit import BodyLimit
from tuneforge.serve.engine import Engine, QueueFull
from tuneforge.serve.feedback import FeedbackStore
from tuneforge.serve.generation import register_generation_routes
from tuneforge.serve.schemas import AdapterLoadRequest, FeedbackRequest, error_body
from tuneforge.serve.security import bearer_ok


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code


@dataclass
class ServeSettings:
    api_key: str | None = None
    max_body_bytes: int = 2_000_000
    default_max_tokens: int = 256


def create_app(engine: Engine, store: FeedbackStore | None, settings: ServeSettings | None = None) -> FastAPI:
    settings = settings or ServeSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await engine.start()
        try:
            yield
        finally:
            await engine.stop()
            if store is not None:
                store.close()

    app = FastAPI(title="tuneforge serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.engine, app.state.store, app.state.settings = engine, store, settings
    _install_error_handlers(app)
    # Added before the guard, so it runs inside it: a missing key is a 401 whatever the body's size.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, error_body=lambda limit: error_body(
        f"request body over {limit} bytes", code="body_too_large"))
    _install_guards(app, settings)
    register_generation_routes(app, APIError)
    _register_misc_routes(app, engine, store, settings)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    def reply(status: int, message: str, type_: str = "invalid_request_error", param: Any = None,
              code: Any = None) -> JSONResponse:
        return JSONResponse(error_body(message, type_, param, code), status_code=status)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return reply(exc.status, exc.message, exc.type, exc.param, exc.code)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        if first.get("type") == "json_invalid":
            return reply(400, f"request body is not valid JSON: {first.get('msg')}", code="invalid_json")
        where = ".".join(loc) or "body"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return reply(400, f"{where}: {first.get('msg')}{more}", param=where, code="invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return reply(exc.status_code, str(exc.detail), kind)

    @app.exception_handler(QueueFull)
    async def _busy(request: Request, exc: QueueFull):
        return reply(429, f"server busy: {exc}; retry shortly", "rate_limit_error", code="queue_full")

    @app.exception_handler(TuneforgeError)
    async def _user(request: Request, exc: TuneforgeError):
        return reply(400, str(exc))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):
        return reply(500, f"internal error: {type(exc).__name__}", "server_error")


def _install_guards(app: FastAPI, settings: ServeSettings) -> None:
    @app.middleware("http")
    async def guard(request: Request, call_next):
        path = request.url.path
        if settings.api_key and path != "/health" and not bearer_ok(request.headers.get("authorization"),
                                                                     settings.api_key):
            return JSONResponse(error_body("missing or wrong API key (Authorization: Bearer ...)",
                                           "authentication_error", code="invalid_api_key"), status_code=401)
        if path.startswith("/admin") and not settings.api_key:
            return JSONResponse(error_body("admin routes are disabled: start the server with --api-key",
                                           "permission_error"), status_code=403)
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.max_body_bytes:
            return JSONResponse(error_body(f"request body over {settings.max_body_bytes} bytes",
                                           code="body_too_large"), status_code=413)
        return await call_next(request)


def _register_misc_routes(app: FastAPI, engine: Engine, store: FeedbackStore | None,
                          settings: ServeSettings) -> None:
    started = int(time.time())

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": engine.model_names(), "default_model": engine.served.default,
                "scheduler": type(engine).__name__, "waiting": engine._waiting,
                "batches_run": engine.batches_run, "rows_run": engine.rows_run}

    @app.get("/v1/models")
    async def models():
        base = engine.served.base_name
        data = [{"id": base, "object": "model", "created": started, "owned_by": "tuneforge", "parent": None}]
        data += [{"id": name, "object": "model", "created": started, "owned_by": "tuneforge", "parent": base}
                 for name in engine.served.adapters.names()]
        return {"object": "list", "data": data}

    @app.post("/admin/adapters")
    async def load_adapter(body: AdapterLoadRequest):
        await engine.run_admin(engine.served.adapters.add, body.name, body.path)
        return {"loaded": body.name, "models": engine.model_names()}

    @app.delete("/admin/adapters/{name}")
    async def unload_adapter(name: str):
        if name not in engine.served.adapters.paths:
            raise APIError(404, f"no adapter named {name!r}", "not_found_error", "name")
        await engine.run_admin(engine.served.adapters.remove, name)
        return {"unloaded": name, "models": engine.model_names()}

    @app.post("/v1/feedback")
    async def feedback(body: FeedbackRequest):
        if store is None:
            raise APIError(400, "feedback is off: start the server with --db")
        if body.rating is None and body.correction is None and body.choice is None:
            raise APIError(400, "give at least one of rating, correction, choice", param="rating")
        logged = await asyncio.to_thread(store.completion, body.response_id)
        if logged is None:
            raise APIError(404, f"no completion with id {body.response_id!r}", "not_found_error", "response_id")
        if body.choice is not None and body.choice >= len(logged["outputs"]):
            raise APIError(400, f"choice {body.choice} out of range: the response has "
                                f"{len(logged['outputs'])} choice(s)", param="choice")
        row_id = await asyncio.wrap_future(store.add_feedback(
            response_id=body.response_id, rating=body.rating, correction=body.correction,
            choice=body.choice, comment=body.comment))
        return {"id": row_id, "object": "feedback", "response_id": body.response_id, "stored": True}

    @app.get("/v1/drift")
    async def drift(window: int = Query(500, ge=1), encoder: Literal["auto", "minilm", "tfidf"] = "auto"):
        if store is None or engine.served.run_dir is None:
            raise APIError(400, "drift needs a server started from a run folder with --db")
        from tuneforge.serve.drift import compute_drift

        return await asyncio.to_thread(compute_drift, engine.served.run_dir, store.path, window,
                                       encoder=encoder)
