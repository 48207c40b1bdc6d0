"""`tunechat bench [--json FILE]`: tunechat against the plain peer on the same work.

train    tunechat's trainer vs plain TRL SFTTrainer + LoraConfig (TRL's defaults), same
         examples, base, LoRA rank and targets, epochs; each in its own process.
swap     a finished adapter until the first request can use it; a full reload.
generate time to first token and decode speed vs plain transformers generate.
cold_start_s (until the page answers), model_ready_s, limit (matmul peaks, fraction of
         peak).
time_to_effect  a correction (/correct) until the chat's answer to a paraphrase carries
         it (bench/time_to_effect.py), against one reply's own time.
Medians of `repeats` runs after a warm-up. The machine is shared and noisy: read the
ratios, not the absolute times."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.common import DEFAULT_DATA, free_port, peak_gflops, watch_log
from core.hardware import describe_machine

PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 1)


def p95_ms(samples: list[float]) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000, 1)


def bench_train(base: Path, data: Path, epochs: int, work: Path) -> dict:
    from files.formats import read_examples

    examples = read_examples(data)
    cut = max(1, len(examples) // 5)  # the same held-out fifth for both sides
    split = {"train": examples[:-cut], "held_out": examples[-cut:]}
    (work / "split.json").write_text(json.dumps(split))
    sides = {}
    for which in ("trl", "tunechat"):
        out = work / which
        result = subprocess.run(
            [sys.executable, "-m", "bench.train_one", which, str(base),
             str(work / "split.json"), str(epochs), str(out)],
            capture_output=True, text=True)
        if result.returncode != 0:
            reason = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"The {which} side of the training benchmark failed: {reason}")
        sides[which] = json.loads(result.stdout.strip().splitlines()[-1])
    tunechat, trl = sides["tunechat"], sides["trl"]
    return {"tunechat_tokens_per_s": round(tunechat["tokens_per_s"], 1),
            "trl_tokens_per_s": round(trl["tokens_per_s"], 1),
            "speedup": round(tunechat["tokens_per_s"] / trl["tokens_per_s"], 2),
            "tunechat_eval_loss": round(tunechat["eval_loss"], 4),
            "trl_eval_loss": round(trl["eval_loss"], 4),
            "tunechat_peak_rss_mb": round(tunechat["peak_rss_mb"]),
            "trl_peak_rss_mb": round(trl["peak_rss_mb"]),
            "epochs": epochs, "train_examples": len(split["train"]),
            "adapter": str(work / "tunechat" / "adapter")}


def bench_swap(spec: str | None, adapter: Path, repeats: int, work: Path) -> dict:
    from peft import PeftModel

    from assistant.bases import load_model
    from assistant.engine import ChatEngine

    folder = work / "adapters"
    names = [f"copy{i}" for i in range(repeats + 2)]
    for name in names:
        shutil.copytree(adapter, folder / name)
    engine = ChatEngine(load_model(spec), adapters_dir=folder, max_loaded_adapters=2)
    swaps = []
    # The first wraps the model in PEFT, the second adds a slot; the rest refill the
    # least recently used slot, which is what a swap costs once the slots are in use.
    for name in names:
        started = time.perf_counter()
        with engine.using(name):
            pass
        swaps.append(time.perf_counter() - started)
    reloads = []
    for _ in range(max(2, repeats // 2)):
        started = time.perf_counter()
        fresh = load_model(spec)
        PeftModel.from_pretrained(fresh.model, adapter)
        reloads.append(time.perf_counter() - started)
    return {"p50_ms": median_ms(swaps[2:]), "p95_ms": p95_ms(swaps[2:]),
            "first_ms": round(swaps[0] * 1000, 1), "new_slot_ms": round(swaps[1] * 1000, 1),
            "reload_ms": median_ms(reloads)}


def bench_generate(spec: str | None, repeats: int, new_tokens: int = 64) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from assistant.bases import load_model
    from assistant.engine import ChatEngine, GenerationSettings

    engine = ChatEngine(load_model(spec))
    first_token, decode = [], []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        stream = engine.stream(PROMPT, settings=GenerationSettings(max_new_tokens=new_tokens))
        next(stream)
        first_token.append(time.perf_counter() - started)
        text = "".join(stream)
        after_first = time.perf_counter() - started - first_token[-1]
        produced = len(engine.tokenizer(text, add_special_tokens=False)["input_ids"])
        decode.append(produced / max(after_first, 1e-6))
    plain = AutoModelForCausalLM.from_pretrained(engine.loaded.folder)  # defaults
    inputs = engine.encode(PROMPT)
    baseline = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        with torch.no_grad():
            out = plain.generate(**inputs, max_new_tokens=new_tokens, do_sample=False)
        baseline.append((out.shape[1] - inputs["input_ids"].shape[1])
                        / (time.perf_counter() - started))
    return {"ttft_ms": median_ms(first_token[1:]),
            "tokens_per_s": round(statistics.median(decode[1:]), 1),
            "baseline_tokens_per_s": round(statistics.median(baseline[1:]), 1)}


def bench_chat_while_training(spec: str | None, base: Path, work: Path,
                              repeats: int) -> dict:
    """How long a chat reply takes while a run trains: idle, with the trainer below the
    app (as tunechat starts it), and with the trainer at the app's priority."""
    from assistant.bases import load_model
    from assistant.engine import ChatEngine, GenerationSettings

    engine = ChatEngine(load_model(spec))
    settings = GenerationSettings(max_new_tokens=48, stop_loops=False)

    def reply_seconds() -> float:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            engine.reply(PROMPT, settings=settings)
            times.append(time.perf_counter() - started)
        return round(statistics.median(times), 2)

    reply_seconds()  # warm-up
    result = {"idle_reply_s": reply_seconds()}
    for label, nice in (("training_reply_s", "1"), ("training_same_priority_reply_s", "0")):
        trainer = subprocess.Popen(
            [sys.executable, "-m", "bench.train_one", "tunechat", str(base),
             str(work / "split.json"), "50", str(work / f"busy-{nice}"), nice],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_until_training(trainer, work / f"busy-{nice}" / "work")
            result[label] = reply_seconds()
        finally:
            trainer.kill()
            trainer.wait()
    return result


def _wait_until_training(trainer: subprocess.Popen, work_dir: Path) -> None:
    """Past imports and loading: the trainer makes its work folder as it starts."""
    deadline = time.perf_counter() + 180
    while not work_dir.exists() and trainer.poll() is None:
        if time.perf_counter() > deadline:
            raise RuntimeError("the busy trainer of the benchmark did not start")
        time.sleep(0.2)
    time.sleep(2)  # its first steps


def bench_cold_start(spec: str | None, work: Path) -> dict:
    """`tunechat serve` until the page answers, and until it says the model is ready
    (the page is served while the model loads)."""
    port = free_port()
    command = [sys.executable, "-m", "app", "serve", "--home", str(work / "home"),
               "--port", str(port)] + (["--model", spec] if spec else [])
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    said = watch_log(process, started)
    try:
        page = _wait_for_page(f"http://127.0.0.1:{port}/", process, started)
        while "Model ready" not in said.ready:
            if process.poll() is not None or time.perf_counter() - started > 180:
                raise RuntimeError("tunechat serve never reported the model ready")
            time.sleep(0.05)
        return {"cold_start_s": page, "model_ready_s": said.ready["Model ready"]}
    finally:
        process.terminate()
        process.wait(timeout=20)


def _wait_for_page(url: str, process: subprocess.Popen, started: float) -> float:
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return round(time.perf_counter() - started, 2)
        except OSError as error:
            if process.poll() is not None or time.perf_counter() - started > 180:
                raise RuntimeError("tunechat serve did not start") from error
            time.sleep(0.05)


def bench_limit(spec: str | None, train_tokens_per_s: float) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from assistant.bases import resolve_model

    model = AutoModelForCausalLM.from_pretrained(resolve_model(spec)[1])
    params = sum(p.numel() for p in model.parameters())
    bf16, fp32 = peak_gflops(torch.bfloat16), peak_gflops(torch.float32)
    peak = max(bf16, fp32) * 1e9
    return {"bf16_gflops": bf16, "fp32_gflops": fp32, "parameters": params,
            "fraction_of_peak": round(train_tokens_per_s * 4 * params / peak, 4)}


def run(spec: str | None = None, data: Path = DEFAULT_DATA, epochs: int = 3,
        repeats: int = 5, shapes: list[str] | None = None) -> dict:
    """Every measurement; `shapes`: the larger model shapes of the scaling table
    (bench/scaling.py; default: all)."""
    from assistant.bases import resolve_model
    from bench import scaling
    from bench.time_to_adapter import bench_time_to_adapter
    from bench.time_to_effect import bench_time_to_effect

    base = resolve_model(spec)[1]
    with tempfile.TemporaryDirectory(prefix="tunechat-bench-") as scratch:
        work = Path(scratch)
        train = bench_train(base, data, epochs, work)
        report = {"machine": describe_machine(), "train": train,
                  "swap": bench_swap(spec, Path(train.pop("adapter")), repeats, work),
                  "generate": bench_generate(spec, repeats),
                  "chat_while_training": bench_chat_while_training(spec, base, work, repeats),
                  **bench_cold_start(spec, work),
                  "limit": bench_limit(spec, train["tunechat_tokens_per_s"]),
                  "time_to_adapter": bench_time_to_adapter(spec, data, work),
                  "time_to_effect": bench_time_to_effect(spec, work, repeats),
                  "scaling": scaling.run(spec, data, shapes)}
    return report


def print_table(report: dict) -> None:
    train, swap, gen, limit, busy = (report[k] for k in (
        "train", "swap", "generate", "limit", "chat_while_training"))
    rows = [
        ("training tokens/s", train["tunechat_tokens_per_s"], train["trl_tokens_per_s"],
         f"{train['speedup']}x"),
        ("held-out eval loss", train["tunechat_eval_loss"], train["trl_eval_loss"], ""),
        ("training peak RSS (MB)", train["tunechat_peak_rss_mb"], train["trl_peak_rss_mb"], ""),
        ("decode tokens/s", gen["tokens_per_s"], gen["baseline_tokens_per_s"],
         f"{gen['tokens_per_s'] / gen['baseline_tokens_per_s']:.2f}x"),
        ("time to first token (ms)", gen["ttft_ms"], "", ""),
        ("chat reply while training (s)", busy["training_reply_s"],
         f"{busy['training_same_priority_reply_s']} (same priority)",
         f"idle {busy['idle_reply_s']}"),
        ("adapter swap p50 / p95 (ms)", f"{swap['p50_ms']} / {swap['p95_ms']}",
         f"{swap['reload_ms']} (full reload)", ""),
        ("cold start: page / model ready (s)",
         f"{report['cold_start_s']} / {report['model_ready_s']}", "", ""),
        ("matmul GFLOP/s bf16 / fp32", f"{limit['bf16_gflops']} / {limit['fp32_gflops']}", "",
         f"{100 * limit['fraction_of_peak']:.1f}% of peak in training"),
    ]
    tta = report["time_to_adapter"]
    rows.append(("time to adapter (s)", tta["time_to_adapter_s"], "",
                 f"first step {tta['first_step_s']}"))
    rows.append(("training steps: measured / floor (s)",
                 f"{tta['train_seconds']} / {tta['compute_floor_s']}", "",
                 f"{tta['training_tflops']} TFLOP at {tta['peak_gflops']} GFLOP/s"))
    tte = report["time_to_effect"]
    rows.append(("time to effect (s)", tte["time_to_effect_s"], f"{tte['reply_s']} (one reply)",
                 "carried" if tte["carried"] else "not carried"))
    print(f"machine: {report['machine']}")
    print(f"{'':30} {'tunechat':>18} {'peer':>22} {'ratio':>10}")
    for name, ours, peer, ratio in rows:
        print(f"{name:30} {str(ours):>18} {str(peer):>22} {ratio:>10}")
    print_scaling(report["scaling"])


def print_scaling(scaling: dict) -> None:
    print(f"\n{'model':16} {'method':7} {'train tok/s':>12} {'peak MB':>8} "
          f"{'decode tok/s':>13} {'45 ex. (s, est.)':>17} {'auto: QLoRA below':>18}")
    for model, row in scaling["models"].items():
        for method in ("lora", "qlora"):
            probe = row[method]
            if "error" in probe:
                print(f"{model:16} {method:7} failed: {probe['error']}")
                continue
            print(f"{model:16} {method:7} {probe['train_tokens_per_s']:>12} "
                  f"{probe['peak_rss_mb']:>8} {probe['decode_tokens_per_s']:>13} "
                  f"{probe['time_to_adapter_45_s_estimated']:>17} "
                  f"{row['auto_picks_qlora_below_mb']:>15} MB")
    for examples, row in scaling["data"].items():
        print(f"{examples:>5} examples: {row['steps']} steps, about "
              f"{row['training_s_estimated']} s, peak {row['peak_rss_mb']} MB")
