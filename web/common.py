"""What every tab shares: the services context, turning user errors into messages, and
model lists that follow new adapters.

A tab is a module with `build(ui: Ui) -> None` that lays out its components inside the
tab and wires their events; web/app.py lists the tabs in order. A tab that shows a list
of models makes it with `ui.model_list(...)`, and the list then follows new adapters
in every open page within a second; `ui.in_use()` tells a tab when the model new chats
use changes. A list shows each model in plain words (services/names.py) and hands over
its technical name, which a "details" line under the list shows one click away."""

from __future__ import annotations

import functools
import html
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import gradio as gr

from core.errors import UserError
from services import models, names
from services.context import Context


def shown_to_user(fn):
    """Turn the errors a user can fix into gr.Error (a toast, not a traceback); any other
    exception is a bug and keeps its traceback."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except UserError as error:
                raise gr.Error(str(error)) from error
        return generator

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as error:
            raise gr.Error(str(error)) from error
    return plain


def message_text(content) -> str:
    """The text of a chat message as Gradio hands it over (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", ""))
    return "".join(message_text(part) for part in content or [])


NEWEST = "newest"
"""A model list that moves to the newest adapter when one arrives (Model B, promote)."""
KEEP = "keep"
"""A model list that keeps the user's choice when adapters arrive (the chat's model)."""


@dataclass
class ModelList:
    dropdown: gr.Dropdown
    choices: Callable[[Context], list]
    default: Callable[[Context], str | None]
    follow: str

    def update(self, ctx: Context, move: bool = True) -> gr.Dropdown:
        """The list as it is now, set to its default when `move` (none when the default
        is not offered, e.g. an adapters-only list before the first run). A run's label
        never changes, so sending the labels again moves nothing."""
        offered = self.choices(ctx)
        labelled = names.choices(ctx, offered)
        if not move:
            return gr.Dropdown(choices=labelled)
        return gr.Dropdown(choices=labelled, value=_offered(self.default(ctx), offered))


@dataclass
class InUse:
    """No list: a hidden state holding the model new chats use (models.chat_default),
    which the model lists' timer (web/app.py) sets on every page load and within a second
    of it changing. A tab learns of the change from the state's .change event (a state
    changes only when its value does: new adapters alone leave it alone)."""

    dropdown: gr.State
    """Named as a ModelList's, for the timer that sends it."""
    follow: str = KEEP

    def update(self, ctx: Context, move: bool = True) -> str:
        return models.chat_default(ctx)


def _offered(value: str | None, offered: list) -> str | None:
    return value if value in offered else None


def model_details(ctx: Context, name: str | None) -> str:
    """The chosen model's technical name and what it is, folded under its list ("" for a
    choice that is no model, e.g. "(a new adapter)")."""
    what = names.details(ctx, name) if name else ""
    if not what:
        return ""
    return (f"<details><summary>details</summary><code>{html.escape(name or '')}</code>: "
            f"{html.escape(what)}. The API and the command line take this name.</details>")


@dataclass
class Ui:
    """Handed to every tab's build()."""

    ctx: Context
    tab: gr.Tab | None = None
    """The tab being built (for events on opening it)."""
    lists: list[ModelList | InUse] = field(default_factory=list)
    loads: list[tuple] = field(default_factory=list)

    def on_load(self, fn: Callable, inputs=None, outputs=None) -> None:
        """Run `fn` on every page load (after the tabs are built), privately."""
        self.loads.append((fn, inputs, outputs))

    def model_list(self, label: str, *, default: Callable[[Context], str | None] | None = None,
                   follow: str = KEEP, first: tuple[str, ...] = (), with_base: bool = True,
                   **kwargs) -> gr.Dropdown:
        """A dropdown of models (after `first`, e.g. "(a new adapter)") in plain words,
        with the chosen one's technical name under it; set to `default` on every page
        load and, with follow=NEWEST, whenever an adapter arrives. `scale` and
        `min_width` size the list and its details together."""
        def choices(ctx: Context) -> list:
            found = models.model_names(ctx) if with_base else models.adapter_names(ctx)
            return list(first) + found

        default = default or (lambda ctx: models.newest_adapter(ctx) or models.BASE)
        offered = choices(self.ctx)
        value = _offered(default(self.ctx), offered)
        with gr.Column(scale=kwargs.pop("scale", 1), min_width=kwargs.pop("min_width", 160)):
            dropdown = gr.Dropdown(names.choices(self.ctx, offered), value=value, label=label,
                                   **kwargs)
            details = gr.Markdown(model_details(self.ctx, value))
        dropdown.change(functools.partial(model_details, self.ctx), dropdown, details,
                        api_visibility="private", show_progress="hidden")
        self.lists.append(ModelList(dropdown, choices, default, follow))
        return dropdown

    def in_use(self) -> gr.State:
        """A hidden state that names the model new chats use: None until the page loads,
        then set on load and whenever that model changes (see InUse)."""
        state = gr.State(None)
        self.lists.append(InUse(state))
        return state
