"""How cost grows with the model and the data: `python -m bench.scaling [--json FILE]`.

models  the embedded SmolLM2-135M, and models built from the configs of larger public
        chat models (random weights: speed and memory do not depend on them), each
        trained with LoRA and QLoRA by tunechat's SFT recipe in its own process:
        training tokens/s (steps after the first), peak memory (RSS), decode tokens/s
        with the new adapter, and the time to adapter for the 45-example set,
        estimated as load + the default run's steps x the measured seconds a step.
data    45, 450 and 4,500 examples on the embedded model: the default run's steps
        and time, estimated the same way, and the probe's peak memory.
auto    for each model, the free memory below which `--method auto` picks QLoRA.
A probe trains a few steps of `batch_size` examples of the brand-voice set; every
figure besides tokens/s and memory is an estimate from it (say so where shown)."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import DEFAULT_DATA

SHAPES: dict[str, dict] = {
    # From each model's config.json on the Hugging Face Hub.
    "SmolLM2-360M": {"model_type": "llama", "hidden_size": 960, "intermediate_size": 2560,
                     "num_hidden_layers": 32, "num_attention_heads": 15,
                     "num_key_value_heads": 5, "vocab_size": 49152,
                     "tie_word_embeddings": True},
    "Qwen2.5-0.5B": {"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
                     "num_hidden_layers": 24, "num_attention_heads": 14,
                     "num_key_value_heads": 2, "vocab_size": 151936,
                     "tie_word_embeddings": True},
    "SmolLM2-1.7B": {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192,
                     "num_hidden_layers": 24, "num_attention_heads": 32,
                     "num_key_value_heads": 32, "vocab_size": 49152,
                     "tie_word_embeddings": True},
}
PROBE_BATCH = 2
PROBE_STEPS = 3
DATA_SIZES = (45, 450, 4500)


def build_model(name: str, embedded: Path, out: Path) -> Path:
    """A model folder of the shape `name` with random weights and the embedded model's
    tokenizer (its token ids fit every vocabulary here)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    shape = dict(SHAPES[name])
    config = AutoConfig.for_model(shape.pop("model_type"), **shape,
                                  max_position_embeddings=8192)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    folder = out / name
    model.save_pretrained(folder)
    for item in embedded.iterdir():
        if item.name.startswith(("tokenizer", "chat_template", "special_tokens")):
            shutil.copy(item, folder / item.name)
    return folder


def probe(base: Path, method: str, data: Path) -> dict:
    """Train PROBE_STEPS steps in this process; the JSON line the parent reads."""
    from core.chatformat import token_count
    from core.hardware import peak_rss_mb
    from files.formats import read_examples
    from trainer.config import TrainConfig
    from trainer.dataset import RunData
    from trainer.sft import run_sft

    started = time.monotonic()
    examples = read_examples(data)[:PROBE_BATCH * PROBE_STEPS]
    step_times: list[float] = []

    class Clock:
        def started(self, *args) -> None:
            step_times.append(time.monotonic())

        def progress(self, step: int, total: int, logs: dict) -> None:
            if step > len(step_times) - 1:
                step_times.append(time.monotonic())

        def cancelled(self) -> bool:
            return False

    config = TrainConfig(method=method, epochs=1, batch_size=PROBE_BATCH, min_examples=1)
    with tempfile.TemporaryDirectory() as scratch:
        result = run_sft(config, RunData(examples), base, Path(scratch) / "adapter",
                         Path(scratch) / "work", Clock())
        load_s = step_times[0] - started
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(base)
        per_step = [b - a for a, b in zip(step_times[1:], step_times[2:])]
        tokens = sum(token_count(tokenizer, m) for m in examples[PROBE_BATCH:])
        peak = peak_rss_mb()  # training's, before the decode check loads the base again
        decode = _decode_tokens_per_s(base, result.adapter_dir)
    return {"load_s": round(load_s, 1), "step_s": round(sum(per_step) / len(per_step), 2),
            "train_tokens_per_s": round(tokens / sum(per_step), 1),
            "peak_rss_mb": peak,
            "decode_tokens_per_s": decode}


