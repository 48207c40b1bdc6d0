"""What every training recipe shares: the sanity checks, loading the base model for
training (bf16 where fast, QLoRA's 4-bit base), checkpoints, progress and cancel, and
saving an adapter whole or not at all. Recipes (sft.py, ...) read top to bottom on
these helpers."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from core.chatformat import TemplateError, context_window, template_ends_turns, token_count
from core.errors import UserError
from core.hardware import bf16_ok, peak_rss_mb
from trainer.config import TrainConfig
from trainer.dataset import to_record

METADATA_FILE = "tunechat.json"
EAGER_ATTENTION_UP_TO = 256
TRAINER_NICENESS = 10
"""How much lower than the app the trainer runs: on a machine with few cores the chat
would otherwise wait behind training (docs/benchmarks.md)."""


def lower_priority() -> None:
    """Let the app answer first when both want the CPU; training takes what is left."""
    try:
        os.nice(TRAINER_NICENESS)
    except OSError:  # not allowed here: train at the same priority
        pass


class SanityError(UserError):
    """The examples or the model would give a bad adapter; the message says why and how
    to fix it."""


@dataclass
class Trained:
    """What a recipe returns: where the adapter is (when it was saved) and its metrics."""

    adapter_dir: Path
    metrics: dict


class Reporter(Protocol):
    """Carries a recipe's progress out and the cancel request in."""

    def started(self, total_steps: int, train_examples: int, eval_examples: int) -> None: ...
    def progress(self, step: int, total: int, logs: dict) -> None: ...
    def cancelled(self) -> bool: ...


class Quiet:
    """A Reporter for a recipe run in a script: no progress shown, never cancelled."""

    def started(self, total_steps: int, train_examples: int, eval_examples: int) -> None: ...
    def progress(self, step: int, total: int, logs: dict) -> None: ...
    def cancelled(self) -> bool:
        return False


def check_examples(config: TrainConfig, examples: list[list[dict]], tokenizer) -> int:
    """Refuse a run that would give a bad adapter; returns the longest example's tokens."""
    if len(examples) < config.min_examples:
        raise SanityError(
            f"Only {len(examples)} example{'s' * (len(examples) != 1)}: a run needs at least "
            f"{config.min_examples} (a few dozen show a voice). Keep or correct more replies, "
            "or import a file.")
    limit = min(config.max_length, context_window(tokenizer))
    longest = 0
    for index, messages in enumerate(examples, start=1):
        length = token_count(tokenizer, messages)
        longest = max(longest, length)
        if length > limit:
            raise SanityError(
                f"Example {index} (\"{messages[-2]['content'][:40]}...\") is {length:,} tokens, "
                f"longer than the limit of {limit:,}. Shorten or delete it, or raise "
                "max_length.")
    try:
        closes_turns = template_ends_turns(tokenizer, examples[0])
    except TemplateError as error:
        raise SanityError(str(error)) from None
    if not closes_turns:
        raise SanityError(
            "This model's chat template adds no end-of-turn token after an answer, so an "
            "adapter trained with it would never stop talking. Use a chat model whose "
            "template closes each turn (for example with <|im_end|>).")
    return longest


def load_for_training(config: TrainConfig, base_folder: Path, continue_from: Path | None,
                      longest: int):
    """(model, LoRA config for a new adapter or None when continuing one)."""
    import torch
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM

    # Frozen base weights stored in bf16 where bf16 is fast: autocast would otherwise cast
    # every weight again on each forward. The LoRA weights PEFT adds stay in fp32.
    # Elsewhere fp32, also for a model saved in bf16 (most are), which would otherwise
    # load as saved and train a hundred times slower on emulated bf16.
    kwargs: dict = {"dtype": torch.bfloat16 if bf16_ok() else torch.float32}
    # Short examples on a CPU: plain attention beat SDPA's CPU flash kernel (its backward
    # took 17% of a step); its memory grows with length squared, so only up to 256.
    if not on_gpu() and longest <= EAGER_ATTENTION_UP_TO:
        kwargs["attn_implementation"] = "eager"
    if config.method == "qlora":
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if bf16_ok() else torch.float32
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
                             lora_dropout=config.dropout, task_type="CAUSAL_LM",
                             **_targets(config, model))


def _targets(config: TrainConfig, model) -> dict:
    """LoraConfig's target arguments: `config.target_modules` on every block, or (with
    upper_layers below 1) on the upper share of them; PEFT takes a block list only with
    the modules named."""
    if config.upper_layers >= 1:
        return {"target_modules": config.target_modules}
    import torch

    names = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                    if isinstance(module, torch.nn.Linear) and ".layers." in name})
    if config.target_modules != "all-linear":
        names = [n.strip() for n in config.target_modules.split(",") if n.strip()]
    if not names:
        raise SanityError("upper_layers needs a model whose blocks are named layers.N "
                          "(Llama, Qwen, Mistral and the like); set it to 1 for this one.")
    count = model.config.num_hidden_layers
    kept = max(1, round(count * config.upper_layers))
    return {"target_modules": names, "layers_to_transform": list(range(count - kept, count))}


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


