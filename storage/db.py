"""Open the tunechat database: a SQLite file in the data home, WAL, busy timeout,
numbered migrations applied on open. The only module that knows where the file is."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from sqlite_utils import Database, Migrations

from core.errors import UserError

DB_FILENAME = "tunechat.db"
BUSY_TIMEOUT_MS = 10_000


class StorageError(UserError):
    """The data home or its database cannot be used; the message names the path and the fix."""


def data_home(explicit: str | os.PathLike | None = None) -> Path:
    """--home DIR, else $TUNECHAT_HOME, else ~/.tunechat."""
    chosen = explicit or os.environ.get("TUNECHAT_HOME") or Path.home() / ".tunechat"
    return Path(chosen).expanduser().resolve()


migrations = Migrations("tunechat")


@migrations()
def m001_initial(db: Database) -> None:
    db.table("conversations").create(
        {"id": int, "title": str, "system": str, "adapter": str, "created_at": str,
         "updated_at": str},
        pk="id",
    )
    db.table("turns").create(
        {"id": int, "conversation_id": int, "position": int, "role": str, "content": str,
         "adapter": str, "created_at": str},
        pk="id",
        foreign_keys=[("conversation_id", "conversations", "id")],
    )
    db.table("turns").create_index(["conversation_id", "position"], unique=True)
    # Filled by the next issues; created now so every database has the same shape.
    db.table("examples").create(
        {"id": int, "conversation_id": int, "messages": str, "source": str,
         "created_at": str},
        pk="id",
    )
    db.table("runs").create(
        {"id": int, "status": str, "config": str, "adapter": str, "error": str,
         "created_at": str, "updated_at": str},
        pk="id",
    )
    db.table("votes").create(
        {"id": int, "prompt": str, "left": str, "right": str, "winner": str,
         "created_at": str},
        pk="id",
    )


@migrations()
def m002_examples_for_collecting(db: Database) -> None:
    """Examples learn where they came from, their rejected side, and dedup keys."""
    examples = db.table("examples")
    for column, kind in [("turn_position", int), ("rejected", str), ("digest", str),
                         ("near_key", str), ("prompt_key", str), ("updated_at", str),
                         ("deleted_at", str)]:
        examples.add_column(column, kind)
    examples.create_index(["digest"])
    examples.create_index(["conversation_id", "turn_position"])


@migrations()
def m003_training_runs(db: Database) -> None:
    """Runs get their progress, metrics and process; a settings table holds the
    auto-start threshold."""
    runs = db.table("runs")
    for column, kind in [("pid", int), ("step", int), ("total_steps", int),
                         ("losses", str), ("eval_losses", str), ("metrics", str),
                         ("example_ids", str), ("max_example_id", int),
                         ("cancel_requested", int), ("started_at", str),
                         ("finished_at", str), ("log_path", str)]:
        runs.add_column(column, kind)
    runs.create_index(["status"])
    db.table("settings").create({"key": str, "value": str}, pk="key")


@migrations()
def m004_comparison_votes(db: Database) -> None:
    """Votes keep both answers and whether the voter knew which model was which."""
    for column, kind in [("system", str), ("left_reply", str), ("right_reply", str),
                         ("blind", int)]:
        db.table("votes").add_column(column, kind)


@migrations()
def m005_run_lineage(db: Database) -> None:
    """A run keeps what it trained on and held out, as it was when queued: later edits
    and deletes of examples change nothing about a past run. Runs queued before this
    migration get a snapshot of their examples as they are now, split by the rule they
    were trained with (a hash of each example, a tenth held out from 20 examples)."""
    db.table("run_examples").create(
        {"run_id": int, "example_id": int, "split": str, "source": str, "messages": str,
         "rejected": str, "ord": int},
        pk=("run_id", "example_id"), foreign_keys=[("run_id", "runs", "id")])
    for column, kind in [("code_version", str), ("lineage_note", str)]:
        db.table("runs").add_column(column, kind)
    for run_id, config, example_ids in db.execute(
            "SELECT id, config, example_ids FROM runs").fetchall():
        _snapshot_old_run(db, run_id, json.loads(config or "{}"),
                          json.loads(example_ids or "[]"))


def _snapshot_old_run(db: Database, run_id: int, config: dict, example_ids: list[int]) -> None:
    wanted = set(example_ids)
    rows = [row for row in db.execute(
        "SELECT id, source, messages, rejected FROM examples ORDER BY id").fetchall()
        if row[0] in wanted]
    share = config.get("eval_share", 0.1)

    def held_out(messages: str) -> bool:  # the rule runs were split by before lineage
        canonical = json.dumps(json.loads(messages), ensure_ascii=False, separators=(",", ":"))
        bucket = int(hashlib.sha256(canonical.encode()).hexdigest()[:8], 16) % 1000
        return len(rows) >= 20 and bucket < share * 1000

    db.table("run_examples").insert_all(
        {"run_id": run_id, "example_id": id_, "source": source, "messages": messages,
         "rejected": rejected, "ord": i, "split": "held_out" if held_out(messages) else "train"}
        for i, (id_, source, messages, rejected) in enumerate(rows))
    db.table("runs").update(run_id, {"lineage_note": (
        "Queued before runs kept their examples: this snapshot was taken when tunechat was "
        "upgraded, so examples edited before then show their later text.")})


@migrations()
def m006_report_cards(db: Database) -> None:
    """Examples a user keeps for testing only; the prompt a baseline built for a reply;
    each run's report card."""
    db.table("examples").add_column("test_only", int, not_null_default=0)
    db.table("turns").add_column("prompt", str)
    db.table("reports").create(
        {"id": int, "run_id": int, "adapter": str, "report": str, "created_at": str},
        pk="id", foreign_keys=[("run_id", "runs", "id")])
    db.table("reports").create_index(["run_id"])


