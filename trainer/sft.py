"""run_sft: one readable recipe (setup, check, train, save) from examples to a LoRA
adapter folder. Knows nothing of SQLite or processes: a Reporter carries progress out
and the cancel request in."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from trainer.config import TrainConfig
from trainer.dataset import build_datasets, to_record

METADATA_FILE = "tunechat.json"
EAGER_ATTENTION_UP_TO = 256


class SanityError(ValueError):
    """The examples or the model would give a bad adapter; the message says why and how
    to fix it."""


class Reporter(Protocol):
    def started(self, total_steps: int, train_examples: int, eval_examples: int) -> None: ...
    def progress(self, step: int, total: int, logs: dict) -> None: ...
    def cancelled(self) -> bool: ...


@dataclass
class SftResult:
    adapter_dir: Path
    metrics: dict


def run_sft(config: TrainConfig, examples: list[list[dict]], base_folder: Path,
            out_dir: Path, work_dir: Path, reporter: Reporter,
            continue_from: Path | None = None) -> SftResult:
    """Train an adapter on `examples` and save it to `out_dir` (written whole or not at all).
    `work_dir` keeps checkpoints, so a failed run resumes where it stopped."""
    from transformers import AutoTokenizer, PrinterCallback, TrainerCallback

    # Setup
    tokenizer = AutoTokenizer.from_pretrained(base_folder)
    config = replace(config, method=chosen_method(config.method, base_folder))
    longest = check_examples(config, examples, tokenizer)
    train_set, eval_set = build_datasets(examples, config.eval_share)
    model, peft_config = _load_model(config, base_folder, continue_from, longest)
    args = _sft_args(config, len(train_set), work_dir, has_eval=eval_set is not None)

    class Progress(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            reporter.progress(state.global_step, state.max_steps, dict(logs or {}))

        def on_step_end(self, args, state, control, **kwargs):
            if _agreed(reporter.cancelled(), args.device):
                control.should_training_stop = True
            reporter.progress(state.global_step, state.max_steps, {})

    trainer = _trainer_class()(model=model, args=args, train_dataset=train_set,
                         eval_dataset=eval_set, processing_class=tokenizer,
                         peft_config=peft_config, callbacks=[Progress()])
    trainer.remove_callback(PrinterCallback)  # progress goes to the reporter, not stdout
    steps = args.num_train_epochs * -(-len(train_set) // config.batch_size)
    reporter.started(int(steps), len(train_set), len(eval_set or []))
    metrics = {"train_examples": len(train_set), "eval_examples": len(eval_set or []),
               "epochs": args.num_train_epochs, "processes": args.world_size,
               "method": config.method}
    if eval_set is not None:
        metrics["eval_loss_before"] = trainer.evaluate()["eval_loss"]

    # Train
    started = time.monotonic()
    trainer.train(resume_from_checkpoint=last_complete_checkpoint(work_dir))
    seconds = time.monotonic() - started
    if reporter.cancelled():
        return SftResult(out_dir, metrics)
    metrics["train_seconds"] = round(seconds, 1)
    metrics["tokens_per_second"] = round(
        _answer_tokens(train_set, tokenizer) * args.num_train_epochs / max(seconds, 1e-6), 1)
    metrics["train_loss"] = _last_train_loss(trainer)
    if eval_set is not None:
        metrics["eval_loss_after"] = trainer.evaluate()["eval_loss"]

    # Save (once, by the first process of a distributed run)
    if trainer.is_world_process_zero():
        _save_adapter(trainer.model, out_dir, config, base_folder, examples, metrics)
    return SftResult(out_dir, metrics)


def _agreed(stop: bool, device) -> bool:
    """In a distributed run every process must stop at the same step (or the others wait
    forever in the next all-reduce): the first process's answer is everyone's."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return stop
    flag = torch.tensor([int(stop)], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def _trainer_class():
    """SFTTrainer, with the model's own cross-entropy on a CPU. TRL computes the loss with
    a chunked LM-head kernel that saves GPU memory, but on a CPU its Python-level tiles
    took about 40% of each step (profiled on SmolLM2-135M); the loss is the same."""
    from transformers import Trainer
    from trl import SFTTrainer

    if _on_gpu():
        return SFTTrainer

    class CpuSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    return CpuSFTTrainer


def check_examples(config: TrainConfig, examples: list[list[dict]], tokenizer) -> int:
    """Refuse a run that would give a bad adapter; returns the longest example's tokens."""
    if len(examples) < config.min_examples:
        raise SanityError(
            f"Only {len(examples)} example{'s' * (len(examples) != 1)}: a run needs at least "
            f"{config.min_examples} (a few dozen show a voice). Keep or correct more replies, "
            "or import a file.")
    limit = min(config.max_length, _context(tokenizer))
    longest = 0
    for index, messages in enumerate(examples, start=1):
        length = token_count(tokenizer, messages)
        longest = max(longest, length)
        if length > limit:
            raise SanityError(
                f"Example {index} (\"{messages[-2]['content'][:40]}...\") is {length:,} tokens, "
                f"longer than the limit of {limit:,}. Shorten or delete it, or raise "
                "max_length.")
    if not template_ends_turns(tokenizer, examples[0]):
        raise SanityError(
            "This model's chat template adds no end-of-turn token after an answer, so an "
            "adapter trained with it would never stop talking. Use a chat model whose "
            "template closes each turn (for example with <|im_end|>).")
    return longest


def template_ends_turns(tokenizer, messages: list[dict]) -> bool:
    """Does the templated answer end with a token that stops generation?"""
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    answer = messages[-1]["content"]
    tail = full[full.rindex(answer) + len(answer):]
    stops = {tokenizer.eos_token_id} | {
        tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|eot_id|>",
                                                      "<end_of_turn>", "<|end|>")
        if t in tokenizer.get_vocab()}
    return bool(set(tokenizer(tail, add_special_tokens=False)["input_ids"]) & stops)


