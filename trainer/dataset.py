"""Examples -> datasets.Dataset in TRL's conversational prompt/completion form, split into
train and a frozen held-out share.

Prompt/completion (not plain "messages") makes TRL compute the loss on the answer only:
SmolLM2's chat template has no {% generation %} markers, so assistant_only_loss cannot
apply to it, and loss on every token teaches the prompt instead of the voice."""

from __future__ import annotations

import hashlib
import json

HELD_OUT_MIN_EXAMPLES = 20


def to_record(messages: list[dict]) -> dict:
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def is_held_out(messages: list[dict], share: float) -> bool:
    """Decided by a hash of the example itself: the same example is held out in every run,
    whatever else was added or deleted, so eval losses stay comparable."""
    if share <= 0:
        return False
    canonical = json.dumps(messages, ensure_ascii=False, separators=(",", ":"))
    bucket = int(hashlib.sha256(canonical.encode()).hexdigest()[:8], 16) % 1000
    return bucket < share * 1000


def split(examples: list[list[dict]], share: float) -> tuple[list[list[dict]], list[list[dict]]]:
    """(train, held out); nothing is held out below HELD_OUT_MIN_EXAMPLES examples."""
    if len(examples) < HELD_OUT_MIN_EXAMPLES:
        return examples, []
    held = [m for m in examples if is_held_out(m, share)]
    train = [m for m in examples if not is_held_out(m, share)]
    return train, held


def build_datasets(examples: list[list[dict]], share: float):
    from datasets import Dataset

    train, held = split(examples, share)
    make = lambda rows: Dataset.from_list([to_record(m) for m in rows]) if rows else None  # noqa: E731
    return make(train), make(held)
