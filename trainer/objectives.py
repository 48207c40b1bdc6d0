"""Training objectives: what a run learns from, and the recipe that teaches it.

Each objective is one entry of OBJECTIVES, naming its recipe function (one file per
recipe, on the helpers of trainer/common.py and trainer/stages.py, like TRL's
config/trainer pairs). To add an objective: write its recipe with run_sft's signature
and add its entry here; the command line's --objective choices, the Train tab and the
trainer process read this."""

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
    needs: str = ""
    """What a preference stage learns from besides the examples: "pairs" (corrections
    and votes with the answer they replaced) or "negatives" (those rejected sides and
    thumbs-down replies). The run snapshot then includes thumbs-down and votes."""
    tunes_an_adapter: bool = False
    """Starts from an existing adapter (--continue-from) instead of training one."""

    @property
    def preferences(self) -> bool:
        return bool(self.needs)


def _sft():
    from trainer.sft import run_sft

    return run_sft


def _dpo():
    from trainer.dpo import run_dpo

    return run_dpo


def _kto():
    from trainer.kto import run_kto

    return run_kto


def _sft_then_dpo():
    from trainer.dpo import pair_rows, run_dpo
    from trainer.stages import after_sft

    return after_sft("dpo", run_dpo, pair_rows)


def _sft_then_kto():
    from trainer.kto import run_kto, unpaired_rows
    from trainer.stages import after_sft

    return after_sft("kto", run_kto, unpaired_rows)


# auto runs SFT alone: on the walkthrough where the rejected side is real (the base
# model's own answers, corrected into a voice), no preference stage beat SFT (docs/feedback.md,
# "Learning from every signal"). A measurement that says otherwise changes it here.
OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("auto", "SFT on your answers; a preference stage only where it was "
                      "measured to help (so far: nowhere, see docs/feedback.md)", _sft),
    Objective("sft", "imitates your kept, corrected, added and imported answers", _sft),
    Objective("sft+dpo", "SFT, then prefers your corrections and vote winners over the "
                         "answers they replaced", _sft_then_dpo, needs="pairs"),
    Objective("sft+kto", "SFT, then also learns what to avoid: thumbs-down replies and "
                         "the rejected side of corrections", _sft_then_kto, needs="negatives"),
    Objective("dpo", "the preference stage of sft+dpo alone, on an adapter you choose",
              _dpo, needs="pairs", tunes_an_adapter=True),
    Objective("kto", "the preference stage of sft+kto alone, on an adapter you choose",
              _kto, needs="negatives", tunes_an_adapter=True),
)}
