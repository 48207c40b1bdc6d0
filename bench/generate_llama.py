"""The chat's engines: tunechat's llama.cpp engine (assistant/llama_engine.py) beside its
PyTorch eager one, and llama.cpp called directly on two bases: decode tokens/s and time
to first token with and without an adapter, the time to swap adapters between requests,
peak memory, how often greedy answers differ from PyTorch's on the walkthroughs' and
everyday prompts, and the decode speed of each while a training run uses the machine.

An adapter is trained with tunechat's defaults on the Willow Yoga voice set in a fresh
data home (or `--home H --adapter NAME` uses one of yours), then written as a GGUF LoRA
(core/gguf.py) and loaded beside the embedded base in llama.cpp: its own GGUF file
(Q4_1), and the same weights written at F16 (BASES; the engine serves F16). Each side
runs in its own process, so its peak memory is its own (the llama.cpp engine's includes
the PyTorch model it keeps for the report card).

`python -m bench.generate_llama [--home H --adapter NAME] [--json FILE]`"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.loops import PROMPTS
from core.hardware import describe_machine, peak_rss_mb

STORY = "Write a very long story about a bicycle that travels around the world."
DECODE_TOKENS = 128
ANSWER_TOKENS = 48
"""Greedy tokens compared per prompt between the engines."""
REPEATS = 3


def engine_side(home: Path, adapter: str, which: str, busy: bool = False) -> dict:
    """tunechat's own chat engine: PyTorch's ("torch"), or llama.cpp's ("llama_engine",
    assistant/llama_engine.py, which replies on one thread while a run trains).
    `busy`: only the adapter's decode timing (measured while a run trains)."""
    from assistant.bases import embedded_gguf_path, load_model
    from assistant.engine import ChatEngine, GenerationSettings
    from assistant.llama_engine import LlamaChatEngine

    if which == "torch":
        engine = ChatEngine(load_model(None), adapters_dir=home / "adapters")
    else:
        engine = LlamaChatEngine(load_model(None), adapters_dir=home / "adapters",
                                 source_gguf=embedded_gguf_path(), busy=lambda: busy)
        assert engine.wait_for_llama(), engine.llama_error
    answers, timing = {}, {}
    for name in (adapter,) if busy else ("base", adapter):
        settings = GenerationSettings(max_new_tokens=DECODE_TOKENS, stop_loops=False)
        firsts, rates = [], []
        for _ in range(REPEATS + 1):
            started = time.perf_counter()
            stream = engine.stream([{"role": "user", "content": STORY}], adapter=name,
                                   settings=settings)
            first = next(stream)
            firsts.append(time.perf_counter() - started)
            text = first + "".join(stream)
            produced = len(engine.tokenizer(text, add_special_tokens=False)["input_ids"])
            rates.append((produced - 1) / (time.perf_counter() - started - firsts[-1]))
        timing[name] = {"ttft_ms": round(1000 * statistics.median(firsts[1:]), 1),
                        "tokens_per_s": round(statistics.median(rates[1:]), 1)}
        if busy:
            return {"timing": timing}
        short = GenerationSettings(max_new_tokens=ANSWER_TOKENS, stop_loops=False)
        answers[name] = [engine.reply([{"role": "user", "content": p}], adapter=name,
                                      settings=short).strip() for p in PROMPTS]
    swaps = []
    for _ in range(REPEATS):
        for name in ("base", adapter):
            started = time.perf_counter()
            engine.reply([{"role": "user", "content": "Hi"}], adapter=name,
                         settings=GenerationSettings(max_new_tokens=1))
            swaps.append(time.perf_counter() - started)
    return {"timing": timing, "answers": answers,
            "swap_and_one_token_ms": round(1000 * statistics.median(swaps), 1),
            "peak_rss_mb": peak_rss_mb()}


BASES = {"llama_cpp_q4_1": "Q4_1", "llama_cpp_f16": "F16"}
"""The llama.cpp sides called directly (llama-cpp-python's Llama, every core always):
the embedded base's own GGUF as it ships (Q4_1: 4-bit weights, and llama.cpp multiplies
them with 8-bit activations), and the same weights stored as F16 (what tunechat's
PyTorch engine computes with, in fp32)."""

ENGINES = ["torch", "llama_engine"]
"""tunechat's chat engines, as the app runs them."""


def base_gguf(home: Path, kind: str) -> Path:
    """The embedded base as llama.cpp loads it: its own file, or that file at F16."""
    from assistant.bases import embedded_gguf_path
    from core import gguf as core_gguf

    if kind == "Q4_1":
        return embedded_gguf_path()
    path = home / f"base-{kind.lower()}.gguf"
    if not path.exists():
        core_gguf.write_copy(embedded_gguf_path(), path, kind)
    return path


