"""Training objectives: what a run learns from, and the recipe that teaches it.

Each objective is one entry of OBJECTIVES, naming its recipe function (one file per
recipe, on the helpers of trainer/common.py, like TRL's config/trainer pairs). To add an
objective: write its recipe with run_sft's signature and add its entry here; the
command line's --objective choices, the Train tab and the trainer process read this."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Objective:
    name: str
    learns_from: str
    """One line for the Train tab: what the user's data teaches with this objective."""
    recipe: Callable[[], Callable]
    """Returns the recipe function (imported late: recipes import torch and TRL)."""


def _sft():
    from trainer.sft import run_sft

    return run_sft


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("sft", "imitates your kept, corrected, added and imported answers", _sft),
)}
