"""`tuneforge <verb>`: a thin layer over the library API.

Each lifecycle stage registers its verbs from its own module, so stages evolve independently.
User errors (`TuneforgeError`) print one line and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys

import typer

from tuneforge.errors import TuneforgeError
from tuneforge.ui.console import console, print_error

app = typer.Typer(
    name="tuneforge",
    help="Fine-tune pretrained language models: data -> model -> train -> evaluate -> deploy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Fine-tune pretrained language models: data -> model -> train -> evaluate -> deploy."""


@app.command("version")
def version_cmd() -> None:
    """Print the tuneforge version."""
    from tuneforge import __version__

    console.print(f"tuneforge {__version__}")


def _register_all() -> None:
    from tuneforge.cli import data_cmd, eval_cmd, export_cmd, models_cmd, serve_cmd, train_cmd, ui_cmd

    for module in (models_cmd, data_cmd, train_cmd, eval_cmd, export_cmd, serve_cmd, ui_cmd):
        module.register(app)


_register_all()


def main(argv: list[str] | None = None) -> int:
    # Nothing in tuneforge downloads from a hub unless the user explicitly turns this off.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        # standalone mode: click prints usage errors itself and raises SystemExit with its code.
        app(args=argv, prog_name="tuneforge")
    except TuneforgeError as exc:
        print_error(str(exc))
        return exc.exit_code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
