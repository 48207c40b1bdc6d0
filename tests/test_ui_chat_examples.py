"""What a small business owner ran into in the Chat and Examples tabs: a reload that
emptied the chat, examples that carried a reply she had corrected, an export in
engineers' formats first, an editor opened out of view, and edits during a run left
unexplained."""

import csv
import json

import gradio as gr
import pytest

from files import formats
from services import chat as chat_service
from services import examples as example_service
from services.context import Context
from storage import conversations, examples, runs
from storage.db import open_store
from web.app import build_app
from web.chat import ChatHandlers
from web.examples import (
    EDITOR,
    SCROLL_TO_EDITOR,
    SPREADSHEET,
    ExampleHandlers,
    export_choices,
)

from helpers import finished_turn, shown, voice_examples


@pytest.fixture
def chat(ctx):
    return ChatHandlers(ctx)


@pytest.fixture
def tab(store):
    return ExampleHandlers(Context(store))


def like(index):
    return gr.LikeData(None, {"index": index, "value": "", "liked": True})


def edit(index, text):
    return gr.EditData(None, {"index": index, "value": [{"type": "text", "text": text}],
                              "previous_value": ""})


def assistant_texts(example) -> list[str]:
    return [m["content"] for m in example.messages if m["role"] == "assistant"]


# 1. A reload reopens the most recent conversation.

def test_a_page_load_reopens_the_most_recent_conversation(chat, ctx):
    """Before: the load only listed earlier conversations; the chat came up empty."""
    finished_turn(chat, "Say hello.")
    conversation_id = finished_turn(chat, "Name a fruit.", system="Be brief.")
    finished_turn(chat, "Say hello.", conversation_id, system="Be brief.")
    shown_chat, opened, system, note, earlier, answered, prompt_box, *_ = chat.resume()
    assert opened == conversation_id and system == "Be brief."
    assert [m["content"] for m in shown(shown_chat)] == [
        m["content"] for m in conversations.get_conversation(ctx.store, opened).messages]
    assert len(shown(shown_chat)) == 4
    assert earlier.value == conversation_id and len(earlier.choices) == 2
    assert note.startswith("Your last conversation, where you left it.")
    assert answered.startswith("Answered by **The plain model**")
    # the model list is set on load to the conversation's model, which thumbs go on with
    assert chat_service.resumed_model(ctx) == "base"
    assert "Kept as example" in chat.judge(opened, like(3))[0]
    assert "1 kept" in chat.resume()[3]


def test_a_first_load_without_conversations_leaves_the_chat_empty(chat, ctx):
    shown_chat, opened, system, note, earlier, *_ = chat.resume()
    assert (shown_chat, opened, system, note) == (gr.skip(),) * 4
    assert earlier.choices == [] and earlier.value is None
    assert chat_service.resumed_model(ctx) == "base"


def test_the_app_reopens_on_load_and_sets_the_model_of_that_conversation(ctx):
    """The load is wired, and the chat's model list defaults to the reopened
    conversation's model (the model list's own load sets it: no second writer)."""
    app = build_app(ctx)
    loads = [d for d in app.fns.values()
             if any(trigger[1] == "load" for trigger in d.targets)]
    resume = [d for d in loads if getattr(d.fn, "__name__", "") == "resume"]
    assert len(resume) == 1
    outputs = {block.elem_id for block in resume[0].outputs}
    assert {"chat", "earlier-conversations", "chat-note", "answered-by"} <= outputs
    assert "chat-model" not in outputs


def test_a_reopened_conversation_whose_adapter_is_gone_shows_who_answered(chat, ctx):
    """Before: reopen dropped who wrote each reply when the adapter was gone, and the
    'Answered by' line then failed on a reload."""
    conversation_id = finished_turn(chat, "Say hello.")
    with ctx.store.connect() as db:
        db.execute("UPDATE conversations SET adapter = 'run-9' WHERE id = ?",
                   [conversation_id])
    reopened = chat_service.reopen(ctx, conversation_id)
    assert reopened.adapter == "base" and reopened.models == [None, "base"]
    assert chat.resume()[5].startswith("Answered by")


# 2. An example never carries a reply the user corrected, as the model wrote it.

def test_a_correction_reaches_the_examples_kept_before_it_in_that_conversation(chat, store):
    """Before: keep reply 2, then correct reply 1: example #1 still held the model's
    reply 1, which the user had rejected."""
    conversation_id = finished_turn(chat, "Name a fruit.")
    finished_turn(chat, "Say hello.", conversation_id)
    assert "Kept as example #1" in chat.judge(conversation_id, like(3))[0]
    first = examples.get_example(store, 1)
    assert assistant_texts(first)[0] == "An apple is a fruit."
    _, note = chat.correct_reply(conversation_id, edit(1, "A ripe mango."))
    assert "Correction saved as example #2" in note
    kept = examples.get_example(store, first.id)
    assert assistant_texts(kept) == ["A ripe mango.", assistant_texts(first)[1]]
    assert kept.source == "kept" and kept.rejected is None
    assert examples.get_example(store, 2).rejected == "An apple is a fruit."
    # corrected twice: the second correction reaches it too
    chat.correct_reply(conversation_id, edit(1, "A pear."))
    assert assistant_texts(examples.get_example(store, first.id))[0] == "A pear."
    assert examples.list_examples(store, "ripe mango") == []  # searched as it reads now


