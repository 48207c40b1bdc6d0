import sqlite3
import threading

import pytest

from storage import conversations
from storage.conversations import ConversationNotFound
from storage.db import DB_FILENAME, StorageError, Store, migrations, open_store


def test_open_creates_database_in_wal_mode_with_all_tables(store):
    assert store.path.is_file()
    with store.read() as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
        assert {"conversations", "turns", "examples", "runs", "votes"} <= set(db.table_names())


def test_migrations_apply_once(store):
    open_store(store.home)  # a second open must not re-run or fail
    with store.read() as db:
        assert migrations.pending(db) == []
        names = [row["name"] for row in db["_sqlite_migrations"].rows]
    # every registered migration applied exactly once, in its numbered order
    assert names == sorted(set(names)) and len(names) == len(migrations._migrations)
    assert names[0] == "m001_initial"


def test_conversation_survives_a_restart(store):
    conversation_id = conversations.start_conversation(store, "Hello there", "Be brief.")
    conversations.add_exchange(store, conversation_id, "Hello there", "Hi! 👋 مرحبا\nline 2",
                               "base", "Be brief.")

    reopened = Store(open_store(store.home).home)  # as after a restart: new objects
    stored = conversations.get_conversation(reopened, conversation_id)
    assert stored.system == "Be brief."
    assert stored.messages == [
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": "Hi! 👋 مرحبا\nline 2"},
    ]
    [summary] = conversations.list_conversations(reopened)
    assert (summary.title, summary.turns) == ("Hello there", 2)


def test_missing_conversation_is_a_clear_error(store):
    with pytest.raises(ConversationNotFound, match="#42"):
        conversations.get_conversation(store, 42)


def test_concurrent_turns_keep_distinct_positions(store):
    conversation_id = conversations.start_conversation(store, "busy")

    def add_many():
        for i in range(20):
            conversations.add_exchange(store, conversation_id, f"message {i}", "answer",
                                       "base", "")

    threads = [threading.Thread(target=add_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    positions = [
        row[0] for row in sqlite3.connect(store.path).execute(
            "SELECT position FROM turns WHERE conversation_id = ?", [conversation_id])
    ]
    assert sorted(positions) == list(range(160))


def test_failed_write_leaves_nothing_half_written(store):
    with pytest.raises(RuntimeError):
        with store.connect() as db:
            db["conversations"].insert({"title": "half"})
            raise RuntimeError("crash in the middle")
    assert conversations.list_conversations(store) == []


def test_unwritable_home_names_the_path(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match=str(blocker / "home")) as error:
        open_store(blocker / "home")
    assert "--home" in str(error.value)


def test_corrupt_database_names_the_path(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / DB_FILENAME).write_bytes(b"this is not sqlite" * 500)
    with pytest.raises(StorageError, match=str(home / DB_FILENAME)) as error:
        open_store(home)
    assert "corrupt" in str(error.value)
