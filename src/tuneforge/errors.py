"""User-facing errors.

Anything raised as a `TuneforgeError` is a problem with the user's input (a recipe, a data file, a model
path): the CLI prints its message on one line and exits 2, without a traceback. Everything else is a bug.
"""


class TuneforgeError(Exception):
    """An error the user can fix; its message says what, where and what was expected."""

    exit_code = 2


class ConfigError(TuneforgeError):
    """A recipe or override is invalid."""


class DataError(TuneforgeError):
    """A data file cannot be read or has too few usable examples."""


class ModelError(TuneforgeError):
    """A model cannot be found or loaded safely."""


class UnsupportedHere(TuneforgeError):
    """The request needs hardware or a package this machine does not have."""