def _decode_tokens_per_s(base: Path, adapter: Path, new_tokens: int = 32) -> float:
    """Greedy decode speed of the base as the chat engine loads it, the new adapter
    active; exactly `new_tokens` tokens (random weights seldom stop, nor make words)."""
    import torch
    from peft import PeftModel

    from assistant.bases import load_model

    loaded = load_model(str(base))
    model = PeftModel.from_pretrained(loaded.model, adapter).eval()
    inputs = loaded.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Tell me about your coffee."}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    fixed = dict(do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    with torch.inference_mode():
        model.generate(**inputs, **fixed)  # warm-up
        started = time.perf_counter()
        model.generate(**inputs, **fixed)
    return round(new_tokens / (time.perf_counter() - started), 1)


def run_probe(base: Path, method: str, data: Path) -> dict:
    result = subprocess.run([sys.executable, "-m", "bench.scaling", "--probe", str(base),
                             method, str(data)], capture_output=True, text=True)
    if result.returncode != 0:
        return {"error": (result.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def default_steps(examples: int, answer_length: float) -> int:
    """Steps of a default run on `examples` with answers of `answer_length` characters
    (held out as the app does)."""
    from storage.placement import held_out_count
    from trainer.config import TrainConfig

    config = TrainConfig()
    train = examples - held_out_count(examples)
    return config.steps_for(train, round(train * answer_length))


def estimate_s(probe_result: dict, examples: int, answer_length: float) -> float:
    """load + steps x seconds a step, the step scaled from the probe's batch."""
    from trainer.config import TrainConfig

    scale = TrainConfig().batch_size / PROBE_BATCH
    steps = default_steps(examples, answer_length)
    return round(probe_result["load_s"] + steps * probe_result["step_s"] * scale, 1)


def auto_threshold_mb(base: Path) -> int:
    """The free memory below which --method auto picks QLoRA."""
    from trainer.common import _fp32_bytes

    return round(2 * _fp32_bytes(base) / 2**20)


def run(spec: str | None = None, data: Path = DEFAULT_DATA,
        shapes: list[str] | None = None) -> dict:
    """The model given (default: the embedded one) and the larger `shapes` (default:
    all of SHAPES), built with its tokenizer."""
    from assistant.bases import resolve_model
    from files.formats import read_examples
    from trainer.dataset import answer_characters

    name, given = resolve_model(spec)
    answers = read_examples(data)
    length = answer_characters(answers) / len(answers)  # more examples of the same kind
    report: dict = {"probe": {"batch_size": PROBE_BATCH, "steps": PROBE_STEPS},
                    "models": {}, "data": {}}
    with tempfile.TemporaryDirectory(prefix="tunechat-scaling-") as scratch:
        folders = {name: given}
        for shape in SHAPES if shapes is None else shapes:
            folders[shape] = build_model(shape, given, Path(scratch))
        for model, folder in folders.items():
            row: dict = {"auto_picks_qlora_below_mb": auto_threshold_mb(folder)}
            for method in ("lora", "qlora"):
                result = run_probe(folder, method, data)
                if "error" not in result:
                    result["time_to_adapter_45_s_estimated"] = estimate_s(result, 45, length)
                row[method] = result
                print(f"{model} {method}: {json.dumps(result)}", file=sys.stderr, flush=True)
            report["models"][model] = row
    lora = report["models"][name]["lora"]
    for examples in DATA_SIZES:
        report["data"][str(examples)] = {
            "steps": default_steps(examples, length),
            "training_s_estimated": (estimate_s(lora, examples, length) if "error" not in lora
                                     else None),
            "peak_rss_mb": lora.get("peak_rss_mb")}
    return report


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--probe"]:
        base, method, data = argv[1:4]
        print(json.dumps(probe(Path(base), method, Path(data))))
        return
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--model", help="the model probed first (default: the embedded "
                                        "one); the larger shapes use its tokenizer")
    parser.add_argument("--shapes", nargs="*", choices=list(SHAPES),
                        help="larger models to build (default: all)")
    args = parser.parse_args(argv)
    report = run(args.model, shapes=args.shapes)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
