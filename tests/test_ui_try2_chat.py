"""What a bike shop owner ran into in the Chat and Examples tabs (second try): a new
chat on another model than the one the Train tab announced, a Model list too narrow to
tell two tuned models apart, notes that went stale, a correction box out of view,
technical words, and an import preview that read as if nothing had been imported."""

import gradio as gr
import pytest

from services import chat as chat_service
from services import facts, models, names
from storage import runs
from web.app import build_app
from web.chat import CORRECTION_BOX, MODEL_WIDTH, ChatHandlers
from web.examples import HELD_OUT, ExampleHandlers, readiness_html

from helpers import finished_turn


@pytest.fixture
def chat(ctx):
    return ChatHandlers(ctx)


def tuned(ctx, store, adapter: str) -> str:
    """A finished run with an adapter folder (never loaded here): its label."""
    run_id = runs.create_run(store, {}, [])
    runs.finish_run(store, run_id, "succeeded", adapter=adapter)
    folder = ctx.adapters_dir / adapter
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    return names.label(ctx, adapter)


def like(index, liked=True):
    return gr.LikeData(None, {"index": index, "value": "", "liked": liked})


def event(app, elem_id: str, name: str):
    """The app's listeners on a component's event."""
    ids = {block._id for block in app.blocks.values()
           if getattr(block, "elem_id", None) == elem_id}
    return [d for d in app.fns.values() if any((t[0] in ids and t[1] == name)
                                               for t in d.targets)]


# 1. A new chat starts on the model the app says new chats use, unless she picked one.

def test_a_new_conversation_takes_the_model_in_use_unless_she_picked_another(chat, ctx,
                                                                             store):
    """Before: the list, set on load to her last conversation's model (the plain model),
    made + New conversation say "The plain model, the one you picked", while the Train
    tab said new chats use the tuned one."""
    first = tuned(ctx, store, "run-1")
    models.promote(ctx, "run-1")
    _, _, _, model, note, *_ = chat.start_over("base")  # the list, as a page load set it
    assert model == "run-1"
    assert note.startswith(f"New conversation with **{first}**, as chosen in the Compare "
                           "or Train tab.")
    # she picks the plain model herself: new conversations keep it
    picked, cleared = chat.pick("base")
    # the note that spoke of the model before goes: it says what the pick does
    assert cleared == "Your next message goes to **the plain model**, and so do new " \
        "conversations, until you pick another."
    _, _, _, model, note, *_ = chat.start_over("base", picked)
    assert model == "base" and ", the one you picked." in note
    # a run replaces the model in use: her earlier pick no longer holds
    second = tuned(ctx, store, "run-2")
    models.promote(ctx, "run-2")
    _, _, _, model, note, *_ = chat.start_over("base", picked)
    assert model == "run-2" and f"**{second}**, as chosen in" in note
    # picked since: it holds, until the list is set to another model on its own (reopen)
    picked, _ = chat.pick("run-1")
    assert chat.start_over("run-1", picked)[3] == "run-1"
    assert chat.start_over("base", picked)[3] == "run-2"
    # picking the model in use is said as the model in use
    picked, _ = chat.pick("run-2")
    assert ", as chosen in the Compare or Train tab" in chat.start_over("run-2", picked)[4]


def test_before_any_tuned_model_a_new_conversation_says_so(chat, ctx):
    _, _, _, model, note, *_ = chat.start_over("base")
    assert model == "base" and "The plain model**, no tuned model is in use yet" in note
    assert chat_service.starting_model(ctx, "run-9", "base") == ("base", False)  # gone


