"""build_app(services) -> gr.Blocks: the Chat, Examples, Train and Compare tabs, plus the
API routes listed in the README. Domain errors become gr.Error here and nowhere else."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import gradio as gr

from assistant.ui_compare import compare_tab
from assistant.ui_examples import examples_tab, message_text
from assistant.ui_train import autostart_note, train_tab
from assistant.engine import BASE, ChatEngine, ContextTooLong, EmptyMessage, UnknownAdapter
from storage import conversations, examples, runs
from storage.conversations import ConversationNotFound
from storage.db import StorageError, Store
from storage.examples import DuplicateExample, ExampleNotFound, InvalidExample
from storage.formats import FormatError
from storage.runs import RunActive, RunNotFound
from trainer.config import ConfigError

USER_ERRORS = (EmptyMessage, ContextTooLong, UnknownAdapter, ConversationNotFound,
               StorageError, InvalidExample, DuplicateExample, ExampleNotFound, FormatError,
               ConfigError, RunActive, RunNotFound)
RECENT_CONVERSATIONS = 50


@dataclass(frozen=True)
class Services:
    """Everything the web app talks to; built once by `tunechat serve`."""

    engine: ChatEngine
    store: Store
    jobs: "Jobs | None" = None
    """Training runs; None where the app only chats (some tests)."""


def shown_to_user(fn):
    """Turn the domain errors a user can fix into gr.Error (a toast, not a traceback)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except USER_ERRORS as error:
                raise gr.Error(str(error)) from error
        return generator

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as error:
            raise gr.Error(str(error)) from error
    return plain


def saved_note(store: Store, verdict: str, example_id: int) -> str:
    what = {"kept": "✓ Kept as example", "corrected": "✓ Correction saved as example",
            "disliked": "✓ Marked as a bad answer (not trained on), record"}[verdict]
    ready = examples.counts(store)["trainable"]
    return (f"{what} #{example_id}. {ready} training example{'s' * (ready != 1)} so far; "
            "see the Examples tab.")


def with_system(system: str, messages: list[dict]) -> list[dict]:
    system = (system or "").strip()
    return ([{"role": "system", "content": system}] if system else []) + messages


class ChatActions:
    """The handlers behind the Chat tab and the chat API, bound to one set of services."""

    def __init__(self, services: Services):
        self.engine = services.engine
        self.store = services.store
        self.jobs = services.jobs

    def earlier_conversations(self, selected: int | None = None):
        choices = [
            (f"{c.title} · {c.updated_at[:16].replace('T', ' ')}", c.id)
            for c in conversations.list_conversations(self.store, RECENT_CONVERSATIONS)
        ]
        return gr.Radio(choices=choices, value=selected)

    def send(self, message: str, conversation_id: int | None, adapter: str, system: str):
        """Stream a reply into the chat; yields (chat, message box, conversation id)."""
        if not (message or "").strip():
            yield gr.skip(), gr.skip(), gr.skip()  # nothing sent, nothing stored
            return
        earlier = self.stored_chat(conversation_id)
        turns = earlier + [{"role": "user", "content": message}]
        # Check first, store after: a message that cannot be answered is not kept.
        prompt = with_system(system, turns)
        self.engine.encode(prompt)
        if conversation_id is None:
            conversation_id = conversations.start_conversation(self.store, message, system,
                                                               adapter)
        conversations.add_turn(self.store, conversation_id, "user", message, adapter, system)
        reply = ""
        try:
            yield turns + [{"role": "assistant", "content": ""}], "", conversation_id
            for piece in self.engine.stream(prompt, adapter):
                reply += piece
                # gr.skip(): leave alone what the user types while the reply streams.
                yield turns + [{"role": "assistant", "content": reply}], gr.skip(), gr.skip()
        finally:
            # Also on Stop or a closed tab: keep what the user saw.
            if reply.strip():
                conversations.add_turn(self.store, conversation_id, "assistant",
                                       reply.strip(), adapter)

    def validate(self, message: str, conversation_id: int | None, adapter: str, system: str):
        """Runs before send: a message that cannot be answered is flagged on the message
        box, and the chat stays as it was."""
        problem = ""
        if (message or "").strip():
            turns = self.stored_chat(conversation_id) + [
                {"role": "user", "content": message}]
            try:
                self.engine.check_adapter(adapter)
                self.engine.encode(with_system(system, turns))
            except USER_ERRORS as error:
                problem = str(error)
        return [gr.validate(not problem, problem)] + [gr.validate(True, "")] * 3

    def judge_reply(self, conversation_id: int | None, like: gr.LikeData):
        """Thumbs up keeps the reply as an example; thumbs down records it as bad."""
        verdict = {True: "kept", False: "disliked"}.get(like.liked)
        if verdict is None or conversation_id is None:
            return gr.skip()
        try:
            example_id = examples.judge_reply(self.store, conversation_id, like.index, verdict)
        except (InvalidExample, DuplicateExample) as error:
            return f"⚠ {error}"
        return saved_note(self.store, verdict, example_id) + autostart_note(self.jobs)

    def correct_reply(self, conversation_id: int | None, edit: gr.EditData):
        """An edited reply becomes a corrected example; the chat shows what is stored."""
        if conversation_id is None:
            return gr.skip(), gr.skip()
        try:
            example_id = examples.judge_reply(self.store, conversation_id, edit.index,
                                              "corrected", message_text(edit.value))
            note = saved_note(self.store, "corrected", example_id) + autostart_note(self.jobs)
        except (InvalidExample, DuplicateExample) as error:
            note = f"⚠ Not saved: {error}"
        return conversations.get_conversation(self.store, conversation_id).messages, note

    def open_conversation(self, conversation_id: int | None):
        """Reopen a stored conversation: (chat, conversation id, system prompt, model)."""
        if conversation_id is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        stored = conversations.get_conversation(self.store, conversation_id)
        adapter = stored.adapter if stored.adapter in self.engine.adapters() else BASE
        return stored.messages, stored.id, stored.system, adapter

    def chat_api(self, message: str, adapter: str = BASE, system: str = "") -> str:
        """Answer one message (greedy) and store it as a new conversation."""
        prompt = with_system(system, [{"role": "user", "content": message}])
        reply = self.engine.reply(prompt, adapter)  # raises before anything is stored
        conversation_id = conversations.start_conversation(self.store, message, system, adapter)
        conversations.add_turn(self.store, conversation_id, "user", message, adapter, system)
        conversations.add_turn(self.store, conversation_id, "assistant", reply, adapter)
        return reply

    def stored_chat(self, conversation_id: int | None) -> list[dict]:
        """The conversation's messages as stored (none for a new conversation)."""
        if conversation_id is None:
            return []
        return conversations.get_conversation(self.store, conversation_id).messages


