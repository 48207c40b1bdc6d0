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

from core.errors import UserError
from files import formats
from services import examples, facts, training
from services.context import Context
from storage.examples import SOURCES, TRAINABLE
from web.common import Ui, shown_to_user

TABLE_HEADERS = ["#", "source", "question", "answer", "messages", "kept out of training?"]
COLUMN_WIDTHS: list[str | int] = ["5%", "10%", "29%", "29%", "9%", "18%"]
SOURCE_CHOICES = ["all"] + list(SOURCES)
NOT_EXAMPLES = {"disliked": ("thumbs-down", "thumbs-down"), "vote": ("vote", "votes")}
"""Stored beside the examples, but not examples a run imitates: counted apart."""
PREVIEW = 80
ROLE_WORDS = {"user": "the question", "assistant": "the answer",
              "system": "the instructions (system prompt)"}
"""A spreadsheet column's role as the preview says it."""
WHOLE_ANSWER = 400
"""An import's preview shows answers to this length: her sign-off is at their end."""
HELD_OUT = "set aside to test run #{run}"
SPREADSHEET = "Spreadsheet (CSV)"
"""The export a spreadsheet user wants: first in the list, and chosen."""
EDITOR = "example-editor"
# Saving redraws the table above the editor, which can push the note under Save out of
# view: bring it back (only as far as needed).
SCROLL_TO_SAVED = ("() => document.getElementById('editor-note')"
                   "?.scrollIntoView({block: 'nearest'})")
# Selecting a row opens the editor below the table, out of view on a laptop: bring it
# into view (only as far as needed), once it is drawn.
SCROLL_TO_EDITOR = (f"() => setTimeout(() => document.getElementById('{EDITOR}')"
                    "?.scrollIntoView({block: 'nearest', behavior: 'smooth'}), 100)")


def export_choices() -> list[tuple[str, str]]:
    """The export formats as the Examples tab offers them: the spreadsheet first, in
    plain words, then the formats training tools read."""
    technical = [(formats.FORMATS[name].label, name) for name in formats.export_formats()
                 if name != "csv"]
    return [(SPREADSHEET, "csv")] + technical


def readiness_html(counts: dict[str, int], progress: str, state: training.AutoStart) -> str:
    """The progress line, and a bar that counts what the line counts: the examples
    toward the next run against the threshold (none when auto-start is off: no target)."""
    parts = ", ".join(f"{counts[s]} {s}" for s in TRAINABLE if counts[s])
    others = ", ".join(f"{counts[s]} {NOT_EXAMPLES[s][counts[s] != 1]}"
                       for s in NOT_EXAMPLES if counts.get(s))
    parts += f"{'; besides them, ' if parts else ''}{others}" if others else ""
    bar = (f'<progress value="{min(state.new_examples, state.threshold)}" '
           f'max="{state.threshold}" style="width:100%"></progress>' if state.enabled else "")
    return (
        f'<div id="readiness"><p><b>{progress}</b>{f" · {parts}" if parts else ""}</p>{bar}'
        "<p><small>A few dozen examples teach your tuned assistant a style or a voice; "
        "for answers you can depend on, collect 100 to 1,000 or more. It learns from the "
        "kept, corrected, added and imported examples. Thumbs-down replies, votes (the "
        "winner over the other answer) and the first answers your corrections replaced "
        "are used only by runs that learn what to avoid (Train tab, <i>What to learn "
        "from</i>). Rows marked <i>set aside to test</i> were kept out of the newest "
        "run's training on purpose: answering them well shows that it learned your way "
        "of answering, not the examples by heart.</small></p></div>"
    )


def table_rows(found, held_out: dict[int, int] | None = None) -> list[list]:
    """Rows of the table; `held_out` maps an example to the run that holds it out."""
    held_out = held_out or {}
    return [[e.id, e.source, _preview(e.prompt), _preview(e.answer),
             sum(m["role"] != "system" for m in e.messages), _check(e, held_out)]
            for e in found]


def _check(example, held_out: dict[int, int]) -> str:
    notes = ["facts check (test only)"] if example.facts_check else \
        ["test only (never trained on)"] if example.test_only else []
    if example.id in held_out:
        notes.append(HELD_OUT.format(run=held_out[example.id]))
    if example.near_duplicate_of:
        notes.append(f"near-duplicate of #{example.near_duplicate_of}: keep one, unless "
                     "both teach something")
    return "; ".join(notes)


