"""Training objectives: what a run learns from, and the recipe that teaches it.

Each objective is one entry of OBJECTIVES, naming its recipe function (one file per
recipe, on the helpers of trainer/common.py and trainer/stages.py, like TRL's
config/trainer pairs; a preference stage after SFT is `stages.after_sft(...)` in the
stage's file). To add an objective: write its recipe with run_sft's signature and add
its entry here; the command line's --objective choices, the Train tab and the
trainer process read this."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Objective:
    name: str
    learns_from: str
    """One line for the Train tab: what the user's data teaches with this objective."""
    where: str
    """The recipe function, as "module:function": imported when a run starts (recipes
    import torch and TRL), by name, so this registry imports no recipe."""
    needs: str = ""
    """What a preference stage learns from besides the examples: "pairs" (corrections
    and votes with the answer they replaced) or "negatives" (those rejected sides and
    thumbs-down replies). The run snapshot then includes thumbs-down and votes."""
    tunes_an_adapter: bool = False
    """Starts from an existing adapter (--continue-from) instead of training one."""

    @property
    def preferences(self) -> bool:
        return bool(self.needs)

    def recipe(self) -> Callable:
        module, function = self.where.split(":")
        return getattr(importlib.import_module(module), function)


# auto runs SFT alone: on the walkthrough where the rejected side is real (the base
# model's own answers, corrected into a voice), no preference stage beat SFT (docs/feedback.md,
# "Learning from every signal"). A measurement that says otherwise changes it here.
OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("auto", "SFT on your answers; a preference stage only where it was "
                      "measured to help (so far: nowhere, see docs/feedback.md)",
              "trainer.sft:run_sft"),
    Objective("sft", "imitates your kept, corrected, added and imported answers",
              "trainer.sft:run_sft"),
    Objective("sft+dpo", "SFT, then prefers your corrections and vote winners over the "
                         "answers they replaced", "trainer.dpo:run_sft_then_dpo", needs="pairs"),
    Objective("sft+kto", "SFT, then also learns what to avoid: thumbs-down replies and "
                         "the rejected side of corrections", "trainer.kto:run_sft_then_kto",
              needs="negatives"),
    Objective("dpo", "the preference stage of sft+dpo alone, on an adapter you choose",
              "trainer.dpo:run_dpo", needs="pairs", tunes_an_adapter=True),
    Objective("kto", "the preference stage of sft+kto alone, on an adapter you choose",
              "trainer.kto:run_kto", needs="negatives", tunes_an_adapter=True),
)}
