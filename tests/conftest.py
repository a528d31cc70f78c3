"""Shared fixtures. Tests run offline: no hub access, no sockets except loopback."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).parent))

from tiny import build_tiny_llama, build_tiny_tokenizer, save_tiny_bert, save_tiny_model  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
LLAMAFACTORY = SHARED / "data" / "llamafactory"


def pytest_configure(config):
    # pytest-socket: unit tests may only talk to loopback (the serve tests' live server).
    if config.pluginmanager.hasplugin("socket"):
        config.option.disable_socket = True
        config.option.allow_hosts = "127.0.0.1,localhost,::1"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer Llama + BPE tokenizer saved as an HF folder (safetensors)."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A 2-layer BERT encoder (no MLM head) + WordPiece tokenizer saved as an HF folder (safetensors)."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture()
def tiny_model(tiny_tokenizer):
    return build_tiny_llama(tiny_tokenizer)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not LLAMAFACTORY.is_dir():
        pytest.fail(f"shared data not found at {LLAMAFACTORY} (CI puts ../shared beside the checkout)")
    return LLAMAFACTORY


@pytest.fixture()
def one_torch_thread():
    """Torch on one thread for the test (use with `pytest.mark.usefixtures`): tiny models run far faster
    single-threaded on a shared, oversubscribed CPU (measured ~20x)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
