import gradio as gr
import pytest

from assistant.engine import ContextTooLong
from services.context import Context
from storage import conversations
from web.app import build_app
from web.chat import ChatHandlers
from web.common import shown_to_user

from helpers import shown, voice_examples


@pytest.fixture
def actions(ctx):
    return ChatHandlers(ctx)


def chat_turn(actions, message, conversation_id=None, system="", shown_before=None):
    """Run one send to the end: (updates, final chat, conversation id)."""
    updates = list(actions.send(message, conversation_id, "base", system, shown_before))
    _, box, conversation_id, _ = updates[0]  # later updates leave the box alone (gr.skip)
    assert box == ""
    return updates, updates[-1][0], conversation_id


def test_send_streams_and_stores_both_turns(actions, store):
    updates, chat, conversation_id = chat_turn(actions, "What is the capital of France?",
                                               system="Be brief.")
    assert len(updates) > 3
    assert all(update[1:] == (gr.skip(), conversation_id, gr.skip()) for update in updates[1:])
    assert chat[-1] == {"role": "assistant", "content": "The capital of France is Paris."}
    stored = conversations.get_conversation(store, conversation_id)
    assert stored.system == "Be brief."
    assert [m["role"] for m in stored.messages] == ["user", "assistant"]


def test_second_message_continues_the_same_conversation(actions, store):
    _, chat, conversation_id = chat_turn(actions, "Say hello.")
    _, chat, same_id = chat_turn(actions, "Name a fruit.", conversation_id, shown_before=chat)
    assert same_id == conversation_id and len(chat) == 4
    assert len(conversations.get_conversation(store, conversation_id).messages) == 4


def test_a_message_sent_into_an_emptied_chat_starts_a_new_conversation(actions, store):
    """+ New conversation empties the chat in the page at once; a message sent before
    its server reply (which resets the id) arrives must not go on the old one."""
    _, _, first = chat_turn(actions, "Say hello.")
    _, chat, second = chat_turn(actions, "What colour is the sky?", first, shown_before=[])
    assert second != first and len(chat) == 2
    assert len(conversations.get_conversation(store, first).messages) == 2


def test_empty_message_sends_and_stores_nothing(actions, store):
    assert list(actions.send("   ", None, "base", "")) == [(gr.skip(),) * 4]
    assert conversations.list_conversations(store) == []


def test_too_long_message_is_refused_before_anything_is_stored(actions, store):
    with pytest.raises(ContextTooLong):
        list(actions.send("x" * 100_000, None, "base", ""))
    with pytest.raises(gr.Error, match="tokens"):
        list(shown_to_user(actions.send)("x" * 100_000, None, "base", ""))
    assert conversations.list_conversations(store) == []


def test_stopping_mid_reply_keeps_what_was_shown(actions, store):
    stream = actions.send("Say hello.", None, "base", "")
    _, _, conversation_id, _ = next(stream)
    next(stream)
    stream.close()
    stored = conversations.get_conversation(store, conversation_id).messages
    assert stored[0]["content"] == "Say hello."
    assert stored[1]["role"] == "assistant"
    assert "Hello! How can I help you today?".startswith(stored[1]["content"])


def test_a_reply_stopped_before_its_first_token_stores_nothing(actions, store):
    """Before: the message was stored without an answer, the next turn broke the
    alternation, and keep/correct in that conversation failed."""
    stream = actions.send("Say hello.", None, "base", "")
    _, _, conversation_id, _ = next(stream)
    stream.close()  # Stop, before any text
    assert conversations.get_conversation(store, conversation_id).messages == []
    assert conversations.list_conversations(store) == []  # nothing to reopen
    *_, (chat, _, conversation_id, _) = list(actions.send("Name a fruit.", conversation_id,
                                                       "base", "", []))
    assert [m["role"] for m in shown(actions.stored_chat(conversation_id))] == [
        "user", "assistant"]
    assert "Kept as example" in actions.judge(conversation_id, like(1))[0]


def test_an_unanswered_message_stored_by_an_older_version_is_skipped(actions, store):
    from sqlite_utils import Database

    conversation_id = conversations.start_conversation(store, "Say hello.")
    with store.connect() as db:
        Database(db.conn)["turns"].insert({"conversation_id": conversation_id, "position": 0,
                                           "role": "user", "content": "Say hello."})
    # sent on the conversation's id, as the API and a page that shows it do
    *_, (chat, *_) = list(actions.send("Name a fruit.", conversation_id, "base", "",
                                         ["Say hello."]))
    assert [m["content"] for m in chat] == ["Name a fruit.", "An apple is a fruit."]
    assert "Kept as example" in actions.judge(conversation_id, like(1))[0]


