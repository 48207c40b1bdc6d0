"""Model names in plain words, for a person who is not an engineer: "Your assistant #1,
tuned Dec 1 10:32" for run-1, "The plain model + your examples" for base+examples. The
technical name (what the API and the command line take) stays the value of every list
and one click away in the web app; only what a person reads changes.

A run's label comes from its number and the time it finished, which never change once
the run exists: lists that follow new adapters can send their labels again without
moving anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from core.adapters import BASE, split_name
from services import contenders, fewshot
from services.context import Context, NotAvailable
from storage import runs

LATEST = "latest"
PLAIN = "The plain model"
SHOTS = "your examples"
"""What the few-shot contenders add: up to fewshot.K of them, the most like each question
(how many, the details say); no count, so the label never changes under a list, nor
says 4 when she has one."""


def label(ctx: Context, name: str) -> str:
    """A model name in plain words, as a list shows it; a name that is no model (e.g.
    "(a new adapter)") comes back as it is."""
    return labels(ctx, [name])[name]


def labels(ctx: Context, names: list[str]) -> dict[str, str]:
    """Each name -> its plain label, reading the runs once."""
    found = _runs_by_adapter(ctx)
    return {name: _label(ctx, name, found) for name in names}


def choices(ctx: Context, names: list[str]) -> list[tuple[str, str]]:
    """(label, name) pairs for a Gradio dropdown: it shows the label, hands over the name."""
    found = labels(ctx, names)
    return [(found[name], name) for name in names]


def _label(ctx: Context, name: str, found: dict[str, tuple[dict, str]]) -> str:
    if name == BASE:
        return PLAIN
    if name in contenders.BASELINES:
        return contenders.BASELINES[name].label
    if name == LATEST:
        return "Your newest assistant"
    if name in found:
        return f"Your assistant {found[name][1]}"
    served, with_facts, with_examples = split_name(name)
    if served != name and (served == BASE or served in found or _is_folder(ctx, served)):
        if with_facts:  # examples then only where close to the question: no count
            return f"{_label(ctx, served, found)} + your facts" + \
                " and examples" * with_examples
        return f"{_label(ctx, served, found)} + {SHOTS}"
    if _is_folder(ctx, name):
        return f"The assistant “{name}”"
    return name


def _is_folder(ctx: Context, name: str) -> bool:
    return bool(name) and (ctx.adapters_dir / name / "adapter_config.json").is_file()


def _runs_by_adapter(ctx: Context) -> dict[str, tuple[dict, str]]:
    """Adapter -> (the run that trained it, "#3, tuned Dec 1 10:32"): the run's number,
    which the Train tab's runs table shows, and when it finished."""
    succeeded = sorted((r for r in runs.list_runs(ctx.store, 100_000)
                        if r["status"] == "succeeded" and r["adapter"]), key=lambda r: r["id"])
    # a reused name: its newest run, as the engine
    return {run["adapter"]: (run, f"#{run['id']}, tuned "
                                  f"{tuned_at(run.get('finished_at') or run['created_at'])}")
            for run in succeeded}


def tuned_at(stamp: str) -> str:
    """A stored UTC time as a person reads it on this machine's clock: "Dec 1 10:32"."""
    moment = datetime.fromisoformat(stamp).astimezone()
    return f"{moment:%b} {moment.day} {moment:%H:%M}"


def details(ctx: Context, name: str) -> str:
    """What a model is, for the "details" beside its plain label ("" for a name that is
    no model)."""
    if name == BASE:
        return f"{_base_name(ctx)} as it is, untrained (the base model)"
    if name in contenders.BASELINES:
        return contenders.BASELINES[name].details
    if name == LATEST:
        return "the newest adapter"
    found = _runs_by_adapter(ctx)
    if name in found:
        return f"the LoRA adapter that run #{found[name][0]['id']} trained on your examples"
    served, with_facts, with_examples = split_name(name)
    if served != name and (served == BASE or served in found or _is_folder(ctx, served)):
        added = [_with_facts()] * with_facts + [
            "with those of your examples close to the question (a correction of it) before "
            "it" if with_facts else _few_shot()] * with_examples
        return ("the base model" if served == BASE else f"the adapter {served}") + \
            " " + ", and ".join(added)
    if _is_folder(ctx, name):
        return "an adapter folder that this app did not train"
    return ""


def _with_facts() -> str:
    return ("with the passages of your facts most like each question placed before it "
            "(the Facts tab)")


def _few_shot() -> str:
    return (f"with the {fewshot.K} of your examples most like each question placed before "
            "it (few-shot; fewer when they do not fit)")


def _base_name(ctx: Context) -> str:
    try:
        return ctx.engine.name
    except NotAvailable:
        return "the base model"


@dataclass(frozen=True)
class Names:
    """How a sentence names models: `say(name)` inside a sentence, `say.first(name)` at its
    start. Names without a label stay as they are (the technical names)."""

    labels: dict[str, str] = field(default_factory=dict)
    plain_words: bool = False
    """True for a person's eyes (the web app): sentences leave out the statistics' names
    and numbers (p, chrF), which the card's details give."""

    def __call__(self, name: str) -> str:
        found = self.labels.get(name)
        return found[:1].lower() + found[1:] if found else name

    def first(self, name: str) -> str:
        return self.labels.get(name, name)


AS_IS = Names({BASE: "The base"})
"""The technical names, as the command line and the card's JSON give them ("the base"
reads better than "base" in a sentence, and means the same)."""


def plain(ctx: Context, names: list[str]) -> Names:
    """Plain words for these names, e.g. for the web app's report card."""
    return Names({name: shown for name, shown in labels(ctx, names).items() if shown != name},
                 plain_words=True)
