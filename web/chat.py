"""The Chat tab: a streaming chat whose replies can be kept, corrected or disliked."""

from __future__ import annotations

from typing import Any

import gradio as gr

from core.errors import UserError
from services import chat, examples, models
from services.context import Context
from web.common import Ui, message_text, shown_to_user

RECENT_CONVERSATIONS = 50


class ChatHandlers:
    """Translate the Chat tab's events to the chat and feedback actions."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def earlier_conversations(self, selected: int | None = None):
        choices = [(f"{c.title} · {c.updated_at[:16].replace('T', ' ')}", c.id)
                   for c in chat.recent(self.ctx, RECENT_CONVERSATIONS)]
        return gr.Radio(choices=choices, value=selected)

    def send(self, message: str, conversation_id: int | None, model: str, system: str):
        """Stream a reply into the chat; yields (chat, message box, conversation id)."""
        if not (message or "").strip():
            yield gr.skip(), gr.skip(), gr.skip()  # nothing sent, nothing stored
            return
        turns = chat.stored_messages(self.ctx, conversation_id) + [
            {"role": "user", "content": message}]
        for turn in chat.stream_reply(self.ctx, conversation_id, message, model, system):
            shown = turns + [{"role": "assistant", "content": turn.text}]
            if not turn.text:
                yield shown, "", turn.conversation_id
            else:  # gr.skip(): leave alone what the user types while the reply streams
                yield shown, gr.skip(), gr.skip()

    def validate(self, message: str, conversation_id: int | None, model: str, system: str):
        """Runs before send: a message that cannot be answered is flagged on the message
        box, and the chat stays as it was."""
        problem = ""
        if (message or "").strip():
            try:
                chat.prompt_for(self.ctx, conversation_id, message, model, system)
            except UserError as error:
                problem = str(error)
        return [gr.validate(not problem, problem)] + [gr.validate(True, "")] * 3

    def judge(self, conversation_id: int | None, like: gr.LikeData):
        """Thumbs up keeps the reply as an example; thumbs down records it as bad."""
        verdict = "kept" if like.liked is True else "disliked" if like.liked is False else None
        if verdict is None or conversation_id is None:
            return gr.skip()
        try:
            return examples.judge(self.ctx, conversation_id, _index(like.index),
                                  verdict).message()
        except UserError as error:
            return f"⚠ {error}"

    def correct_reply(self, conversation_id: int | None, edit: gr.EditData):
        """An edited reply becomes a corrected example; the chat shows what is stored."""
        if conversation_id is None:
            return gr.skip(), gr.skip()
        try:
            note = examples.judge(self.ctx, conversation_id, _index(edit.index), "corrected",
                                  message_text(edit.value)).message()
        except UserError as error:
            note = f"⚠ Not saved: {error}"
        return chat.stored_messages(self.ctx, conversation_id), note

    def reopen(self, conversation_id: int | None):
        """Reopen a stored conversation: (chat, conversation id, system prompt, model)."""
        if conversation_id is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        stored = chat.reopen(self.ctx, conversation_id)
        return stored.messages, stored.id, stored.system, stored.adapter

    def stored_chat(self, conversation_id: int | None) -> list[dict]:
        return chat.stored_messages(self.ctx, conversation_id)


def _index(index: int | tuple[int, int]) -> int:
    """A chat message's index as Gradio reports it (an int for chatbots)."""
    return index if isinstance(index, int) else index[0]


def build(ui: Ui) -> None:
    handlers = ChatHandlers(ui.ctx)
    conversation_id = gr.State(None)
    with gr.Row():
        with gr.Column(scale=1, min_width=240):
            new_button = gr.Button("+ New conversation")
            earlier = gr.Radio(label="Earlier conversations", choices=[], value=None,
                               elem_id="earlier-conversations")
        with gr.Column(scale=4):
            with gr.Row():
                model = ui.model_list("Model", default=models.chat_default,
                                      info=f"base = {ui.ctx.engine.name}",
                                      elem_id="chat-model")
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

    send_inputs = [message, conversation_id, model, system]
    send_outputs = [chatbot, message, conversation_id]
    refresh = handlers.earlier_conversations
    events = [
        trigger(shown_to_user(handlers.send), send_inputs, send_outputs,
                api_visibility="private", validator=handlers.validate, show_progress="hidden")
        # Show exactly what is stored, so a reply's place in the chat is its place in
        # the database (keep and correct rely on it).
        .then(handlers.stored_chat, conversation_id, chatbot, api_visibility="private")
        .then(refresh, conversation_id, earlier, api_visibility="private")
        for trigger in (message.submit, send_button.click)
    ]
    stop_button.click(None, None, None, cancels=events, api_visibility="private")
    start_over: dict[str, Any] = dict(fn=lambda: ([], None, None), inputs=None,
                      outputs=[chatbot, conversation_id, earlier], api_visibility="private")
    new_button.click(**start_over)
    chatbot.clear(**start_over)  # the chat's own bin icon: start over, stored turns stay
    chatbot.like(shown_to_user(handlers.judge), conversation_id, note,
                 api_visibility="private")
    chatbot.edit(shown_to_user(handlers.correct_reply), conversation_id, [chatbot, note],
                 api_visibility="private")
    earlier.input(shown_to_user(handlers.reopen), earlier,
                  [chatbot, conversation_id, system, model], api_visibility="private")
    ui.on_load(refresh, None, earlier)
