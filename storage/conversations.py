"""Conversations and their turns: every message a user sends or receives is stored, so a
restart loses nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlite_utils.db import NotFoundError

from core.errors import UserError
from storage.db import Store, new_id

TITLE_LENGTH = 60


class ConversationNotFound(UserError):
    pass


@dataclass(frozen=True)
class ConversationSummary:
    id: int
    title: str
    updated_at: str
    turns: int
    adapter: str
    """The model the conversation is on."""


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    system: str
    adapter: str
    messages: list[dict]
    positions: list[int]
    """Each message's stored position (keep and correct name a message by its index)."""
    models: list[str | None] = field(default_factory=list)
    """The model that wrote each reply (None for the user's messages)."""
    prompts: list[list[dict] | None] = field(default_factory=list)
    """What the model read for each reply, where a baseline built it (a system prompt or
    examples placed before the conversation); None where it read the conversation."""
    drew_on: list[dict | None] = field(default_factory=list)
    """For each reply, the ids of the user's facts and examples placed in its prompt
    ({"facts": [...], "examples": [...]}), None where none were."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def start_conversation(store: Store, first_message: str, system: str = "",
                       adapter: str = "base") -> int:
    title = " ".join(first_message.split())[:TITLE_LENGTH] or "(untitled)"
    stamp = now()
    with store.connect() as db:
        return new_id(db.table("conversations").insert(
            {"title": title, "system": system, "adapter": adapter, "created_at": stamp,
             "updated_at": stamp}))


def add_exchange(store: Store, conversation_id: int, message: str, reply: str,
                 adapter: str, system: str, prompt: list[dict] | None = None,
                 drew_on: dict | None = None) -> None:
    """Store a user message and its reply together, in one transaction: a message whose
    reply was stopped before it began is not stored, so turns always alternate."""
    with store.connect() as db:
        position = db.execute(
            "SELECT COALESCE(MAX(position), -1) + 1 FROM turns WHERE conversation_id = ?",
            [conversation_id]).fetchone()[0]
        stamp = now()
        db.table("turns").insert_all([
            {"conversation_id": conversation_id, "position": position, "role": "user",
             "content": message, "adapter": adapter, "created_at": stamp},
            {"conversation_id": conversation_id, "position": position + 1,
             "role": "assistant", "content": reply, "adapter": adapter, "created_at": stamp,
             "prompt": json.dumps(prompt, ensure_ascii=False) if prompt else None,
             "drew_on": json.dumps(drew_on) if drew_on else None}])
        db.table("conversations").update(conversation_id, {"updated_at": stamp, "system": system,
                                                     "adapter": adapter})


def list_conversations(store: Store, limit: int = 200) -> list[ConversationSummary]:
    """Newest first; a conversation whose first reply never began is left out."""
    with store.read() as db:
        rows = db.execute(
            """SELECT c.id, c.title, c.updated_at, COUNT(t.id), c.adapter
               FROM conversations c JOIN turns t ON t.conversation_id = c.id
               GROUP BY c.id ORDER BY c.updated_at DESC, c.id DESC LIMIT ?""",
            [limit],
        ).fetchall()
    return [ConversationSummary(*row) for row in rows]


def get_conversation(store: Store, conversation_id: int) -> Conversation:
    with store.read() as db:
        try:
            row = db.table("conversations").get(conversation_id)
        except NotFoundError:
            raise ConversationNotFound(f"There is no conversation #{conversation_id}.") from None
        turns = list(db.table("turns").rows_where(
            "conversation_id = ?", [conversation_id], order_by="position"))
    # Older versions stored a message before its reply, and a reply stopped before its
    # first token left the message unanswered: such a message is skipped, so the turns
    # alternate.
    kept = [t for i, t in enumerate(turns) if t["role"] != "user"
            or (i + 1 < len(turns) and turns[i + 1]["role"] == "assistant")]
    return Conversation(row["id"], row["title"], row["system"] or "", row["adapter"] or "base",
                        [{"role": t["role"], "content": t["content"]} for t in kept],
                        [t["position"] for t in kept],
                        [t["adapter"] if t["role"] == "assistant" else None for t in kept],
                        [json.loads(t["prompt"]) if t.get("prompt") else None for t in kept],
                        [json.loads(t["drew_on"]) if t.get("drew_on") else None for t in kept])