@migrations()
def m007_examples_at_scale(db: Database) -> None:
    """The Examples tab searches, counts and checks near-duplicates in SQLite, a page at
    a time: each example keeps its case-folded text to search in, the counts read a
    covering index, and the near-duplicate keys are indexed. (The text is written as
    storage/examples.search_text wrote it then: a migration does not follow later code.)"""
    examples = db.table("examples")
    examples.add_column("search_text", str)
    for id_, messages in db.execute("SELECT id, messages FROM examples").fetchall():
        text = "\n".join(m["content"] for m in json.loads(messages)).casefold()
        db.execute("UPDATE examples SET search_text = ? WHERE id = ?", [text, id_])
    examples.create_index(["near_key"])
    examples.create_index(["prompt_key"])
    db.execute("CREATE INDEX examples_counted ON examples "
               "(deleted_at, source, test_only, rejected IS NOT NULL)")


@migrations()
def m008_examples_version(db: Database) -> None:
    """A counter that every edit, delete, restore or test-only mark of an example moves,
    so a cache of examples (the chat's few-shot pool) can tell it is stale (an insert
    shows as a new largest id); and the user's "must not change" checks, test-only
    examples every report card asks the base and the adapter."""
    db.table("examples").add_column("must_keep", int, not_null_default=0)
    db.execute("CREATE TABLE data_versions (name TEXT PRIMARY KEY, version INTEGER)")
    db.execute("INSERT INTO data_versions VALUES ('examples', 0)")
    for event in ("UPDATE", "DELETE"):
        db.execute(f"CREATE TRIGGER examples_version_{event.lower()} AFTER {event} ON "
                   f"examples BEGIN UPDATE data_versions SET version = version + 1 "
                   f"WHERE name = 'examples'; END")


@migrations()
def m009_run_supervision(db: Database) -> None:
    """A run's trainer says where it runs (host, with the pid) and that it is alive (a
    heartbeat, unix seconds), so any process can tell a run whose trainer is gone."""
    runs = db.table("runs")
    runs.add_column("host", str)
    runs.add_column("heartbeat_at", float)