def build_app(services: Services) -> gr.Blocks:
    actions = ChatActions(services)
    with gr.Blocks(title="tunechat", analytics_enabled=False) as app:
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                earlier, adapter = _chat_tab(actions)
            with gr.Tab("Examples", id="examples") as examples_tab_:
                show_examples = examples_tab(services, shown_to_user)
            with gr.Tab("Train", id="train"):
                if services.jobs is not None:
                    train_tab(services.jobs, services.engine.adapters(), shown_to_user)
                else:
                    gr.Markdown("Training is not available in this app.")
            with gr.Tab("Compare", id="compare"):
                selectors = compare_tab(services.engine, services.store, shown_to_user)
        gr.api(shown_to_user(actions.chat_api), api_name="chat")
        _adapters_api(services.engine)
        _examples_api(services)
        # Kept and corrected replies appear in the table when the tab is opened.
        examples_tab_.select(**show_examples)
        # Each page load sees conversations and models added since the server started.
        app.load(actions.earlier_conversations, None, earlier, api_visibility="private")
        app.load(lambda: _model_choice(services), None, adapter, api_visibility="private")
        _follow_new_adapters(services.engine, [adapter] + selectors)
    return app


def _examples_api(services: Services) -> None:
    store = services.store

    def list_examples(search: str = "", source: str = "all") -> list[dict]:
        """Stored examples, newest first: id, source, messages, rejected, near_duplicate_of."""
        return [{"id": e.id, "source": e.source, "messages": e.messages,
                 "rejected": e.rejected, "near_duplicate_of": e.near_duplicate_of}
                for e in examples.list_examples(store, search, source)]

    def add_example(messages: list[dict], source: str = "added") -> int:
        """Store one example (chat messages, the last one the assistant's); returns its id."""
        example_id = examples.add_example(store, messages, source)
        autostart_note(services.jobs)
        return example_id

    def correct(messages: list[dict], corrected: str) -> int:
        """Store a correction: `messages` end with the answer to replace by `corrected`,
        which is kept as the rejected side. Returns the example's id."""
        example_id = examples.correct_messages(store, messages, corrected)
        autostart_note(services.jobs)
        return example_id

    def delete_example(example_id: int) -> str:
        """Delete an example (undo with /restore_example)."""
        examples.delete_example(store, example_id)
        return f"Deleted example #{example_id}."

    def restore_example(example_id: int) -> str:
        """Bring back a deleted example."""
        examples.restore_example(store, example_id)
        return f"Restored example #{example_id}."

    for fn, name in [(list_examples, "examples"), (add_example, "add_example"),
                     (correct, "correct"), (delete_example, "delete_example"),
                     (restore_example, "restore_example")]:
        gr.api(shown_to_user(fn), api_name=name)


