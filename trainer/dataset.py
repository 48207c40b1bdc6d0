"""What a run trains on (which examples are held out: storage/placement.py), as
datasets.Dataset in TRL's conversational forms (prompt/completion for SFT,
chosen/rejected for DPO, labelled completions for KTO).

Prompt/completion (not plain "messages") makes TRL compute the loss on the answer only:
SmolLM2's chat template has no {% generation %} markers, so assistant_only_loss cannot
apply to it, and loss on every token teaches the prompt instead of the voice."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from storage.examples import PAIRED, TRAINABLE, UNDESIRABLE
from storage.placement import choose_held_out
from storage.runs import RunExample


def to_record(messages: list[dict]) -> dict:
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def answer_characters(examples: list[list[dict]]) -> int:
    """How much there is to learn from: the length of the answers, which default epochs
    follow (TrainConfig.epochs_for)."""
    return sum(len(messages[-1]["content"]) for messages in examples)


def to_dataset(examples: list[list[dict]]):
    """Examples -> a datasets.Dataset of prompt/completion rows, or None when empty."""
    from datasets import Dataset

    return Dataset.from_list([to_record(m) for m in examples]) if examples else None


@dataclass(frozen=True)
class Pair:
    """A preference pair: the conversation ending with the preferred answer, and the
    answer it was preferred over."""

    messages: list[dict]
    rejected: str

    @property
    def rejected_messages(self) -> list[dict]:
        return self.messages[:-1] + [{"role": "assistant", "content": self.rejected}]


def to_pair_dataset(pairs: list[Pair]):
    from datasets import Dataset

    return Dataset.from_list([{"prompt": p.messages[:-1], "chosen": p.messages[-1:],
                               "rejected": p.rejected_messages[-1:]} for p in pairs])


def to_unpaired_dataset(desirable: list[list[dict]], undesirable: list[list[dict]]):
    """Labelled completions, desirable and undesirable taking turns: KTO estimates its
    reference point from each row's neighbours in a batch, and a batch of one kind only
    (TRL keeps the given order) would skew it."""
    from datasets import Dataset

    good = [to_record(m) | {"label": True} for m in desirable]
    bad = [to_record(m) | {"label": False} for m in undesirable]
    mixed = [row for pair in zip(good, bad) for row in pair]
    shorter = min(len(good), len(bad))
    return Dataset.from_list(mixed + good[shorter:] + bad[shorter:])


@dataclass(frozen=True)
class RunData:
    """What one run learns from and is judged on, as frozen when it was queued. SFT
    learns from `train`; preference stages from `pairs` (corrections and votes with the
    answer they replaced) and `undesirable` (thumbs-down replies and rejected sides)."""

    train: list[list[dict]]
    held_out: list[list[dict]] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    held_out_pairs: list[Pair] = field(default_factory=list)
    disliked: list[list[dict]] = field(default_factory=list)
    corrected: list[list[dict]] = field(default_factory=list)
    """The user's corrections among `train` (SFT sees them more than once)."""

    @property
    def undesirable(self) -> list[list[dict]]:
        return self.disliked + [p.rejected_messages for p in self.pairs]

    @property
    def held_out_undesirable(self) -> list[list[dict]]:
        return [p.rejected_messages for p in self.held_out_pairs]

    @classmethod
    def from_run(cls, rows: list[RunExample]) -> RunData:
        def pairs(split: str) -> list[Pair]:
            return [Pair(r.messages, r.rejected) for r in rows
                    if r.split == split and r.source in PAIRED and r.rejected]

        return cls([r.messages for r in rows if r.split == "train" and r.source in TRAINABLE],
                   [r.messages for r in rows if r.split == "held_out"],
                   pairs("train"), pairs("held_out"),
                   [r.messages for r in rows if r.split == "train" and r.source in UNDESIRABLE],
                   [r.messages for r in rows if r.split == "train" and r.source == "corrected"])

    @classmethod
    def split(cls, examples: list[list[dict]]) -> RunData:
        """Hold out by the rule runs use (for the bench and tests, which have no store)."""
        rows = [RunExample(i, "train", "added", m) for i, m in enumerate(examples)]
        held = choose_held_out(rows, set(), set())
        return cls.from_run([replace(r, split="held_out" if r.example_id in held else "train")
                             for r in rows])