@migrations()
def m010_imports_in_batches(db: Database) -> None:
    """An import writes its rows in short transactions, hidden until it publishes them
    (storage/examples.py add_items); this table says which imports are under way, by
    which process, so an interrupted one is finished or discarded."""
    db.execute("CREATE TABLE imports (token TEXT PRIMARY KEY, state TEXT NOT NULL, "
               "pid INTEGER, host TEXT, created_at TEXT)")


@migrations()
def m011_runs_frozen_in_batches(db: Database) -> None:
    """A run's examples are copied in batches (storage/placement.py freeze_run): `frozen`
    says the copy is complete, and a count replaces the list of ids on the run's row
    (read on every poll of the Train tab, it grew with the dataset)."""
    runs = db.table("runs")
    runs.add_column("frozen", int, not_null_default=1)
    runs.add_column("example_count", int)
    db.execute("UPDATE runs SET example_count = json_array_length(COALESCE(example_ids, "
               "'[]'))")


@migrations()
def m012_facts(db: Database) -> None:
    """What is true about the user's business, in passages placed in prompts
    (services/facts.py); which facts and examples each reply drew on; examples the user
    marked as a facts check (the report card scores answers to them against the facts)."""
    # AUTOINCREMENT: a reply names the facts it drew on by id, so an id is never reused
    db.execute("CREATE TABLE facts (id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT, "
               "position INTEGER, text TEXT, created_at TEXT)")
    db.table("turns").add_column("drew_on", str)
    db.table("examples").add_column("facts_check", int, not_null_default=0)


@dataclass(frozen=True)
class Store:
    """The data home; hands out short-lived connections (one per unit of work), which
    keeps Gradio's worker threads and the trainer process from sharing a connection."""

    home: Path

    @property
    def path(self) -> Path:
        return self.home / DB_FILENAME

    @contextmanager
    def connect(self, attach: Path | None = None) -> Iterator[Database]:
        """A connection holding one write transaction, committed when the block ends;
        `attach`: another database file, seen as schema "stage".

        BEGIN IMMEDIATE takes the write lock up front: a deferred transaction that reads
        and then writes can fail at once with "database is locked" under WAL, busy
        timeout or not, when another process wrote in between.
        """
        conn = self._open(attach)
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield Database(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    @contextmanager
    def read(self, attach: Path | None = None) -> Iterator[Database]:
        """A connection for reads only; WAL lets them run beside a writer."""
        conn = self._open(attach)
        try:
            yield Database(conn)
        finally:
            conn.close()

    def _open(self, attach: Path | None = None) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves (see connect).
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                               isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        if attach is not None:  # before any transaction: ATTACH cannot run inside one
            conn.execute("ATTACH DATABASE ? AS stage", [str(attach)])
        return conn


def new_id(table) -> int:
    """The id of the row a sqlite-utils table has just inserted."""
    return cast(int, table.last_pk)


def open_store(home: str | os.PathLike | None = None) -> Store:
    """Create the data home if needed, check the database, apply pending migrations."""
    store = Store(data_home(home))
    _ensure_home(store.home)
    try:
        conn = sqlite3.connect(store.path, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            db = Database(conn)
            db.enable_wal()
            if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("integrity check failed")
            migrations.apply(db)
        finally:
            conn.close()
    except sqlite3.DatabaseError as error:
        raise StorageError(
            f"The database {store.path} cannot be read ({error}). It may be corrupt or not a "
            "tunechat database. Fix: move it aside (keep a copy) and restart to begin a new "
            "one, or pick another data home with --home."
        ) from error
    return store


def _ensure_home(home: Path) -> None:
    try:
        home.mkdir(parents=True, exist_ok=True)
        # A probe of its own: processes opening the same home at once (the trainer's
        # ranks, two servers) must not delete each other's.
        with tempfile.NamedTemporaryFile(dir=home, prefix=".write-test-"):
            pass
    except OSError as error:
        raise StorageError(
            f"The data home {home} cannot be written ({error.strerror or error}). Fix: choose "
            "a writable folder with --home DIR or TUNECHAT_HOME, or fix its permissions."
        ) from error
