"""One side of the training benchmark, in its own process so that its peak memory is
its own: `python -m bench.train_one tunechat|trl BASE DATA.json EPOCHS OUT [1]` (1: run
below the app's priority, as tunechat's trainer does). Prints one JSON line:
tokens_per_s, train_seconds, eval_loss, peak_rss_mb."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def completion_loss(model, tokenizer, held_out: list[list[dict]]) -> float:
    """Mean loss on the answer tokens of held-out examples: the same yardstick for both."""
    import torch

    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for messages in held_out:
            prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True,
                                                   tokenize=True, return_dict=False)
            full = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
            ids = torch.tensor([full])
            labels = ids.clone()
            labels[0, :len(prompt)] = -100
            answer_tokens = int((labels != -100).sum()) - 1
            total += float(model(input_ids=ids, labels=labels).loss) * answer_tokens
            count += answer_tokens
    return total / max(count, 1)


def train_tunechat(base: Path, train: list, epochs: int, out: Path) -> tuple[Path, float]:
    from trainer.common import Quiet
    from trainer.config import TrainConfig
    from trainer.dataset import RunData
    from trainer.sft import run_sft

    config = TrainConfig(epochs=epochs, min_examples=1)
    started = time.monotonic()
    result = run_sft(config, RunData(train), base, out / "adapter", out / "work", Quiet())
    return result.adapter_dir, time.monotonic() - started


def train_trl(base: Path, train: list, epochs: int, out: Path) -> tuple[Path, float]:
    """Plain TRL: SFTTrainer + LoraConfig, TRL's defaults otherwise (same rank, targets)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    # use_cpu: TRL's bf16 default refuses to start on a machine without a GPU otherwise.
    args = SFTConfig(output_dir=str(out / "work"), num_train_epochs=epochs, report_to="none",
                     save_strategy="no", disable_tqdm=True,
                     use_cpu=not torch.cuda.is_available())
    trainer = SFTTrainer(model=str(base), args=args,
                         train_dataset=Dataset.from_list([{"messages": m} for m in train]),
                         peft_config=LoraConfig(r=16, lora_alpha=32,
                                                target_modules="all-linear",
                                                task_type="CAUSAL_LM"))
    started = time.monotonic()
    trainer.train()
    seconds = time.monotonic() - started
    model: Any = trainer.model
    model.save_pretrained(out / "adapter")
    return out / "adapter", seconds


def main() -> None:
    which, base_arg, data, epochs_arg, out_arg = sys.argv[1:6]
    if sys.argv[6:] == ["1"]:  # below the app, as tunechat starts its trainer
        from trainer.common import lower_priority

        lower_priority()
    base, out, epochs = Path(base_arg), Path(out_arg), int(epochs_arg)
    split = json.loads(Path(data).read_text())
    train, held = split["train"], split["held_out"]
    import peft  # noqa: F401  both sides start their clocks with the stack imported
    import trl  # noqa: F401
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.chatformat import token_count
    from core.hardware import peak_rss_mb

    trainer = train_tunechat if which == "tunechat" else train_trl
    adapter, seconds = trainer(base, train, epochs, out)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter)
    print(json.dumps({
        "tokens_per_s": sum(token_count(tokenizer, m) for m in train) * epochs / seconds,
        "train_seconds": seconds,
        "eval_loss": completion_loss(model, tokenizer, held),
        "peak_rss_mb": peak_rss_mb(),
    }))


if __name__ == "__main__":
    main()
