"""build_app(ctx) -> gr.Blocks: the tabs in order, the API routes, and the model lists
that follow new adapters. Tabs are listed in TABS; each is a module with build(ui)."""

from __future__ import annotations

import gradio as gr

from services import models, names
from services.context import Context
from web import api, chat, compare, examples, facts, train
from web.common import NEWEST, Ui

TABS = [("Chat", "chat", chat.build), ("Examples", "examples", examples.build),
        ("Facts", "facts", facts.build), ("Train", "train", train.build),
        ("Compare", "compare", compare.build)]
CSS = chat.CSS
"""The page's own styles, handed to launch() (Gradio 6 takes them there)."""


def build_app(ctx: Context) -> gr.Blocks:
    ui = Ui(ctx)
    with gr.Blocks(title="tunechat", analytics_enabled=False) as app:
        with gr.Tabs():
            for title, tab_id, build in TABS:
                with gr.Tab(title, id=tab_id) as ui.tab:
                    build(ui)
        api.add_routes(ctx)
        _model_lists_follow_adapters(ui)
        for fn, inputs, outputs in ui.loads:
            app.load(fn, inputs, outputs, api_visibility="private")
    return app


def _model_lists_follow_adapters(ui: Ui) -> None:
    """Every model list is set on page load, and follows new adapters within a second
    without a reload; lists are only sent when the names, their labels (a run's adapter
    folder appears a moment before the run is recorded as succeeded) or the model new
    chats use changed, so an open dropdown is left alone. A list that follows the newest
    adapter moves to its default then (the adapter in use: a worse new run does not
    take over)."""
    dropdowns = [entry.dropdown for entry in ui.lists]
    known = gr.State(None)

    def state() -> list:
        shown = names.choices(ui.ctx, models.model_names(ui.ctx))
        return [list(pair) for pair in shown] + [models.chat_default(ui.ctx)]

    def on_load():
        return [e.update(ui.ctx) for e in ui.lists] + [state()]

    def check(seen: list[str] | None):
        now = state()
        if now == seen:
            return [gr.skip()] * (len(ui.lists) + 1)
        return [e.update(ui.ctx, move=e.follow == NEWEST) for e in ui.lists] + [now]

    ui.on_load(on_load, None, dropdowns + [known])
    gr.Timer(1.0).tick(check, known, dropdowns + [known], api_visibility="private",
                       show_progress="hidden")