def peak_memory_mb() -> int:
    """The trainer process's peak memory so far: resident on a CPU, allocated on a GPU
    (a later stage of a run reports the peak of the stages before it too)."""
    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20)
    return peak_rss_mb()


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def progress_callback(reporter: Reporter):
    """A Trainer callback that reports every step and stops at the next step once the
    user cancels (every process of a distributed run at the same step)."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            reporter.progress(state.global_step, state.max_steps, dict(logs or {}))

        def on_step_end(self, args, state, control, **kwargs):
            if _agreed(reporter.cancelled(), args.device):
                control.should_training_stop = True
            reporter.progress(state.global_step, state.max_steps, {})

    return Progress()


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


HEAD_IS_THE_LOGITS = frozenset({"llama", "mistral", "qwen2", "qwen3", "phi3", "smollm3"})
"""Model types whose logits are their LM head applied to the last hidden state, with no
scaling or softcapping after it: for them the CPU loss applies the head to the answer
tokens only."""


def with_plain_loss_on_cpu(trainer_class):
    """The TRL trainer class, with a plain cross-entropy on a CPU. TRL computes the loss
    with a chunked LM-head kernel that saves GPU memory, but on a CPU its Python-level
    tiles took about 40% of each step (profiled on SmolLM2-135M). Where the model allows
    it, the LM head also runs on the answer tokens only (see `answer_tokens_loss`)."""
    from transformers import Trainer

    if on_gpu():
        return trainer_class

    class OnCpu(trainer_class):  # type: ignore[misc,valid-type]  # a class chosen at run time
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = {**inputs, "use_cache": False}  # a KV cache is no use to training
            # The plain loss where the shortcut would differ: a distributed model must go
            # through its wrapper's forward to sync gradients (compiled or not), a caller
            # may want the logits, and label smoothing or a custom loss need them.
            if (return_outputs or self.accelerator.num_processes > 1
                    or self.label_smoother is not None or self.compute_loss_func is not None
                    or not head_is_the_logits(model)):
                return Trainer.compute_loss(self, model, inputs, return_outputs,
                                            num_items_in_batch)
            with self.accelerator.autocast():  # bf16 where fast, as the model's forward has
                return answer_tokens_loss(model.get_base_model(), inputs, num_items_in_batch)

    OnCpu.__name__ = f"Cpu{trainer_class.__name__}"
    return OnCpu


def head_is_the_logits(model) -> bool:
    return (hasattr(model, "get_base_model")
            and getattr(model.config, "model_type", None) in HEAD_IS_THE_LOGITS)


def answer_tokens_loss(causal_lm, inputs: dict, num_items_in_batch=None):
    """The causal LM loss of `causal_lm` on `inputs`, equal to the model's own, with the
    LM head applied only where a label is kept (the answers, with completion-only loss).
    On a small model the head is a large share of the FLOPs, and prompts and padding
    most of the positions (docs/benchmarks.md, "Training throughput")."""
    import torch.nn.functional as F

    labels = inputs["labels"][:, 1:]
    decoder_inputs = {k: v for k, v in inputs.items() if k != "labels"}
    hidden = causal_lm.get_decoder()(**decoder_inputs).last_hidden_state[:, :-1]
    kept = labels != -100
    logits = causal_lm.get_output_embeddings()(hidden[kept]).float()
    loss = F.cross_entropy(logits, labels[kept], reduction="sum")
    if num_items_in_batch is None:
        return loss / kept.sum().clamp(min=1)
    return loss / num_items_in_batch


def last_complete_checkpoint(work_dir: Path) -> str | None:
    """The newest checkpoint that was written to the end (trainer_state.json is last)."""
    done = [p for p in Path(work_dir).glob("checkpoint-*") if (p / "trainer_state.json").is_file()
            and any(p.glob("adapter_model.safetensors"))]
    return str(max(done, key=lambda p: int(p.name.split("-")[1]))) if done else None


def last_train_loss(trainer) -> float | None:
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return losses[-1] if losses else None


def examples_digest(examples: list[list[dict]]) -> str:
    """What an adapter was trained on, as one hash (kept in its tunechat.json)."""
    return hashlib.sha256(
        json.dumps([to_record(m) for m in examples], ensure_ascii=False).encode()).hexdigest()


def save_adapter(model, out_dir: Path, config: TrainConfig, base_folder: Path,
                 examples: list[list[dict]], metrics: dict,
                 adapters: list[str] | None = None) -> None:
    """Write to a scratch folder, then rename: the adapter appears whole or not at all.
    An earlier attempt of the same run may have saved it and died before recording its
    end; its folder is replaced. `adapters`: which of the model's adapters (all when
    None; a preference stage saves its tuned one, not TRL's reference copy)."""
    scratch = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(scratch, ignore_errors=True)
    model.save_pretrained(scratch, safe_serialization=True, selected_adapters=adapters)
    (scratch / METADATA_FILE).write_text(json.dumps({
        "base_model": str(base_folder), "config": config.to_dict(), "metrics": metrics,
        "examples_sha256": examples_digest(examples), "examples": len(examples)}, indent=2))
    if out_dir.exists():
        stale = out_dir.with_name(f".{out_dir.name}.stale")
        shutil.rmtree(stale, ignore_errors=True)
        out_dir.rename(stale)
        scratch.rename(out_dir)
        shutil.rmtree(stale, ignore_errors=True)
    else:
        scratch.rename(out_dir)
