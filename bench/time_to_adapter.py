"""Time to adapter: from starting a run with the defaults (the web app's /train) to the
new adapter answering in the served chat (/chat), on a fresh data home holding the
examples file, once the app has loaded its model and its trainer kept ready. The
phases are read from the data home's database every 0.1 s, so to about that (asking
the app's /run_status that often took CPU from the training it measures):

launch_s      until the trainer process says it is running (its imports done)
first_step_s  until its first training step is recorded (base loaded, data built)
trained_s     until the run is recorded as succeeded (adapter saved)
answer_s      until the app has answered a chat message with the new adapter (the
              whole reply, greedy)

`python -m bench.time_to_adapter [--model M] [--data FILE]` runs it alone."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import DEFAULT_DATA, free_port, watch_log
from storage import runs
from storage.db import Store

QUESTION = "Do you have oat milk?"


def bench_time_to_adapter(spec: str | None, data: Path, work: Path) -> dict:

    home = work / "time-to-adapter"
    _tunechat("import", str(data), "--home", str(home), "--threshold", "0")
    with served(home, spec) as client:
        started = time.perf_counter()
        client.predict(api_name="/train")
        store = Store(home)
        phases: dict[str, float] = {}
        while "trained_s" not in phases:
            newest = runs.list_runs(store, 1)
            run: dict = newest[0] if newest else {"status": "queued"}
            elapsed = round(time.perf_counter() - started, 2)
            if run["status"] in ("failed", "cancelled"):
                raise RuntimeError(f"The run of the time-to-adapter benchmark failed: "
                                   f"{run.get('error')}")
            if run["status"] != "queued":
                phases.setdefault("launch_s", elapsed)
            if (run.get("step") or 0) >= 1:
                phases.setdefault("first_step_s", elapsed)
            if run["status"] == "succeeded":
                phases["trained_s"] = elapsed
            time.sleep(0.1)
        client.predict(QUESTION, run["adapter"], "", api_name="/chat")
        phases["answer_s"] = round(time.perf_counter() - started, 2)
        eval_losses = run.get("eval_losses") or [{}]
        return {"time_to_adapter_s": phases["answer_s"], **phases,
                "steps": run.get("total_steps"), "eval_loss": eval_losses[-1].get("loss")}


@contextmanager
def served(home: Path, spec: str | None) -> Iterator:
    """`tunechat serve` on `home` (auto-start off), once its model and trainer are
    ready: a gradio_client Client to it; the server stops when the block ends."""
    from gradio_client import Client

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--home", str(home), "--port", str(port),
         "--threshold", "0"] + (["--model", spec] if spec else []),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until_ready(server)
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _tunechat(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "app", *args], capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise RuntimeError(f"tunechat {args[0]} failed: {result.stderr.strip()}")


def _wait_until_ready(server: subprocess.Popen, limit_s: float = 300) -> None:
    """Until the model and the trainer kept ready are both loaded, as they are once a
    user has chatted for a little while."""
    said = watch_log(server, time.perf_counter())
    deadline = time.perf_counter() + limit_s
    while len(said) < 2:
        time.sleep(0.1)
        if server.poll() is not None or time.perf_counter() > deadline:
            raise RuntimeError(f"tunechat serve said only {sorted(said)} of Model ready, "
                               "Trainer ready")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.time_to_adapter",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="base model (default: the embedded one)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tunechat-tta-") as scratch:
        print(json.dumps(bench_time_to_adapter(args.model, args.data, Path(scratch)),
                         indent=2))


if __name__ == "__main__":
    main()
