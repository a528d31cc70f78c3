"""One rich console for the whole CLI, so progress bars and messages interleave cleanly."""

from rich.console import Console
from rich.markup import escape

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


# Messages are escaped: they quote user text and commands such as pip install 'tuneforge[cluster]', which
# rich would otherwise read as markup and drop.
def print_error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)


def print_warning(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(message)}", markup=True, soft_wrap=True)
