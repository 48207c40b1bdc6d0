"""Conversations and their turns: every message a user sends or receives is stored, so a
restart loses nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlite_utils.db import NotFoundError

from storage.db import Store

TITLE_LENGTH = 60


class ConversationNotFound(Exception):
    pass


@dataclass(frozen=True)
class ConversationSummary:
    id: int
    title: str
    updated_at: str
    turns: int


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    system: str
    adapter: str
    messages: list[dict]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def start_conversation(store: Store, first_message: str, system: str = "",
                       adapter: str = "base") -> int:
    title = " ".join(first_message.split())[:TITLE_LENGTH] or "(untitled)"
    stamp = now()
    with store.connect() as db:
        table = db["conversations"].insert(
            {"title": title, "system": system, "adapter": adapter, "created_at": stamp,
             "updated_at": stamp}
        )
        return table.last_pk


def add_turn(store: Store, conversation_id: int, role: str, content: str,
             adapter: str | None = None, system: str | None = None) -> int:
    """Append one message; also records the system prompt and adapter now in use."""
    stamp = now()
    with store.connect() as db:
        position = db.execute(
            "SELECT COALESCE(MAX(position), -1) + 1 FROM turns WHERE conversation_id = ?",
            [conversation_id],
        ).fetchone()[0]
        row = db["turns"].insert(
            {"conversation_id": conversation_id, "position": position, "role": role,
             "content": content, "adapter": adapter, "created_at": stamp}
        )
        changes = {"updated_at": stamp}
        if system is not None:
            changes["system"] = system
        if adapter is not None:
            changes["adapter"] = adapter
        db["conversations"].update(conversation_id, changes)
        return row.last_pk


def list_conversations(store: Store, limit: int = 200) -> list[ConversationSummary]:
    with store.read() as db:
        rows = db.execute(
            """SELECT c.id, c.title, c.updated_at, COUNT(t.id)
               FROM conversations c LEFT JOIN turns t ON t.conversation_id = c.id
               GROUP BY c.id ORDER BY c.updated_at DESC, c.id DESC LIMIT ?""",
            [limit],
        ).fetchall()
    return [ConversationSummary(*row) for row in rows]


def get_conversation(store: Store, conversation_id: int) -> Conversation:
    with store.read() as db:
        try:
            row = db["conversations"].get(conversation_id)
        except NotFoundError:
            raise ConversationNotFound(f"There is no conversation #{conversation_id}.") from None
        turns = db["turns"].rows_where(
            "conversation_id = ?", [conversation_id], order_by="position"
        )
        messages = [{"role": t["role"], "content": t["content"]} for t in turns]
    return Conversation(row["id"], row["title"], row["system"] or "", row["adapter"] or "base",
                        messages)
