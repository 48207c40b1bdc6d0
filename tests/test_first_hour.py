"""Issue: a first hour without surprises. Each bug found by using the app in a browser
has a test here (handlers and services) or in test_session.py (one browser session)."""

import time

import gradio as gr
import pytest

from assistant.engine import GenerationSettings, repeats_at_end
from services import examples as example_actions
from services import models, training
from storage import conversations, examples, runs
from supervision.jobs import Jobs
from trainer.config import TrainConfig
from web.chat import ChatHandlers
from web.examples import ExampleHandlers
from web.train import TrainHandlers, eta_seconds, held_out_worse, status_html

from helpers import fill, voice_examples
from helpers import shown as messages_of


class Request:
    """What Gradio hands a handler that asks for the request: the browser session."""

    def __init__(self, session: str = "s1"):
        self.session_hash = session


def like(index, liked):
    return gr.LikeData(None, {"index": index, "value": "", "liked": liked})


@pytest.fixture
def chat(ctx):
    return ChatHandlers(ctx)


def first_turn(chat, message="Say hello."):
    return list(chat.send(message, None, "base", "", [], request=Request()))[0][2]


def test_stop_ends_the_reply_at_the_next_token_and_keeps_what_was_shown(chat, store):
    chat.validate("What colour is the sky?", None, "base", "", [], request=Request())
    stream = chat.send("What colour is the sky?", None, "base", "", [], request=Request())
    _, _, conversation_id, _ = next(stream)
    shown, *_ = next(stream)
    chat.stop(Request())
    rest = list(stream)
    assert len(rest) <= 2  # at most the piece already on its way, and the note
    assert rest[-1][3].startswith("■ Stopped where you pressed Stop")  # not cut in silence
    stored = conversations.get_conversation(store, conversation_id).messages
    assert stored[1]["content"] != "The sky is blue on a clear day."
    assert "The sky is blue on a clear day.".startswith(stored[1]["content"])


def test_stop_pressed_right_after_enter_answers_nothing_and_gives_the_message_back(chat,
                                                                                  store):
    chat.validate("Say hello.", None, "base", "", [], request=Request())
    chat.stop(Request())  # before the reply began
    *_, (shown, box, conversation_id, _) = list(chat.send("Say hello.", None, "base", "",
                                                       [], request=Request()))
    assert box == "Say hello." and shown == []
    assert conversations.list_conversations(store) == []
    # Stop pressed when nothing streams does not stop the next message.
    chat.validate("Say hello.", conversation_id, "base", "", shown, request=Request())
    *_, (shown, *_) = list(chat.send("Say hello.", conversation_id, "base", "", shown,
                                       request=Request()))
    assert shown[-1]["content"] == "Hello! How can I help you today?"


def test_another_tabs_stop_does_not_stop_this_one(chat):
    chat.validate("Say hello.", None, "base", "", [], request=Request("mine"))
    chat.stop(Request("theirs"))
    *_, (shown, *_) = list(chat.send("Say hello.", None, "base", "", [],
                                       request=Request("mine")))
    assert shown[-1]["content"] == "Hello! How can I help you today?"


def test_thumbs_up_on_a_correction_keeps_the_pair(chat, store):
    """Before: it turned the correction into "kept" and dropped its rejected side."""
    conversation_id = first_turn(chat, "Name a fruit.")
    chat.correct_reply(conversation_id, gr.EditData(None, {"index": 1, "value": "A pear.",
                                                           "previous_value": ""}))
    note = chat.judge(conversation_id, like(1, True))[0]
    assert note.startswith("⚠") and "your correction" in note
    [pair] = examples.list_examples(store)
    assert (pair.source, pair.answer, pair.rejected) == ("corrected", "A pear.",
                                                         "An apple is a fruit.")


def test_a_lit_thumb_pressed_again_undoes_it(chat, store):
    conversation_id = first_turn(chat)
    assert "Kept as example #1" in chat.judge(conversation_id, like(1, True))[0]
    note = chat.judge(conversation_id, like(1, ""))[0]  # Gradio sends "" when unlit
    assert note.startswith("✓ Undone: #1 (kept)")
    assert examples.list_examples(store) == []
    # pressed again: the same example, its number not used up by the press taken back
    assert "Kept as example #1" in chat.judge(conversation_id, like(1, True))[0]
    chat.judge(conversation_id, like(1, ""))
    assert "bad answer (#1)" in chat.judge(conversation_id, like(1, False))[0]
    [disliked] = examples.list_examples(store)
    assert (disliked.id, disliked.source) == (1, "disliked")


