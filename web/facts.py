"""The Facts tab: what is true about the user's business (prices, hours, policies), typed
or from a file, in a table; one fact, or all from one file, deleted. The chat reads the
facts most like each question before it answers (services/facts.py)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import gradio as gr

from core.errors import UserError
from services import facts
from services.context import Context
from web.common import Ui

TABLE_HEADERS = ["#", "from", "text"]
COLUMN_WIDTHS: list[str | int] = ["6%", "16%", "78%"]
INTRO = ("What is true about your business: prices, hours, policies. The chat reads the "
         "facts most like each question before it answers, so it can answer from them "
         "instead of inventing.")
PLACEHOLDER = ("# Prices\n- Latte: £3.20\n- Cappuccino: £3.40\n\n# Opening hours\n"
               "Monday to Friday 8 to 6, Saturday 9 to 1.")
PREVIEW = 80
# Deleting a whole source cannot be undone: ask first (the handler gets None on cancel).
CONFIRM_SOURCE = ("(source) => source && confirm('Delete every fact from ' + source + '?')"
                  " ? source : null")


def count_line(found: list[facts.Fact]) -> str:
    if not found:
        return "No facts yet: type or paste some above, or add a file."
    by_source: dict[str, int] = {}
    for fact in found:
        by_source[fact.source] = by_source.get(fact.source, 0) + 1
    sources = ", ".join(f"{html.escape(source)} ({n})" for source, n in by_source.items())
    return f"**{facts.n_facts(len(found))}** from {sources}. Click a fact to select it."


def _problem(error: UserError) -> str:
    return f"⚠️ **Not added.** {html.escape(str(error), quote=False)}"


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW else flat[:PREVIEW - 1] + "…"


class FactHandlers:
    """Each returns what the tab shows; a user's mistake becomes the note, in the tab."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def overview(self, chosen: str | None = None):
        """(count line, table, source list: still on the `chosen` source while it has
        facts, so that a redraw never moves what *Delete all* would delete)"""
        found = facts.list_facts(self.ctx)
        sources = list(dict.fromkeys(fact.source for fact in found))
        value = chosen if chosen in sources else (sources[0] if sources else None)
        return (count_line(found), [[f.id, f.source, f.text] for f in found],
                gr.Dropdown(choices=sources, value=value))

    def add_typed(self, text: str):
        """(note, the text box: emptied once its facts are in)"""
        try:
            added = len(facts.add_text(self.ctx, text or ""))
        except UserError as error:
            return _problem(error), gr.skip()
        if not added:
            return "Nothing new: those facts are stored already.", ""
        return f"✓ Added {facts.n_facts(added)}.", ""

    def add_upload(self, upload: str | None):
        """(note, the file box: emptied, ready for the next file)"""
        if not upload:
            return gr.skip(), gr.skip()
        name = Path(upload).name
        before = sum(fact.source == name for fact in facts.list_facts(self.ctx))
        try:
            name, added = facts.add_file(self.ctx, upload)
        except UserError as error:
            return _problem(error), None
        replaced = f", replacing the {before} it had before" if before else ""
        return f"✓ Added {facts.n_facts(added)} from {html.escape(name)}{replaced}.", None

    def select(self, event: gr.SelectData):
        """(the selected fact's id, note)"""
        fact_id, source, text = event.row_value[:3]
        return int(fact_id), (f"Selected fact #{int(fact_id)} from {html.escape(str(source))}:"
                              f" “{html.escape(_preview(str(text)))}”. *Delete the selected "
                              "fact* removes it.")

    def delete(self, fact_id: int | None):
        """(note, the selection)"""
        if fact_id is None:
            return "Click a fact in the table first, then *Delete the selected fact*.", None
        try:
            facts.delete(self.ctx, fact_id)
        except UserError as error:
            return f"⚠️ {html.escape(str(error), quote=False)}", None
        return f"✓ Deleted fact #{fact_id}.", None

    def delete_source(self, source: str | None):
        """(note, the selection)"""
        if not source:
            return gr.skip(), gr.skip()
        gone = facts.delete_source(self.ctx, source)
        if not gone:
            return f"No facts come from {html.escape(source)} any more.", None
        return f"✓ Deleted {facts.n_facts(gone)} from {html.escape(source)}.", None


def build(ui: Ui) -> None:
    handlers = FactHandlers(ui.ctx)
    gr.Markdown(INTRO, elem_id="facts-intro")
    with gr.Row():
        with gr.Column(scale=3):
            text = gr.Textbox(label="Type or paste facts (plain text or Markdown)", lines=6,
                              max_lines=20, placeholder=PLACEHOLDER, elem_id="facts-text")
            add = gr.Button("Add these facts", variant="primary", elem_id="facts-add")
        with gr.Column(scale=2):
            # No file_types: Gradio would refuse another kind in a toast of its own; the
            # service's refusal says what it takes, in the note.
            upload = gr.File(label="Or add a file: text, Markdown, CSV or PDF",
                             type="filepath", elem_id="facts-file")
            gr.Markdown("<small>A paragraph or a list item becomes one fact, under its "
                        "heading; a spreadsheet row becomes one fact (with question and "
                        "answer columns: “question — answer”). Adding a file of the same "
                        "name again replaces its facts.</small>")
    note = gr.Markdown(elem_id="facts-note")
    count = gr.Markdown(elem_id="facts-count")
    with gr.Row(equal_height=True):
        delete = gr.Button("Delete the selected fact", variant="stop", scale=0,
                           min_width=200, elem_id="facts-delete")
        source = gr.Dropdown([], label="Source", scale=1, elem_id="facts-source")
        delete_source = gr.Button("Delete all facts from this source", variant="stop",
                                  scale=0, min_width=240, elem_id="facts-delete-source")
    table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, wrap=True, max_height=420,
                         column_widths=COLUMN_WIDTHS, elem_id="facts-table")
    selected = gr.State(None)

    show: dict[str, Any] = dict(fn=handlers.overview, inputs=source,
                                outputs=[count, table, source])
    add.click(handlers.add_typed, text, [note, text], api_visibility="private").then(
        **show, api_visibility="private")
    text.submit(handlers.add_typed, text, [note, text], api_visibility="private").then(
        **show, api_visibility="private")
    upload.upload(handlers.add_upload, upload, [note, upload], api_visibility="private").then(
        **show, api_visibility="private")
    table.select(handlers.select, None, [selected, note], api_visibility="private")
    delete.click(handlers.delete, selected, [note, selected], api_visibility="private").then(
        **show, api_visibility="private")
    delete_source.click(handlers.delete_source, source, [note, selected], js=CONFIRM_SOURCE,
                        api_visibility="private").then(**show, api_visibility="private")
    assert ui.tab is not None
    ui.tab.select(**show, api_visibility="private")  # facts added from the CLI or the API
    ui.on_load(**show)
