"""What the benchmarks share: the data they train on, a free port, what a served app
says in its log. Apart from bench/run.py, which imports every benchmark."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parent / "data" / "brand-voice.openai.jsonl"
"""Shipped inside the package, so that the bench runs from an installed tunechat."""


READY_LINES = ("Model ready", "Trainer ready", "Replies from")


@dataclass
class ServerLog:
    """What `tunechat serve` has said so far (filled by watch_log's thread)."""

    ready: dict[str, float] = field(default_factory=dict)
    """Each of READY_LINES it has said, with the seconds since the start when it first
    said it: the model, the trainer kept ready, and its chat engine."""
    engine: str = ""
    """Which engine replies to the chat ("llama.cpp" or "PyTorch"), once it said so."""


def watch_log(server: subprocess.Popen, started: float) -> ServerLog:
    """What the server says it has readied, filled by a thread that reads its stderr to
    the end (so that the pipe never fills); `started`: when the seconds count from."""
    import threading

    log = ServerLog()

    def read() -> None:
        assert server.stderr is not None
        for line in server.stderr:
            for word in READY_LINES:
                if line.startswith(word):
                    log.ready.setdefault(word, round(time.perf_counter() - started, 2))
            if line.startswith("Replies from"):
                log.engine = line.split()[2].rstrip(":")

    threading.Thread(target=read, daemon=True).start()
    return log


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peak_gflops(dtype, size: int = 2048, products: int = 8) -> float:
    """This machine's matmul peak for `dtype`: the fastest of `products` square
    products, each timed alone, so that a moment of load elsewhere (another process, a
    thread of the app) slows some of them but not the peak. A dtype with no fast kernel
    here (bf16 without AMX or AVX512-BF16 runs at about 1 GFLOP/s) is measured on a
    smaller matrix instead of taking minutes; the probe is large enough (half a GFLOP)
    that a fast dtype's time is not lost in the call overhead."""
    probe = _fastest_gflops(dtype, 512, 2)
    return probe if probe < 10 else _fastest_gflops(dtype, size, products)


def _fastest_gflops(dtype, size: int, products: int) -> float:
    import torch

    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    fastest = float("inf")
    for _ in range(products):
        started = time.perf_counter()
        a @ b
        fastest = min(fastest, time.perf_counter() - started)
    return round(2 * size ** 3 / fastest / 1e9, 1)