def test_thumbs_down_opens_the_correction_box_with_the_original(chat, store):
    conversation_id = first_turn(chat, "Name a fruit.")
    note, box, original, text, index = chat.judge(conversation_id, like(1, False))
    assert "bad answer" in note and box.visible is True
    assert original == text == "An apple is a fruit." and index == 1
    shown, saved, box = chat.save_correction(conversation_id, index, "A ripe mango.")
    assert "Correction saved as example #1, instead of a bad answer" in saved
    assert box.visible is False and messages_of(shown)[1]["content"] == "A ripe mango."
    [pair] = examples.list_examples(store)
    assert (pair.source, pair.rejected) == ("corrected", "An apple is a fruit.")


def test_a_reopened_conversation_shows_its_thumbs(chat, store):
    conversation_id = first_turn(chat)
    list(chat.send("Name a fruit.", conversation_id, "base", "", ["shown"], request=Request()))
    chat.judge(conversation_id, like(1, True))
    chat.judge(conversation_id, like(3, False))
    shown, _, _, _, note = chat.reopen(conversation_id)
    assert shown.feedback_value == ["Like", "Dislike"]
    assert note.startswith("In this conversation: 1 kept, 1 marked as bad")


def test_notes_count_examples_the_same_way_everywhere(chat, ctx, store):
    training.set_threshold(ctx, 20)
    conversation_id = first_turn(chat)
    note = chat.judge(conversation_id, like(1, True))[0]
    assert note == "✓ Kept as example #1."  # the chat's header counts (never stale)
    meter, *_ = ExampleHandlers(ctx).overview()
    assert "1 of 20 examples for the first run" in meter
    assert "1 of 20 examples for the first run" in chat.intro()
    list(chat.send("Name a fruit.", conversation_id, "base", "", ["shown"], request=Request()))
    note = chat.judge(conversation_id, like(3, False))[0]
    assert note.endswith("If you know a better answer, write it below.")
    assert "1 of 20 examples for the first run" in chat.intro()  # a thumbs-down is not one


def test_new_conversation_starts_on_the_chat_default(chat, ctx, two_adapters):
    import shutil

    shutil.copytree(two_adapters, ctx.store.home / "adapters")
    models.promote(ctx, "lumen")
    assert chat.start_over()[3] == "lumen"


def test_examples_editor_saves_what_is_on_the_screen(ctx, store):
    """Before: Save after editing a turn without confirming the edit box said "Saved"
    and threw the edit away. Now each message is a box, and Save takes them as shown."""
    tab = ExampleHandlers(ctx)
    example_id = examples.add_example(store, voice_examples(1)[0])
    [row] = tab.overview()[1]
    event = gr.SelectData(None, {"index": [0, 1], "value": "", "row_value": row})
    chosen, _, messages, _, _, _ = tab.select(event)
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    roles = [m["role"] for m in messages]
    assert "Saved" in tab.save(chosen, roles, "", "Say hello number 0.", "Hi! Edited.")
    assert examples.get_example(store, example_id).answer == "Hi! Edited."


def test_the_table_marks_held_out_examples_and_says_no_matches(ctx, store):
    fill(store, 24)
    run_id = training.prepare(ctx, TrainConfig())
    meter, rows, empty, *_ = ExampleHandlers(ctx).overview()
    held = [row for row in rows if f"set aside to test run #{run_id}" in row[5]]
    assert len(held) == 5 and empty == ""
    assert ExampleHandlers(ctx).overview("nothing like this")[2].startswith("No matches")
    runs.finish_run(store, run_id, "cancelled")


def test_time_left_counts_only_training_steps():
    """Before: loading and the first evaluation counted as steps (785 s shown, 95 real)."""
    now = time.time()
    run = {"status": "running", "step": 3, "total_steps": 60, "started_at": "2026-01-01",
           "losses": [{"step": 1, "loss": 2.0, "t": now - 2.0}, {"step": 2, "loss": 1.9,
                      "t": now - 1.0}, {"step": 3, "loss": 1.8, "t": now}]}
    assert eta_seconds(run) == pytest.approx(57.0)
    assert eta_seconds({**run, "losses": run["losses"][:1]}) is None


