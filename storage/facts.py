"""Facts: what is true about the user's business, stored as passages (services/facts.py
splits and retrieves them). Each passage remembers its source ("typed", or the file's
name) and its place in it.

Every write also moves a counter in data_versions, in the same transaction, so that a
cached index can tell cheaply whether the facts changed (facts_version)."""

from __future__ import annotations

from sqlite_utils import Database

from storage.conversations import now
from storage.db import Store

VERSION_NAME = "facts"
"""The facts' row in data_versions (the table is migration m008's; the row is made by
the first write here)."""


def add(store: Store, source: str, passages: list[str], replace: bool = False) -> list[int]:
    """Store `passages` from `source` in one transaction, after that source's earlier
    ones (or instead of them, when `replace`); their ids, in order."""
    with store.connect() as db:
        if replace:
            db.execute("DELETE FROM facts WHERE source = ?", [source])
        last = db.execute("SELECT MAX(position) FROM facts WHERE source = ?",
                          [source]).fetchone()[0]
        start, stamp, ids = (last or 0) + 1, now(), []
        for offset, text in enumerate(passages):
            cursor = db.execute("INSERT INTO facts (source, position, text, created_at) "
                                "VALUES (?, ?, ?, ?)", [source, start + offset, text, stamp])
            ids.append(int(cursor.lastrowid or 0))
        _bump(db)
    return ids


def all_facts(store: Store) -> list[dict]:
    """Every fact (id, source, position, text, created_at), in the order they were added."""
    with store.read() as db:
        return list(db.query("SELECT id, source, position, text, created_at FROM facts "
                             "ORDER BY id"))


def texts(store: Store) -> set[str]:
    with store.read() as db:
        return {row[0] for row in db.execute("SELECT text FROM facts")}


def delete(store: Store, fact_id: int) -> bool:
    """Whether there was such a fact to delete."""
    with store.connect() as db:
        gone = db.execute("DELETE FROM facts WHERE id = ?", [fact_id]).rowcount
        if gone:
            _bump(db)
    return bool(gone)


def delete_source(store: Store, source: str) -> int:
    """How many facts from `source` were deleted."""
    with store.connect() as db:
        gone = db.execute("DELETE FROM facts WHERE source = ?", [source]).rowcount
        if gone:
            _bump(db)
    return gone


def count(store: Store) -> int:
    with store.read() as db:
        return db.execute("SELECT COUNT(*) FROM facts").fetchone()[0]


def facts_version(store: Store) -> int:
    """Changes on every add and delete (a counter, so a delete followed by an add that
    adds the same text again still counts as a change)."""
    with store.read() as db:
        row = db.execute("SELECT version FROM data_versions WHERE name = ?",
                         [VERSION_NAME]).fetchone()
    return row[0] if row else 0


def _bump(db: Database) -> None:
    db.execute("INSERT INTO data_versions (name, version) VALUES (?, 1) ON CONFLICT(name) "
               "DO UPDATE SET version = version + 1", [VERSION_NAME])
