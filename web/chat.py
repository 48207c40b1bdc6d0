"""The Chat tab: a streaming chat whose replies can be kept, corrected or disliked."""

from __future__ import annotations

import functools
import threading
import time
from contextlib import closing
from typing import Any

import gradio as gr

from core.errors import UserError
from services import chat, contenders, examples, models, names, training
from services.context import Context
from storage.conversations import Conversation
from web.common import Ui, message_text, shown_to_user

RECENT_CONVERSATIONS = 50
FEEDBACK = {"kept": "Like", "disliked": "Dislike"}
CUT_NOTES = {
    "stop": "■ Stopped where you pressed Stop; what was shown is kept. Correct it with ✏ "
            "if you want it kept as an example.",
    "loop": "✂ The reply was cut where it started repeating itself, so it may end "
            "mid-sentence. Correct it with ✏ if you want it kept, or ask again.",
    "length": "✂ The reply reached the longest a reply may be, so it may end "
              "mid-sentence. Ask for a shorter answer, or correct it with ✏.",
}
"""What the note under the chat says when a reply ended early: her Stop, or the engine."""
# The pencil corrects the model's replies; on the user's own messages it would only be
# refused, so it is not offered there. The inline editor gets room to write in: Gradio
# sizes it to the reply it replaces (inline styles), a few words wide for a short one.
# A dropdown's long choice ends in "…" before its arrow, not under it; the tables wrap
# their headers between words, never inside one ("sc/or/e" in a column of short cells).
CSS = """
#chat .message-buttons-right button[aria-label="Edit"] { display: none; }
#chat textarea.edit-textarea { min-width: min(40em, 70vw) !important;
                               min-height: 8em !important; }
.wrap-inner .secondary-wrap input { text-overflow: ellipsis; padding-right: 1.5em; }
#runs-table thead *, #card-table thead *, #examples-table thead * {
    overflow-wrap: normal !important; word-break: keep-all !important; }
"""
MODEL_WIDTH = 440
"""The Model list's least width in pixels: its long labels whole ("Your assistant #12,
tuned Dec 12 13:47 + your examples"), beside the list's arrow (longer ones end in "…",
never under the arrow; the list shows them whole)."""
CORRECTION_BOX = "correction-box"
# A thumbs-down opens the correction box under the chat, below the fold on a laptop:
# bring it into view (only as far as needed) once it is drawn; a thumb up hides it.
SCROLL_TO_CORRECTION = (
    f"() => setTimeout(() => {{ const box = document.getElementById('{CORRECTION_BOX}'); "
    "if (box && box.offsetParent !== null) "
    "box.scrollIntoView({block: 'nearest', behavior: 'smooth'}); }, 100)")


class StopRequests:
    """Stop presses per browser session. A reply stops when Stop was pressed after its
    message was sent: while it streams, before its first token, or while it still
    waited for its turn."""

    def __init__(self):
        self._lock = threading.Lock()
        self._sent: dict[str, float] = {}
        self._stopped: dict[str, float] = {}

    def sent(self, session: str) -> None:
        with self._lock:
            self._sent[session] = time.monotonic()

    def stop(self, session: str) -> None:
        with self._lock:
            self._stopped[session] = time.monotonic()

    def requested(self, session: str) -> bool:
        with self._lock:
            return self._stopped.get(session, -1.0) > self._sent.get(session, float("inf"))


