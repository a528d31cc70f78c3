"""`tuneforge ui`: the local web dashboard over run folders (tuneforge.ui.web)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("ui")(ui_cmd)


def ui_cmd(
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="folder of run folders (new runs go here too)"),
    examples_dir: Path = typer.Option(Path("examples"), "--examples-dir", help="example recipes for New run"),
    allow_dir: List[Path] = typer.Option([], "--allow-dir", help="another folder runs may be written to and listed from (repeatable)"),
    host: str = typer.Option("127.0.0.1", "--host", help="bind address; anything but loopback needs --api-key"),
    port: int = typer.Option(7860, "--port", min=1, max=65535),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="TUNEFORGE_API_KEY",
                                          help="token for the dashboard: open it once as /?token=KEY"),
) -> None:
    """Local web dashboard: runs, live loss chart, new run from a recipe, stop, compare, chat."""
    from tuneforge.errors import UnsupportedHere

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise UnsupportedHere(f"tuneforge ui needs the serve extra ({exc.name} is missing): "
                              "pip install 'tuneforge[serve]'") from None
    from tuneforge.ui.web import UISettings, serve_ui

    serve_ui(UISettings(runs_dir=runs_dir, examples_dir=examples_dir, host=host, api_key=api_key,
                        allow_dirs=list(allow_dir)), port=port)
