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

Beside the measured training time it prints the run's compute floor: the FLOPs of its
training steps (counted below, `training_flops`) over this machine's matmul peak
(bench/common.py's `peak_gflops`, the fastest probe: before the app starts and after it
stops, and of every run when there are several, as a probe reads slow while another
process winds down), i.e. how long the steps would take if every product ran at the peak
and nothing else took time.

`python -m bench.time_to_adapter [--model M] [--data FILE] [--engine E]` runs it alone
(`--engine`: what answers the chat, as `tunechat serve --engine`)."""

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

from bench.common import (
    DEFAULT_DATA,
    READY_LINES,
    ServerLog,
    free_port,
    peak_gflops,
    watch_log,
)
from core.hardware import bf16_ok
from storage import runs
from storage.db import Store

QUESTION = "Do you have oat milk?"


def bench_time_to_adapter(spec: str | None, data: Path, work: Path,
                          engine: str = "auto") -> dict:
    import torch

    home = work / "time-to-adapter"
    _tunechat("import", str(data), "--home", str(home), "--threshold", "0")
    dtype = torch.bfloat16 if bf16_ok() else torch.float32
    probes = [peak_gflops(dtype)]  # before the app starts, and after it stops
    with served(home, spec, engine) as (client, replies_from):
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
    probes.append(peak_gflops(dtype))
    peak = max(probes)  # a machine shared with others reads slower at times, never faster
    eval_losses = run.get("eval_losses") or [{}]
    metrics = run.get("metrics") or {}
    flops = training_flops(store, run, spec)
    return {"time_to_adapter_s": phases["answer_s"], **phases,
            "steps": run.get("total_steps"), "eval_loss": eval_losses[-1].get("loss"),
            "replies_from": replies_from,
            "train_seconds": metrics.get("train_seconds"),
            "peak_gflops": peak, "peak_probes_gflops": probes,
            "peak_dtype": str(dtype).removeprefix("torch."),
            "training_tflops": round(flops / 1e12, 2),
            "compute_floor_s": round(flops / (peak * 1e9), 1)}


def training_flops(store: Store, run: dict, spec: str | None) -> float:
    """The matrix products of the run's training steps, counted per token: the forward
    pass through every block (2 FLOPs per weight), the backward pass through the blocks
    from the lowest adapted one up (2 per weight: the base weights are frozen, so no
    weight gradients; LoRA's own small products are left out), and the LM head forward
    and back on the answer tokens only (4 per weight), as the trainer runs it on a CPU.
    Tokens as the run counted them (every epoch, replay included); the answer share
    from its training examples."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from assistant.bases import resolve_model
    from core.chatformat import token_count

    folder = resolve_model(spec)[1]
    config = AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    blocks = model.model.layers
    per_block = sum(p.numel() for p in blocks[0].parameters())
    head = model.get_output_embeddings().weight.numel()
    upper = max(1, round(len(blocks) * run["config"].get("upper_layers", 1.0)))
    metrics = run["metrics"]
    tokens = metrics["tokens_per_second"] * metrics["train_seconds"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    trained = [e.messages for e in runs.run_examples(store, run["id"], "train")]
    answers = sum(len(tokenizer(m[-1]["content"], add_special_tokens=False)["input_ids"])
                  for m in trained)
    share = answers / max(1, sum(token_count(tokenizer, m) for m in trained))
    return tokens * (2 * len(blocks) * per_block + 2 * upper * per_block + 4 * head * share)


@contextmanager
def served(home: Path, spec: str | None, engine: str = "auto") -> Iterator:
    """`tunechat serve` on `home` (auto-start off), once its model, its chat engine and
    its trainer are ready: (a gradio_client Client to it, which engine replies); the
    server stops when the block ends."""
    from gradio_client import Client

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--home", str(home), "--port", str(port),
         "--threshold", "0", "--engine", engine] + (["--model", spec] if spec else []),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        said = _wait_until_ready(server)
        yield Client(f"http://127.0.0.1:{port}/", verbose=False), said.engine
    finally:
        server.terminate()
        server.wait(timeout=30)


def _tunechat(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "app", *args], capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise RuntimeError(f"tunechat {args[0]} failed: {result.stderr.strip()}")


def _wait_until_ready(server: subprocess.Popen, limit_s: float = 300) -> ServerLog:
    """Until the model, its chat engine and the trainer kept ready are all loaded, as
    they are once a user has chatted for a little while. What the server said."""
    said = watch_log(server, time.perf_counter())
    deadline = time.perf_counter() + limit_s
    while not set(READY_LINES) <= set(said.ready):
        time.sleep(0.1)
        if server.poll() is not None or time.perf_counter() > deadline:
            raise RuntimeError(f"tunechat serve said only {sorted(said.ready)} of "
                               f"{', '.join(READY_LINES)}")
    return said


def _with_the_fastest_peak(found: dict[str, dict]) -> None:
    """The machine's peak is the fastest probe of all the runs (a probe taken while the
    last run's processes wind down reads slow): each run's floor against it."""
    peak = max(probe for run in found.values() for probe in run["peak_probes_gflops"])
    for run in found.values():
        run["peak_gflops"] = peak
        run["compute_floor_s"] = round(run["training_tflops"] * 1e3 / peak, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.time_to_adapter",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="base model (default: the embedded one)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--engine", default="auto",
                        help="auto, llama.cpp or pytorch; several, comma-separated, are "
                             "measured in turn, --repeats times each, alternating")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    engines = args.engine.split(",")
    found = {}
    for repeat in range(1, args.repeats + 1):
        for engine in engines:
            with tempfile.TemporaryDirectory(prefix="tunechat-tta-") as scratch:
                found[f"{engine} #{repeat}"] = bench_time_to_adapter(
                    args.model, args.data, Path(scratch), engine)
    _with_the_fastest_peak(found)
    print(json.dumps(found, indent=2))
    if args.json:
        from core.hardware import describe_machine

        args.json.write_text(json.dumps(
            {"machine": describe_machine(),
             "script": "python -m bench.time_to_adapter " + " ".join(argv or sys.argv[1:]),
             "runs": found}, indent=2))


if __name__ == "__main__":
    main()