def _context(tokenizer) -> int:
    limit = getattr(tokenizer, "model_max_length", None) or 2048
    return limit if limit < 10_000_000 else 2048


def _load_model(config: TrainConfig, base_folder: Path, continue_from: Path | None,
                longest: int):
    import torch
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM

    # Frozen base weights stored in bf16 where bf16 is fast: autocast would otherwise cast
    # every weight again on each forward. The LoRA weights PEFT adds stay in fp32.
    kwargs = {"dtype": torch.bfloat16} if _bf16_ok() else {}
    # Short examples on a CPU: plain attention beat SDPA's CPU flash kernel (its backward
    # took 17% of a step); its memory grows with length squared, so only up to 256.
    if not _on_gpu() and longest <= EAGER_ATTENTION_UP_TO:
        kwargs["attn_implementation"] = "eager"
    if config.method == "qlora":
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if _bf16_ok() else torch.float32
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute,
            bnb_4bit_use_double_quant=True)
    model = AutoModelForCausalLM.from_pretrained(base_folder, **kwargs)
    if config.method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if continue_from is not None:
        return PeftModel.from_pretrained(model, continue_from, is_trainable=True), None
    return model, LoraConfig(r=config.rank, lora_alpha=config.alpha,
                             lora_dropout=config.dropout,
                             target_modules=config.target_modules, task_type="CAUSAL_LM")


def chosen_method(method: str, base_folder: Path) -> str:
    """auto: LoRA when the base fits twice over in fp32 in the free memory (weights plus
    room for activations and optimizer state), else QLoRA's 4-bit base."""
    if method != "auto":
        return method
    return "lora" if 2 * _fp32_bytes(Path(base_folder)) <= _free_memory_bytes() else "qlora"


def _fp32_bytes(folder: Path) -> int:
    config = json.loads((folder / "config.json").read_text())
    stored = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    per_value = {"float32": 4, "bfloat16": 2, "float16": 2}.get(stored, 4)
    return sum(p.stat().st_size for p in folder.glob("*.safetensors")) * 4 // per_value


def _free_memory_bytes() -> int:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.mem_get_info()[0]
    try:  # MemAvailable counts the page cache the kernel would give back; MemFree does not
        with open("/proc/meminfo") as meminfo:
            line = next(line for line in meminfo if line.startswith("MemAvailable:"))
        return int(line.split()[1]) * 1024
    except (OSError, StopIteration):
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):  # not reported here: assume it fits
            return 2 ** 62


def _on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _bf16_ok() -> bool:
    """bf16 where the hardware has fast kernels for it: a recent GPU, or a CPU with AMX
    or AVX512-BF16 (there bf16 matmuls run several times faster than fp32). Elsewhere
    bf16 is emulated and far slower than fp32, so training stays in fp32."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_has_fast_bf16()


def cpu_has_fast_bf16() -> bool:
    import torch

    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def _sft_args(config: TrainConfig, train_examples: int, work_dir: Path, has_eval: bool):
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(work_dir), num_train_epochs=config.epochs_for(train_examples),
        learning_rate=config.learning_rate, lr_scheduler_type=config.lr_scheduler,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size, max_length=config.max_length,
        completion_only_loss=True, gradient_checkpointing=False, bf16=_bf16_ok(),
        logging_steps=1, eval_strategy="epoch" if has_eval else "no",
        save_strategy="steps", save_steps=config.save_every, save_total_limit=2,
        report_to="none", disable_tqdm=True, seed=config.seed, dataloader_num_workers=0,
        dataloader_pin_memory=_on_gpu(), use_cpu=not _on_gpu(),
        **config.extra)


def last_complete_checkpoint(work_dir: Path) -> str | None:
    """The newest checkpoint that was written to the end (trainer_state.json is last)."""
    done = [p for p in Path(work_dir).glob("checkpoint-*") if (p / "trainer_state.json").is_file()
            and any(p.glob("adapter_model.safetensors"))]
    return str(max(done, key=lambda p: int(p.name.split("-")[1]))) if done else None


def _answer_tokens(dataset, tokenizer) -> int:
    """Non-padding tokens of the training examples (prompt and answer), as the bench counts."""
    return sum(token_count(tokenizer, row["prompt"] + row["completion"]) for row in dataset)


def token_count(tokenizer, messages: list[dict]) -> int:
    # return_dict=False: transformers 5 otherwise returns a BatchEncoding, whose len() is 2.
    return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False))


def _last_train_loss(trainer) -> float | None:
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return losses[-1] if losses else None


def _save_adapter(model, out_dir: Path, config: TrainConfig, base_folder: Path,
                  examples: list[list[dict]], metrics: dict) -> None:
    """Write to a scratch folder, then rename: the adapter appears whole or not at all."""
    scratch = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(scratch, ignore_errors=True)
    model.save_pretrained(scratch, safe_serialization=True)
    digest = hashlib.sha256(
        json.dumps([to_record(m) for m in examples], ensure_ascii=False).encode()).hexdigest()
    (scratch / METADATA_FILE).write_text(json.dumps({
        "base_model": str(base_folder), "config": config.to_dict(), "metrics": metrics,
        "examples_sha256": digest, "examples": len(examples)}, indent=2))
    scratch.rename(out_dir)
