"""Training examples: whole conversations in chat "messages" form, the last message the
assistant's. Added by keeping or correcting a reply, by hand, or by import; checked on
every write; exact duplicates refused, near-duplicates flagged; deleted softly so a
delete can be undone."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlite_utils import Database

from core.errors import UserError
from core.processes import owner_gone, this_host
from storage.conversations import get_conversation, now
from storage.db import Store, new_id

ROLES = ("system", "user", "assistant")
# Sources a user sees and filters by. "disliked" is a thumbs-down without a fix and
# "vote" a blind vote's winner over its loser: both teach only the preference stages
# (trainer/objectives.py), never SFT.
SOURCES = ("kept", "corrected", "imported", "added", "disliked", "vote")
TRAINABLE = ("kept", "corrected", "imported", "added")
"""Trained on by SFT."""
PAIRED = ("corrected", "vote")
"""Their rejected side makes a preference pair."""
UNDESIRABLE = ("disliked",)
PREFERENCE_ONLY = ("disliked", "vote")
KINDS = {"corrected": "pair", "disliked": "thumbs-down"}
"""What an imported row of a source is counted as; any other source is an example."""
READY_THRESHOLD = 20
"""Examples needed before a first training run (the Train tab will make it a setting)."""


class InvalidExample(UserError):
    """An example breaks a rule; `field` says where (e.g. "messages[2].role")."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


class DuplicateExample(UserError):
    def __init__(self, original_id: int):
        super().__init__(f"This example is already stored, as example #{original_id}.")
        self.original_id = original_id


class ExampleNotFound(UserError):
    pass


@dataclass(frozen=True)
class Example:
    id: int
    messages: list[dict]
    source: str
    rejected: str | None
    conversation_id: int | None
    created_at: str
    near_duplicate_of: int | None = None
    test_only: bool = False
    """Kept for testing: never trained on, never placed in a prompt as an example."""
    must_keep: bool = False
    """A "must not change" check (test only too): every report card asks the base and
    the adapter its prompt and checks the answer still matches."""
    facts_check: bool = False
    """A facts check: the answer to its question must agree with the user's facts (the
    report card scores answers to it against them). Still trained on, unless test only."""

    @property
    def prompt(self) -> str:
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), "")

    @property
    def answer(self) -> str:
        return self.messages[-1]["content"]


def validate_messages(messages, field: str = "messages") -> list[dict]:
    """Check the chat form and return plain {"role", "content"} dicts."""
    if not isinstance(messages, list) or not messages:
        raise InvalidExample(field, "must be a non-empty list of messages")
    clean = [_check_message(m, f"{field}[{i}]") for i, m in enumerate(messages)]
    turns = clean[1:] if clean[0]["role"] == "system" else clean
    for i, message in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if message["role"] != expected:
            index = i + len(clean) - len(turns)
            raise InvalidExample(f"{field}[{index}].role",
                                 f"expected {expected!r} (after the system prompt, turns "
                                 f"alternate user, assistant), got {message['role']!r}")
    if not turns or turns[-1]["role"] != "assistant":
        raise InvalidExample(field, "the last message must be the assistant's answer")
    return clean


def _check_message(message, field: str) -> dict:
    if not isinstance(message, dict):
        raise InvalidExample(field, "must be an object with 'role' and 'content'")
    role, content = message.get("role"), message.get("content")
    if role not in ROLES:
        raise InvalidExample(f"{field}.role", f"must be one of {', '.join(ROLES)}; got {role!r}")
    return {"role": role, "content": check_text(content, f"{field}.content")}


def check_text(text, field: str) -> str:
    if text is None:
        raise InvalidExample(field, "is missing")
    if not isinstance(text, str):
        raise InvalidExample(field, f"must be text, got {type(text).__name__}")
    if not text.strip():
        raise InvalidExample(field, "is empty")
    if "\x00" in text:
        raise InvalidExample(field, "contains a NUL character (\\u0000)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidExample(field, "contains an unpaired surrogate (like \\ud800), which "
                                    "is not valid Unicode text") from None
    return text