def llama_side(home: Path, adapter: str, kind: str = "Q4_1", busy: bool = False) -> dict:
    import ctypes

    import llama_cpp
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    from assistant.bases import resolve_model
    from core import gguf as core_gguf

    _, base_folder = resolve_model(None)
    tokenizer = AutoTokenizer.from_pretrained(base_folder)
    lora_file = home / f"{adapter}.gguf"
    config = json.loads((base_folder / "config.json").read_text())
    core_gguf.write_adapter(core_gguf.read_adapter(home / "adapters" / adapter, config),
                              lora_file, adapter)
    model = Llama(model_path=str(base_gguf(home, kind)), n_ctx=2048, verbose=False,
                  n_threads=os.cpu_count(), n_threads_batch=os.cpu_count())
    loaded = llama_cpp.llama_adapter_lora_init(model.model, str(lora_file).encode())

    def use(name: str) -> None:
        """The adapter for the next request; the prompt cache was computed with another."""
        chosen = [loaded] if name != "base" else []
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * len(chosen))(*chosen)
        scales = (ctypes.c_float * len(chosen))(*[1.0] * len(chosen))
        llama_cpp.llama_set_adapters_lora(model.ctx, adapters, len(chosen), scales)
        model.reset()

    def prompt(text: str) -> str:
        return str(tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                                 tokenize=False, add_generation_prompt=True))

    answers, timing = {}, {}
    for name in (adapter,) if busy else ("base", adapter):
        use(name)
        firsts, rates = [], []
        for _ in range(REPEATS + 1):
            model.reset()
            started = time.perf_counter()
            stream: Any = model.create_completion(prompt(STORY), max_tokens=DECODE_TOKENS,
                                             temperature=0.0, top_k=1, stream=True)
            next(stream)
            firsts.append(time.perf_counter() - started)
            produced = 1 + sum(1 for _ in stream)
            rates.append((produced - 1) / (time.perf_counter() - started - firsts[-1]))
        timing[name] = {"ttft_ms": round(1000 * statistics.median(firsts[1:]), 1),
                        "tokens_per_s": round(statistics.median(rates[1:]), 1)}
        if busy:
            return {"timing": timing}
        completions: list[Any] = [model.create_completion(
            prompt(p), max_tokens=ANSWER_TOKENS, temperature=0.0, top_k=1) for p in PROMPTS]
        answers[name] = [c["choices"][0]["text"].strip() for c in completions]
    swaps = []
    for _ in range(REPEATS):
        for name in ("base", adapter):
            started = time.perf_counter()
            use(name)
            model.create_completion(prompt("Hi"), max_tokens=1, temperature=0.0)
            swaps.append(time.perf_counter() - started)
    return {"timing": timing, "answers": answers,
            "swap_and_one_token_ms": round(1000 * statistics.median(swaps), 1),
            "peak_rss_mb": peak_rss_mb()}


def side(which: str, home: Path, adapter: str, busy: bool = False) -> dict:
    """One engine in its own process (its own peak memory)."""
    done = subprocess.run([sys.executable, "-m", "bench.generate_llama", "--side", which,
                           "--home", str(home), "--adapter", adapter] + ["--busy"] * busy,
                          check=True, capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent)
    return json.loads(done.stdout.splitlines()[-1])


def compare(home: Path, adapter: str) -> dict:
    found = {which: side(which, home, adapter) for which in [*ENGINES, *BASES]}
    today = found["torch"]
    differ = {which: {name: [p for p, a, b in zip(PROMPTS, today["answers"][name],
                                                  found[which]["answers"][name]) if a != b]
                      for name in today["answers"]} for which in ["llama_engine", *BASES]}
    return {"machine": describe_machine(), "prompts": len(PROMPTS),
            **{which: {k: v for k, v in got.items() if k != "answers"}
               for which, got in found.items()},
            "while_training": while_training(home, adapter),
            "differ": differ,
            "answers": {which: got["answers"] for which, got in found.items()}}


def while_training(home: Path, adapter: str) -> dict:
    """The adapter's decode timing on each engine while a run trains beside it (a long
    one, stopped after): what a reply costs while she waits for her next model."""
    from bench.gguf_export import tunechat

    busy = home.parent / "busy-home"
    shutil.copytree(home, busy, dirs_exist_ok=True)
    trainer = subprocess.Popen([sys.executable, "-m", "app", "train", "--epochs", "50",
                                "--home", str(busy)], cwd=Path(__file__).resolve().parent.parent,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(20)  # past the trainer's start, into its steps
        return {which: side(which, home, adapter, busy=True)["timing"][adapter]
                for which in [*ENGINES, *BASES]}
    finally:
        tunechat(busy, "cancel")
        trainer.wait(timeout=120)


def trained_home(work: Path) -> tuple[Path, str]:
    from bench.gguf_export import DEFAULT_SETS, tunechat

    home = work / "home"
    tunechat(home, "import", str(DEFAULT_SETS[0]), "--threshold", "0")
    tunechat(home, "train")
    return home, "run-1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path)
    parser.add_argument("--adapter", default="run-1")
    parser.add_argument("--side", choices=[*ENGINES, *BASES], help=argparse.SUPPRESS)
    parser.add_argument("--busy", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(engine_side(args.home, args.adapter, args.side, args.busy)
                         if args.side in ENGINES else
                         llama_side(args.home, args.adapter, BASES[args.side], args.busy)))
        return
    with tempfile.TemporaryDirectory() as work:
        home, adapter = (args.home, args.adapter) if args.home else trained_home(Path(work))
        report = compare(home, adapter)
    for engine in (*ENGINES, *BASES):
        print(engine, json.dumps(report[engine]))
    print("while a run trains:", json.dumps(report["while_training"]))
    print("answers that differ from torch's:", {
        which: {name: len(p) for name, p in differ.items()}
        for which, differ in report["differ"].items()}, f"of {report['prompts']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
