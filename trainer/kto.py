"""run_kto: a KTO stage on an adapter (TRL's KTOTrainer with PEFT): every signal on its
own, paired or not. Desirable: the kept, corrected, added and imported answers.
Undesirable: thumbs-down replies and the rejected side of corrections and votes."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer
from trl import KTOConfig, KTOTrainer

from trainer.common import Reporter, Trained
from trainer.config import TrainConfig
from trainer.dataset import RunData, to_unpaired_dataset
from trainer.stages import after_sft, check_data, needs_start, stage_args, start_model, train_stage


def unpaired_rows(data: RunData) -> int:
    return len(data.train) + len(data.undesirable)


def class_weights(desirable: int, undesirable: int) -> dict:
    """KTO's weights so that desirable x its weight is 1 to 4/3 times undesirable x its
    weight (the KTO paper's range; TRL warns outside it): a few thumbs-down among many
    kept answers otherwise teach next to nothing."""
    if desirable * 3 > undesirable * 4:
        return {"desirable_weight": round(4 * undesirable / (3 * desirable), 4)}
    if desirable < undesirable:
        return {"undesirable_weight": round(desirable / undesirable, 4)}
    return {}


def run_kto(config: TrainConfig, data: RunData, base_folder: Path, out_dir: Path,
            work_dir: Path, reporter: Reporter, continue_from: Path | None = None) -> Trained:
    # Setup
    start = needs_start(continue_from, "kto")
    check_data("negatives", data)
    tokenizer = AutoTokenizer.from_pretrained(base_folder)
    model, config = start_model(config, base_folder, start, data.train + data.undesirable,
                                tokenizer)
    train_set = to_unpaired_dataset(data.train, data.undesirable)
    eval_set = to_unpaired_dataset(data.held_out or data.train,
                                   data.held_out_undesirable or data.undesirable)
    args = stage_args(KTOConfig, config, len(train_set), work_dir,
                      **class_weights(len(data.train), len(data.undesirable)))
    trainer = KTOTrainer(model=model, ref_model=None, args=args, train_dataset=train_set,
                         eval_dataset=eval_set, processing_class=tokenizer)

    # Train, measure, save
    return train_stage("kto", trainer, len(train_set), config, base_folder, out_dir, work_dir,
                       reporter, data.train + data.undesirable)


run_sft_then_kto = after_sft("kto", run_kto, unpaired_rows)
"""The sft+kto objective: SFT, then this stage on the adapter it made, in one run."""
