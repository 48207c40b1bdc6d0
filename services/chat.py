"""Chat: answer a message (streamed or at once) and store the exchange; list and reopen
conversations."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, replace

from assistant.engine import EmptyMessage, GenerationSettings
from core.adapters import split_name
from core.chatformat import with_system
from core.errors import UserError
from services import claims, contenders, facts, fewshot, models, report
from services.context import Context
from storage import conversations, examples, runs
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
    drew_on: dict | None = None
    """The ids of the user's facts and examples placed in the prompt, if any."""
    cut: str = ""
    """Set on the last Turn when the engine ended the reply early: "loop" (it had
    started repeating itself) or "length" (it reached the longest reply)."""


def prompt_for(ctx: Context, conversation_id: int | None, message: str, model: str,
               system: str) -> list[dict]:
    """The messages the model would read for this message; raises the user error that
    stops it (empty, too long, unknown model) before anything is stored."""
    return _built(ctx, conversation_id, message, model, system).prompt


def _built(ctx: Context, conversation_id: int | None, message: str, model: str,
           system: str) -> contenders.Built:
    if not (message or "").strip():
        raise EmptyMessage("The message is empty: type something to send.")
    chosen = models.contender(ctx, model)
    earlier = stored_messages(ctx, conversation_id)
    built = contenders.build(ctx, chosen, with_system(
        system, earlier + [{"role": "user", "content": message}]))
    ctx.engine.encode(built.prompt)
    return built


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
    built = _built(ctx, conversation_id, message, model, system)
    shown = built.prompt if chosen.builds_prompt else None
    drew_on = built.drew_on()
    if conversation_id is None:
        conversation_id = conversations.start_conversation(ctx.store, message, system, model)
    reply, cut = "", list[str]()
    try:
        yield Turn(conversation_id, "", model, shown, drew_on)
        for piece in ctx.engine.stream(built.prompt, chosen.adapter, settings, stop,
                                       cut.append):
            reply += piece
            yield Turn(conversation_id, reply, model, shown, drew_on)
        if cut:
            yield Turn(conversation_id, reply, model, shown, drew_on, cut[0])
    finally:
        if reply.strip():
            conversations.add_exchange(ctx.store, conversation_id, message, reply.strip(),
                                       model, system, shown, drew_on)


def ask(ctx: Context, message: str, model: str = "base", system: str = "") -> Turn:
    """Answer one message greedily, as a new conversation; returns the whole reply."""
    *_, turn = stream_reply(ctx, None, message, model, system)
    return replace(turn, text=turn.text.strip())


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
    is on (it is reopened), else the one new chats start with. A run that took over after
    its last message moved the list of the open page to that run ("it answers your next
    message"), so a reload shows that run too."""
    found = recent(ctx, 1)
    in_use = models.chat_default(ctx)
    if not found:
        return in_use
    decided = report.last_decision(ctx) or {}
    if decided.get("adopted") and decided["adapter"] == in_use and \
            decided.get("at", "") > found[0].updated_at:
        return in_use
    return reopen(ctx, found[0].id).adapter


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


@dataclass(frozen=True)
class Sources:
    """What a reply drew on, and what it claims that nothing of the user's backs."""

    facts: list[facts.Fact]
    examples: list[tuple[int, str]]
    """(id, question) of each example placed before it."""
    invented: list[str]
    """Prices, numbers and times her facts and examples do not back; checked only once
    she has facts (without any, every claim would be flagged)."""



def sources(ctx: Context, stored: Conversation, index: int) -> Sources:
    """What the reply at `index` of a stored conversation drew on (its prompt as built
    then), and its claims that her facts do not back (claims.py, against all her facts,
    the examples most like the question, the system prompt and her own messages)."""
    drew = (stored.drew_on[index] if index < len(stored.drew_on) else None) or {}
    wanted = set(drew.get("facts", []))
    known = facts.list_facts(ctx)
    placed = [(e.id, fewshot.query_of(e.messages)) for e in
              (_example(ctx, id_) for id_ in drew.get("examples", [])) if e is not None]
    invented: list[str] = []
    if known:
        earlier = stored.messages[:index]
        near = contenders.live_pool(ctx).nearest(earlier, fewshot.K)
        # her own words only: a claim the model invented earlier is no support
        support = ([f.text for f in known] + [stored.system]
                   + [m["content"] for m in earlier if m["role"] == "user"]
                   + [m["content"] for _, example in near for m in example])
        invented = [c.text for c in claims.unsupported(stored.messages[index]["content"],
                                                       support) if c.kind in claims.FLAGGED]
    return Sources([f for f in known if f.id in wanted], placed, invented)


def _example(ctx: Context, example_id: int) -> examples.Example | None:
    try:
        return examples.get_example(ctx.store, example_id)
    except UserError:  # deleted since
        return None


def why_default(ctx: Context, model: str) -> str:
    """Why new chats start with `model`, as a phrase after its name ("" for another)."""
    if model != models.chat_default(ctx):
        return ""
    _, with_facts, with_examples = split_name(model)
    if not runs.default_adapter(ctx.store):
        if not (with_facts or with_examples):
            return ", no tuned model is in use yet"
        read = " and ".join(["your facts"] * with_facts + ["your examples"] * with_examples)
        return (f", no tuned model is in use yet: it reads {read} most like each message "
                "before it answers, so a correction counts in the very next answer")
    decided = report.last_decision(ctx)
    if decided and decided.get("adopted") and decided["adapter"] == model:
        if report.caveated(decided):
            return (f": run #{decided['run']}'s report card chose it, though it is not sure "
                    "of it yet (the Train tab says why)")
        return f": it did best on the report card of run #{decided['run']} (Compare tab)"
    return ", as chosen in the Compare or Train tab"