def _no_matches(search: str, source: str) -> str:
    """Why the table is empty, suggesting only what would find more."""
    if not search.strip() and source == "all":
        return ("No examples yet: keep or correct replies in the Chat tab, or import a file "
                "below.")
    if not search.strip():
        return f"No examples from the source *{source}*: choose *all* to see every one."
    widen = ", or the source *all*" if source != "all" else ""
    return f"No matches: try other words{widen}."


def _preview(text: str, longest: int = PREVIEW) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= longest else flat[:longest - 1] + "…"


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

    def overview(self, search: str = "", source: str = "all", number: float | None = 1):
        """(readiness meter, table, note on an empty result, where the page is, its
        number) for the search, filter and page."""
        found = examples.page(self.ctx, search, source, int(number or 1))
        meter = readiness_html(examples.counts(self.ctx), training.progress_line(self.ctx),
                               training.auto_start(self.ctx))
        empty = "" if found.examples else _no_matches(search or "", source or "all")
        return (meter, table_rows(found.examples, training.held_out_now(self.ctx)), empty,
                found.line(), found.number)

    def first_page(self, search: str = "", source: str = "all"):
        """A new search or filter starts at its newest examples."""
        return self.overview(search, source, 1)

    def select(self, event: gr.SelectData):
        """Open the clicked row in the editor: (id, title, its messages, editor, whether
        it is kept for testing only, whether it is a must-not-change check)."""
        chosen = examples.get(self.ctx, int(event.row_value[0]))
        title = f"### Example #{chosen.id} · {chosen.source}"
        if chosen.rejected and chosen.source != "disliked":
            lost = "The answer it won over" if chosen.source == "vote" else \
                "The model's first answer"
            title += f"\n{lost}: _{html.escape(_preview(chosen.rejected))}_"
        if during := examples.editing_during_run(self.ctx):
            title += f"\n\n{during}"
        messages = chosen.messages
        if messages[0]["role"] != "system":
            messages = [{"role": "system", "content": ""}] + messages
        return (chosen.id, title, messages, gr.Column(visible=True), chosen.test_only,
                chosen.must_keep)

    def is_facts_check(self, example_id: int | None) -> bool:
        """The facts-check box of the example just opened."""
        return example_id is not None and examples.get(self.ctx, example_id).facts_check

    def set_test_only(self, example_id: int | None, test_only: bool) -> str:
        if example_id is None:
            return "Pick an example in the table first."
        return examples.set_test_only(self.ctx, example_id, bool(test_only))

    def set_must_keep(self, example_id: int | None, must_keep: bool):
        """(note, the test-only box): a check is always kept for testing only."""
        if example_id is None:
            return "Pick an example in the table first.", gr.skip()
        note = examples.set_must_keep(self.ctx, example_id, bool(must_keep))
        return note, (True if must_keep else gr.skip())

    def set_facts_check(self, example_id: int | None, on: bool):
        """(note, the test-only box: a facts check is kept for testing only)"""
        if example_id is None:
            return "Pick an example in the table first.", gr.skip()
        note = examples.mark_facts_check(self.ctx, example_id, bool(on))
        return note, (True if on else gr.skip())

    def save(self, example_id: int | None, roles: list[str], *texts: str) -> str:
        """Save the editor's boxes as they are on the screen (roles in order)."""
        if example_id is None:
            return "Pick an example in the table first."
        messages = [{"role": role, "content": text} for role, text in zip(roles, texts)
                    if role != "system" or (text or "").strip()]
        examples.edit(self.ctx, example_id, messages)
        during = examples.editing_during_run(self.ctx)
        return f"✓ Saved example #{example_id}." + (f" {during}" if during else "")

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

    def import_upload(self, upload: str | None, fmt: str, test_only: bool = False,
                      mapping: str | None = None, skip_bad: bool = False) -> str:
        # mapping defaults to None: an empty textbox has no initial value for the API,
        # and a None default keeps the parameter optional there
        if not upload:
            return "Choose a file to import first."
        return examples.import_file(self.ctx, upload, fmt, bool(test_only), mapping or None,
                                    bool(skip_bad)).message()

    def skipped_rows(self, upload: str | None, said: str):
        """(the download of the rows the import of `upload` left out, else hidden; the ✓
        line). The line names the report in the data home, which a person in a browser
        cannot open: it points at the download instead."""
        report = examples.skipped_report(self.ctx, upload) if upload else None
        if report is None or not report.is_file():
            return gr.DownloadButton(visible=False), gr.skip()
        # served from the downloads folder: Gradio serves no file from the data home
        copy = shutil.copy(report, export_folder() / report.name)
        return gr.DownloadButton(value=str(copy), visible=True), (said or "").replace(
            examples.listed_in(report), "Every one is in *Download the rows left out*, below.")

    def preview(self, upload: str | None, fmt: str, mapping: str = "",
                skip_bad: bool = False):
        """(what the import would do, its first rows as they would be stored, the Import
        button). A file that cannot be imported says why here, beside the button, which
        it turns off: the reason stays in view and is said once, not again by Import."""
        if not upload:
            return "", gr.Dataframe(value=[], visible=False), gr.Button(interactive=True)
        try:
            seen = examples.preview(self.ctx, upload, fmt, mapping or None)
        except UserError as error:
            return (f"**Cannot import:** {html.escape(str(error), quote=False)}",
                    gr.Dataframe(value=[], visible=False), gr.Button(interactive=False))
        would = seen.would
        importable = would.total_added > 0 and (skip_bad or not would.bad)
        return "  \n".join(_preview_lines(upload, seen, skip_bad)), \
            _first_rows(seen.first), gr.Button(interactive=importable)

    def imported(self):
        """After an import: (the preview, its rows, the Import button). The preview spoke
        of the file before it was imported ("Would add: 25 examples"); read again it would
        say "nothing new, 25 already stored", as if nothing had happened. It now says
        that the file is in, and Import waits for another file (a new file, format or
        column mapping previews again)."""
        said = ("**Imported:** the ✓ line under *Import* says what was added. Choose "
                "another file to import more.")
        if not facts.list_facts(self.ctx):  # a tuned model alone misremembered her hours
            said += ("  \nHours, prices and policies in these answers: put them in the "
                     "*Facts* tab too. The chat reads your facts before every answer, "
                     "whichever model answers; training alone teaches the voice more "
                     "surely than the facts.")
        return said, gr.Dataframe(value=[], visible=False), gr.Button(interactive=False)

    def export_download(self, fmt: str):
        """(file to download, note)"""
        suffix = formats.FORMATS[fmt].suffix if fmt in formats.FORMATS else "jsonl"
        name = "tunechat-examples" if fmt == suffix else f"tunechat-examples-{fmt}"
        path = export_folder() / f"{name}.{suffix}"
        done = examples.export_file(self.ctx, path, fmt)
        return str(path), done.message()


