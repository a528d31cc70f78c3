"""CPU thread settings for training.

Intra-op threads = physical cores available to this process (hyper-threads share the FMA units, so
they add contention, not matmul throughput); inter-op = 1 because a training step is one sequential
graph and extra inter-op pools only oversubscribe the cores.
"""

from __future__ import annotations

import os

import torch


def available_cores() -> int:
    """Physical cores this process may run on (affinity mask / cgroup aware where psutil helps)."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        import psutil

        physical = psutil.cpu_count(logical=False) or logical
        ratio = max(1, (psutil.cpu_count(logical=True) or logical) // physical)  # threads per core
    except ImportError:
        ratio = 1
    return max(1, logical // ratio)


def configure_threads(n: int | None = None) -> int:
    """Set torch intra-op threads to `n` (default: physical cores, shared out among the run's processes on this
    machine) and inter-op to 1; return intra-op count."""
    from tuneforge.train.distributed import local_process_count

    n = max(1, available_cores() // local_process_count()) if n is None or n <= 0 else n
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # only settable before the first parallel op; a second call keeps the first setting
    return torch.get_num_threads()