def test_the_model_list_moves_to_the_model_new_chats_use_when_it_changes(chat, ctx, store):
    """The app's one-second timer sets the hidden "in use" state; its change moves the
    Model list (a page load only notes it: the load shows the reopened conversation's
    model), and a pick is the user's own event (.input), never a load or a reopen."""
    app = build_app(ctx)
    [follow] = [d for d in app.fns.values() if name_of(d) == "follow_in_use"]
    watch = follow.inputs[0]
    assert isinstance(watch, gr.State) and (watch._id, "change") in follow.targets
    assert "chat-model" in {getattr(b, "elem_id", None) for b in follow.outputs}
    [tick] = [d for d in app.fns.values() if any(t[1] == "tick" for t in d.targets)
              and watch._id in [b._id for b in d.outputs]]
    position = [block._id for block in tick.outputs].index(watch._id)
    [load] = [d for d in app.fns.values() if any(t[1] == "load" for t in d.targets)
              and watch._id in [b._id for b in d.outputs]]
    assert load.fn()[[b._id for b in load.outputs].index(watch._id)] == "base"
    known = tick.fn(None)[-1]
    assert tick.fn(None)[position] == "base"
    tuned(ctx, store, "run-1")
    assert tick.fn(known)[position] == "base"  # a new adapter alone: the state stays
    models.promote(ctx, "run-1")
    assert tick.fn(known)[position] == "run-1"

    skip = gr.skip()
    assert chat.follow_in_use("base", None, "base", None) == ("base", skip, skip, skip)  # load
    assert chat.follow_in_use("base", "base", "run-1", None)[1:] == (skip, skip, skip)
    seen, moved, note, pick = chat.follow_in_use("run-1", "base", "base", None)
    assert (seen, moved, pick) == ("run-1", "run-1", skip)
    assert note.startswith(f"New chats use **{names.label(ctx, 'run-1')}** now, as chosen "
                           "in the Compare or Train tab. The *Model* list moved to it")
    assert chat.follow_in_use("run-1", "base", "run-1", None)[1:] == (skip, skip, skip)
    # a model she picked herself stays picked, for her next new conversation too
    seen, moved, note, pick = chat.follow_in_use("run-1", "base", "base", ["base", "base"])
    assert (seen, moved, pick) == ("run-1", skip, ["base", "run-1"])
    assert "You picked **" in note and "the *Model* list stays on it" in note
    assert chat_service.starting_model(ctx, *pick) == ("base", True)
    # on a line of its own: what a keep, a correction or a new conversation said stays
    assert "chat-moved" in {getattr(b, "elem_id", None) for b in follow.outputs}
    assert "chat-note" not in {getattr(b, "elem_id", None) for b in follow.outputs}
    # only her own choice is a pick: .input (a load, a reopen or the move fire .change)
    [pick] = event(app, "chat-model", "input")
    assert name_of(pick) == "pick"
    assert all(name_of(d) != "pick" for d in event(app, "chat-model", "change"))


def name_of(dependency) -> str:
    return getattr(dependency.fn, "__name__", "")


# 2. The Model list is wide enough for a tuned model's whole name.

def test_the_model_list_is_wide_enough_for_the_longest_label(ctx):
    """Before: 236 px at 1366x800: "Your assistant tuned Dec 2 13:3", the arrow over the
    digit that tells two tuned models apart."""
    app = build_app(ctx)
    [dropdown] = [b for b in app.blocks.values()
                  if getattr(b, "elem_id", None) == "chat-model"]
    column = dropdown.parent
    while not isinstance(column, gr.Column):  # Gradio puts a form around it
        column = column.parent
    assert column.min_width == MODEL_WIDTH
    # about 7 px a letter in the page's font, and the arrow and padding around it
    for label in ("Your assistant #12, tuned Dec 12 13:47", "The plain model + your examples"):
        assert 7 * len(label) + 80 <= MODEL_WIDTH


# 3. Notes that do not go stale.

def test_chat_notes_leave_the_count_to_the_header(chat, ctx):
    """Before: "✓ Kept as example #3. 2 of 20 examples for the first run." stayed under
    the chat after the run, while the header said 0 of 20."""
    conversation_id = finished_turn(chat, "Say hello.")
    assert chat.judge(conversation_id, like(1))[0] == "✓ Kept as example #1."
    assert "1 of 20 examples for the first run" in chat.intro()
    conversation_id = finished_turn(chat, "Name a fruit.")
    note = chat.judge(conversation_id, like(1, False))[0]
    assert note == ("✓ Marked as a bad answer (#2): never imitated; runs that learn what to "
                    "avoid (Train tab, *What to learn from*) learn from it. If you know a "
                    "better answer, write it below.")
    _, note = chat._correct(conversation_id, 1, "A ripe mango.")
    assert note == "✓ Correction saved as example #2, instead of a bad answer."


