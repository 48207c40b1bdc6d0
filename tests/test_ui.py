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


def chat_turn(actions, message, conversation_id=None, system=""):
    """Run one send to the end: (updates, final chat, conversation id)."""
    updates = list(actions.send(message, conversation_id, "base", system))
    _, box, conversation_id = updates[0]  # later updates leave both alone (gr.skip)
    assert box == ""
    return updates, updates[-1][0], conversation_id


def test_send_streams_and_stores_both_turns(actions, store):
    updates, chat, conversation_id = chat_turn(actions, "What is the capital of France?",
                                               system="Be brief.")
    assert len(updates) > 3
    assert all(update[1:] == (gr.skip(), gr.skip()) for update in updates[1:])
    assert chat[-1] == {"role": "assistant", "content": "The capital of France is Paris."}
    stored = conversations.get_conversation(store, conversation_id)
    assert stored.system == "Be brief."
    assert [m["role"] for m in stored.messages] == ["user", "assistant"]


def test_second_message_continues_the_same_conversation(actions, store):
    _, _, conversation_id = chat_turn(actions, "Say hello.")
    _, chat, same_id = chat_turn(actions, "Name a fruit.", conversation_id)
    assert same_id == conversation_id and len(chat) == 4
    assert len(conversations.get_conversation(store, conversation_id).messages) == 4


def test_empty_message_sends_and_stores_nothing(actions, store):
    assert list(actions.send("   ", None, "base", "")) == [(gr.skip(),) * 3]
    assert conversations.list_conversations(store) == []


def test_too_long_message_is_refused_before_anything_is_stored(actions, store):
    with pytest.raises(ContextTooLong):
        list(actions.send("x" * 100_000, None, "base", ""))
    with pytest.raises(gr.Error, match="tokens"):
        list(shown_to_user(actions.send)("x" * 100_000, None, "base", ""))
    assert conversations.list_conversations(store) == []


def test_stopping_mid_reply_keeps_what_was_shown(actions, store):
    stream = actions.send("Say hello.", None, "base", "")
    _, _, conversation_id = next(stream)
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
    _, _, conversation_id = next(stream)
    stream.close()  # Stop, before any text
    assert conversations.get_conversation(store, conversation_id).messages == []
    assert conversations.list_conversations(store) == []  # nothing to reopen
    *_, (chat, _, _) = list(actions.send("Name a fruit.", conversation_id, "base", ""))
    assert [m["role"] for m in shown(actions.stored_chat(conversation_id))] == [
        "user", "assistant"]
    assert "Kept as example" in actions.judge(conversation_id, like(1))[0]


def test_an_unanswered_message_stored_by_an_older_version_is_skipped(actions, store):
    from sqlite_utils import Database

    conversation_id = conversations.start_conversation(store, "Say hello.")
    with store.connect() as db:
        Database(db.conn)["turns"].insert({"conversation_id": conversation_id, "position": 0,
                                           "role": "user", "content": "Say hello."})
    *_, (chat, _, _) = list(actions.send("Name a fruit.", conversation_id, "base", ""))
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
                     "resume_run", "run_status", "eval", "add_check"}


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
    with pytest.raises(gr.Error, match="Run #1 is queued but never launched.*tunechat cancel 1"):
        shown_to_user(actions.start)("lora", 0, 1e-3, 16, None)
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
    *_, signals = TrainHandlers(ctx).refresh()
    assert signals == ("Learning from now: 4 kept, corrected, added or imported answers, "
                       "1 correction with a rejected side, 1 thumbs-down, 0 votes with a "
                       "winner.")


def test_the_report_card_before_any_adapter_says_so(ctx):
    from web.compare import NO_ADAPTER_YET, CompareHandlers

    handlers = CompareHandlers(ctx)
    assert handlers.card(None)[0] == handlers.follow(None, None)[0] == NO_ADAPTER_YET