def _first_rows(first: list) -> gr.Dataframe:
    """The first rows of a file as they would be stored, in plain words: where each is
    in the file, the question and the answer; what kind of row and the answer it is
    preferred over only when the file has such rows (a preference file)."""
    kinds = any(item.kind != "example" for _, item in first)
    headers = ["row", "question", "answer"] + ["kind of row", "preferred over"] * kinds
    rows = [[where, _preview(item.messages[-2]["content"]),
             _preview(item.messages[-1]["content"], WHOLE_ANSWER)] +
            [item.kind, _preview(item.rejected or "")] * kinds for where, item in first]
    return gr.Dataframe(value=rows, headers=headers, visible=bool(rows),
                        column_widths=["14%", "38%", "48%"] if not kinds else
                        ["10%", "25%", "30%", "10%", "25%"])


def _preview_lines(upload: str, seen: formats.Preview, skip_bad: bool = False) -> list[str]:
    """What importing the file would do: its format (for a spreadsheet, which column is
    which role), what it would add and skip, and its first bad row (and whether Import
    takes the file as *Skip bad rows* is set now)."""
    would = seen.would
    kinds = examples.kinds_line(would.added) or "nothing new"
    shown = f"{Path(upload).suffix[1:].upper()} columns" if seen.columns else would.fmt
    lines = [f"**Format:** {shown or 'unknown'}"]
    if seen.columns:
        lines.append("**Columns:** " + ", ".join(f"{column} → {ROLE_WORDS.get(role, role)}"
                                                   for column, role in seen.columns.items()))
    lines.append(f"**Would add:** {kinds} · **skip:** {would.repeated} repeated inside "
                 f"the file, {would.present} already stored · **bad rows:** "
                 f"{len(would.bad)}")
    if would.bad:
        first = html.escape(str(would.bad[0]), quote=False)
        lines.append(f"First bad row: {first}. " + (
            f"Import leaves out the {len(would.bad)} bad row{'s' * (len(would.bad) != 1)} "
            "and lists them in a report." if skip_bad else
            "Import refuses the file unless *Skip bad rows* is ticked."))
    return lines


