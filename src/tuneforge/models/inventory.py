"""What `tuneforge models` shows: aliases, whether their package is installed, parameter counts, paths.

Parameter counts are read from file headers (safetensors / GGUF tensor tables), never by loading weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from tuneforge.models.registry import ALIASES


@dataclass
class ModelEntry:
    alias: str
    kind: str
    installed: bool
    parameters: int | None
    path: str | None
    install: str
    description: str


def list_aliases() -> list[ModelEntry]:
    entries = []
    for alias in ALIASES.values():
        path = alias.locate()
        entries.append(
            ModelEntry(
                alias=alias.name,
                kind=alias.kind,
                installed=path is not None,
                parameters=count_parameters(path) if path else None,
                path=str(path) if path else None,
                install=alias.pip,
                description=alias.description,
            )
        )
    return entries


def count_parameters(path: Path) -> int | None:
    if path.suffix == ".gguf":
        return _gguf_parameters(path)
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    if not files:
        return None
    from safetensors import safe_open

    total = 0
    for file in files:
        with safe_open(str(file), framework="np") as handle:
            for name in handle.keys():
                total += math.prod(handle.get_slice(name).get_shape())
    return total


def _gguf_parameters(path: Path) -> int:
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    return int(sum(int(t.n_elements) for t in reader.tensors))
