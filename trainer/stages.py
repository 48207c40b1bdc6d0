"""What the preference stages (dpo.py, kto.py) share: the model they start from (the
adapter being tuned, trainable, with TRL's frozen copy of it as the reference, so no
second copy of the base sits in memory), TRL's arguments, the measures before and after,
and staged runs (SFT, then a preference stage) under one progress bar."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from trainer.common import (
    METADATA_FILE,
    Reporter,
    SanityError,
    Trained,
    bf16_ok,
    check_examples,
    chosen_method,
    last_complete_checkpoint,
    load_for_training,
    on_gpu,
    peak_memory_mb,
    progress_callback,
    save_adapter,
)
from trainer.config import TrainConfig
from trainer.dataset import RunData

MIN_PAIRS = 4
"""Fewer preference rows than this teach nothing dependable; the stage is refused."""
MEASURED = ("rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected", "kl")
"""What a stage records before and after, from TRL's evaluation of it: how often the
preferred answer scores above the other, by how much, and each side's log-likelihood
(a chosen side that falls means the stage unlearns what it should keep)."""


def needs_start(continue_from: Path | None, stage: str) -> Path:
    if continue_from is None:
        raise SanityError(f"{stage} alone tunes an adapter you already have: choose one to "
                          f"continue from, or the objective sft+{stage}.")
    return continue_from


def check_rows(count: int, minimum: int, what: str, how: str) -> None:
    if count < minimum:
        raise SanityError(f"Only {count} {what}: a preference stage needs at least {minimum}. "
                          f"{how}")


def check_data(needs: str, data: RunData) -> None:
    """Refuse a preference stage with too little to learn from (checked when the run is
    queued, so no SFT stage trains first only to fail)."""
    if needs == "pairs":
        check_rows(len(data.pairs), MIN_PAIRS, "preference pairs to train on (corrections "
                   "and votes, not counting held-out ones)", "Correct more replies with the "
                   "pencil, or vote in the Compare tab.")
    elif needs == "negatives":
        check_rows(len(data.undesirable), MIN_PAIRS, "undesirable answers to train on "
                   "(thumbs-down and the rejected side of corrections)", "Press thumbs-down "
                   "on bad replies, or correct them with the pencil.")


def stage_args(config_class, config: TrainConfig, rows: int, work_dir: Path, **extra):
    """TRL arguments of a preference stage (DPOConfig or KTOConfig): `batch_size` pairs
    a step, `preference_micro_batch` of them through the model at once."""
    micro = min(config.preference_micro_batch or config.batch_size, config.batch_size)
    return config_class(
        output_dir=str(work_dir), num_train_epochs=config.preference_epochs,
        learning_rate=config.preference_learning_rate, lr_scheduler_type=config.lr_scheduler,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=math.ceil(config.batch_size / micro),
        per_device_eval_batch_size=micro, max_length=config.max_length,
        beta=config.beta, gradient_checkpointing=False, bf16=bf16_ok(), logging_steps=1,
        eval_strategy="no", save_strategy="steps", save_steps=config.save_every,
        save_total_limit=2, report_to="none", disable_tqdm=True, seed=config.seed,
        dataloader_num_workers=0, dataloader_pin_memory=on_gpu(), use_cpu=not on_gpu(),
        **extra)


def stage_steps(config: TrainConfig, rows: int) -> int:
    return config.preference_epochs * math.ceil(rows / config.batch_size)


def start_model(config: TrainConfig, base_folder: Path, start: Path,
                texts: list[list[dict]], tokenizer):
    """(model, config with the method chosen): the adapter `start`, trainable. TRL adds
    a frozen copy of it as the reference model when given no ref_model."""
    config = replace(config, method=chosen_method(config.method, base_folder))
    longest = check_examples(replace(config, min_examples=1), texts, tokenizer)
    model, _ = load_for_training(config, base_folder, start, longest)
    return model, config


def train_stage(name: str, trainer, rows: int, config: TrainConfig, base_folder: Path,
                out_dir: Path, work_dir: Path, reporter: Reporter,
                trained_on: list[list[dict]]) -> Trained:
    """Measure, train (from the last checkpoint, if any), measure again, save only the
    tuned adapter (not TRL's reference copy)."""
    from transformers import PrinterCallback

    steps = stage_steps(config, rows)
    if not isinstance(reporter, StageReporter):  # a stage run on its own
        reporter = StageReporter(reporter, name, 0, steps)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(progress_callback(reporter))
    reporter.started(steps, rows, 0)
    metrics: dict = {"stage": name, "rows": rows, "method": config.method,
                     "epochs": config.preference_epochs, "before": _measure(trainer)}
    started = time.monotonic()
    trainer.train(resume_from_checkpoint=last_complete_checkpoint(work_dir))
    if reporter.cancelled():
        return Trained(out_dir, metrics)
    metrics["train_seconds"] = round(time.monotonic() - started, 1)
    metrics["after"] = _measure(trainer)
    metrics["peak_memory_mb"] = peak_memory_mb()
    metrics["stages"] = [dict(metrics)]  # a stage on its own reports like a staged run
    if trainer.is_world_process_zero():
        save_adapter(trainer.model, out_dir, config, base_folder, trained_on, metrics,
                     adapters=["default"])
    return Trained(out_dir, metrics)


def _measure(trainer) -> dict:
    found = trainer.evaluate()
    return {key: round(float(found[f"eval_{key}"]), 4) for key in MEASURED
            if f"eval_{key}" in found}


class StageReporter:
    """One stage's progress as part of the whole run: its steps continue the earlier
    stages' on one bar, and each logged loss carries the stage's name."""

    def __init__(self, reporter: Reporter, stage: str, offset: int, total: int):
        self.reporter, self.stage, self.offset, self.total = reporter, stage, offset, total

    def started(self, total_steps: int, train_examples: int, eval_examples: int) -> None:
        self.reporter.started(self.total, train_examples, eval_examples)

    def progress(self, step: int, total: int, logs: dict) -> None:
        if logs and self.stage != "sft":  # its eval loss is a preference loss: not held out
            logs = {k: v for k, v in logs.items() if k != "eval_loss"}
        self.reporter.progress(self.offset + step, self.total,
                               {**logs, "stage": self.stage} if logs else logs)

    def cancelled(self) -> bool:
        return self.reporter.cancelled()


Recipe = Callable[..., Trained]


def after_sft(stage: str, recipe: Recipe, rows: Callable[[RunData], int]) -> Recipe:
    """SFT on the examples, then `recipe` on the adapter it made, in one run. The SFT
    stage's adapter is kept in the run's work folder, so a resumed run that stopped in
    the second stage does not train the first again."""
    def run(config: TrainConfig, data: RunData, base_folder: Path, out_dir: Path,
            work_dir: Path, reporter: Reporter, continue_from: Path | None = None) -> Trained:
        from trainer.sft import run_sft, sft_steps

        first_adapter = work_dir / "sft-adapter"
        first_steps = sft_steps(config, data)
        total = first_steps + stage_steps(config, rows(data))
        kept = _kept_first_stage(first_adapter, data)
        if kept is not None:  # done before a stop: not again
            first = kept
        else:
            done = run_sft(config, data, base_folder, first_adapter, work_dir / "sft",
                           StageReporter(reporter, "sft", 0, total), continue_from)
            if reporter.cancelled():
                return Trained(out_dir, done.metrics)
            first = done.metrics
        # The second stage loads the base as the first did (auto may choose otherwise now)
        second = recipe(replace(config, method=first["method"]), data, base_folder, out_dir,
                        work_dir / stage, StageReporter(reporter, stage, first_steps, total),
                        first_adapter)
        stages = [{"stage": "sft", **first}, *second.metrics.get("stages", [second.metrics])]
        seconds = sum(s.get("train_seconds") or 0 for s in stages)
        # The run's own numbers stay the SFT stage's (eval loss, tokens/s), its time is both
        return Trained(out_dir, {**first, "train_seconds": round(seconds, 1), "stages": stages})

    return run


def _kept_first_stage(folder: Path, data: RunData) -> dict | None:
    """The SFT stage's metrics when its adapter was saved from exactly these examples."""
    from trainer.common import examples_digest

    try:
        saved = json.loads((folder / METADATA_FILE).read_text())
    except (OSError, ValueError):
        return None
    if saved.get("examples_sha256") != examples_digest(data.train):
        return None
    return saved["metrics"]
