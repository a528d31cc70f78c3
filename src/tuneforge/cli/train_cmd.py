"""CLI verbs for this stage; see register()."""

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's verbs to the main app."""