def build(ui: Ui) -> None:
    handlers = ExampleHandlers(ui.ctx)
    meter = gr.HTML()
    with gr.Row():
        search = gr.Textbox(label="Search", placeholder="words in any message", scale=3)
        source = gr.Dropdown(SOURCE_CHOICES, value="all", label="Source", scale=1)
        refresh = gr.Button("Refresh", scale=0)
    table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, wrap=True,
                         elem_id="examples-table", max_height=420,
                         column_widths=COLUMN_WIDTHS,
                         label="Your examples: click one to edit it. Messages: how many "
                               "the conversation has (2: a question and its answer).")
    with gr.Row(elem_id="pager"):
        newer = gr.Button("◀ Newer", scale=0, size="sm", min_width=90, elem_id="newer-page")
        number = gr.Number(1, precision=0, minimum=1, show_label=False, scale=0,
                           min_width=90, container=False, elem_id="page-number")
        older = gr.Button("Older ▶", scale=0, size="sm", min_width=90, elem_id="older-page")
        where = gr.Markdown(elem_id="page-line")
    empty = gr.Markdown(elem_id="examples-empty")
    note = gr.Markdown(elem_id="examples-note")
    undo = gr.Button("Undo delete", visible=False, elem_id="undo-delete")
    selected, last_deleted, editing = gr.State(None), gr.State(None), gr.State([])
    with gr.Column(visible=False, elem_id=EDITOR) as editor:
        title = gr.Markdown()

        @gr.render(inputs=editing)
        def turn_boxes(messages: list[dict]):
            """One box per message, so Save takes exactly what is on the screen.
            interactive, said outright: left to Gradio, the boxes drawn in this render
            came out disabled, all but the system prompt's. Nothing kept by key: a box
            shows the example just opened, whatever was typed into the one before."""
            boxes = [gr.Textbox(m["content"], lines=2 if m["role"] == "system" else 3,
                                label="system prompt (optional)" if m["role"] == "system"
                                else m["role"], key=f"turn-{i}", elem_classes="turn-box",
                                interactive=True, preserved_by_key=None)
                     for i, m in enumerate(messages)]
            roles = gr.State([m["role"] for m in messages])
            save = gr.Button("Save changes", variant="primary", elem_id="save-example")
            inputs: list[gr.components.Component] = [selected, roles, *boxes]
            saved = save.click(shown_to_user(handlers.save), inputs, edited,
                               api_visibility="private")
            saved.success(**show)
            saved.success(None, js=SCROLL_TO_SAVED, api_visibility="private")

        # beside Save and the boxes below: the note above the table is out of view here
        edited = gr.Markdown(elem_id="editor-note")
        test_only = gr.Checkbox(label="Keep for testing only: never trained on, never placed "
                                "in a prompt; the report cards test every model on it",
                                elem_id="test-only")
        must_keep = gr.Checkbox(label="Must not change: every report card asks the plain "
                                "model and your tuned assistant this question and flags it "
                                "when an answer no longer has yours (its words in order, or "
                                "/a regex/)",
                                elem_id="must-keep")
        facts_check = gr.Checkbox(label="Facts check: the answer to this question must "
                                  "agree with my facts", elem_id="facts-check")
        delete = gr.Button("Delete example", variant="stop")
    with gr.Accordion("Import and export", open=False):
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="Import a file: JSONL, JSON, CSV, TSV, XLSX or "
                                       "Parquet", type="filepath", elem_id="import-file",
                                 file_types=[".jsonl", ".json", ".csv", ".tsv", ".xlsx",
                                             ".parquet"])
                import_format = gr.Dropdown(["auto"] + formats.import_formats(),
                                            value="auto", label="Format")
                mapping = gr.Textbox(label="Spreadsheet columns (optional)",
                                     placeholder="question=user,answer=assistant",
                                     info="which column is the user's message, the answer "
                                          "and the system prompt; by default common header "
                                          "names are recognised", elem_id="import-map")
                with gr.Row():
                    import_test = gr.Checkbox(label="For testing only (never trained on)")
                    skip_bad = gr.Checkbox(label="Skip bad rows (and list them in a report)",
                                           elem_id="skip-bad")
                looked = gr.Markdown(elem_id="import-preview")
                first_rows = gr.Dataframe(visible=False, interactive=False, wrap=True,
                                          label="The first rows, as they would be stored")
                import_button = gr.Button("Import", elem_id="import-button")
                imported = gr.Markdown(elem_id="import-result")
                skipped = gr.DownloadButton("Download the rows left out", visible=False,
                                            size="sm", elem_id="skipped-rows")
            with gr.Column():
                export_format = gr.Dropdown(
                    export_choices(), value="csv", label="Format",
                    info="A spreadsheet opens in Excel, Numbers or Google Sheets; the "
                         "other formats are for training tools.", elem_id="export-format")
                export_button = gr.Button("Export")
                download = gr.File(label="Download", interactive=False)

    outputs = [meter, table, empty, where, number]
    # Edits, deletes and imports redraw the page the user is on.
    show: dict[str, Any] = dict(fn=shown_to_user(handlers.overview),
                                inputs=[search, source, number], outputs=outputs,
                                api_visibility="private")
    for trigger in (search.submit, source.change):
        trigger(shown_to_user(handlers.first_page), [search, source], outputs,
                api_visibility="private")
    for trigger in (refresh.click, number.submit):
        trigger(**show)
    newer.click(lambda n: max(1, int(n or 1) - 1), number, number, api_visibility="private",
                show_progress="hidden").then(**show)
    older.click(lambda n: int(n or 1) + 1, number, number, api_visibility="private",
                show_progress="hidden").then(**show)
    assert ui.tab is not None
    ui.tab.select(**show)  # kept and corrected replies appear when the tab is opened
    ui.on_load(**{k: v for k, v in show.items() if k != "api_visibility"})
    chosen = table.select(shown_to_user(handlers.select), None,
                          [selected, title, editing, editor, test_only, must_keep],
                          api_visibility="private")
    chosen.success(None, js=SCROLL_TO_EDITOR, api_visibility="private")
    chosen.success(lambda: "", None, edited, api_visibility="private",
                   show_progress="hidden")  # it spoke of the example open before
    chosen.success(shown_to_user(handlers.is_facts_check), selected, facts_check,
                   api_visibility="private", show_progress="hidden")
    test_only.input(shown_to_user(handlers.set_test_only), [selected, test_only], edited,
                    api_visibility="private").success(**show).success(
        lambda keep, check, test: (keep and test, check and test),
        [must_keep, facts_check, test_only], [must_keep, facts_check],
        api_visibility="private")
    must_keep.input(shown_to_user(handlers.set_must_keep), [selected, must_keep],
                    [edited, test_only], api_visibility="private").success(**show)
    facts_check.input(shown_to_user(handlers.set_facts_check), [selected, facts_check],
                      [edited, test_only], api_visibility="private").success(**show)
    delete.click(shown_to_user(handlers.delete), selected, [note, last_deleted, undo, editor],
                 api_visibility="private").success(**show)
    undo.click(shown_to_user(handlers.undo_delete), last_deleted, [note, last_deleted, undo],
               api_visibility="private").success(**show)
    # The import says what it did beside its button (the note above the table is out of
    # view there), then the table follows what is stored now, and the preview says the
    # file is in.
    look: dict[str, Any] = dict(fn=shown_to_user(handlers.preview),
                                inputs=[upload, import_format, mapping, skip_bad],
                                outputs=[looked, first_rows, import_button],
                                api_visibility="private")
    done = import_button.click(shown_to_user(handlers.import_upload),
                               [upload, import_format, import_test, mapping, skip_bad],
                               imported, api_name="import_examples")
    done.success(**show)
    done.success(handlers.skipped_rows, [upload, imported], [skipped, imported],
                 api_visibility="private")
    done.success(handlers.imported, None, [looked, first_rows, import_button],
                 api_visibility="private")
    for change in (upload.change, import_format.change, mapping.submit, skip_bad.change):
        change(**look)
    upload.change(lambda: ("", gr.DownloadButton(visible=False)), None, [imported, skipped],
                  api_visibility="private")  # a new file
    export_button.click(shown_to_user(handlers.export_download), export_format,
                        [download, note], api_name="export_examples")
