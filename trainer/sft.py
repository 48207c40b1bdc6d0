"""run_sft: one readable recipe (setup, check, train, save) from examples to a LoRA
adapter folder with TRL's SFTTrainer. Knows nothing of SQLite or processes: a Reporter
carries progress out and the cancel request in."""

from __future__ import annotations

import random
import time
from dataclasses import replace
from pathlib import Path

from transformers import AutoTokenizer, PrinterCallback
from trl import SFTConfig, SFTTrainer

from core.chatformat import token_count
from core.paths import model_cache_dir
from trainer import corrections, replay
from trainer.common import (
    Reporter,
    Trained,
    bf16_ok,
    check_examples,
    chosen_method,
    last_complete_checkpoint,
    last_train_loss,
    load_for_training,
    on_gpu,
    peak_memory_mb,
    progress_callback,
    save_adapter,
    with_plain_loss_on_cpu,
)
from trainer.config import TrainConfig
from trainer.dataset import RunData, answer_characters, to_dataset


def sft_steps(config: TrainConfig, data: RunData) -> int:
    """Optimizer steps of the run (one process): the user's examples and the replay
    beside them, for the epochs the user's answers call for."""
    rows = len(_with_corrections_repeated(config, data)) + \
        replay.count_for(config.replay, len(data.train))
    return config.steps_for(rows, answer_characters(data.train))


def _with_corrections_repeated(config: TrainConfig, data: RunData) -> list[list[dict]]:
    """The examples SFT learns from: each of the user's corrections
    `config.correction_repeats` times (the epochs still follow the examples as stored)."""
    return data.train + data.corrected * (config.correction_repeats - 1)


def run_sft(config: TrainConfig, data: RunData, base_folder: Path, out_dir: Path,
            work_dir: Path, reporter: Reporter, continue_from: Path | None = None) -> Trained:
    """Train an adapter on `data.train`, judge it on `data.held_out`, and save it to
    `out_dir` (written whole or not at all). `work_dir` keeps checkpoints, so a failed
    run resumes where it stopped."""
    # Setup
    tokenizer = AutoTokenizer.from_pretrained(base_folder)
    config = replace(config, method=chosen_method(config.method, base_folder))
    longest = check_examples(config, data.train + data.held_out, tokenizer)
    model, peft_config = load_for_training(config, base_folder, continue_from, longest)
    replayed = replay.examples(model, tokenizer,
                               replay.count_for(config.replay, len(data.train)),
                               replay.cache_file(model_cache_dir(), base_folder))
    train_set = to_dataset(_with_corrections_repeated(config, data) + replayed)
    eval_set = to_dataset(data.held_out)
    args = _sft_args(config, data.train, work_dir, has_eval=eval_set is not None)
    trainer = with_plain_loss_on_cpu(SFTTrainer)(
        model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
        processing_class=tokenizer, peft_config=peft_config,
        callbacks=[progress_callback(reporter)])
    trainer.remove_callback(PrinterCallback)  # progress goes to the reporter, not stdout
    reporter.started(sft_steps(config, data), len(train_set), len(eval_set or []))
    metrics = {"train_examples": len(data.train), "replay_examples": len(replayed),
               "eval_examples": len(eval_set or []),
               "epochs": args.num_train_epochs, "processes": args.world_size,
               "method": config.method}
    if eval_set is not None:
        metrics["eval_loss_before"] = trainer.evaluate()["eval_loss"]

    # Train
    started = time.monotonic()
    trainer.train(resume_from_checkpoint=last_complete_checkpoint(work_dir))
    seconds = time.monotonic() - started
    if reporter.cancelled():
        return Trained(out_dir, metrics)
    if data.corrected and config.correction_steps and args.world_size == 1:
        others = [m for m in data.train if m not in data.corrected] + replayed
        random.Random(config.seed).shuffle(others)
        metrics.update(corrections.drill(trainer.model, tokenizer, data.corrected, others,
                                         config.learning_rate, config.correction_steps,
                                         reporter.cancelled))
        seconds = time.monotonic() - started
    metrics["train_seconds"] = round(seconds, 1)
    tokens = sum(token_count(tokenizer, m) for m in data.train + replayed) * \
        args.num_train_epochs
    metrics["tokens_per_second"] = round(tokens / max(seconds, 1e-6), 1)
    metrics["train_loss"] = last_train_loss(trainer)
    metrics["peak_memory_mb"] = peak_memory_mb()
    if eval_set is not None:
        metrics["eval_loss_after"] = trainer.evaluate()["eval_loss"]

    # Save (once, by the first process of a distributed run)
    if trainer.is_world_process_zero():
        save_adapter(trainer.model, out_dir, config, base_folder, data.train, metrics)
    return Trained(out_dir, metrics)


def _sft_args(config: TrainConfig, train: list[list[dict]], work_dir: Path, has_eval: bool):
    return SFTConfig(
        output_dir=str(work_dir), num_train_epochs=config.epochs_for(answer_characters(train)),
        learning_rate=config.learning_rate, lr_scheduler_type=config.lr_scheduler,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size, max_length=config.max_length,
        completion_only_loss=True, gradient_checkpointing=False, bf16=bf16_ok(),
        logging_steps=1, eval_strategy="epoch" if has_eval else "no",
        save_strategy="steps", save_steps=config.save_every, save_total_limit=2,
        report_to="none", disable_tqdm=True, seed=config.seed, dataloader_num_workers=0,
        dataloader_pin_memory=on_gpu(), use_cpu=not on_gpu(),
        **config.extra)