def test_threshold_box_shows_zero_when_auto_start_is_off(ctx):
    training.set_threshold(ctx, 0)
    assert TrainHandlers(ctx).threshold_box() == 0
    training.set_threshold(ctx, 25)
    assert TrainHandlers(ctx).threshold_box() == 25


def test_a_run_worse_than_what_it_continued_says_so():
    run = {"status": "succeeded", "config": {"continue_from": "run-1"}, "adapter": "run-2",
           "id": 2, "metrics": {"eval_loss_before": 1.0, "eval_loss_after": 1.4}}
    assert held_out_worse(run) == \
        "worse than run-1, which it continued, on examples it never saw (held-out loss)"
    assert "worse than run-1" in status_html(run, training.AutoStart(True, 20, 0), "x")
    better = {"eval_loss_before": 1.4, "eval_loss_after": 1.0}
    assert held_out_worse({**run, "metrics": better}) == ""


def test_a_looping_reply_is_ended(tiny_engine):
    assert repeats_at_end([1, 2, 3, 4, 5, 6, 7, 8] * 2)
    assert repeats_at_end([9] * 16) and not repeats_at_end([9] * 15)
    assert not repeats_at_end(list(range(100)) + [1, 2, 3, 1, 2, 3])
    prompt = [{"role": "user", "content": "Something it never learned, so it rambles"}]
    endless = tiny_engine.reply(prompt, settings=GenerationSettings(max_new_tokens=200,
                                                                    stop_loops=False))
    stopped = tiny_engine.reply(prompt, settings=GenerationSettings(max_new_tokens=200))
    assert endless.startswith(stopped) and len(stopped) < len(endless)
    # and says so: a reply cut mid-sentence is never cut in silence
    cuts: list[str] = []
    "".join(tiny_engine.stream(prompt, settings=GenerationSettings(max_new_tokens=200),
                               cut=cuts.append))
    assert cuts == ["loop"]
    "".join(tiny_engine.stream(prompt, settings=GenerationSettings(max_new_tokens=3,
                                                                   stop_loops=False),
                               cut=cuts.append))
    assert cuts == ["loop", "length"]
    "".join(tiny_engine.stream([{"role": "user", "content": "Say hello."}], cut=cuts.append))
    assert cuts == ["loop", "length"]  # an answer that ended: nothing said


def test_the_chat_says_when_a_reply_was_cut(chat, ctx, monkeypatch):
    def looping(messages, adapter, settings, stop, cut):
        yield "Breathe in, breathe out, breathe in"
        cut("loop")

    monkeypatch.setattr(ctx.engine, "stream", looping)
    *_, (shown, *_), (_, _, _, note) = list(chat.send("Any tips?", None, "base", "", [],
                                                       request=Request()))
    assert shown[-1]["content"] == "Breathe in, breathe out, breathe in"
    assert note.startswith("✂ The reply was cut where it started repeating itself")


def test_the_trainer_runs_below_the_app(store, tiny_model_dir):
    """Chat replies stay quick while a run trains on a machine with few cores."""
    import os

    fill(store, 12)
    jobs = Jobs(store, tiny_model_dir)
    run_id = jobs.start(TrainConfig(epochs=4, batch_size=2))
    deadline = time.monotonic() + 60
    while runs.get_run(store, run_id)["status"] == "queued" and time.monotonic() < deadline:
        time.sleep(0.05)
    run = runs.get_run(store, run_id)
    niceness = os.getpriority(os.PRIO_PROCESS, run["pid"]) if run["status"] == "running" \
        else None
    assert jobs.wait(run_id)["status"] == "succeeded"
    assert niceness is not None and niceness >= os.getpriority(os.PRIO_PROCESS, 0) + 10


def test_saved_message_for_an_addition_from_the_api(ctx):
    saved = example_actions.add(ctx, voice_examples(1)[0])
    assert saved.message().startswith("✓ Added example #1. 1 of 20 examples for the first run")
