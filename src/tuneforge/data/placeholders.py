"""`{{name}}` placeholders (LLaMA-Factory's identity.json) filled from `data.variables`.

Only the tight form `{{identifier}}` counts, so Jinja/Handlebars code in the data (`{{ user.name }}`) is
left alone; an unfilled placeholder rejects the row (training on "I am {{name}}" is never intended).
"""

from __future__ import annotations

import re
from typing import Any

from tuneforge.data.formats import RowProblem

PLACEHOLDER = re.compile(r"\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}")


def fill(value: Any, variables: dict[str, str], path: str = "") -> Any:
    """A copy of `value` (str, list, dict, nested) with placeholders replaced; RowProblem on a missing one."""
    if isinstance(value, str):
        if "{{" not in value:
            return value
        return PLACEHOLDER.sub(lambda m: _lookup(m.group(1), variables, path), value)
    if isinstance(value, list):
        return [fill(v, variables, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: fill(v, variables, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    return value


def _lookup(name: str, variables: dict[str, str], path: str) -> str:
    if name in variables:
        return str(variables[name])
    raise RowProblem(
        "unfilled_placeholder", path or "(row)",
        f"expected a value for placeholder {{{{{name}}}}} (set data.variables.{name} or --set {name}=...), got none",
    )


def find_placeholders(value: Any) -> set[str]:
    """Names of all placeholders in a value (for messages that list what a file needs)."""
    if isinstance(value, str):
        return set(PLACEHOLDER.findall(value))
    if isinstance(value, list):
        return set().union(*(find_placeholders(v) for v in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(find_placeholders(v) for v in value.values())) if value else set()
    return set()
