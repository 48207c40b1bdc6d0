"""What the benchmarks share: the data they train on, a free port, what a served app
says in its log. Apart from bench/run.py, which imports every benchmark."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parent / "data" / "brand-voice.openai.jsonl"
"""Shipped inside the package, so that the bench runs from an installed tunechat."""


def watch_log(server: subprocess.Popen, started: float) -> dict[str, float]:
    """What `tunechat serve` says it has readied ("Model ready", "Trainer ready"), each
    with the seconds since `started` when it first said so; filled by a thread that
    reads the server's stderr to its end (so that the pipe never fills)."""
    import threading

    said: dict[str, float] = {}

    def read() -> None:
        assert server.stderr is not None
        for line in server.stderr:
            for word in ("Model ready", "Trainer ready"):
                if line.startswith(word):
                    said.setdefault(word, round(time.perf_counter() - started, 2))

    threading.Thread(target=read, daemon=True).start()
    return said


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
