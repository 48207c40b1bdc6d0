"""Model names: which models a request may pick, what "latest" means, and which one new
chats start with. Every list of models in every edge comes from here."""

from __future__ import annotations

from core.adapters import BASE, UnknownAdapter, adapter_folders, split_name
from services import contenders
from services.contenders import Contender
from services.context import Context
from storage import runs

LATEST = "latest"


def model_names(ctx: Context) -> list[str]:
    """The names a request may pick: "base", the prompting baselines that can answer
    (base+prompt, base+examples, base+facts+examples), then adapters, oldest first,
    each followed by itself with the user's facts and examples (contenders.helped)."""
    helped = contenders.helped(ctx)
    return [BASE] + contenders.baseline_names(ctx) + [
        name for adapter in adapter_names(ctx)
        for name in ([adapter, adapter + helped] if helped else [adapter])]


def adapter_names(ctx: Context) -> list[str]:
    """The adapters a user may choose: every folder, except one of a run of this home
    that did not succeed (storage/runs.py unfinished_adapters)."""
    unfinished = runs.unfinished_adapters(ctx.store)
    return [folder.name for folder in adapter_folders(ctx.adapters_dir)
            if folder.name not in unfinished]


def with_help(ctx: Context, name: str) -> str:
    """A model that draws on the user's facts or examples draws on all she has now (a
    default chosen before she added facts takes them too); other names as they are."""
    served, with_facts, with_examples = split_name(name)
    if name == contenders.PROMPT or not (with_facts or with_examples):
        return name
    return served + contenders.helped(ctx)


def contender(ctx: Context, name: str | None) -> Contender:
    """Who answers for a model name ("latest" is the newest adapter)."""
    return contenders.contender(ctx, resolve(ctx, name), adapter_names(ctx))


def newest_adapter(ctx: Context) -> str | None:
    """The adapter of the newest successful run, else the newest adapter folder."""
    names = adapter_names(ctx)
    newest = runs.latest_adapter(ctx.store)
    if newest in names:
        return newest
    return names[-1] if names else None


def adapter_to_show(ctx: Context) -> str | None:
    """The adapter Compare shows first (Model B, the report card): the one new chats
    use when that is an adapter (with or without facts and examples), else the newest."""
    served = split_name(chat_default(ctx))[0]
    return served if served in adapter_names(ctx) else newest_adapter(ctx)


def resolve(ctx: Context, name: str | None) -> str:
    """A model name as given by a user ("latest", "base", "run-3", ...) -> a name the
    engine serves; UnknownAdapter, listing the choices, for anything else."""
    name = (name or BASE).strip()
    if name == LATEST:
        return newest_adapter(ctx) or BASE
    contenders.contender(ctx, name, adapter_names(ctx))  # raises for an unknown name
    return name


def resolve_adapter(ctx: Context, name: str, purpose: str) -> str:
    """An adapter's name ("latest" is the newest), for an action that needs an adapter
    (`purpose`: "to export", "to continue", ...)."""
    names = adapter_names(ctx)
    chosen = newest_adapter(ctx) if name == LATEST else name
    if not chosen or chosen not in names:
        raise UnknownAdapter(f"No adapter named {name!r} {purpose}. Choose one of: "
                             f"{', '.join(names) or 'none yet (train one first)'}"
                             f"{' (or latest)' if names else ''}.")
    return chosen


def chat_default(ctx: Context) -> str:
    """The model new chats start with: the one the newest report card found best or the
    user promoted (see Compare), with the facts and examples she has now (with_help);
    before either, the plain model with her facts and examples, so that a correction
    counts in the very next answer."""
    helped = BASE + contenders.helped(ctx)
    chosen = runs.default_adapter(ctx.store)
    if not chosen:
        return helped
    chosen = with_help(ctx, chosen)
    return chosen if chosen in model_names(ctx) else helped


def promote(ctx: Context, name: str) -> str:
    """Make a model the chat's default; the one it replaces is kept for a roll back."""
    name = resolve(ctx, name)
    runs.promote(ctx.store, name)
    return name


def roll_back(ctx: Context) -> str:
    """Restore the default before the last promotion; returns it."""
    return runs.roll_back(ctx.store)
