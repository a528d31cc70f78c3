"""`tuneforge data prepare`: registered on the `data` sub-app by data_cmd.py."""

import typer


def register(data_app: typer.Typer) -> None:
    """Add `prepare` to the `data` sub-app."""
