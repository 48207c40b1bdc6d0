import pytest

from storage import conversations, examples
from storage.examples import DuplicateExample, ExampleNotFound, InvalidExample, validate_messages

SYSTEM = {"role": "system", "content": "You are Brewster, the coffee shop's assistant."}


def chat(*texts, system=True):
    roles = ["user", "assistant"] * len(texts)
    turns = [{"role": r, "content": t} for r, t in zip(roles, texts)]
    return ([SYSTEM] if system else []) + turns


@pytest.mark.parametrize("messages, field", [
    ([], "messages"),
    ("not a list", "messages"),
    ([{"role": "user", "content": "hi"}], "messages"),
    ([{"role": "assistant", "content": "hi"}], "messages[0].role"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "messages[1].role"),
    ([{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}], "messages[1].role"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "  "}],
     "messages[1].content"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": 3}],
     "messages[1].content"),
    ([{"role": "user", "content": "a\x00"}, {"role": "assistant", "content": "b"}],
     "messages[0].content"),
    ([{"role": "user", "content": "a\ud800"}, {"role": "assistant", "content": "b"}],
     "messages[0].content"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, SYSTEM,
      {"role": "assistant", "content": "c"}], "messages[2].role"),
    (["just text", {"role": "assistant", "content": "b"}], "messages[0]"),
])
def test_every_rule_names_the_field(messages, field):
    with pytest.raises(InvalidExample) as error:
        validate_messages(messages)
    assert error.value.field == field


def test_exact_duplicate_points_at_the_original(store):
    first = examples.add_example(store, chat("Hours?", "We open at 7."), "kept")
    with pytest.raises(DuplicateExample, match=f"#{first}"):
        examples.add_example(store, chat("Hours?", "We open at 7."))


def test_near_duplicates_are_flagged_both_ways(store):
    a = examples.add_example(store, chat("Hours?", "We open at 7."))
    b = examples.add_example(store, chat("hours", "we open at 7"))
    c = examples.add_example(store, chat("Where are you?", "On Main Street."))
    flags = {e.id: e.near_duplicate_of for e in examples.list_examples(store)}
    assert flags == {a: b, b: a, c: None}


def conversation_with_reply(store, reply="Paris, of course.", system="Be brief."):
    conversation_id = conversations.start_conversation(store, "Capital?", system)
    conversations.add_exchange(store, conversation_id, "Capital of France?", reply, "base",
                               system)
    return conversation_id


def test_keeping_a_reply_stores_the_conversation_up_to_it(store):
    conversation_id = conversation_with_reply(store)
    example_id = examples.judge_reply(store, conversation_id, 1, "kept").example_id
    [kept] = examples.list_examples(store)
    assert kept.id == example_id and kept.source == "kept"
    assert kept.conversation_id == conversation_id
    assert kept.messages == [{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "Capital of France?"},
                             {"role": "assistant", "content": "Paris, of course."}]


def test_correction_is_a_preference_pair_and_fixes_the_turn(store):
    conversation_id = conversation_with_reply(store, "Lyon.")
    examples.judge_reply(store, conversation_id, 1, "kept")
    examples.judge_reply(store, conversation_id, 1, "corrected", "Paris.")
    examples.judge_reply(store, conversation_id, 1, "corrected", "It is Paris.")
    [fixed] = examples.list_examples(store)  # one reply, one example, whatever the history
    assert (fixed.source, fixed.answer, fixed.rejected) == ("corrected", "It is Paris.", "Lyon.")
    stored = conversations.get_conversation(store, conversation_id).messages
    assert stored[1]["content"] == "It is Paris."


def test_thumbs_down_is_stored_but_not_counted_for_training(store):
    conversation_id = conversation_with_reply(store, "Lyon.")
    examples.judge_reply(store, conversation_id, 1, "disliked")
    [bad] = examples.list_examples(store)
    assert (bad.source, bad.rejected) == ("disliked", "Lyon.")
    assert examples.counts(store)["trainable"] == 0 and examples.counts(store)["disliked"] == 1


def test_only_assistant_replies_can_be_judged(store):
    conversation_id = conversation_with_reply(store)
    with pytest.raises(InvalidExample, match="assistant"):
        examples.judge_reply(store, conversation_id, 0, "kept")
    with pytest.raises(InvalidExample):
        examples.judge_reply(store, conversation_id, 5, "kept")
    with pytest.raises(InvalidExample, match="empty"):
        examples.judge_reply(store, conversation_id, 1, "corrected", " ")
    assert examples.list_examples(store) == []


def test_delete_and_undo(store):
    example_id = examples.add_example(store, chat("Hours?", "We open at 7."))
    examples.delete_example(store, example_id)
    assert examples.list_examples(store) == []
    again = examples.add_example(store, chat("Hours?", "We open at 7."))  # allowed: deleted
    with pytest.raises(DuplicateExample, match=f"#{again}"):
        examples.restore_example(store, example_id)
    examples.delete_example(store, again)
    examples.restore_example(store, example_id)
    assert [e.id for e in examples.list_examples(store)] == [example_id]
    with pytest.raises(ExampleNotFound):
        examples.restore_example(store, example_id)


def test_edit_is_validated_and_deduplicated(store):
    first = examples.add_example(store, chat("Hours?", "We open at 7."))
    second = examples.add_example(store, chat("Wifi?", "Yes, free."))
    examples.update_example(store, second, chat("Wifi?", "Yes, and it is free."))
    with pytest.raises(DuplicateExample, match=f"#{first}"):
        examples.update_example(store, second, chat("Hours?", "We open at 7."))
    with pytest.raises(InvalidExample):
        examples.update_example(store, second, chat("Wifi?", ""))
    assert examples.list_examples(store)[0].answer == "Yes, and it is free."


def test_search_and_filter(store):
    examples.add_example(store, chat("Hours?", "We open at 7."), "kept")
    examples.add_example(store, chat("Wifi?", "Yes, free."), "imported")
    assert [e.prompt for e in examples.list_examples(store, search="WIFI")] == ["Wifi?"]
    assert [e.prompt for e in examples.list_examples(store, source="kept")] == ["Hours?"]
    assert examples.counts(store)["trainable"] == 2


def test_correction_from_outside_the_chat(store):
    example_id = examples.correct_messages(store, chat("Hours?", "Noon."), "We open at 7.")
    [fixed] = examples.list_examples(store)
    assert (fixed.id, fixed.answer, fixed.rejected) == (example_id, "We open at 7.", "Noon.")