def like(index, liked=True):
    return gr.LikeData(None, {"index": index, "value": "", "liked": liked})


def test_earlier_conversation_reopens_with_its_system_prompt(actions):
    _, chat, conversation_id = chat_turn(actions, "Say hello.", system="Be kind.")
    messages, *rest = actions.reopen(conversation_id)
    assert (shown(messages), *rest) == (chat, conversation_id, "Be kind.", "base", "")
    picker = actions.earlier_conversations(conversation_id)
    assert picker.choices[0][1] == conversation_id
    assert picker.choices[0][0].startswith("Say hello.")


def test_app_builds_with_its_api_names(ctx):
    app = build_app(ctx)
    names = {d.api_name for d in app.fns.values() if d.api_visibility == "public"}
    assert names == {"chat", "adapters", "examples", "add_example", "correct",
                     "delete_example", "restore_example", "import_examples",
                     "export_examples", "compare", "vote", "train", "cancel_run",
                     "resume_run", "run_status", "eval", "add_check", "mark_facts_check",
                     "facts_add", "facts_list", "facts_delete"}


def test_app_builds_without_training(ctx, tiny_engine, store):
    app = build_app(Context(store, tiny_engine))
    names = {d.api_name for d in app.fns.values() if d.api_visibility == "public"}
    assert "train" not in names and "chat" in names


def test_validator_flags_an_unanswerable_message_on_the_message_box(actions):
    message_check, *others = actions.validate("x" * 100_000, None, "base", "")
    assert message_check["is_valid"] is False and "tokens" in message_check["message"]
    assert all(check["is_valid"] for check in others)
    assert actions.validate("Say hello.", None, "base", "")[0]["is_valid"] is True
    assert actions.validate("Say hello.", None, "gone", "")[0]["is_valid"] is False


def test_training_errors_reach_the_user_as_messages(ctx, store):
    from storage import runs
    from web.train import TrainHandlers

    actions = TrainHandlers(ctx)
    runs.create_run(store, {}, [])
    # a second Start (another tab) is told in the note, in the web app's words: no error
    assert shown_to_user(actions.start)("lora", 0, 1e-3, 16, None) == \
        "Run #1 is queued but never launched: wait for it to finish, or press Cancel."
    with pytest.raises(gr.Error, match="learning_rate"):
        shown_to_user(actions.start)("lora", 0, 5.0, 16, None)
    with pytest.raises(gr.Error, match="dpo alone tunes an adapter you already have"):
        shown_to_user(actions.start)("lora", 0, 1e-3, 16, None, "dpo")


def test_the_train_tab_counts_every_signal(ctx, store):
    from storage import examples
    from web.train import TrainHandlers

    examples.add_many(store, voice_examples(3), "kept")
    examples.add_example(store, voice_examples(4)[3], "corrected", rejected="Hi.")
    examples.add_example(store, [{"role": "user", "content": "Bye?"},
                                 {"role": "assistant", "content": "No."}], "disliked",
                         rejected="No.")
    signals = TrainHandlers(ctx).refresh()[4]
    assert signals == ("Learning from now: 4 kept, corrected, added or imported answers, "
                       "1 correction with a rejected side, 1 thumbs-down, 0 votes with a "
                       "winner.")


def test_the_report_card_before_any_adapter_says_so(ctx):
    from web.compare import NO_ADAPTER_YET, CompareHandlers

    handlers = CompareHandlers(ctx)
    assert handlers.card(None)[0] == handlers.follow(None, None)[0] == NO_ADAPTER_YET


def finished_run(store, adapter: str) -> int:
    from storage import runs

    run_id = runs.create_run(store, {}, [])
    runs.finish_run(store, run_id, "succeeded", adapter=adapter)
    return run_id


