"""The Examples tab: the dataset a user builds by chatting. A table with search and a
source filter, a readiness meter, an editor (edit, delete, undo), import and export."""

from __future__ import annotations

import atexit
import html
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import gradio as gr

from services import examples, training
from services.context import Context
from storage import formats
from storage.examples import SOURCES
from web.common import Ui, message_text, shown_to_user

TABLE_HEADERS = ["#", "source", "prompt", "answer", "turns", "check"]
SOURCE_CHOICES = ["all"] + list(SOURCES)
PREVIEW = 80


def readiness_html(counts: dict[str, int], threshold: int) -> str:
    ready = counts["trainable"]
    status = (f"<b>{ready}</b> training examples: enough for a first run"
              if ready >= threshold else
              f"<b>{ready} of {threshold}</b> examples for a first training run "
              f"({threshold - ready} to go)")
    parts = ", ".join(f"{counts[s]} {s}" for s in SOURCES if counts[s])
    return (
        f'<div id="readiness"><p>{status}{f" · {parts}" if parts else ""}</p>'
        f'<progress value="{min(ready, threshold)}" max="{threshold}" '
        f'style="width:100%"></progress>'
        "<p><small>A first adapter from a few dozen examples picks up a style or a voice. "
        "For dependable behaviour, collect 100 to 1,000 or more. Kept, corrected, added and "
        "imported examples are trained on; thumbs-down replies are stored but not.</small>"
        "</p></div>"
    )


def table_rows(found) -> list[list]:
    return [[e.id, e.source, _preview(e.prompt), _preview(e.answer),
             sum(m["role"] != "system" for m in e.messages),
             f"near-duplicate of #{e.near_duplicate_of}" if e.near_duplicate_of else ""]
            for e in found]


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW else flat[:PREVIEW - 1] + "…"


@cache
def export_folder() -> Path:
    """One folder for this process's downloads, reused by every export and removed at
    exit (Gradio copies each file into its own cache before serving it)."""
    folder = Path(tempfile.mkdtemp(prefix="tunechat-export-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


class ExampleHandlers:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def overview(self, search: str = "", source: str = "all"):
        """(readiness meter, table) for the current search and filter."""
        threshold = training.auto_start(self.ctx).threshold
        return (readiness_html(examples.counts(self.ctx), threshold),
                table_rows(examples.find(self.ctx, search, source)))

    def select(self, event: gr.SelectData):
        """Open the clicked row in the editor: (id, title, system, turns, editor)."""
        chosen = examples.get(self.ctx, int(event.row_value[0]))
        messages = chosen.messages
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
        turns = [m for m in messages if m["role"] != "system"]
        title = f"### Example #{chosen.id} · {chosen.source}"
        if chosen.rejected:
            title += f"\nRejected answer: _{html.escape(_preview(chosen.rejected))}_"
        return chosen.id, title, system, turns, gr.Column(visible=True)

    def save(self, example_id: int | None, system: str, turns: list[dict]) -> str:
        if example_id is None:
            return "Pick an example in the table first."
        messages = [{"role": m["role"], "content": message_text(m["content"])} for m in turns]
        if (system or "").strip():
            messages.insert(0, {"role": "system", "content": system})
        examples.edit(self.ctx, example_id, messages)
        return f"✓ Saved example #{example_id}."

    def delete(self, example_id: int | None):
        """(note, last deleted id, undo button, editor)"""
        if example_id is None:
            return "Pick an example in the table first.", None, gr.skip(), gr.skip()
        examples.delete(self.ctx, example_id)
        return (f"Deleted example #{example_id}.", example_id, gr.Button(visible=True),
                gr.Column(visible=False))

    def undo_delete(self, example_id: int | None):
        """(note, last deleted id, undo button)"""
        if example_id is None:
            return "Nothing to undo.", None, gr.Button(visible=False)
        examples.restore(self.ctx, example_id)
        return f"✓ Example #{example_id} is back.", None, gr.Button(visible=False)

    def import_upload(self, upload: str | None, fmt: str) -> str:
        if not upload:
            return "Choose a file to import first."
        return examples.import_file(self.ctx, upload, fmt).message()

    def export_download(self, fmt: str):
        """(file to download, note)"""
        path = export_folder() / f"tunechat-examples-{fmt}.jsonl"
        done = examples.export_file(self.ctx, path, fmt)
        return str(path), done.message()


def build(ui: Ui) -> None:
    handlers = ExampleHandlers(ui.ctx)
    meter = gr.HTML()
    with gr.Row():
        search = gr.Textbox(label="Search", placeholder="words in any message", scale=3)
        source = gr.Dropdown(SOURCE_CHOICES, value="all", label="Source", scale=1)
        refresh = gr.Button("Refresh", scale=0)
    table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, wrap=True,
                         elem_id="examples-table", max_height=420)
    note = gr.Markdown(elem_id="examples-note")
    undo = gr.Button("Undo delete", visible=False, elem_id="undo-delete")
    selected, last_deleted = gr.State(None), gr.State(None)
    with gr.Column(visible=False) as editor:
        title = gr.Markdown()
        system = gr.Textbox(label="System prompt", lines=1)
        turns = gr.Chatbot(label="Turns (click the pencil to edit a message, then Save)",
                           editable="all", height=320, buttons=["copy"],
                           elem_id="example-editor")
        with gr.Row():
            save = gr.Button("Save changes", variant="primary")
            delete = gr.Button("Delete example", variant="stop")
    with gr.Accordion("Import and export", open=False):
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="Import a file (.jsonl or .json)", type="filepath",
                                 elem_id="import-file", file_types=[".jsonl", ".json"])
                import_format = gr.Dropdown(["auto"] + formats.import_formats(),
                                            value="auto", label="Format")
                import_button = gr.Button("Import")
            with gr.Column():
                export_format = gr.Dropdown(
                    [(f.label, f.name) for f in formats.FORMATS.values()], value="openai",
                    label="Format")
                export_button = gr.Button("Export")
                download = gr.File(label="Download", interactive=False)

    show: dict[str, Any] = dict(fn=shown_to_user(handlers.overview), inputs=[search, source],
                outputs=[meter, table], api_visibility="private")
    for trigger in (search.submit, source.change, refresh.click):
        trigger(**show)
    assert ui.tab is not None
    ui.tab.select(**show)  # kept and corrected replies appear when the tab is opened
    ui.on_load(**{k: v for k, v in show.items() if k != "api_visibility"})
    table.select(shown_to_user(handlers.select), None,
                 [selected, title, system, turns, editor], api_visibility="private")
    save.click(shown_to_user(handlers.save), [selected, system, turns], note,
               api_visibility="private").success(**show)
    delete.click(shown_to_user(handlers.delete), selected, [note, last_deleted, undo, editor],
                 api_visibility="private").success(**show)
    undo.click(shown_to_user(handlers.undo_delete), last_deleted, [note, last_deleted, undo],
               api_visibility="private").success(**show)
    import_button.click(shown_to_user(handlers.import_upload), [upload, import_format], note,
                        api_name="import_examples").success(**show)
    export_button.click(shown_to_user(handlers.export_download), export_format,
                        [download, note], api_name="export_examples")
