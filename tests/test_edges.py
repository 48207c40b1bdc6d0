"""The same action gives the same result from every edge: the command line, the web
app's handlers and its API routes all call one function per action."""

import json

import app
from services import training
from services.context import Context
from storage import conversations, examples, runs
from web.chat import ChatHandlers
from web.examples import ExampleHandlers

from helpers import voice_examples


def write_examples(path, n):
    path.write_text("".join(json.dumps({"messages": m}) + "\n" for m in voice_examples(n)))
    return path


def test_import_says_the_same_and_starts_a_run_from_every_edge(tmp_path, store, ctx,
                                                              tiny_model_dir, capsys):
    """Before: `tunechat import` never started a run, while the web app did."""
    training.set_threshold(ctx, 12)
    file = write_examples(tmp_path / "voice.jsonl", 12)
    assert app.main(["import", str(file), "--model", str(tiny_model_dir)]) == 0
    cli_note, background = capsys.readouterr().out.strip().splitlines()
    assert cli_note == ("✓ Imported 12 examples from voice.jsonl. Training run #1 started by "
                        "itself (see the Train tab).")
    assert background.startswith("Run #1 trains in the background")  # the command line's own
    assert ctx.jobs.wait(1)["status"] == "succeeded"
    # The same file again, from the web app: the same words for the same outcome.
    ui_note = ExampleHandlers(ctx).import_upload(str(file), "auto")
    assert ui_note == "✓ Imported 0 examples from voice.jsonl (12 already present, skipped)."
    assert app.main(["import", str(file)]) == 0
    assert capsys.readouterr().out.strip() == ui_note
    more = write_examples(tmp_path / "more.jsonl", 24)
    assert "Training run #2 started by itself" in ExampleHandlers(ctx).import_upload(
        str(more), "auto")
    ctx.jobs.wait(2)


def test_a_message_gets_the_same_answer_and_is_stored_from_every_edge(ctx, store,
                                                                       tiny_model_dir, capsys):
    question = "What is the capital of France?"
    assert app.main(["ask", question, "--model", str(tiny_model_dir)]) == 0
    cli = capsys.readouterr().out.strip()
    *_, (shown, *_) = list(ChatHandlers(ctx).send(question, None, "base", ""))
    from services import chat

    api = chat.ask(ctx, question).text  # what /chat returns
    assert cli == shown[-1]["content"] == api == "The capital of France is Paris."
    assert [c.turns for c in conversations.list_conversations(store)] == [2, 2, 2]


def test_keep_counts_and_auto_start_are_the_same_from_chat_and_api(ctx, store):
    from services import examples as example_actions

    training.set_threshold(ctx, 0)
    handlers = ChatHandlers(ctx)
    conversation_id = list(handlers.send("Say hello.", None, "base", ""))[0][2]
    import gradio as gr

    note = handlers.judge(conversation_id, gr.LikeData(None, {"index": 1, "value": "",
                                                               "liked": True}))[0]
    assert note == "✓ Kept as example #1."  # the chat's header counts, recounted
    assert ("(1 training example; auto-start is off (start a run in the Train tab).)"
            in handlers.intro())
    api = example_actions.add(ctx, voice_examples(1)[0])  # what /add_example does
    assert api.message() == ("✓ Added example #2. 2 training examples; auto-start is off "
                             "(start a run in the Train tab).")
    assert examples.counts(store)["trainable"] == 2 and runs.list_runs(store) == []


def test_a_context_without_training_never_starts_a_run(store, tiny_engine, tmp_path):
    quiet = Context(store, tiny_engine)
    training.set_threshold(quiet, 1)
    file = write_examples(tmp_path / "voice.jsonl", 3)
    assert "started" not in ExampleHandlers(quiet).import_upload(str(file), "auto")
    assert runs.list_runs(store) == []