class ChatHandlers:
    """Translate the Chat tab's events to the chat and feedback actions."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.stops = StopRequests()

    def earlier_conversations(self, selected: int | None = None):
        found = chat.recent(self.ctx, RECENT_CONVERSATIONS)
        say = names.labels(self.ctx, list({c.adapter for c in found}))
        choices = [(f"{c.title} · {say[c.adapter]} · "
                    f"{c.updated_at[:16].replace('T', ' ')}", c.id) for c in found]
        return gr.Radio(choices=choices, value=selected)

    def send(self, message: str, conversation_id: int | None, model: str, system: str,
             shown_before: list | None = None, request: gr.Request | None = None):
        """Stream a reply into the chat; yields (chat, message box, conversation id,
        note). Stop ends it at the next token, keeping what was shown; a reply stopped
        before its first word stores nothing and puts the message back in the box. A
        reply ended early (her Stop, a loop, the longest reply) says so in the note."""
        if not (message or "").strip():
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip()  # nothing sent, nothing stored
            return
        conversation_id = _continued(conversation_id, shown_before)
        session = _session(request)
        turns = chat.stored_messages(self.ctx, conversation_id) + [
            {"role": "user", "content": message}]
        text, cut = "", ""
        stopped = functools.partial(self.stops.requested, session)
        with closing(chat.stream_reply(self.ctx, conversation_id, message, model, system,
                                       stop=stopped)) as stream:
            for turn in stream:
                conversation_id, text, cut = turn.conversation_id, turn.text, turn.cut
                if stopped():
                    break  # closing the stream stores what was shown
                shown = turns + [{"role": "assistant", "content": text}]
                # gr.skip(): leave alone what the user types while the reply streams;
                # the id every time, over a New conversation that ended after this began
                yield shown, "" if not text else gr.skip(), conversation_id, gr.skip()
        if not text.strip():  # stopped before a word: nothing stored, the message is back
            yield (chat.stored_messages(self.ctx, conversation_id), message, conversation_id,
                   gr.skip())
        elif stopped() or cut:
            yield gr.skip(), gr.skip(), gr.skip(), CUT_NOTES["stop" if stopped() else cut]

    def validate(self, message: str, conversation_id: int | None, model: str, system: str,
                 shown_before: list | None = None, request: gr.Request | None = None):
        """Runs when a message is sent, before it is queued: a message that cannot be
        answered is flagged on the message box, and the chat stays as it was."""
        self.stops.sent(_session(request))
        problem = ""
        if (message or "").strip():
            try:
                chat.prompt_for(self.ctx, _continued(conversation_id, shown_before), message,
                                model, system)
            except UserError as error:
                problem = str(error)
        return [gr.validate(not problem, problem)] + [gr.validate(True, "")] * 4

    def stop(self, request: gr.Request | None = None) -> None:
        self.stops.stop(_session(request))

    def leave_reply(self, chosen: str | None = None, picked: list | None = None,
                    request: gr.Request | None = None):
        """A new conversation: the reply streaming in this page stops where it is (it
        would otherwise come back over the emptied chat)."""
        self.stops.stop(_session(request))
        return [gr.validate(True, "")] * 2

    def judge(self, conversation_id: int | None, like: gr.LikeData):
        """Thumbs up keeps the reply; thumbs down records it as bad and opens the
        correction box; pressing a lit thumb again undoes it. Returns (note, the
        correction box, its original, its text, the reply's index)."""
        marks: dict[bool | str, str] = {True: "kept", False: "disliked", "": "undo"}
        mark = marks.get(like.liked)
        nothing = (gr.skip(),) * 5
        if mark is None or conversation_id is None:
            return nothing
        index = _index(like.index)
        try:  # the count is the header's (recounted after every thumb), never stale here
            note = examples.judge(self.ctx, conversation_id, index, mark).message(
                progress=False)
        except UserError as error:
            return (f"⚠ {error}",) + nothing[1:]
        if mark != "disliked":
            return note, gr.Column(visible=False), gr.skip(), gr.skip(), None
        original = chat.stored_messages(self.ctx, conversation_id)[index]["content"]
        return (note + " If you know a better answer, write it below.",
                gr.Column(visible=True), original, original, index)

    def correct_reply(self, conversation_id: int | None, edit: gr.EditData):
        """An edited reply becomes a corrected example; the chat shows what is stored."""
        if conversation_id is None:
            return gr.skip(), gr.skip()
        return self._correct(conversation_id, _index(edit.index), message_text(edit.value))

    def save_correction(self, conversation_id: int | None, index: int | None, text: str):
        """The correction box's Save: (chat, note, correction box)."""
        if conversation_id is None or index is None:
            return gr.skip(), "Pick a reply to correct first.", gr.skip()
        shown, note = self._correct(conversation_id, index, text)
        return shown, note, gr.Column(visible=note.startswith("⚠"))

    def _correct(self, conversation_id: int, index: int, text: str):
        try:
            note = examples.judge(self.ctx, conversation_id, index, "corrected",
                                  text).message(progress=False)
        except UserError as error:
            note = f"⚠ Not saved: {error}"
        return self.stored_chat(conversation_id), note

    def reopen(self, conversation_id: int | None):
        """Reopen a stored conversation: (chat, conversation id, system prompt, model,
        note on its earlier judgements)."""
        if conversation_id is None:
            return (gr.skip(),) * 5
        return self._reopened(chat.reopen(self.ctx, conversation_id))

    def _reopened(self, stored: Conversation):
        """reopen's outputs for a conversation already read."""
        conversation_id = stored.id
        marks = [v for v in examples.marks(self.ctx, conversation_id) if v]
        summary = ", ".join(f"{marks.count(v)} {said}" for v, said in (
            ("kept", "kept"), ("corrected", "corrected"), ("disliked", "marked as bad"))
            if v in marks)
        note = (f"In this conversation: {summary}. A lit thumb pressed again undoes it."
                if summary else "")
        return (self.stored_chat(conversation_id), stored.id, stored.system, stored.adapter,
                note)

    def resume(self):
        """On every page load: the most recent conversation, reopened as the list of
        earlier conversations reopens one (its messages, system prompt and answers; its
        model is the chat list's default on load: chat.resumed_model), so a reload loses
        nothing. (chat, conversation id, system prompt, note, earlier conversations, who
        answered, the prompt's box, the prompt)."""
        last = chat.latest(self.ctx)
        if last is None:
            return (gr.skip(),) * 4 + (self.earlier_conversations(),) + (gr.skip(),) * 4
        stored = chat.reopen(self.ctx, last.id)
        shown, conversation_id, system, _, judged = self._reopened(stored)
        note = ("Your last conversation, where you left it. *+ New conversation* starts "
                "another." + (f" {judged}" if judged else "") + self._moved_since(stored))
        return (shown, conversation_id, system, note,
                self.earlier_conversations(conversation_id), *self.reply_info(conversation_id))

    def _moved_since(self, stored: Conversation) -> str:
        """Where the Model list (on load: chat.resumed_model) is not on the model that
        wrote the conversation's last answer, which it is and why."""
        answered = [m for m in stored.models if m]
        listed = chat.resumed_model(self.ctx)
        if not answered or answered[-1] == listed:
            return ""
        say = names.plain(self.ctx, [answered[-1], listed])
        return (f" Its last answer came from **{say(answered[-1])}**; your next message goes "
                f"to **{say(listed)}**, which new chats use since then (the *Model* list).")

    def stored_chat(self, conversation_id: int | None):
        """The conversation as stored, with the thumbs it was given."""
        if conversation_id is None:
            return []
        messages = chat.stored_messages(self.ctx, conversation_id)
        marks = examples.marks(self.ctx, conversation_id)
        feedback = [FEEDBACK.get(v or "") for m, v in zip(messages, marks)
                    if m["role"] == "assistant"]
        return gr.Chatbot(value=messages, feedback_value=feedback)  # type: ignore[arg-type]

    def reply_info(self, conversation_id: int | None):
        """(who wrote the last reply, and what it drew on; the box with what it read;
        the facts and examples it drew on; the prompt a baseline built for it)."""
        hidden = "", gr.Accordion(visible=False), "", ""
        if conversation_id is None:
            return hidden
        stored = chat.reopen(self.ctx, conversation_id)
        last = max((i for i, m in enumerate(stored.messages) if m["role"] == "assistant"),
                   default=None)
        if last is None:
            return hidden
        model, prompt = stored.models[last], stored.prompts[last]
        found = chat.sources(self.ctx, stored, last)
        said = f"Answered by **{names.label(self.ctx, model or '')}**"
        drew = [f"{len(found.facts)} of your facts"] * bool(found.facts) + \
            [f"{len(found.examples)} of your examples"] * bool(found.examples)
        said += f", drawing on {' and '.join(drew)} (see *What it read*)." if drew else "."
        if found.invented:
            said += (" ⚠ Not in your facts: " + ", ".join(f"**{c}**" for c in found.invented)
                     + ". If it is wrong, correct the reply with ✏.")
        if not prompt:
            return said, gr.Accordion(visible=False), "", ""
        return said, gr.Accordion(visible=True), _drew_on(found), contenders.describe(prompt)

    def start_over(self, chosen: str | None = None, picked: list | None = None):
        """A new conversation on the model the user picked in the list (`picked`, from
        pick()) since the model new chats use last changed, else on that model; a model
        the list was set to on its own (a page load, a reopened conversation) is no
        pick. The note names the model and says why."""
        mine, then = picked if picked and picked[0] == chosen else (None, None)
        model, is_pick = chat.starting_model(self.ctx, mine, then)
        shown = names.label(self.ctx, model)
        why = ", the one you picked" if is_pick and model != models.chat_default(self.ctx) \
            else chat.why_default(self.ctx, model)
        return ([], None, None, model, f"New conversation with **{shown}**{why}. Pick another "
                "in the *Model* list.", gr.Column(visible=False), "",
                gr.Accordion(visible=False), "")

    def pick(self, model: str | None):
        """The user chose a model in the list (only their own choice fires this): new
        conversations keep it until the model new chats use changes. (the pick, the
        note: it says so, in place of what it said of the model before)."""
        if not model:
            return None, ""
        return [model, models.chat_default(self.ctx)], (
            f"Your next message goes to **{names.plain(self.ctx, [model])(model)}**, and so "
            "do new conversations, until you pick another.")

    def follow_in_use(self, in_use: str | None, seen: str | None, current: str | None,
                      picked: list | None):
        """The model new chats use changed: the Model list moves to it, unless the list
        is on a model the user picked herself (that pick holds, for new conversations
        too), and says so in a line of its own (it comes on a timer, and would otherwise
        replace what a keep, a correction or a new conversation just said). The first
        call, on a page load, only notes it (the load sets the list to the reopened
        conversation's model). (the model seen, the list, the line, the pick)."""
        if in_use is None or seen is None or in_use == seen or current == in_use:
            return in_use, gr.skip(), gr.skip(), gr.skip()
        now = f"New chats use **{names.label(self.ctx, in_use)}** now" + \
            chat.why_default(self.ctx, in_use)
        if picked and current and picked[0] == current:
            return in_use, gr.skip(), (
                f"{now}. You picked **{names.label(self.ctx, current)}**, so the *Model* "
                "list stays on it; choose the new one there to try it."), [current, in_use]
        return in_use, in_use, (
            f"{now}. The *Model* list moved to it: it answers your next message. Pick "
            "another in the list to go on with another."), gr.skip()

    def intro(self) -> str:
        auto = training.auto_start(self.ctx)
        when = (f"a training run starts by itself once there are {auto.threshold} examples"
                if auto.enabled else "start a training run in the Train tab")
        return ("**Chat with the model, and teach it your way of answering.** Under each "
                "reply: 👍 keeps it as a training example, the ✏️ pencil fixes it (your "
                "fix is what it learns, and counts in the next answer to a question like "
                "it), 👎 marks it as bad. What is true about your business goes in the "
                "*Facts* tab: the chat reads it before answering. "
                + when[0].upper() + when[1:] + "; "
                "the new model then appears in the *Model* list, and the *Compare* tab "
                "shows whether it was worth it. "
                f"({training.progress_line(self.ctx)}.)")


def _session(request: gr.Request | None) -> str:
    return (request.session_hash if request is not None else None) or "api"


def _drew_on(found: chat.Sources) -> str:
    """The facts and examples a reply drew on, as a person reads them."""
    lines = [f"- Fact #{f.id} ({f.source}): {f.text}" for f in found.facts]
    lines += [f"- Example #{id_}: “{question}”" for id_, question in found.examples]
    return ("It read these of yours before answering:\n" + "\n".join(lines) if lines else
            "It read none of your facts or examples for this reply.") + \
        "\n\nThe whole prompt, to copy into your own system:"


def _continued(conversation_id: int | None, shown: list | None) -> int | None:
    """The conversation a message goes on: none when the page shows an empty chat (a
    New conversation, whose own reply may still be on its way)."""
    return conversation_id if shown else None


def _index(index: int | tuple[int, int]) -> int:
    """A chat message's index as Gradio reports it (an int for chatbots)."""
    return index if isinstance(index, int) else index[0]


def build(ui: Ui) -> None:
    handlers = ChatHandlers(ui.ctx)
    conversation_id, correcting = gr.State(None), gr.State(None)
    # picked: [model, the model new chats used then], set only by the user's own choice
    picked, in_use, seen = gr.State(None), ui.in_use(), gr.State(None)
    intro = gr.Markdown(elem_id="chat-intro")
    with gr.Row():
        with gr.Column(scale=1, min_width=240):
            new_button = gr.Button("+ New conversation")
            earlier = gr.Radio(label="Earlier conversations", choices=[], value=None,
                               elem_id="earlier-conversations")
        with gr.Column(scale=4):
            with gr.Row():
                # set on load to the model of the conversation a load reopens (resume),
                # and moved to the model new chats use whenever that changes
                model = ui.model_list("Model", default=chat.resumed_model,
                                      elem_id="chat-model", min_width=MODEL_WIDTH)
                system = gr.Textbox(label="System prompt", lines=1, scale=3,
                                    placeholder="Optional: how the assistant should behave")
            # a share of the window, so the message box stays in view on a laptop
            chatbot = gr.Chatbot(label="Chat", height="42vh", min_height=280, editable="all",
                                 feedback_options=("Like", "Dislike"),
                                 buttons=["copy", "copy_all"], elem_id="chat",
                                 placeholder="Say something to start a conversation.")
            # right under the chat: the notes below it grow, the message box stays put
            with gr.Row():
                message = gr.Textbox(label="Message", show_label=False, scale=6, autofocus=True,
                                     placeholder="Type a message and press Enter",
                                     elem_id="chat-message")
                send_button = gr.Button("Send", variant="primary", scale=1, elem_id="chat-send")
                stop_button = gr.Button("Stop", scale=1, elem_id="stop")
            note = gr.Markdown(elem_id="chat-note")
            moved = gr.Markdown(elem_id="chat-moved")
            answered = gr.Markdown(elem_id="answered-by")
            with gr.Accordion("What it read", open=False, visible=False,
                              elem_id="built-prompt") as prompt_box:
                drew = gr.Markdown(elem_id="drew-on")
                built = gr.Textbox(show_label=False, interactive=False, lines=6, max_lines=20,
                                   buttons=["copy"], elem_id="built-prompt-text")
            with gr.Column(visible=False, elem_id=CORRECTION_BOX) as correction_box:
                with gr.Row():
                    original = gr.Textbox(label="The model said", lines=8, interactive=False)
                    fix = gr.Textbox(label="What it should have said", lines=8,
                                     elem_id="correction-text")
                with gr.Row():
                    save_fix = gr.Button("Save my correction", variant="primary")
                    close_fix = gr.Button("Not now")

    send_inputs = [message, conversation_id, model, system, chatbot]
    send_outputs = [chatbot, message, conversation_id, note]
    refresh = handlers.earlier_conversations
    for trigger in (message.submit, send_button.click):
        # the note spoke of the reply before (or of the new conversation): it goes, at once
        trigger(None, None, [note, moved], js="() => ['', '']", api_visibility="private",
                show_progress="hidden")
        # always_last: a message sent while a reply streams is answered after it.
        trigger(shown_to_user(handlers.send), send_inputs, send_outputs,
                api_visibility="private", validator=handlers.validate,
                show_progress="hidden", trigger_mode="always_last") \
            .then(handlers.stored_chat, conversation_id, chatbot, api_visibility="private") \
            .then(handlers.reply_info, conversation_id, [answered, prompt_box, drew, built],
                  api_visibility="private") \
            .then(refresh, conversation_id, earlier, api_visibility="private")
    stop_button.click(handlers.stop, None, None, api_visibility="private",
                      concurrency_limit=None, show_progress="hidden")
    # validator: runs as the click arrives, in order with the messages sent, so a reply
    # still streaming stops (and is kept as shown) while a message sent after goes on
    start_over: dict[str, Any] = dict(
        fn=handlers.start_over, inputs=[model, picked], validator=handlers.leave_reply,
        outputs=[chatbot, conversation_id, earlier, model, note, correction_box, answered,
                 prompt_box, moved],
        api_visibility="private")
    # Cleared in the page at once: a message typed before start_over's answer arrives
    # goes to a new conversation all the same (send reads the empty chat)
    new_button.click(None, None, chatbot, js="() => []", api_visibility="private",
                     show_progress="hidden")
    new_button.click(**start_over)
    chatbot.clear(**start_over)  # the chat's own bin icon: start over, stored turns stay
    # The header's count follows every keep and correction.
    recount: dict[str, Any] = dict(fn=handlers.intro, inputs=None, outputs=intro,
                                   api_visibility="private", show_progress="hidden")
    judged = chatbot.like(shown_to_user(handlers.judge), conversation_id,
                          [note, correction_box, original, fix, correcting],
                          api_visibility="private")
    judged.then(**recount)
    judged.success(None, js=SCROLL_TO_CORRECTION, api_visibility="private")
    chatbot.edit(shown_to_user(handlers.correct_reply), conversation_id, [chatbot, note],
                 api_visibility="private").then(**recount)
    save_fix.click(shown_to_user(handlers.save_correction), [conversation_id, correcting, fix],
                   [chatbot, note, correction_box], api_visibility="private").then(**recount)
    close_fix.click(lambda: gr.Column(visible=False), None, correction_box,
                    api_visibility="private")
    # .input: the user's own choice only (.change fires on a load or a reopen too)
    model.input(handlers.pick, model, [picked, note], api_visibility="private",
                show_progress="hidden")
    in_use.change(handlers.follow_in_use, [in_use, seen, model, picked],
                  [seen, model, moved, picked],
                  api_visibility="private", show_progress="hidden")
    earlier.input(shown_to_user(handlers.reopen), earlier,
                  [chatbot, conversation_id, system, model, note], api_visibility="private") \
        .then(handlers.reply_info, conversation_id, [answered, prompt_box, drew, built],
              api_visibility="private")
    # A reload reopens the most recent conversation, and lists it as the one open.
    ui.on_load(handlers.resume, None, [chatbot, conversation_id, system, note, earlier,
                                       answered, prompt_box, drew, built])
    ui.on_load(handlers.intro, None, intro)
    assert ui.tab is not None  # its counts follow examples added in other tabs
    ui.tab.select(handlers.intro, None, intro, api_visibility="private",
                  show_progress="hidden")