def test_model_lists_show_plain_words_and_hand_over_technical_names(ctx, store):
    """Before: every list showed base, base+examples, run-1."""
    from services import names
    from web.common import Ui, model_details

    ui = Ui(ctx)
    with gr.Blocks():
        dropdown = ui.model_list("Model", elem_id="model")
    assert dropdown.choices == [("The plain model", "base")] and dropdown.value == "base"
    finished_run(store, "run-1")
    (ctx.adapters_dir / "run-1").mkdir(parents=True)
    (ctx.adapters_dir / "run-1" / "adapter_config.json").write_text("{}")
    update = ui.lists[0].update(ctx)
    tuned = names.label(ctx, "run-1")
    assert tuned.startswith("Your assistant #")
    assert update.choices == [("The plain model", "base"), (tuned, "run-1")]
    assert update.value == "run-1"  # the technical name: every handler keeps working
    assert ui.lists[0].update(ctx).choices == update.choices  # a run's label is fixed
    shown = model_details(ctx, "run-1")  # folded under the list, one click away
    assert shown.startswith("<details><summary>details</summary><code>run-1</code>: ")
    assert model_details(ctx, "(a new adapter)") == ""


def plain_card(unscored: dict) -> dict:
    """A scored card of run-1: base+prompt skipped, 8 test examples it wins."""
    from services import report

    scores = {"base": 0.0, "base+examples": 0.0, "run-1": 100.0}
    rows = [{"id": i + 1, "source": "kept", "split": "held_out", "prompt": f"Q{i}?",
             "reference": f"A{i}.", "flips": {"run-1": "fixed"},
             "answers": {name: {"text": "...", "score": s} for name, s in scores.items()}}
            for i in range(8)]
    card = {"adapter": "run-1", "run": 1, "created_at": "2025-12-01T10:00:00+00:00", "n": 8,
            "skipped": [{"name": "base+prompt", "why": "no baseline system prompt is set: "
                         "... or pass `tunechat eval --system TEXT`"}],
            "test_examples": {"held_out": 8, "test_only": 0}, "left_out": [], "rows": rows,
            "contenders": [{"name": name, "score": s, "ci_low": s, "ci_high": s, "n": 8,
                            "prompt_tokens": 40, "latency_ms": 5, "scores": {"chrf": s},
                            "style": {}} for name, s in scores.items()],
            "measure": {"name": "chrf", "why": "chrF scores ...", "binary": False},
            "measures": [{"name": "chrf", "why": "chrF scores ..."}], "style_phrases": [],
            "votes": {"scored": 4, "agree": 4, "agreement": 100.0, "win_rates": [],
                      "unscored": unscored}}
    card["verdict"] = report.verdict(card, "run-1")
    return card


def test_the_report_card_speaks_plain_words_with_the_technical_ones_folded(ctx, store):
    """Before: base+examples, run-1, "held out by its run", "95%" and a `tunechat eval
    --system TEXT` to type, in a web page; "4 of the 4 votes it could score" after 5."""
    from services import names
    from storage import reports
    from web.compare import CompareHandlers

    reports.save_report(store, finished_run(store, "run-1"), "run-1",
                        plain_card({"same_score": 1}))
    _, summary, chart, table, _, _ = CompareHandlers(ctx).card("run-1")
    shown, folded = summary.split("<details><summary>Details: the technical words</summary>")
    tuned = names.label(ctx, "run-1")
    assert shown.startswith(f"### Was {tuned[0].lower() + tuned[1:]} worth it?")
    for jargon in ("run-1", "base+", "held out", "95%", "tunechat", "chrF", "baseline",
                   "p = ", "adjusted for", "prompt tokens"):
        assert jargon not in shown, jargon
    assert (f"**Yes: {tuned[0].lower() + tuned[1:]} does better than every option that needs "
            "no training.**") in shown
    assert "beats every option without training beyond chance on closeness to your " \
        "wording" in shown
    assert "chance alone gives a gap this big" in shown
    assert ("Not measured: the plain model + your instructions, because you have not written "
            "instructions yet. In the Train tab, open *Would a prompt have done as well?*") \
        in shown
    assert ("the automatic score picks the same winner as you in 4 of the 4 votes it could "
            "score (100%). Not scored: 1 vote where both answers scored the same") in shown
    for technical in ("`run-1`", "`base+examples`", "held out by its run", "95%",
                      "run-1 beats every option", "p = ", "(chrF)"):
        assert technical in folded, technical
    assert [row[0] for row in table] == ["The plain model",
                                         "The plain model + your examples", tuned]
    assert f">{tuned}</text>" in chart
