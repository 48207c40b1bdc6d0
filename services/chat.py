"""Chat: answer a message (streamed or at once) and store the exchange; list and reopen
conversations."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, replace

from assistant.engine import EmptyMessage, GenerationSettings
from core.chatformat import with_system
from services import contenders, models
from services.context import Context
from storage import conversations
from storage.conversations import Conversation, ConversationSummary


@dataclass(frozen=True)
class Turn:
    """A reply as it streams: the conversation it belongs to and its text so far."""

    conversation_id: int
    text: str
    model: str = "base"
    """Who answers (a model name: base, base+examples, run-3, ...)."""
    prompt: list[dict] | None = None
    """What the model read, where a baseline built it; None where it read the chat."""


def prompt_for(ctx: Context, conversation_id: int | None, message: str, model: str,
               system: str) -> list[dict]:
    """The messages the model would read for this message; raises the user error that
    stops it (empty, too long, unknown model) before anything is stored."""
    if not (message or "").strip():
        raise EmptyMessage("The message is empty: type something to send.")
    chosen = models.contender(ctx, model)
    earlier = stored_messages(ctx, conversation_id)
    prompt = with_system(system, earlier + [{"role": "user", "content": message}])
    prompt = contenders.build_prompt(ctx, chosen, prompt)
    ctx.engine.encode(prompt)
    return prompt


def stream_reply(ctx: Context, conversation_id: int | None, message: str, model: str,
                 system: str, settings: GenerationSettings = GenerationSettings(),
                 stop: Callable[[], bool] | None = None
                 ) -> Generator[Turn, None, None]:
    """Stream the reply to `message`; the first Turn, before any text, names the
    conversation (a new one when `conversation_id` is None).

    The message and its reply are stored together when the reply ends, also when it is
    stopped early (`stop()` turning true, or the stream closed: what was shown is
    kept); a reply stopped before its first token stores nothing, so the
    conversation's turns keep alternating."""
    model = models.resolve(ctx, model)
    chosen = models.contender(ctx, model)
    prompt = prompt_for(ctx, conversation_id, message, model, system)
    built = prompt if chosen.builds_prompt else None
    if conversation_id is None:
        conversation_id = conversations.start_conversation(ctx.store, message, system, model)
    reply = ""
    try:
        yield Turn(conversation_id, "", model, built)
        for piece in ctx.engine.stream(prompt, chosen.adapter, settings, stop):
            reply += piece
            yield Turn(conversation_id, reply, model, built)
    finally:
        if reply.strip():
            conversations.add_exchange(ctx.store, conversation_id, message, reply.strip(),
                                       model, system, built)


def ask(ctx: Context, message: str, model: str = "base", system: str = "") -> Turn:
    """Answer one message greedily, as a new conversation; returns the whole reply."""
    *_, turn = stream_reply(ctx, None, message, model, system)
    return Turn(turn.conversation_id, turn.text.strip(), turn.model, turn.prompt)


def stored_messages(ctx: Context, conversation_id: int | None) -> list[dict]:
    """The conversation's messages as stored (none for a new conversation)."""
    if conversation_id is None:
        return []
    return conversations.get_conversation(ctx.store, conversation_id).messages


def recent(ctx: Context, limit: int = 50) -> list[ConversationSummary]:
    return conversations.list_conversations(ctx.store, limit)


def latest(ctx: Context) -> Conversation | None:
    """The most recent conversation (reopened: see reopen), None before the first one:
    what a page load shows, so a reload loses nothing."""
    found = recent(ctx, 1)
    return reopen(ctx, found[0].id) if found else None


def resumed_model(ctx: Context) -> str:
    """The model the chat is set to on a page load: the one the most recent conversation
    is on (it is reopened), else the one new chats start with."""
    last = latest(ctx)
    return last.adapter if last is not None else models.chat_default(ctx)


def starting_model(ctx: Context, picked: str | None = None,
                   in_use_then: str | None = None) -> tuple[str, bool]:
    """The model a new conversation starts with, and whether it is the user's pick:
    `picked` when the user chose it while `in_use_then` was the model new chats use and
    still is (a choice made before that model last changed no longer holds), else the
    model new chats use (models.chat_default). A model the chat was set to on its own
    (a page load, a reopened conversation) is no pick: pass None."""
    in_use = models.chat_default(ctx)
    if picked and in_use_then == in_use and picked in models.model_names(ctx):
        return picked, True
    return in_use, False


def reopen(ctx: Context, conversation_id: int) -> Conversation:
    """A stored conversation; its model is base when its adapter is gone."""
    stored = conversations.get_conversation(ctx.store, conversation_id)
    if stored.adapter not in models.model_names(ctx):
        return replace(stored, adapter="base")  # who wrote each reply stays as stored
    return stored
