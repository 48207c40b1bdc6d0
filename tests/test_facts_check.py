"""Marking an example as a facts check: the answer to its question must agree with the
user's facts (the report card scores answers to it against them)."""

import gradio as gr
import pytest

from services import examples as actions
from services.context import Context
from storage import examples
from storage.examples import ExampleNotFound
from web.examples import ExampleHandlers, table_rows


def qa(question, answer):
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


@pytest.fixture
def two(store):
    return (examples.add_example(store, qa("Can I bring my dog?", "No, sorry."), "added"),
            examples.add_example(store, qa("Do you sell mats?", "Yes."), "added"))


def test_the_mark_is_set_read_and_cleared(store, two):
    dog, mats = two
    examples.set_facts_check(store, dog, True)
    assert examples.get_example(store, dog).facts_check
    assert not examples.get_example(store, mats).facts_check
    assert [e.id for e in examples.facts_checks(store)] == [dog]
    examples.set_facts_check(store, dog, False)
    assert examples.facts_checks(store) == []
    with pytest.raises(ExampleNotFound):
        examples.set_facts_check(store, 999, True)


def test_list_examples_filters_by_the_mark(store, two):
    dog, mats = two
    examples.set_facts_check(store, mats, True)
    assert [e.id for e in examples.list_examples(store, facts_check=True)] == [mats]
    assert [e.id for e in examples.list_examples(store, facts_check=False)] == [dog]
    assert [e.id for e in examples.list_examples(store)] == [mats, dog]
    assert examples.list_examples(store, facts_check=True)[0].facts_check


def test_a_deleted_check_is_not_listed(store, two):
    dog, _ = two
    examples.set_facts_check(store, dog, True)
    examples.delete_example(store, dog)
    assert examples.facts_checks(store) == []
    examples.restore_example(store, dog)
    assert [e.id for e in examples.facts_checks(store)] == [dog]


def test_a_facts_check_is_kept_for_testing_only(store, two):
    """A card never checks a model on what it trained on."""
    dog, _ = two
    examples.set_facts_check(store, dog, True)
    assert examples.counts(store)["trainable"] == 1
    assert examples.get_example(store, dog).test_only
    examples.set_facts_check(store, dog, False)
    assert examples.get_example(store, dog).test_only  # unmarking leaves the test alone
    examples.set_facts_check(store, dog, True)
    examples.set_test_only(store, dog, False)  # trained on again: no facts check either
    assert examples.counts(store)["trainable"] == 2
    assert not examples.get_example(store, dog).facts_check


def test_the_service_says_what_the_mark_means(store, two):
    ctx, (dog, mats) = Context(store), two
    assert "kept for testing only" in actions.mark_facts_check(ctx, dog, True)
    assert "testing only" in actions.mark_facts_check(ctx, mats, True)
    assert "no longer a facts check" in actions.mark_facts_check(ctx, dog, False)
    assert [e.id for e in examples.facts_checks(store)] == [mats]


def test_the_editor_box_and_the_table_show_the_mark(store, two):
    dog, _ = two
    tab = ExampleHandlers(Context(store))
    assert tab.set_facts_check(None, True)[0].startswith("Pick an example")
    note, test_only = tab.set_facts_check(dog, True)
    assert "is a facts check" in note and test_only is True  # the box follows
    assert tab.is_facts_check(dog) is True  # the box is ticked when the example is opened
    assert tab.is_facts_check(None) is False
    rows = table_rows(examples.list_examples(store))
    assert [row[-1] for row in rows] == ["", "facts check (test only)"]


def test_the_api_route_marks_the_example(store, two):
    from web.api import add_routes

    dog, _ = two
    with gr.Blocks() as demo:
        add_routes(Context(store))
    [route] = [f for f in demo.fns.values() if f.api_name == "mark_facts_check"]
    assert "is a facts check" in route.fn(dog, True)
    assert [e.id for e in examples.facts_checks(store)] == [dog]
    with pytest.raises(gr.Error):
        route.fn(999, True)


def test_the_command_line_marks_and_unmarks(store, two, capsys):
    import app

    dog, _ = two
    assert app.main(["facts", "check", str(dog), "--home", str(store.home)]) == 0
    assert "is a facts check" in capsys.readouterr().out
    assert [e.id for e in examples.facts_checks(store)] == [dog]
    assert app.main(["facts", "check", str(dog), "--off", "--home", str(store.home)]) == 0
    assert examples.facts_checks(store) == []
    assert app.main(["facts", "check", "999", "--home", str(store.home)]) != 0
