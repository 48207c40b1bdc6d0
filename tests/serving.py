"""Start `tunechat serve` as a real process on a free port, for API and browser tests."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.common import free_port

REPO = Path(__file__).resolve().parent.parent


class Server:
    def __init__(self, home: Path, model: str | None = None, log: Path | None = None,
                 extra: list[str] = (), env: dict | None = None):
        self.home, self.model, self.extra, self.env = home, model, list(extra), env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = log or home.parent / f"serve-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> Server:
        command = [sys.executable, "-m", "app", "serve", "--home", str(self.home),
                   "--port", str(self.port)]
        if self.model:
            command += ["--model", self.model]
        command += self.extra
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(command, cwd=REPO, stdout=self.log.open("ab"),
                                        stderr=subprocess.STDOUT,
                                        env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tunechat serve exited:\n{self.log.read_text()}")
            try:
                urllib.request.urlopen(self.url, timeout=2)
                return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"tunechat serve did not answer in {timeout} s:\n"
                           f"{self.log.read_text()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
