"""run_dpo: a DPO stage on an adapter (TRL's DPOTrainer with PEFT): the user's
corrections and vote winners are preferred over the answers they replaced.

Corrections are often small edits of the model's own answer, and plain DPO is known to
lower the likelihood of the chosen answer on such pairs (both sides share most tokens):
the loss adds an SFT term on the chosen side (TRL's loss_type ["sigmoid", "sft"]), and
the stage records the chosen side's log-likelihood before and after."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer
from trl import DPOConfig, DPOTrainer

from trainer.common import Reporter, Trained
from trainer.config import TrainConfig
from trainer.dataset import RunData, to_pair_dataset
from trainer.stages import after_sft, check_data, needs_start, stage_args, start_model, train_stage

LOSS = ["sigmoid", "sft"]
"""DPO's loss plus an SFT term on the chosen answer, so it does not unlearn it."""


def pair_rows(data: RunData) -> int:
    return len(data.pairs)


def run_dpo(config: TrainConfig, data: RunData, base_folder: Path, out_dir: Path,
            work_dir: Path, reporter: Reporter, continue_from: Path | None = None) -> Trained:
    # Setup
    start = needs_start(continue_from, "dpo")
    check_data("pairs", data)
    tokenizer = AutoTokenizer.from_pretrained(base_folder)
    texts = [p.messages for p in data.pairs] + [p.rejected_messages for p in data.pairs]
    model, config = start_model(config, base_folder, start, texts, tokenizer)
    train_set = to_pair_dataset(data.pairs)
    # Measured on the held-out pairs when the run has some, else on the pairs it trains on
    eval_set = to_pair_dataset(data.held_out_pairs or data.pairs)
    args = stage_args(DPOConfig, config, len(train_set), work_dir, loss_type=LOSS)
    trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=train_set,
                         eval_dataset=eval_set, processing_class=tokenizer)

    # Train, measure, save
    return train_stage("dpo", trainer, len(train_set), config, base_folder, out_dir, work_dir,
                       reporter, [p.messages for p in data.pairs])


run_sft_then_dpo = after_sft("dpo", run_dpo, pair_rows)
"""The sft+dpo objective: SFT, then this stage on the adapter it made, in one run."""