def test_an_example_kept_later_holds_the_correction_as_it_was_edited(chat, tab, store):
    """A correction edited in the Examples tab is the user's latest word on that reply."""
    conversation_id = finished_turn(chat, "Name a fruit.", system="Be brief.")
    chat.correct_reply(conversation_id, edit(1, "A pear."))
    correction = examples.get_example(store, 1)
    edited = [m["content"] for m in correction.messages[:-1]] + ["A pear, ripe."]
    tab.save(correction.id, [m["role"] for m in correction.messages], *edited)
    finished_turn(chat, "Say hello.", conversation_id, system="Be brief.")
    assert "Kept as example #2" in chat.judge(conversation_id, like(3))[0]
    kept = examples.get_example(store, 2)
    assert kept.messages[0] == {"role": "system", "content": "Be brief."}
    assert assistant_texts(kept)[0] == "A pear, ripe."


def test_a_correction_from_outside_the_chat_uses_earlier_corrections(ctx, store):
    """The /correct route: a longer conversation that still holds a reply corrected
    before is stored with that correction."""
    start = [{"role": "user", "content": "Dogs allowed?"},
             {"role": "assistant", "content": "Yes, bring them!"}]
    example_service.correct(ctx, start, "No dogs, sorry.")
    longer = start + [{"role": "user", "content": "Sundays?"},
                      {"role": "assistant", "content": "Open all day."}]
    saved = example_service.correct(ctx, longer, "Closed on Sundays.")
    stored = examples.get_example(store, saved.example_id)
    assert assistant_texts(stored) == ["No dogs, sorry.", "Closed on Sundays."]
    assert stored.rejected == "Open all day."


# 3. Export: the spreadsheet first, with headers in plain words, and it imports back.

def test_the_export_offers_the_spreadsheet_first_and_chooses_it(ctx):
    choices = export_choices()
    assert choices[0] == (SPREADSHEET, "csv") == ("Spreadsheet (CSV)", "csv")
    assert [name for _, name in choices[1:]] == [
        name for name in formats.export_formats() if name != "csv"]
    app = build_app(ctx)
    [dropdown] = [b for b in app.blocks.values() if getattr(b, "elem_id", None) ==
                  "export-format"]
    assert dropdown.value == "csv" and dropdown.choices[0] == (SPREADSHEET, "csv")


def test_a_csv_export_reads_question_answer_and_imports_into_a_fresh_home(tab, store,
                                                                        tmp_path):
    examples.add_example(store, [{"role": "system", "content": "Be kind."},
                                 {"role": "user", "content": "Dogs?"},
                                 {"role": "assistant", "content": "No dogs, sorry."},
                                 {"role": "user", "content": "Cats?"},
                                 {"role": "assistant", "content": "No cats either."}], "kept")
    examples.add_example(store, [{"role": "user", "content": "Open Sundays?"},
                                 {"role": "assistant", "content": "=Closed"}], "corrected",
                         rejected="Open.")
    path, note = tab.export_download("csv")
    assert note == "✓ Wrote 2 examples to tunechat-examples.csv."
    with open(path, encoding="utf-8-sig", newline="") as sheet:
        rows = list(csv.reader(sheet))
    assert rows[0] == ["question", "answer", "system", "history"]
    assert rows[1][:3] == ["Cats?", "No cats either.", "Be kind."]
    assert json.loads(rows[1][3]) == [["Dogs?", "No dogs, sorry."]]
    fresh = open_store(tmp_path / "fresh-home")
    assert formats.preview(fresh, path).columns == {"question": "user", "answer": "assistant",
                                                    "system": "system"}
    assert formats.import_file(fresh, path).added == {"example": 2}
    assert [e.messages for e in examples.list_examples(fresh)] == [
        e.messages for e in examples.list_examples(store)]


def test_the_command_line_keeps_its_format_names(tmp_path):
    from app import build_parser

    for name in ("openai", "alpaca", "sharegpt", "prompt-completion", "preference",
                 "openai-preference", "unpaired", "csv"):
        args = build_parser().parse_args(["export", str(tmp_path / "x"), "--format", name])
        assert args.format == name
    assert build_parser().parse_args(["export", str(tmp_path / "x")]).format == "openai"


# 4. The editor comes into view when a row is chosen.

def test_choosing_a_row_scrolls_the_editor_into_view(ctx):
    app = build_app(ctx)
    [editor] = [b for b in app.blocks.values() if getattr(b, "elem_id", None) == EDITOR]
    assert isinstance(editor, gr.Column)
    assert f"getElementById('{EDITOR}')" in SCROLL_TO_EDITOR
    assert "scrollIntoView({block: 'nearest'" in SCROLL_TO_EDITOR
    scrolls = [d for d in app.fns.values() if d.js == SCROLL_TO_EDITOR]
    assert len(scrolls) == 1 and scrolls[0].fn is None
    select = app.fns[scrolls[0].trigger_after]
    assert select.targets[0][1] == "select" and select.fn.__name__ == "select"


# 5. The editor says when a run trains on a copy taken before the edit.

def test_the_editor_says_a_running_run_trains_on_a_copy(tab, store):
    example_id = examples.add_example(store, voice_examples(1)[0], "kept")
    [row] = tab.overview()[1]
    event = gr.SelectData(None, {"index": [0, 1], "value": "", "row_value": row})
    assert "edits count" not in tab.select(event)[1]  # no run: nothing to say
    line = ("Run #1 is training on a copy of your examples taken when it started: edits "
            "count from the next run.")
    run_id = runs.create_run(store, {}, [])
    assert "is about to train on a copy" in tab.select(event)[1]  # queued
    runs.update_run(store, run_id, status="running")
    _, title, messages, *_ = tab.select(event)
    assert title.endswith("\n\n" + line)
    saved = tab.save(example_id, [m["role"] for m in messages],
                     *[m["content"] for m in messages[:-1]], "Hi, edited.")
    assert saved == f"✓ Saved example #{example_id}. {line}"
    runs.finish_run(store, run_id, "succeeded")
    assert "edits count" not in tab.select(event)[1]
