import gradio as gr
import pytest

from assistant.engine import ContextTooLong
from assistant.ui import ChatActions, Services, build_app, shown_to_user
from storage import conversations


@pytest.fixture
def actions(tiny_engine, store):
    return ChatActions(Services(engine=tiny_engine, store=store))


def test_send_streams_and_stores_both_turns(actions, store):
    updates = list(actions.send("What is the capital of France?", None, "base", "Be brief."))
    chat, box, conversation_id = updates[-1]
    assert len(updates) > 3 and box == ""
    assert chat[-1] == {"role": "assistant", "content": "The capital of France is Paris."}
    stored = conversations.get_conversation(store, conversation_id)
    assert stored.system == "Be brief."
    assert [m["role"] for m in stored.messages] == ["user", "assistant"]


def test_second_message_continues_the_same_conversation(actions, store):
    *_, (_, _, conversation_id) = actions.send("Say hello.", None, "base", "")
    *_, (chat, _, same_id) = actions.send("Name a fruit.", conversation_id, "base", "")
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
    next(stream)
    _, _, conversation_id = next(stream)
    stream.close()
    stored = conversations.get_conversation(store, conversation_id).messages
    assert stored[0]["content"] == "Say hello."
    assert stored[1]["role"] == "assistant"
    assert "Hello! How can I help you today?".startswith(stored[1]["content"])


def test_earlier_conversation_reopens_with_its_system_prompt(actions):
    *_, (chat, _, conversation_id) = actions.send("Say hello.", None, "base", "Be kind.")
    assert actions.open_conversation(conversation_id) == (chat, conversation_id,
                                                          "Be kind.", "base")
    picker = actions.earlier_conversations(conversation_id)
    assert picker.choices[0][1] == conversation_id
    assert picker.choices[0][0].startswith("Say hello.")


def test_chat_api_answers_and_stores(actions, store):
    assert actions.chat_api("Name a fruit.") == "An apple is a fruit."
    [summary] = conversations.list_conversations(store)
    assert summary.turns == 2


def test_app_builds_with_its_api_names(actions, tiny_engine, store):
    app = build_app(Services(engine=tiny_engine, store=store))
    names = {d.api_name for d in app.fns.values() if d.api_visibility == "public"}
    assert {"chat", "adapters"} <= names
