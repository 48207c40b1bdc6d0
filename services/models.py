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
    each followed by its forms with the user's examples and facts (contenders.forms:
    those the report card measures and may choose for new chats)."""
    help_now = contenders.helped(ctx)
    return [BASE] + contenders.baseline_names(ctx, help_now) + [
        name for adapter in adapter_names(ctx) for name in contenders.forms(adapter, help_now)]


def adapter_names(ctx: Context) -> list[str]:
    """The adapters a user may choose: every folder, except one of a run of this home
    that did not succeed (storage/runs.py unfinished_adapters)."""
    unfinished = runs.unfinished_adapters(ctx.store)
    return [folder.name for folder in adapter_folders(ctx.adapters_dir)
            if folder.name not in unfinished]


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
    user promoted (see Compare); before either, the plain model with her facts and
    examples, so that a correction counts in the very next answer. A chosen form that
    is no longer offered (its facts deleted since) gives way to the model's form with
    what she has now."""
    chosen = runs.default_adapter(ctx.store)
    names = model_names(ctx)
    if chosen in names:
        return chosen
    help_now = contenders.helped(ctx)
    served = split_name(chosen or BASE)[0]
    return next(name for name in (served + help_now, BASE + help_now, BASE) if name in names)


def promote(ctx: Context, name: str) -> str:
    """Make a model the chat's default; the one it replaces is kept for a roll back.
    Returns what new chats use now."""
    runs.promote(ctx.store, resolve(ctx, name))
    return chat_default(ctx)


def roll_back(ctx: Context) -> str:
    """Restore the default before the last promotion; returns what new chats use now
    (none chosen before: the plain model with her facts and examples)."""
    runs.roll_back(ctx.store)
    return chat_default(ctx)
