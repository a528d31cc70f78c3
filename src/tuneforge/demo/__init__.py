"""The end-to-end demo that `make demo` runs (see __main__.py)."""
