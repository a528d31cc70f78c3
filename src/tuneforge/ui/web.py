"""`tuneforge ui`: a local web dashboard over run folders (runs, a live run page, new run, compare, chat).

FastAPI + uvicorn (the serve extra's stack) with plain HTML/CSS/JS pages shipped in the package
(`ui/static/`): no build step and nothing from a CDN, since the machines it runs on are often offline.
Not gradio (LLaMA-Factory's LlamaBoard): it is a large dependency tree of its own, and every page here
is a thin view of a JSON API (`/api/...`) that scripts and tests use directly.

Security: loopback binding by default; any other host needs a token (`--api-key`, the same check as
`tuneforge serve`), sent as `Authorization: Bearer`, or once as `?token=` which sets an HttpOnly cookie.
On loopback the Host header must name this machine (no DNS rebinding), every state-changing request must
carry the `X-Tuneforge-UI` header (no cross-site form posts), and pages forbid inline scripts (CSP).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from tuneforge.errors import TuneforgeError
from tuneforge.serve.body_limit import BodyLimit
from tuneforge.serve.security import bearer_ok, check_bind, is_loopback, key_ok

STATIC = Path(__file__).with_name("static")
COOKIE = "tuneforge_ui_token"
CSRF_HEADER = "x-tuneforge-ui"
PAGES = ("/", "/new", "/compare", "/chat")
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


@dataclass
class UISettings:
    runs_dir: Path = Path("runs")
    examples_dir: Path = Path("examples")
    host: str = "127.0.0.1"
    api_key: str | None = None
    allow_dirs: list[Path] = field(default_factory=list)  # more folders recipes may write runs to (and listed)
    cwd: Path = field(default_factory=Path.cwd)  # where launched runs start: relative recipe paths mean this
    max_body_bytes: int = 1_000_000

    @property
    def roots(self) -> list[Path]:
        return [self.resolve(self.runs_dir)] + [self.resolve(d) for d in self.allow_dirs]

    @property
    def state_dir(self) -> Path:
        return self.roots[0] / ".ui"

    @property
    def examples_root(self) -> Path:
        return self.resolve(self.examples_dir)

    def resolve(self, path: Path) -> Path:
        """A folder given relative to where the dashboard was started, made absolute."""
        return (Path(self.cwd) / path).resolve()


def create_ui_app(settings: UISettings | None = None) -> FastAPI:
    from tuneforge.ui.api import UIState, register_api

    settings = settings or UISettings()
    check_bind(settings.host, settings.api_key)
    app = FastAPI(title="tuneforge ui", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ui = UIState(settings)
    _install_errors(app)
    # Counts the bytes received (chunked bodies too); added first so the Host/token/CSRF guard runs before it.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes,
                       error_body=lambda limit: {"error": f"request body over {limit} bytes"})
    _install_guards(app, settings)
    register_api(app, app.state.ui)
    _register_pages(app)
    return app


def _install_errors(app: FastAPI) -> None:
    from tuneforge.ui.chat import ChatBusy
    from tuneforge.ui.jobs import JobNotFound
    from tuneforge.ui.runs_view import RunNotFound

    def reply(status: int, message: str, **extra) -> JSONResponse:
        return JSONResponse({"error": message, **extra}, status_code=status)

    @app.exception_handler(TuneforgeError)
    async def _user(request: Request, exc: TuneforgeError):
        return reply(400, str(exc))

    @app.exception_handler(RunNotFound)
    @app.exception_handler(JobNotFound)
    async def _missing(request: Request, exc: LookupError):
        return reply(404, str(exc))

    @app.exception_handler(ChatBusy)
    async def _busy(request: Request, exc: ChatBusy):
        return reply(409, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return reply(exc.status_code, str(exc.detail))


def _install_guards(app: FastAPI, settings: UISettings) -> None:
    loopback = is_loopback(settings.host)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if loopback and not is_loopback(_host_name(request.headers.get("host", ""))):
            return JSONResponse({"error": "this dashboard answers to localhost only (Host header "
                                          f"{request.headers.get('host')!r})"}, status_code=403)
        if settings.api_key:
            token = request.query_params.get("token")
            if key_ok(token, settings.api_key):
                return _token_login(request, settings.api_key)
            if not (bearer_ok(request.headers.get("authorization"), settings.api_key)
                    or key_ok(request.cookies.get(COOKIE), settings.api_key)):
                return JSONResponse({"error": "missing or wrong token: open the dashboard once as "
                                              "/?token=KEY, or send Authorization: Bearer KEY"}, status_code=401)
        if request.method not in ("GET", "HEAD", "OPTIONS") and request.headers.get(CSRF_HEADER) != "1":
            return JSONResponse({"error": f"state-changing requests need the {CSRF_HEADER}: 1 header"},
                                status_code=403)
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.max_body_bytes:
            return JSONResponse({"error": f"request body over {settings.max_body_bytes} bytes"}, status_code=413)
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response


def _token_login(request: Request, api_key: str):
    """`?token=KEY` once: remember it in an HttpOnly cookie and drop it from the address bar."""
    query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
    response = RedirectResponse(request.url.path + (f"?{query}" if query else ""), status_code=303)
    response.set_cookie(COOKIE, api_key, httponly=True, samesite="strict", path="/")
    return response


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _register_pages(app: FastAPI) -> None:
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_CSP,
                                                            "Cache-Control": "no-cache"})

    for path in PAGES:
        app.add_api_route(path, page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/runs/{name}", page, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def check_folders(settings: UISettings) -> list[str]:
    """Refuse a folder option that names a file; a note for each folder that does not exist (yet): a typo
    in --runs-dir would otherwise show an empty dashboard without a word."""
    from tuneforge.errors import ConfigError

    options = [("--runs-dir", settings.runs_dir), *(("--allow-dir", d) for d in settings.allow_dirs),
               ("--examples-dir", settings.examples_dir)]
    notes = []
    for option, path in options:
        where = settings.resolve(path)
        if where.exists() and not where.is_dir():
            raise ConfigError(f"{option} {path}: is a file; expected a folder")
        if where.exists():
            continue
        if option == "--examples-dir":
            notes.append(f"{option} {where} does not exist: New run offers no example recipes")
        else:
            notes.append(f"{option} {where} does not exist yet: no runs to list there until a run creates it")
    return notes


def serve_ui(settings: UISettings, port: int = 7860, log_level: str = "warning") -> None:
    """Check the binding and folders, build the app, print where it is, serve until Ctrl-C (runs keep going)."""
    import uvicorn

    from tuneforge.ui.console import console, print_warning

    notes = check_folders(settings)
    app = create_ui_app(settings)
    for note in notes:
        print_warning(note)
    shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = f"http://{shown}:{port}/"
    console.print(f"tuneforge ui: {url}  (runs: {settings.roots[0]})", soft_wrap=True)
    if settings.api_key:
        console.print("token required: open the address once with ?token=<your key>", soft_wrap=True)
    uvicorn.run(app, host=settings.host, port=port, log_level=log_level, timeout_graceful_shutdown=3)