def digest(messages: list[dict]) -> str:
    canonical = json.dumps(messages, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _loose(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text.casefold()).strip()


def near_keys(messages: list[dict]) -> tuple[str, str]:
    """(whole conversation, prompt only), ignoring case, spacing and punctuation."""
    whole = "\n".join(f"{m['role']}:{_loose(m['content'])}" for m in messages)
    prompt = "\n".join(f"{m['role']}:{_loose(m['content'])}" for m in messages[:-1])
    return (hashlib.sha256(whole.encode()).hexdigest()[:16],
            hashlib.sha256(prompt.encode()).hexdigest()[:16])


@dataclass(frozen=True)
class Item:
    """One row as it will be stored."""

    messages: list[dict]
    source: str = "imported"
    """imported (an example), corrected (a preference pair) or disliked (a thumbs-down)."""
    rejected: str | None = None

    @property
    def kind(self) -> str:
        return KINDS.get(self.source, "example")


def search_text(messages: list[dict]) -> str:
    """What the Examples tab's search looks in: every message's text, case-folded (SQLite
    folds only ASCII letters itself)."""
    return "\n".join(m["content"] for m in messages).casefold()


def _row(messages: list[dict], source: str, **extra) -> dict:
    whole_key, prompt_key = near_keys(messages)
    stamp = now()
    return {"messages": json.dumps(messages, ensure_ascii=False), "source": source,
            "digest": digest(messages), "near_key": whole_key, "prompt_key": prompt_key,
            "search_text": search_text(messages), "created_at": stamp, "updated_at": stamp,
            **extra}


def _existing_id(db: Database, messages: list[dict], except_id: int | None = None):
    row = db.execute(
        "SELECT id FROM examples WHERE digest = ? AND deleted_at IS NULL AND id IS NOT ?",
        [digest(messages), except_id]).fetchone()
    return row[0] if row else None


def add_example(store: Store, messages, source: str = "added", *, rejected: str | None = None,
                conversation_id: int | None = None, turn_position: int | None = None,
                must_keep: bool = False) -> int:
    """Store one example; `must_keep` stores it as a must-not-change check (test only),
    in the same transaction, so no run can train on it in between."""
    if source not in SOURCES:
        raise InvalidExample("source", f"must be one of {', '.join(SOURCES)}")
    messages = validate_messages(messages)
    with store.connect() as db:
        if (original := _existing_id(db, messages)) is not None:
            raise DuplicateExample(original)
        return new_id(db.table("examples").insert(_row(
            messages, source, rejected=rejected, conversation_id=conversation_id,
            turn_position=turn_position, test_only=int(must_keep), must_keep=int(must_keep))))


def add_vote_pair(store: Store, system: str, prompt: str, preferred: str,
                  other: str) -> int | None:
    """A vote's winner over its loser as a preference pair (source "vote"); None when
    the two answers are the same or the pair is already stored."""
    if not preferred.strip() or not other.strip() or preferred.strip() == other.strip():
        return None
    messages = ([{"role": "system", "content": system}] if system.strip() else []) + [
        {"role": "user", "content": prompt}, {"role": "assistant", "content": preferred}]
    try:
        return add_example(store, messages, "vote", rejected=other)
    except DuplicateExample:
        return None


def add_many(store: Store, items: list[list[dict]], source: str = "imported",
             test_only: bool = False) -> tuple[int, int]:
    """Add examples of one source: (added, skipped as repeats or already present)."""
    added, repeated, present = add_items(
        store, ((f"item {i + 1}", Item(m, source)) for i, m in enumerate(items)), test_only)
    return sum(added.values()), repeated + present


STAGE_BATCH = 2_000
"""Rows written to the staging file at a time."""
STAGED_COLUMNS = ("messages", "source", "rejected", "digest", "near_key", "prompt_key",
                  "search_text")


MERGE_BATCH = 2_000
"""The most rows an import writes to the database per transaction."""
BATCH_S = 0.2
"""What one of an import's transactions aims to take: it holds the write lock that
long, so the app and a training run keep writing while a large file goes in (fewer rows
per transaction as the database grows; bench/scale.py measures the app's waits)."""
YIELD_S = 0.05
"""A pause between an import's transactions: a writer waiting for the lock sleeps in
SQLite's busy handler and would otherwise lose the race to the import's next batch, time
after time."""
PENDING = "importing:"
"""An import's rows are written with deleted_at = PENDING + its token: hidden from every
reader (they read deleted_at IS NULL) until the import has written them all and
publishes them."""


def add_items(store: Store, rows: Iterable, test_only: bool = False, dry_run: bool = False,
              progress: Callable[[int], None] | None = None
              ) -> tuple[dict[str, int], int, int]:
    """Add (place, Item) rows, all or nothing. Returns (added by kind,
    repeats inside `rows`, already stored); repeats and stored ones are skipped, except
    that a pair whose preferred answer is a stored example without a rejected side
    gives it one (counted as a pair). `dry_run` counts without storing anything.

    Rows are read once, checked and staged in a scratch SQLite file beside the database,
    so memory stays bounded whatever their number. Then they are written MERGE_BATCH at
    a time, hidden (PENDING), and published once all are in: a bad row stores nothing,
    a failure while writing removes what was written, and an import whose process died
    is finished or discarded by the next one (finish_interrupted_imports).
    `progress(rows)` is called as rows are staged, every STAGE_BATCH rows."""
    finish_interrupted_imports(store)
    with _staging(store) as stage:
        offered = _stage(stage, rows, progress)
        staged = stage.execute("SELECT COUNT(*) FROM staged").fetchone()[0]
        with store.read(attach=stage.path) as db:
            added, present = _count(db)
        if not dry_run:
            _merge(store, stage, test_only)
    return added, offered - staged, present


class _Stage(sqlite3.Connection):
    path: Path


@contextmanager
def _staging(store: Store) -> Iterator[_Stage]:
    """A scratch database in the data home (its disk, not /tmp's) for one import."""
    handle, name = tempfile.mkstemp(prefix=".import-", suffix=".db", dir=store.home)
    os.close(handle)
    path = Path(name)
    stage = sqlite3.connect(path, factory=_Stage, isolation_level=None)
    stage.path = path
    try:
        stage.execute("PRAGMA page_size = 16384")  # rows of a few KB pack well
        stage.execute("PRAGMA journal_mode = OFF")  # scratch: thrown away on any failure
        stage.execute("PRAGMA synchronous = OFF")
        stage.execute(f"CREATE TABLE staged (n INTEGER PRIMARY KEY, "
                      f"{', '.join(STAGED_COLUMNS)}, UNIQUE (digest))")
        yield stage
    finally:
        stage.close()
        path.unlink(missing_ok=True)


def _stage(stage: sqlite3.Connection, rows: Iterable,
           progress: Callable[[int], None] | None) -> int:
    """Check each row and write it to the scratch file (a repeat of an earlier row is
    ignored by the digest's UNIQUE); returns how many rows were offered."""
    offered = 0
    batch: list[tuple] = []
    insert = (f"INSERT OR IGNORE INTO staged ({', '.join(STAGED_COLUMNS)}) "
              f"VALUES ({', '.join('?' * len(STAGED_COLUMNS))})")
    stage.execute("BEGIN")
    for where, item in rows:
        messages = validate_messages(item.messages, where)
        rejected = None if item.rejected is None else check_text(item.rejected,
                                                                 f"{where}: rejected")
        row = _row(messages, item.source, rejected=rejected)
        batch.append(tuple(row[column] for column in STAGED_COLUMNS))
        offered += 1
        if len(batch) >= STAGE_BATCH:
            stage.executemany(insert, batch)
            batch.clear()
            if progress is not None:
                progress(offered)
    stage.executemany(insert, batch)
    stage.execute("COMMIT")
    return offered


# A staged row is stored already when a live example has its digest.
_STORED = ("EXISTS (SELECT 1 FROM examples e WHERE e.digest = s.digest "
           "AND e.deleted_at IS NULL)")
# A stored example that gains the rejected side a staged pair brings: looked up from the
# staged pairs through the digest index (a scan of every stored example would hold the
# write lock for seconds at a million rows).
_GAINS_A_SIDE = (f"id IN (SELECT e.id FROM stage.staged s JOIN examples e ON e.digest = "
                 f"s.digest WHERE s.rejected IS NOT NULL AND e.deleted_at IS NULL AND "
                 f"e.rejected IS NULL AND e.source IN "
                 f"({', '.join(repr(source) for source in TRAINABLE)}))")
_KIND = ("CASE s.source " + " ".join(f"WHEN '{source}' THEN '{kind}'"
                                     for source, kind in KINDS.items()) + " ELSE 'example' END")


def _count(db: Database) -> tuple[dict[str, int], int]:
    """What the staged rows would add: (added by kind, already stored)."""
    added = dict(db.execute(f"SELECT {_KIND}, COUNT(*) FROM stage.staged s WHERE NOT "
                            f"{_STORED} GROUP BY 1 ORDER BY MIN(s.n)").fetchall())
    stored = db.execute(f"SELECT COUNT(*) FROM stage.staged s WHERE {_STORED}").fetchone()[0]
    gained = db.execute(f"SELECT COUNT(*) FROM examples WHERE {_GAINS_A_SIDE}").fetchone()[0]
    if gained:
        added["pair"] = added.get("pair", 0) + gained
    return added, stored - gained


def _merge(store: Store, stage: _Stage, test_only: bool) -> None:
    """Write the staged rows that are new, hidden, in short transactions; then, in one,
    give stored examples the rejected side a staged pair brings and mark the import
    ready to publish; then publish."""
    token = PENDING + uuid.uuid4().hex
    with store.connect() as db:
        db.execute("INSERT INTO imports VALUES (?, 'writing', ?, ?, ?)",
                   [token, os.getpid(), this_host(), now()])
    try:
        last = stage.execute("SELECT COALESCE(MAX(n), 0) FROM staged").fetchone()[0]
        columns, stamp = ", ".join(STAGED_COLUMNS), now()
        low, size = 0, MERGE_BATCH
        while low < last:
            started = time.monotonic()
            with store.connect(attach=stage.path) as db:
                db.execute(f"INSERT INTO examples ({columns}, test_only, created_at, "
                           f"updated_at, deleted_at) SELECT {columns}, ?, ?, ?, ? FROM "
                           f"stage.staged s WHERE s.n > ? AND s.n <= ? AND NOT {_STORED} "
                           f"ORDER BY s.n", [int(test_only), stamp, stamp, token, low,
                                             low + size])
            low += size
            size = _next_batch(size, time.monotonic() - started)
            time.sleep(YIELD_S)
        with store.connect(attach=stage.path) as db:
            db.execute(f"UPDATE examples SET source = 'corrected', updated_at = ?, rejected "
                       f"= (SELECT s.rejected FROM stage.staged s WHERE s.digest = "
                       f"examples.digest) WHERE {_GAINS_A_SIDE}", [stamp])
            db.execute("UPDATE imports SET state = 'publishing' WHERE token = ?", [token])
    except BaseException:
        _settle_import(store, token, publish=False)
        raise
    _settle_import(store, token, publish=True)


def _next_batch(size: int, took_s: float) -> int:
    """Rows for the next transaction: as many as fit in BATCH_S at the pace of the last
    one (a large database writes each row slower: its indexes are deeper)."""
    return max(100, min(MERGE_BATCH, int(size * BATCH_S / max(took_s, 1e-3))))


def _settle_import(store: Store, token: str, publish: bool) -> None:
    """Publish an import's hidden rows, or remove them, MERGE_BATCH at a time; then
    forget the import. Once it is marked publishing, only publishing ends it."""
    change = ("UPDATE examples SET deleted_at = NULL" if publish else "DELETE FROM examples")
    size = MERGE_BATCH
    while True:
        started = time.monotonic()
        with store.connect() as db:
            if publish:  # what another import or the chat stored meanwhile stays single
                db.execute("DELETE FROM examples WHERE id IN (SELECT id FROM examples WHERE "
                           "deleted_at = ? LIMIT ?) AND EXISTS (SELECT 1 FROM examples e "
                           "WHERE e.digest = examples.digest AND e.deleted_at IS NULL)",
                           [token, size])
            if not db.execute(f"{change} WHERE id IN (SELECT id FROM examples WHERE "
                              "deleted_at = ? LIMIT ?)", [token, size]).rowcount:
                db.execute("DELETE FROM imports WHERE token = ?", [token])
                return
        size = _next_batch(size, time.monotonic() - started)
        time.sleep(YIELD_S)


def finish_interrupted_imports(store: Store) -> None:
    """Imports whose process died: one that had written every row is published (it was
    complete), one still writing is removed (nothing of it was ever shown)."""
    with store.read() as db:
        found = db.execute("SELECT token, state, pid, host FROM imports").fetchall()
    for token, state, pid, host in found:
        if owner_gone(pid, host):
            _settle_import(store, token, publish=state == "publishing")


class JudgementRefused(UserError):
    """A later judgement would silently destroy an earlier one (a correction)."""


@dataclass(frozen=True)
class Judgement:
    example_id: int
    previous: str | None
    """The mark this one replaced (kept, corrected, disliked), if any."""


def judge_reply(store: Store, conversation_id: int, index: int, mark: str,
                corrected: str | None = None) -> Judgement:
    """Keep, dislike or correct the assistant reply at `index` of a conversation's
    messages (as get_conversation returns them), or undo the judgement ("undo").

    The example is the conversation up to that reply (its system prompt included). A
    second mark on the same reply replaces the first, except that a correction is
    never turned into a keep or a dislike (its rejected side would be lost). A
    correction also rewrites the stored turn, so the conversation goes on from the
    fixed answer, and keeps the original as the rejected side of a preference pair.

    An example never holds a reply the user corrected as the model wrote it: earlier
    replies the user corrected are in its history as corrected (as the correction's
    example now says, edited or not), and a correction is carried into the examples
    made before it from later replies of the same conversation."""
    conversation = get_conversation(store, conversation_id)
    if not 0 <= index < len(conversation.messages) or \
            conversation.messages[index]["role"] != "assistant":
        raise InvalidExample("reply", "only the assistant's replies can be kept or corrected")
    position = conversation.positions[index]
    if mark == "undo":
        return _undo(store, conversation_id, position)
    fixed = _corrections(store, conversation_id)
    turns = [{"role": m["role"], "content": fixed[p]} if p in fixed and p != position else m
             for m, p in zip(conversation.messages[:index + 1], conversation.positions)]
    original = turns[-1]["content"]
    rejected = None
    if mark == "corrected":
        corrected = check_text(corrected, "corrected reply")
        turns = turns[:-1] + [{"role": "assistant", "content": corrected}]
        rejected = _first_answer(store, conversation_id, position) or original
    elif mark == "disliked":
        rejected = original
    system = [{"role": "system", "content": conversation.system}] if conversation.system else []
    messages = validate_messages(system + turns)
    with store.connect() as db:
        previous_id, previous = _judged(db, conversation_id, position)
        if previous == "corrected" and mark != "corrected":
            raise JudgementRefused(
                f"This reply is your correction (example #{previous_id}), kept with the "
                "model's first answer as its rejected side; a thumb does not change it. "
                "Correct it again with the pencil, or delete the example in the Examples tab.")
        if (original_id := _existing_id(db, messages, previous_id)) is not None:
            raise DuplicateExample(original_id)
        row = _row(messages, mark, rejected=rejected, conversation_id=conversation_id,
                   turn_position=position)
        if mark == "corrected":
            db.execute("UPDATE turns SET content = ? WHERE conversation_id = ? AND position = ?",
                       [corrected, conversation_id, position])
            _carry_correction(db, conversation_id, position, index,
                              {original, rejected or original}, messages[-1]["content"])
        if previous_id is None and (undone := _undone(db, conversation_id, position)):
            # a thumb pressed, taken back and pressed again: the same example, its number
            # not used up by each press
            db.table("examples").update(undone, {**row, "deleted_at": None})
            return Judgement(undone, None)
        if previous_id is None:
            return Judgement(new_id(db.table("examples").insert(row)), None)
        row.pop("created_at")
        db.table("examples").update(previous_id, row)
        return Judgement(previous_id, previous)


def _judged(db: Database, conversation_id: int, position: int) -> tuple[int | None, str | None]:
    """(example id, mark) of the live example made from this reply, if any."""
    row = db.execute("SELECT id, source FROM examples WHERE conversation_id = ? AND "
                     "turn_position = ? AND deleted_at IS NULL",
                     [conversation_id, position]).fetchone()
    return (row[0], row[1]) if row else (None, None)


def _undone(db: Database, conversation_id: int, position: int) -> int | None:
    """The newest example made from this reply and taken back with its thumb (deleted
    softly), if any."""
    row = db.execute("SELECT id FROM examples WHERE conversation_id = ? AND turn_position "
                     "= ? AND deleted_at IS NOT NULL ORDER BY id DESC LIMIT 1",
                     [conversation_id, position]).fetchone()
    return row[0] if row else None


def _undo(store: Store, conversation_id: int, position: int) -> Judgement:
    """Take back a keep or a dislike (the example is deleted softly: Undo delete in the
    Examples tab restores it). A correction is undone in the Examples tab."""
    with store.connect() as db:
        example_id, previous = _judged(db, conversation_id, position)
        if example_id is None:
            raise JudgementRefused("There is no judgement on this reply to undo.")
        if previous == "corrected":
            raise JudgementRefused(
                f"This reply is your correction (example #{example_id}); delete the example "
                "in the Examples tab to undo it.")
        db.table("examples").update(example_id, {"deleted_at": now()})
    return Judgement(example_id, previous)


def marks(store: Store, conversation_id: int) -> dict[int, str]:
    """Stored position of each judged reply in a conversation -> its mark."""
    with store.read() as db:
        rows = db.execute("SELECT turn_position, source FROM examples WHERE conversation_id "
                          "= ? AND deleted_at IS NULL", [conversation_id]).fetchall()
    return dict(rows)


def _corrections(store: Store, conversation_id: int) -> dict[int, str]:
    """Stored position of each reply of a conversation the user corrected -> the
    correction as its example holds it now (edited in the Examples tab or not)."""
    with store.read() as db:
        rows = db.execute("SELECT turn_position, messages FROM examples WHERE conversation_id "
                          "= ? AND source = 'corrected' AND deleted_at IS NULL",
                          [conversation_id]).fetchall()
    return {position: json.loads(messages)[-1]["content"] for position, messages in rows}


def _carry_correction(db: Database, conversation_id: int, position: int, index: int,
                      replaced: set[str], corrected: str) -> None:
    """Examples made earlier from later replies of the conversation hold the corrected
    reply (message `index` of the conversation, after their system prompt) in their
    history: they get the correction too, where they still hold a text it replaced. One
    that would then repeat another example exactly is left as it is."""
    rows = db.execute("SELECT id, messages FROM examples WHERE conversation_id = ? AND "
                      "turn_position > ? AND deleted_at IS NULL",
                      [conversation_id, position]).fetchall()
    for example_id, stored in rows:
        messages = json.loads(stored)
        at = index + (messages[0]["role"] == "system")
        if at >= len(messages) - 1 or messages[at]["role"] != "assistant" or \
                messages[at]["content"] not in replaced:
            continue
        messages[at] = {"role": "assistant", "content": corrected}
        if _existing_id(db, messages, example_id) is not None:
            continue
        row = _row(messages, "")
        row.pop("created_at")
        row.pop("source")
        db.table("examples").update(example_id, row)


def _with_earlier_corrections(store: Store, messages: list[dict]) -> list[dict]:
    """`messages` with each earlier reply the user corrected (a live correction with the
    same history whose rejected side is that reply) replaced by the correction."""
    messages = list(messages)
    with store.read() as db:
        for i, message in enumerate(messages[:-1]):
            if message["role"] != "assistant":
                continue
            _, history_key = near_keys(messages[:i + 1])
            found = db.execute(
                "SELECT messages FROM examples WHERE prompt_key = ? AND rejected = ? AND "
                "source = 'corrected' AND deleted_at IS NULL ORDER BY id DESC",
                [history_key, message["content"]]).fetchall()
            for (stored,) in found:
                correction = json.loads(stored)
                if correction[:-1] == messages[:i]:
                    messages[i] = correction[-1]
                    break
    return messages


def _first_answer(store: Store, conversation_id: int, position: int) -> str | None:
    """The model's own answer, when this reply was corrected before (correcting twice
    must not make the first correction the rejected side)."""
    with store.read() as db:
        row = db.execute(
            "SELECT rejected FROM examples WHERE conversation_id = ? AND turn_position = ? "
            "AND source = 'corrected' AND deleted_at IS NULL",
            [conversation_id, position]).fetchone()
    return row[0] if row else None


def correct_messages(store: Store, messages, corrected: str) -> int:
    """A correction from outside the chat: `messages` end with the answer to replace.
    Earlier replies in them that the user corrected before are stored corrected."""
    messages = _with_earlier_corrections(store, validate_messages(messages))
    fixed = messages[:-1] + [{"role": "assistant",
                              "content": check_text(corrected, "corrected")}]
    return add_example(store, fixed, "corrected", rejected=messages[-1]["content"])


def update_example(store: Store, example_id: int, messages) -> None:
    messages = validate_messages(messages)
    with store.connect() as db:
        _require(db, example_id)
        if (original := _existing_id(db, messages, example_id)) is not None:
            raise DuplicateExample(original)
        row = _row(messages, "")
        row.pop("created_at")
        row.pop("source")
        db.table("examples").update(example_id, row)


def delete_example(store: Store, example_id: int) -> None:
    with store.connect() as db:
        _require(db, example_id)
        db.table("examples").update(example_id, {"deleted_at": now()})


def restore_example(store: Store, example_id: int) -> None:
    """Undo a delete; refused if the same example was added again meanwhile."""
    with store.connect() as db:
        row = _require(db, example_id, deleted=True)
        if (original := _existing_id(db, json.loads(row["messages"]), example_id)) is not None:
            raise DuplicateExample(original)
        db.table("examples").update(example_id, {"deleted_at": None})


def _require(db: Database, example_id: int, deleted: bool = False) -> dict:
    # deleted by the user, not hidden by an import under way
    state = f"IS NOT NULL AND deleted_at NOT LIKE '{PENDING}%'" if deleted else "IS NULL"
    row = db.execute(f"SELECT * FROM examples WHERE id = ? AND deleted_at {state}",
                     [example_id]).fetchone()
    if row is None:
        raise ExampleNotFound(f"There is no {'deleted ' if deleted else ''}example "
                              f"#{example_id}.")
    return dict(zip([c[0] for c in db.execute("SELECT * FROM examples LIMIT 0").description],
                    row))


def get_example(store: Store, example_id: int) -> Example:
    """One live example; ExampleNotFound when it was deleted (in another tab, say)."""
    with store.read() as db:
        row = db.execute("SELECT id, messages, source, rejected, conversation_id, "
                         "created_at, test_only, must_keep, facts_check FROM examples "
                         "WHERE id = ? AND deleted_at IS NULL", [example_id]).fetchone()
    if row is None:
        raise ExampleNotFound(f"Example #{example_id} is gone (deleted, perhaps in another "
                              "tab). Refresh the table.")
    (id_, messages, source, rejected, conversation_id, created, test_only, must_keep,
     facts_check) = row
    return Example(id_, json.loads(messages), source, rejected, conversation_id, created,
                   test_only=bool(test_only), must_keep=bool(must_keep),
                   facts_check=bool(facts_check))


def set_test_only(store: Store, example_id: int, test_only: bool) -> None:
    """Keep an example for testing only (never trained on), or give it back to training
    (then it is no must-not-change check or facts check either)."""
    with store.connect() as db:
        _require(db, example_id)
        db.table("examples").update(example_id, {"test_only": int(test_only)} | (
            {} if test_only else {"must_keep": 0, "facts_check": 0}))


def set_must_keep(store: Store, example_id: int, must_keep: bool) -> None:
    """Make an example a must-not-change check (and so test only), or a plain example
    kept for testing again."""
    with store.connect() as db:
        _require(db, example_id)
        db.table("examples").update(example_id, {"must_keep": int(must_keep)} | (
            {"test_only": 1} if must_keep else {}))


def set_facts_check(store: Store, example_id: int, facts_check: bool) -> None:
    """Mark an example as a facts check (its question's answer must agree with the
    user's facts), or unmark it. A facts check is kept for testing only, like a
    must-not-change check: a card never checks a model on what it trained on."""
    with store.connect() as db:
        _require(db, example_id)
        db.table("examples").update(example_id, {"facts_check": int(facts_check)} | (
            {"test_only": 1} if facts_check else {}))


def list_examples(store: Store, search: str = "", source: str = "all",
                  sources: tuple[str, ...] = SOURCES, test_only: bool | None = None,
                  limit: int | None = None, offset: int = 0,
                  must_keep: bool | None = None,
                  facts_check: bool | None = None) -> list[Example]:
    """Newest first; `search` matches any message text, case-insensitively; `test_only`
    True or False keeps only the test examples or only the others (`must_keep` and
    `facts_check` likewise for the must-not-change checks and the facts checks); `limit`
    and `offset` give one page."""
    where, params = _filter(search, source, sources, test_only)
    for column, wanted in (("must_keep", must_keep), ("facts_check", facts_check)):
        if wanted is not None:
            where += f" AND e.{column} = ?"
            params.append(int(wanted))
    with store.read() as db:
        return _page(db, where, params, limit, offset)[0]


def facts_checks(store: Store) -> list[Example]:
    """The live examples marked as a facts check, newest first (the report card scores
    answers to their questions against the user's facts)."""
    return list_examples(store, facts_check=True)


def page_of_examples(store: Store, search: str = "", source: str = "all", size: int = 50,
                     number: int = 1) -> tuple[list[Example], int, int]:
    """(the examples of page `number`, how many there are in all, the page's number: a
    page past the end is the last one). Found and paged in SQLite, in one pass over the
    table, so a page of a large dataset costs one scan at most (none without a search)."""
    where, params = _filter(search, source, SOURCES, None)
    number = max(1, number)
    with store.read() as db:
        found, total = _page(db, where, params, size, (number - 1) * size)
        last = max(1, -(-total // size))
        if number > last:
            number = last
            found, total = _page(db, where, params, size, (number - 1) * size)
    return found, total, number


def _page(db: Database, where: str, params: list, limit: int | None,
          offset: int) -> tuple[list[Example], int]:
    """The page's ids (and the total) come from the indexes and the filter; only the
    page's rows are then read whole."""
    picked = db.execute(f"SELECT id, COUNT(*) OVER () FROM examples e WHERE {where} "
                        f"ORDER BY id DESC LIMIT ? OFFSET ?",
                        params + [-1 if limit is None else limit, offset]).fetchall()
    if not picked:  # none at all, or a page past the end: count them
        total = 0 if offset == 0 else db.execute(
            f"SELECT COUNT(*) FROM examples e WHERE {where}", params).fetchone()[0]
        return [], total
    # The near-duplicate twin is looked up for the page's rows only, through the two key
    # indexes ("+" keeps SQLite from scanning the deleted_at index instead).
    twin = ("(SELECT MIN(o.id) FROM examples o WHERE +o.deleted_at IS NULL AND o.id != e.id "
            "AND (o.near_key IN (e.near_key, e.prompt_key) OR "
            "o.prompt_key IN (e.near_key, e.prompt_key)))")
    rows = db.execute(
        f"SELECT id, messages, source, rejected, conversation_id, created_at, {twin}, "
        f"test_only, must_keep, facts_check FROM examples e WHERE id IN (SELECT value FROM "
        f"json_each(?)) ORDER BY id DESC", [json.dumps([id_ for id_, _ in picked])]).fetchall()
    return [Example(id_, json.loads(messages), src, rejected, conv, created, twin_id,
                    bool(test), bool(keep), bool(facts))
            for id_, messages, src, rejected, conv, created, twin_id, test, keep, facts
            in rows], picked[0][1]


def _filter(search: str, source: str, sources: tuple[str, ...],
            test_only: bool | None) -> tuple[str, list]:
    chosen = sources if source == "all" else (source,)
    where = (f"e.deleted_at IS NULL AND e.source IN ({', '.join('?' * len(chosen))})")
    params: list = list(chosen)
    if test_only is not None:
        where += " AND e.test_only = ?"
        params.append(int(test_only))
    if needle := search.strip().casefold():
        where += " AND instr(e.search_text, ?) > 0"
        params.append(needle)
    return where, params


def any_trainable(store: Store) -> bool:
    """Is there a live example SFT trains on? (counts()'s "trainable" > 0, without
    counting: the model lists ask every second.)"""
    placeholders = ", ".join("?" * len(TRAINABLE))
    with store.read() as db:
        return db.execute(f"SELECT EXISTS (SELECT 1 FROM examples WHERE deleted_at IS NULL "
                          f"AND test_only = 0 AND source IN ({placeholders}))",
                          list(TRAINABLE)).fetchone()[0] == 1


def counts(store: Store) -> dict[str, int]:
    """Live examples by source; "trainable" counts those SFT trains on (not test only),
    "pairs" those with a rejected side a preference stage learns from ("corrections" of
    them come from the pencil, the rest from votes), "test_only" those kept for
    testing."""
    with store.read() as db:
        rows = db.execute("SELECT source, test_only, rejected IS NOT NULL, COUNT(*) FROM "
                          "examples WHERE deleted_at IS NULL GROUP BY 1, 2, 3").fetchall()
    result = {source: 0 for source in SOURCES} | {"trainable": 0, "pairs": 0,
                                                  "corrections": 0, "test_only": 0}
    for source, test_only, has_rejected, count in rows:
        result[source] += count
        if test_only:
            result["test_only"] += count
            continue
        result["trainable"] += count * (source in TRAINABLE)
        result["pairs"] += count * (source in PAIRED and bool(has_rejected))
        result["corrections"] += count * (source == "corrected" and bool(has_rejected))
    return result
