"""Training runs: start (by hand or by itself at the threshold), cancel, resume, watch,
and what a run trained on (its lineage)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from core.errors import UserError
from files import formats
from services import models
from services.context import Context
from storage import examples, placement, runs
from storage.runs import RunExample
from trainer.config import TrainConfig
from trainer.objectives import OBJECTIVES

AUTO_KEY = "auto_train"
THRESHOLD_KEY = "auto_train_threshold"
DEFAULT_THRESHOLD = 20
"""Training examples that start a run by themselves (a few dozen show a voice)."""


class NothingToDo(UserError):
    pass


@dataclass(frozen=True)
class AutoStart:
    enabled: bool
    threshold: int
    """New training examples that start the next run (kept when auto-start is off)."""
    new_examples: int
    """Training examples added since the newest example the last run saw."""

    @property
    def to_go(self) -> int:
        return max(0, self.threshold - self.new_examples)


def auto_start(ctx: Context) -> AutoStart:
    return AutoStart(runs.get_setting(ctx.store, AUTO_KEY, "1") == "1",
                     int(runs.get_setting(ctx.store, THRESHOLD_KEY, str(DEFAULT_THRESHOLD))),
                     runs.examples_since_last_run(ctx.store))


def progress_line(ctx: Context) -> str:
    """Where the training examples stand, counted the same way everywhere: "12 of 20
    examples for the first run". Thumbs-down replies are not examples."""
    state = auto_start(ctx)
    trainable = examples.counts(ctx.store)["trainable"]
    if not state.enabled:
        return (f"{trainable} training example{'s' * (trainable != 1)}; auto-start is off "
                "(start a run in the Train tab)")
    first = not runs.list_runs(ctx.store, 1)
    count = trainable if first else state.new_examples
    which = "the first run" if first else "the next run"
    if count >= state.threshold:
        return f"{count} {'new ' * (not first)}examples: enough for {which}"
    return f"{count} of {state.threshold} {'new ' * (not first)}examples for {which}"


def signals_line(ctx: Context) -> str:
    """What each objective could learn from now, test-only examples left out: "31 kept,
    corrected, added or imported answers, 12 corrections with a rejected side, 5
    thumbs-down, 3 votes with a winner"."""
    counts = examples.counts(ctx.store)
    corrections, votes = counts["corrections"], counts["pairs"] - counts["corrections"]
    return (f"{counts['trainable']} kept, corrected, added or imported answers, "
            f"{corrections} correction{'s' * (corrections != 1)} with a rejected side, "
            f"{counts['disliked']} thumbs-down, {votes} vote{'s' * (votes != 1)} with a "
            "winner")


def preference_stages(metrics: dict) -> list[dict]:
    """The preference stages a run's metrics record (none for SFT alone)."""
    return [s for s in (metrics or {}).get("stages", []) if s.get("stage") != "sft"]


def stage_line(stage: dict) -> str:
    """A preference stage's record in one line: its data, time and what moved."""
    before, after = stage.get("before", {}), stage.get("after", {})
    moved = "; ".join(f"{label} {before[key]:.2f} -> {after[key]:.2f}" for key, label in (
        ("rewards/accuracies", "preferred side ranked first"),
        ("rewards/margins", "margin"), ("logps/chosen", "chosen log-likelihood"))
        if key in before and key in after)
    return (f"{stage['stage']}: {stage['rows']} rows, {stage.get('train_seconds', '-')} s, "
            f"peak memory {stage.get('peak_memory_mb', '-')} MB" + (f"; {moved}" if moved else ""))


def set_threshold(ctx: Context, threshold: int) -> AutoStart:
    """0 turns auto-start off (the threshold is kept for when it is turned on again)."""
    if threshold < 0:
        raise NothingToDo("The threshold must be 0 (off) or more.")
    runs.set_setting(ctx.store, AUTO_KEY, int(threshold > 0))
    if threshold > 0:
        runs.set_setting(ctx.store, THRESHOLD_KEY, threshold)
    return auto_start(ctx)


def after_examples_added(ctx: Context) -> int | None:
    """Start one run when the examples added since the last run reach the threshold;
    returns its id. Every action that adds training examples calls this."""
    if not ctx.can_train:
        return None
    state = auto_start(ctx)
    if not state.enabled or state.new_examples < state.threshold:
        return None
    try:
        return ctx.jobs.start(TrainConfig())
    except runs.RunActive:
        return None  # another session won the race, or a run is going


def start(ctx: Context, config: TrainConfig) -> int:
    """Queue a run on every training example as it is now, and launch it."""
    return ctx.jobs.start(_resolved(ctx, config))


def prepare(ctx: Context, config: TrainConfig) -> int:
    """Queue a run for a launcher of the user's (accelerate, torchrun) to run."""
    return ctx.jobs.prepare(_resolved(ctx, config))


