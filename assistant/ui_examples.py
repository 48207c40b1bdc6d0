"""The Examples tab: the dataset a user builds by chatting. A table with search and a
source filter, a readiness meter, an editor (edit, delete, undo), import and export."""

from __future__ import annotations

import html
import tempfile
from pathlib import Path

import gradio as gr

from assistant.ui_train import autostart_note
from storage import examples, formats
from storage.db import Store

TABLE_HEADERS = ["#", "source", "prompt", "answer", "turns", "check"]
SOURCE_CHOICES = ["all"] + list(examples.SOURCES)
EXPORT_CHOICES = [("OpenAI chat JSONL", "openai"), ("alpaca", "alpaca"),
                  ("sharegpt", "sharegpt"), ("preference pairs (DPO)", "preference")]
PREVIEW = 80


def readiness_html(counts: dict[str, int], threshold: int = examples.READY_THRESHOLD) -> str:
    ready = counts["trainable"]
    status = (f"<b>{ready}</b> training examples: enough for a first run"
              if ready >= threshold else
              f"<b>{ready} of {threshold}</b> examples for a first training run "
              f"({threshold - ready} to go)")
    parts = ", ".join(f"{counts[s]} {s}" for s in examples.SOURCES if counts[s])
    return (
        f'<div id="readiness"><p>{status}{f" · {parts}" if parts else ""}</p>'
        f'<progress value="{min(ready, threshold)}" max="{threshold}" '
        f'style="width:100%"></progress>'
        "<p><small>A first adapter from a few dozen examples picks up a style or a voice. "
        "For dependable behaviour, collect 100 to 1,000 or more. Kept, corrected, added and "
        "imported examples are trained on; thumbs-down replies are stored but not.</small>"
        "</p></div>"
    )


def table_rows(found: list[examples.Example]) -> list[list]:
    return [[e.id, e.source, _preview(e.prompt), _preview(e.answer),
             sum(m["role"] != "system" for m in e.messages),
             f"near-duplicate of #{e.near_duplicate_of}" if e.near_duplicate_of else ""]
            for e in found]


def message_text(content) -> str:
    """The text of a chat message as Gradio hands it over (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", ""))
    return "".join(message_text(part) for part in content or [])


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW else flat[:PREVIEW - 1] + "…"


class ExampleActions:
    def __init__(self, store: Store, jobs=None):
        self.store = store
        self.jobs = jobs

    def overview(self, search: str = "", source: str = "all"):
        """(readiness meter, table) for the current search and filter."""
        found = examples.list_examples(self.store, search or "", source or "all")
        return readiness_html(examples.counts(self.store)), table_rows(found)

    def select(self, event: gr.SelectData):
        """Open the clicked row in the editor: (id, title, system, turns, editor)."""
        example_id = int(event.row_value[0])
        chosen = next(e for e in examples.list_examples(self.store) if e.id == example_id)
        system = chosen.messages[0]["content"] if chosen.messages[0]["role"] == "system" else ""
        turns = [m for m in chosen.messages if m["role"] != "system"]
        title = f"### Example #{example_id} · {chosen.source}"
        if chosen.rejected:
            title += f"\nRejected answer: _{html.escape(_preview(chosen.rejected))}_"
        return example_id, title, system, turns, gr.Column(visible=True)

    def save(self, example_id: int | None, system: str, turns: list[dict]) -> str:
        if example_id is None:
            return "Pick an example in the table first."
        messages = [{"role": m["role"], "content": message_text(m["content"])} for m in turns]
        if (system or "").strip():
            messages.insert(0, {"role": "system", "content": system})
        examples.update_example(self.store, example_id, messages)
        return f"✓ Saved example #{example_id}."

    def delete(self, example_id: int | None):
        """(note, last deleted id, undo button, editor)"""
        if example_id is None:
            return "Pick an example in the table first.", None, gr.skip(), gr.skip()
        examples.delete_example(self.store, example_id)
        return (f"Deleted example #{example_id}.", example_id, gr.Button(visible=True),
                gr.Column(visible=False))

    def undo_delete(self, example_id: int | None):
        """(note, last deleted id, undo button)"""
        if example_id is None:
            return "Nothing to undo.", None, gr.Button(visible=False)
        examples.restore_example(self.store, example_id)
        return f"✓ Example #{example_id} is back.", None, gr.Button(visible=False)

    def import_upload(self, upload: str | None, fmt: str) -> str:
        if not upload:
            return "Choose a file to import first."
        added, present = formats.import_file(self.store, upload, fmt)
        skipped = f" ({present} already present, skipped)" if present else ""
        return (f"✓ Imported {added} example{'s' * (added != 1)} from {Path(upload).name}"
                f"{skipped}." + autostart_note(self.jobs))

    def export_download(self, fmt: str):
        """(file to download, note)"""
        folder = Path(tempfile.mkdtemp(prefix="tunechat-export-"))
        path = folder / f"tunechat-examples-{fmt}.jsonl"
        written = formats.export_file(self.store, path, fmt)
        return str(path), f"✓ Exported {written} example{'s' * (written != 1)} ({fmt})."


def examples_tab(services, shown_to_user) -> dict:
    """Build the tab; returns the refresh event's settings, for reuse when it is opened."""
    store = services.store
    actions = ExampleActions(store, services.jobs)
    meter = gr.HTML(readiness_html(examples.counts(store)))
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
        turns = gr.Chatbot(label="Turns (click the pencil to edit a message, then Save)", editable="all",
                           height=320, buttons=["copy"], elem_id="example-editor")
        with gr.Row():
            save = gr.Button("Save changes", variant="primary")
            delete = gr.Button("Delete example", variant="stop")
    with gr.Accordion("Import and export", open=False):
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="Import a file (.jsonl or .json)", type="filepath",
                                 elem_id="import-file",
                                 file_types=[".jsonl", ".json"])
                import_format = gr.Dropdown(["auto"] + list(formats.FORMATS), value="auto",
                                            label="Format")
                import_button = gr.Button("Import")
            with gr.Column():
                export_format = gr.Dropdown(EXPORT_CHOICES, value="openai", label="Format")
                export_button = gr.Button("Export")
                download = gr.File(label="Download", interactive=False)

    show = dict(fn=shown_to_user(actions.overview), inputs=[search, source],
                outputs=[meter, table], api_visibility="private")
    for trigger in (search.submit, source.change, refresh.click):
        trigger(**show)
    table.select(shown_to_user(actions.select), None,
                 [selected, title, system, turns, editor], api_visibility="private")
    save.click(shown_to_user(actions.save), [selected, system, turns], note,
               api_visibility="private").success(**show)
    delete.click(shown_to_user(actions.delete), selected, [note, last_deleted, undo, editor],
                 api_visibility="private").success(**show)
    undo.click(shown_to_user(actions.undo_delete), last_deleted, [note, last_deleted, undo],
               api_visibility="private").success(**show)
    import_button.click(shown_to_user(actions.import_upload), [upload, import_format], note,
                        api_name="import_examples").success(**show)
    export_button.click(shown_to_user(actions.export_download), export_format,
                        [download, note], api_name="export_examples")
    return show