def test_a_sent_message_or_a_picked_model_clears_the_note(ctx):
    """Before: "New conversation with The plain model, the one you picked" stayed above
    "Answered by Your assistant tuned ..." after she picked another model and chatted."""
    app = build_app(ctx)
    for elem_id, name in (("chat-message", "submit"), ("chat-send", "click")):
        cleared = [d for d in event(app, elem_id, name)
                   if d.fn is None and [b.elem_id for b in d.outputs] == ["chat-note",
                                                                        "chat-moved"]]
        assert len(cleared) == 1 and cleared[0].js and "['', '']" in cleared[0].js
    [pick] = event(app, "chat-model", "input")
    assert "chat-note" in {getattr(b, "elem_id", None) for b in pick.outputs}


# 4. The correction box comes into view.

def test_a_thumbs_down_brings_the_correction_box_into_view(ctx):
    app = build_app(ctx)
    [liked] = event(app, "chat", "like")
    [scroll] = [d for d in app.fns.values() if d.trigger_after == liked._id and d.js]
    assert scroll.trigger_only_on_success and scroll.fn is None
    assert f"getElementById('{CORRECTION_BOX}')" in scroll.js
    assert "scrollIntoView({block: 'nearest'" in scroll.js
    assert any(getattr(b, "elem_id", None) == CORRECTION_BOX for b in app.blocks.values())


# 5. Plain words in the Examples tab.

def test_the_examples_tab_speaks_plain_words(ctx, store):
    from services import training

    meter = readiness_html({s: 0 for s in ("kept", "corrected", "imported", "added",
                                           "disliked", "vote")},
                           "3 of 20 examples for the first run", training.auto_start(ctx))
    for jargon in ("adapter", "objective", "held out", "sft", "kto"):
        assert jargon not in meter.lower()
    assert "set aside to test" in meter and "your tuned assistant" in meter
    assert HELD_OUT.format(run=1) == "set aside to test run #1"
    app = build_app(ctx)
    labels = [b.label for b in app.blocks.values() if isinstance(b, gr.Checkbox)
              and b.elem_id in ("test-only", "must-keep")]
    assert len(labels) == 2 and not any("adapter" in label for label in labels)


# 6. After an import, the preview no longer reads as if nothing happened.

def test_after_an_import_the_preview_says_the_file_is_in(ctx, store, tmp_path):
    """Before: "Would add: nothing new ... 25 already stored" beside the ✓ line."""
    tab = ExampleHandlers(ctx)
    upload = tmp_path / "spokes.csv"
    upload.write_text("question,answer\nFlat tyre?,€12.\nChain?,€25.\n", encoding="utf-8")
    assert "**Would add:** 2 examples" in tab.preview(str(upload), "auto")[0]
    assert tab.import_upload(str(upload), "auto").startswith("✓ Imported 2 examples")
    looked, rows, button = tab.imported()
    assert looked.startswith("**Imported:**") and "nothing new" not in looked
    assert rows.visible is False and button.interactive is False
    # her prices belong in Facts too (the bike-shop try: a tuned model alone got them
    # wrong); said until she has facts
    assert "put them in the *Facts* tab too" in looked
    facts.add_text(ctx, "A flat tyre fix is €12.")
    assert "Facts" not in tab.imported()[0]
    app = build_app(ctx)
    [clicked] = event(app, "import-button", "click")
    [after] = [d for d in app.fns.values() if d.trigger_after == clicked._id
               and "import-preview" in [b.elem_id for b in d.outputs]]
    assert name_of(after) == "imported" and after.trigger_only_on_success