def _resolved(ctx: Context, config: TrainConfig) -> TrainConfig:
    """The config with the adapter to continue named as it is stored ("latest" -> run-3),
    once the data its objective learns from is there."""
    counts = examples.counts(ctx.store)
    needs = OBJECTIVES[config.objective].needs
    if needs == "pairs" and not counts["pairs"]:
        raise NothingToDo(f"{config.objective} learns from preference pairs and there are "
                          "none yet: correct a reply with the pencil, or vote in the Compare "
                          "tab.")
    if needs == "negatives" and not counts["disliked"] + counts["pairs"]:
        raise NothingToDo(f"{config.objective} also learns what to avoid and there is "
                          "nothing to avoid yet: press thumbs-down on a bad reply, or "
                          "correct it with the pencil.")
    if not config.continue_from:
        return config
    return replace(config, continue_from=models.resolve_adapter(ctx, config.continue_from,
                                                                "to continue"))


def cancel(ctx: Context, run_id: int | None = None) -> int:
    """Cancel a run (the active one when no id is given); returns its id."""
    run = runs.get_run(ctx.store, run_id) if run_id else runs.active_run(ctx.store)
    if run is None:
        raise NothingToDo("No run is queued or training.")
    if run["status"] not in runs.ACTIVE:
        raise NothingToDo(f"Run #{run['id']} already {run['status']}.")
    ctx.jobs.cancel(run["id"])
    return run["id"]


def resume(ctx: Context, run_id: int | None = None) -> int:
    """Resume a run (the newest failed or cancelled one when no id is given)."""
    if run_id is None:
        last = next((r for r in runs.list_runs(ctx.store, 20)
                     if r["status"] in ("failed", "cancelled")), None)
        if last is None:
            raise NothingToDo("There is no failed or cancelled run to resume.")
        run_id = last["id"]
    return ctx.jobs.resume(run_id)


def status(ctx: Context, run_id: int | None = None) -> dict:
    """A run's record: the given one, else the active one, else the newest; {} if none."""
    runs.settle_dead_runs(ctx.store)
    if run_id:
        return runs.get_run(ctx.store, run_id)
    current = runs.active_run(ctx.store) or next(iter(runs.list_runs(ctx.store, 1)), None)
    return current or {}


def held_out_now(ctx: Context) -> dict[int, int]:
    """Examples the newest run holds out (never trained on) -> that run's id."""
    return placement.held_out_by_newest_run(ctx.store)


def history(ctx: Context, limit: int = 50) -> list[dict]:
    """The newest runs, after failing those whose trainer is gone (whoever launched
    them: every reader of runs does, so none stays "running" forever)."""
    runs.settle_dead_runs(ctx.store)
    return runs.list_runs(ctx.store, limit)


@dataclass(frozen=True)
class Lineage:
    """Everything that made a run's adapter."""

    run: dict
    examples: list[RunExample]

    @property
    def train(self) -> list[RunExample]:
        return [e for e in self.examples if e.split == "train"]

    @property
    def held_out(self) -> list[RunExample]:
        return [e for e in self.examples if e.split == "held_out"]

    def by_source(self, split: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for example in self.examples:
            if example.split == split:
                counts[example.source] = counts.get(example.source, 0) + 1
        return counts

    def summary(self) -> list[tuple[str, str]]:
        """(label, value) lines, for `tunechat runs --show N` and the Train tab."""
        run, config = self.run, self.run["config"]
        defaults = TrainConfig().to_dict()
        changed = {k: v for k, v in config.items() if k in defaults and v != defaults[k]}

        def sources(split: str) -> str:
            counts = self.by_source(split)
            return ", ".join(f"{n} {source}" for source, n in sorted(counts.items())) or "none"

        return [
            ("run", f"#{run['id']} {run['status']}"
                    + (f", adapter {run['adapter']}" if run["adapter"] else "")),
            ("base model", str(config.get("base_model", "?"))),
            ("continued from", config.get("continue_from") or "(a new adapter)"),
            ("objective", config.get("objective", "sft")),
            ("settings", ", ".join(f"{k}={v}" for k, v in changed.items()) or "the defaults"),
            ("code", run.get("code_version") or "(not recorded)"),
            ("trained on", f"{len(self.train)} examples: {sources('train')}"),
            ("held out", f"{len(self.held_out)} examples, never trained on: "
                         f"{sources('held_out')}"),
            ("queued", run["created_at"]),
        ] + [("stage", stage_line(s)) for s in preference_stages(run.get("metrics") or {})
             ] + ([("note", run["lineage_note"])] if run.get("lineage_note") else [])


def lineage(ctx: Context, run_id: int) -> Lineage:
    return Lineage(runs.get_run(ctx.store, run_id), runs.run_examples(ctx.store, run_id))


def export_training_set(ctx: Context, run_id: int, path: str | Path,
                        fmt: str = "openai") -> int:
    """Write what run `run_id` trained on (as it was when queued) that `fmt` carries."""
    runs.get_run(ctx.store, run_id)  # RunNotFound for a run that does not exist
    carried = formats.exported_sources(fmt)
    return formats.export_examples(placement.exported(ctx.store, run_id, carried), path, fmt)