def _model_choice(services: Services) -> gr.Dropdown:
    """The chat's Model list, set to the promoted default adapter (see Compare)."""
    names = services.engine.adapters()
    default = runs.default_adapter(services.store)
    return gr.Dropdown(choices=names, value=default if default in names else BASE)


def _follow_new_adapters(engine: ChatEngine, selectors: list[gr.Dropdown]) -> None:
    """A finished run's adapter joins every model list within a second or two, without a
    reload; lists are only sent when they changed, so an open dropdown is left alone."""
    known = gr.State(engine.adapters())

    def check(seen: list[str]):
        names = engine.adapters()
        if names == seen:
            return [gr.skip()] * (len(selectors) + 1)
        return [gr.Dropdown(choices=names)] * len(selectors) + [names]

    gr.Timer(1.0).tick(check, known, selectors + [known], api_visibility="private",
                       show_progress="hidden")


def _adapters_api(engine: ChatEngine) -> None:
    def adapters() -> list[str]:
        """The model names a request may use, "base" first."""
        return engine.adapters()

    gr.api(adapters, api_name="adapters")


def _chat_tab(actions: ChatActions) -> tuple[gr.Radio, gr.Dropdown]:
    conversation_id = gr.State(None)
    with gr.Row():
        with gr.Column(scale=1, min_width=240):
            new_button = gr.Button("+ New conversation")
            earlier = gr.Radio(label="Earlier conversations", choices=[], value=None,
                               elem_id="earlier-conversations")
        with gr.Column(scale=4):
            with gr.Row():
                adapter = gr.Dropdown(label="Model", choices=actions.engine.adapters(),
                                      value=BASE, info=f"base = {actions.engine.name}")
                system = gr.Textbox(label="System prompt", lines=1, scale=3,
                                    placeholder="Optional: how the assistant should behave")
            chatbot = gr.Chatbot(label="Chat", height=460, editable="all",
                                 feedback_options=("Like", "Dislike"),
                                 buttons=["copy", "copy_all"], elem_id="chat",
                                 placeholder="Say something to start a conversation.")
            gr.Markdown("Under each reply: **thumbs up** keeps it as a training example; "
                        "the **pencil** lets you correct it (your fix becomes the example, "
                        "the original is kept as the rejected side); **thumbs down** marks "
                        "it as bad.",
                        elem_classes="hint")
            note = gr.Markdown(elem_id="chat-note")
            with gr.Row():
                message = gr.Textbox(label="Message", show_label=False, scale=6, autofocus=True,
                                     placeholder="Type a message and press Enter")
                send_button = gr.Button("Send", variant="primary", scale=1)
                stop_button = gr.Button("Stop", scale=1)

    send_inputs = [message, conversation_id, adapter, system]
    send_outputs = [chatbot, message, conversation_id]
    send = shown_to_user(actions.send)
    refresh = actions.earlier_conversations
    events = [
        trigger(send, send_inputs, send_outputs, api_visibility="private",
                validator=actions.validate, show_progress="hidden")
        # Show exactly what is stored, so a reply's place in the chat is its place in
        # the database (keep and correct rely on it).
        .then(actions.stored_chat, conversation_id, chatbot, api_visibility="private")
        .then(refresh, conversation_id, earlier, api_visibility="private")
        for trigger in (message.submit, send_button.click)
    ]
    stop_button.click(None, None, None, cancels=events, api_visibility="private")
    start_over = dict(fn=lambda: ([], None, None), inputs=None,
                      outputs=[chatbot, conversation_id, earlier], api_visibility="private")
    new_button.click(**start_over)
    chatbot.clear(**start_over)  # the chat's own bin icon: start over, stored turns stay
    chatbot.like(shown_to_user(actions.judge_reply), conversation_id, note,
                 api_visibility="private")
    chatbot.edit(shown_to_user(actions.correct_reply), conversation_id, [chatbot, note],
                 api_visibility="private")
    earlier.input(shown_to_user(actions.open_conversation), earlier,
                  [chatbot, conversation_id, system, adapter], api_visibility="private")
    return earlier, adapter
