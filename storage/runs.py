"""Training runs: their status, progress, metrics and adapter; and app settings such as
the auto-start threshold. Written by the trainer process and read by the app."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass

from core.adapters import split_name
from core.errors import UserError
from core.processes import owner_gone, this_host
from storage.conversations import now
from storage.db import Store, new_id
from storage.examples import TRAINABLE

ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")
JSON_COLUMNS = ("config", "losses", "eval_losses", "metrics", "example_ids")
HEARTBEAT_S = 2.0
"""How often a trainer says it is alive, from a thread of its own (not the training
step, which can take longer than this on a slow machine)."""
STALE_S = 60.0
"""A running run whose trainer has not said it is alive for this long is failed: it hung,
its machine went away, or its pid now names another process. Long beside HEARTBEAT_S: a
heartbeat may wait out a busy database (BUSY_TIMEOUT_MS) or a starved CPU."""


class RunActive(UserError):
    """Only one run at a time: another one is queued or running."""

    def __init__(self, run_id: int, status: str = "running", pid: int | None = 1):
        state = ("queued but never launched" if status == "queued" and not pid
                 else "training")
        super().__init__(
            f"Run #{run_id} is {state}: wait for it to finish, or cancel it (Cancel in the "
            f"Train tab, or `tunechat cancel {run_id}`).")
        self.run_id, self.state = run_id, state


class RunNotFound(UserError):
    pass


class RunNotResumable(UserError):
    pass


class InvalidVote(UserError):
    pass


SPLITS = ("train", "held_out")


@dataclass(frozen=True)
class RunExample:
    """One example as a run saw it when it was queued."""

    example_id: int
    split: str
    """train: trained on; held_out: never trained on, for the run's eval and reports."""
    source: str
    messages: list[dict]
    rejected: str | None = None


def _decode(row: dict) -> dict:
    for column in JSON_COLUMNS:
        row[column] = json.loads(row[column]) if row.get(column) else (
            {} if column in ("config", "metrics") else [])
    return row


def create_run(store: Store, config: dict, snapshot: list[RunExample],
               code_version: str = "") -> int:
    """Insert a queued run with its frozen examples, unless a run is active; the check and
    the insert share one write transaction, so two sessions crossing the threshold
    together start one run."""
    settle_dead_runs(store)  # a run whose trainer is gone must not block this one
    ids = [row.example_id for row in snapshot]
    with store.connect() as db:
        active = db.execute("SELECT id, status, pid FROM runs WHERE status IN ('queued', "
                            "'running') LIMIT 1").fetchone()
        if active:
            raise RunActive(*active)
        run_id = _insert_run(db, config, code_version, example_count=len(ids),
                             max_example_id=max(ids, default=0))
        db.table("run_examples").insert_all(
            {"run_id": run_id, "example_id": row.example_id, "split": row.split,
             "source": row.source, "messages": json.dumps(row.messages, ensure_ascii=False),
             "rejected": row.rejected, "ord": i} for i, row in enumerate(snapshot))
        return run_id


def _insert_run(db, config: dict, code_version: str, **fields) -> int:
    stamp = now()
    return new_id(db.table("runs").insert({
        "status": "queued", "config": json.dumps(config), "created_at": stamp,
        "updated_at": stamp, "example_ids": "[]", "step": 0, "losses": "[]",
        "eval_losses": "[]", "cancel_requested": 0, "code_version": code_version,
        **fields}))


def reserve_run(store: Store, config: dict, code_version: str = "") -> int:
    """A queued run whose examples are still being copied (not `frozen`), unless a run
    is active (checked in the same transaction: two sessions crossing the threshold
    together start one run). It names this process, so that a copy cut short by its
    death is discarded (settle_dead_runs); seal_run completes it."""
    settle_dead_runs(store)
    with store.connect() as db:
        active = db.execute("SELECT id, status, pid FROM runs WHERE status IN ('queued', "
                            "'running') LIMIT 1").fetchone()
        if active:
            raise RunActive(*active)
        return _insert_run(db, config, code_version, frozen=0, pid=os.getpid(),
                           host=this_host())


def seal_run(store: Store, run_id: int, example_count: int, max_example_id: int) -> None:
    """The run's examples are all copied: it is ready for a trainer (and no longer this
    process's: a launcher records the trainer's pid). Refused when another process
    discarded it meanwhile (it took this one for dead)."""
    with store.connect() as db:
        sealed = db.execute("UPDATE runs SET frozen = 1, pid = NULL, host = NULL, "
                            "example_count = ?, max_example_id = ?, updated_at = ? WHERE id "
                            "= ? AND frozen = 0 AND status = 'queued'",
                            [example_count, max_example_id, now(), run_id]).rowcount
    if not sealed:
        raise RunNotFound(f"Run #{run_id} was discarded while its examples were copied; "
                          "start the run again.")


def newest_frozen_run(store: Store) -> int | None:
    """The newest run whose examples are all copied (None before any)."""
    with store.read() as db:
        row = db.execute("SELECT MAX(id) FROM runs WHERE frozen = 1").fetchone()
    return row[0] if row else None


def discard_run(store: Store, run_id: int, batch: int = 5_000) -> None:
    """Remove a run that was never sealed, and the examples copied for it so far (a
    batch at a time: the copy may be large)."""
    with store.connect() as db:  # claimed first: a run sealed meanwhile is not touched
        if not db.execute("UPDATE runs SET status = 'failed', error = 'discarded while its "
                          "examples were copied' WHERE id = ? AND frozen = 0",
                          [run_id]).rowcount:
            return
    while True:
        with store.connect() as db:
            if not db.execute("DELETE FROM run_examples WHERE rowid IN (SELECT rowid FROM "
                              "run_examples WHERE run_id = ? LIMIT ?)", [run_id, batch]
                              ).rowcount:
                db.execute("DELETE FROM runs WHERE id = ? AND frozen = 0", [run_id])
                return


def run_examples(store: Store, run_id: int, split: str | None = None) -> list[RunExample]:
    """The run's examples as they were when it was queued, in the order it saw them."""
    where, params = "run_id = ?", [str(run_id)]
    if split is not None:
        where, params = where + " AND split = ?", params + [split]
    with store.read() as db:
        rows = db.execute(f"SELECT example_id, split, source, messages, rejected FROM "
                          f"run_examples WHERE {where} ORDER BY ord", params).fetchall()
    return [RunExample(id_, split_, source, json.loads(messages), rejected)
            for id_, split_, source, messages, rejected in rows]


def run_of_adapter(store: Store, adapter: str) -> dict | None:
    """The run that trained `adapter`, if a run of this home did."""
    with store.read() as db:
        rows = list(db.table("runs").rows_where("adapter = ? AND status = 'succeeded'", [adapter],
                                          order_by="id desc", limit=1))
    return _decode(rows[0]) if rows else None


def get_run(store: Store, run_id: int) -> dict:
    with store.read() as db:
        rows = list(db.table("runs").rows_where("id = ?", [run_id]))
    if not rows:
        raise RunNotFound(f"There is no run #{run_id}.")
    return _decode(rows[0])


def list_runs(store: Store, limit: int = 100) -> list[dict]:
    with store.read() as db:
        return [_decode(r) for r in db.table("runs").rows_where(order_by="id desc", limit=limit)]


def active_run(store: Store) -> dict | None:
    with store.read() as db:
        rows = list(db.table("runs").rows_where("status IN ('queued', 'running')", limit=1))
    return _decode(rows[0]) if rows else None


def update_run(store: Store, run_id: int, **changes) -> None:
    for column in JSON_COLUMNS:
        if column in changes and not isinstance(changes[column], str):
            changes[column] = json.dumps(changes[column])
    with store.connect() as db:
        db.table("runs").update(run_id, {**changes, "updated_at": now()})


def finish_run(store: Store, run_id: int, status: str, *, error: str | None = None,
               adapter: str | None = None, metrics: dict | None = None,
               pid: int | None = None) -> bool:
    """Record the end of a run once: a run already finished keeps how it first ended.
    With `pid`, only while that process is the run's (a resumed run has a new one).
    True when this call recorded it."""
    changes = {"status": status, "finished_at": now(), "updated_at": now()}
    if error is not None:
        changes["error"] = error
    if adapter is not None:
        changes["adapter"] = adapter
    if metrics is not None:
        changes["metrics"] = json.dumps(metrics)
    with store.connect() as db:
        assignments = ", ".join(f"{column} = ?" for column in changes)
        return db.execute(f"UPDATE runs SET {assignments} WHERE id = ? AND status IN "
                          "('queued', 'running') AND (? IS NULL OR pid = ?)",
                          [*changes.values(), run_id, pid, pid]).rowcount == 1


# --- a run's life, owned by the database ------------------------------------------------
# Any process may have launched a run (the web app, `tunechat train`, an import that
# crossed the threshold and exited). What the trainer writes (pid, host, heartbeat) lets
# every process that reads runs tell one whose trainer is gone; every change of status is
# one conditional UPDATE, so two processes (two clicks, two tabs) never both win.

def start_running(store: Store, run_id: int, pid: int | None) -> bool:
    """The trainer takes its queued run: running, on this host, alive now (with its pid,
    unless the launcher's stays the run's, under torchrun). False when the run is no
    longer queued (cancelled before the trainer got to it)."""
    changes = {"status": "running", "started_at": now(), "updated_at": now(),
               "host": this_host(), "heartbeat_at": time.time()}
    if pid is not None:
        changes["pid"] = pid
    assignments = ", ".join(f"{column} = ?" for column in changes)
    with store.connect() as db:
        return db.execute(f"UPDATE runs SET {assignments} WHERE id = ? AND status = 'queued'",
                          [*changes.values(), run_id]).rowcount == 1


def launched(store: Store, run_id: int, pid: int, log_path: str) -> None:
    """The launcher records the process it started (the one it can wait on)."""
    update_run(store, run_id, pid=pid, host=this_host(), log_path=log_path)


def beat(store: Store, run_id: int) -> bool:
    """The trainer is alive. Best effort: a database busy past its timeout skips a beat
    (STALE_S allows many) and never stops training."""
    try:
        with store.connect() as db:
            db.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ? AND status = 'running'",
                       [time.time(), run_id])
        return True
    except sqlite3.OperationalError:
        return False


def requeue(store: Store, run_id: int) -> None:
    """A failed or cancelled run queued again (resume), in one conditional UPDATE: of two
    resumes at once, one queues it and the other is told a run is active."""
    with store.connect() as db:
        changed = db.execute(
            "UPDATE runs SET status = 'queued', error = NULL, cancel_requested = 0, "
            "finished_at = NULL, pid = NULL, host = NULL, heartbeat_at = NULL, updated_at = ? "
            "WHERE id = ? AND status IN ('failed', 'cancelled') AND frozen = 1 AND NOT EXISTS "
            "(SELECT 1 FROM "
            "runs WHERE status IN ('queued', 'running'))", [now(), run_id]).rowcount
    if not changed:
        active = active_run(store)
        if active:
            raise RunActive(active["id"], active["status"], active["pid"])
        raise RunNotResumable(f"Run #{run_id} {get_run(store, run_id)['status']}; only failed "
                              "or cancelled runs resume.")


def request_cancel(store: Store, run_id: int) -> bool:
    """Ask the run's trainer to stop (it reads the flag after each step); False when the
    run is not active."""
    with store.connect() as db:
        return db.execute("UPDATE runs SET cancel_requested = 1, updated_at = ? WHERE id = ? "
                          "AND status IN ('queued', 'running')", [now(), run_id]).rowcount == 1


def trainer_gone(run: dict, at: float | None = None) -> str | None:
    """Why an active run's trainer is gone, or None while it may be alive: its process
    has ended (on this machine), or, where its process cannot be checked, it has not said
    it is alive for STALE_S. A queued run no process was launched for is left alone (a
    launcher of the user's may take it)."""
    if run["status"] not in ACTIVE:
        return None
    if run.get("pid") and owner_gone(run["pid"], run.get("host")):
        return (f"The trainer process (pid {run['pid']}) ended without recording an end: "
                "it was killed, ran out of memory, or the machine restarted. Resume (Train "
                "tab) to continue from the last checkpoint.")
    # Silence judges only a trainer whose process cannot be checked here (another
    # machine, or none recorded: under a launcher of the user's); one alive on this
    # machine may just have slept with it.
    checkable = run.get("pid") and run.get("host") in (None, this_host())
    quiet = (at or time.time()) - run["heartbeat_at"] if run.get("heartbeat_at") else 0.0
    if run["status"] == "running" and not checkable and quiet > STALE_S:
        return (f"The trainer (pid {run['pid']} on {run.get('host') or 'this machine'}) has "
                f"not reported for {quiet:.0f} s: it hung, or its machine went away. Resume (Train "
                "tab) to continue from the last checkpoint.")
    return None


WATCHED: set[int] = set()
"""Trainer pids this process launched and waits on (supervision/jobs.py): their watcher
records their end with the exit signal and the log's last lines, so settle_dead_runs
leaves them to it."""


def settle_dead_runs(store: Store) -> list[int]:
    """Fail each active run whose trainer is gone, with the reason; the ids it failed.
    Every process that reads runs calls this (serve, the Train tab's poll, the command
    line's train, runs and cancel), so a run never stays "running" after its trainer
    and the process that launched it are gone."""
    with store.read() as db:
        active = [_decode(r) for r in db.table("runs").rows_where(
            "status IN ('queued', 'running')")]
    failed = []
    for run in active:
        if not run["frozen"]:  # its examples were still being copied
            if owner_gone(run["pid"], run.get("host")):
                discard_run(store, run["id"])
        elif run["pid"] not in WATCHED and (reason := trainer_gone(run)) and \
                finish_run(store, run["id"], "failed", error=reason, pid=run["pid"]):
            failed.append(run["id"])
    return failed


def unfinished_adapters(store: Store) -> set[str]:
    """Adapter names of this home's runs that did not succeed ("run-N"): a folder by
    that name (a cancel during the final save, a kill mid-write) is no model to offer."""
    with store.read() as db:
        rows = db.execute("SELECT id, status, adapter FROM runs").fetchall()
    succeeded = {adapter for _, status, adapter in rows if status == "succeeded"}
    return {f"run-{id_}" for id_, status, _ in rows if status != "succeeded"} - succeeded


def latest_adapter(store: Store) -> str | None:
    with store.read() as db:
        row = db.execute("SELECT adapter FROM runs WHERE status = 'succeeded' AND adapter "
                         "IS NOT NULL ORDER BY id DESC LIMIT 1").fetchone()
    return row[0] if row else None


def examples_since_last_run(store: Store) -> int:
    """Trainable examples added after the newest example the last run saw (thumbs-down
    and votes teach only preference stages: they do not start a run)."""
    with store.read() as db:
        last = db.execute("SELECT COALESCE(MAX(max_example_id), 0) FROM runs").fetchone()[0]
        return db.execute("SELECT COUNT(*) FROM examples WHERE id > ? AND deleted_at IS NULL "
                          f"AND source IN ({', '.join('?' * len(TRAINABLE))}) AND test_only = 0",
                          [last, *TRAINABLE]).fetchone()[0]


def get_setting(store: Store, key: str, default: str) -> str:
    with store.read() as db:
        row = db.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
    return row[0] if row else default


def set_setting(store: Store, key: str, value) -> None:
    with store.connect() as db:
        db.table("settings").upsert({"key": key, "value": str(value)}, pk="key")


# Comparison votes and the chat's default adapter.

WINNERS = ("left", "right", "tie", "both_bad")
DEFAULT_ADAPTER_KEY = "default_adapter"
PREVIOUS_DEFAULT_KEY = "previous_default_adapter"


def add_vote(store: Store, *, prompt: str, system: str, left: str, right: str,
             left_reply: str, right_reply: str, winner: str, blind: bool) -> int:
    if winner not in WINNERS:
        raise InvalidVote(f"winner must be one of {', '.join(WINNERS)}, not {winner!r}.")
    with store.connect() as db:
        return new_id(db.table("votes").insert({
            "prompt": prompt, "system": system, "left": left, "right": right,
            "left_reply": left_reply, "right_reply": right_reply, "winner": winner,
            "blind": int(blind), "created_at": now()}))


def votes_with_replies(store: Store) -> list[tuple]:
    """Every vote: (prompt, left, right, winner, left reply, right reply)."""
    with store.read() as db:
        return db.execute("SELECT prompt, left, right, winner, left_reply, right_reply "
                          "FROM votes").fetchall()


def win_rates(store: Store, base: str = "base") -> list[dict]:
    """Each adapter against the base: wins, losses, ties, both bad, and the win rate
    (ties count half) with a 95% Wilson interval. Votes between two adapters, and
    "both bad", do not enter the rate."""
    with store.read() as db:
        votes = db.execute("SELECT left, right, winner FROM votes "
                           "WHERE left = ? OR right = ?", [base, base]).fetchall()
    tally: dict[str, dict] = {}
    for left, right, winner in votes:
        if left == right:
            continue
        adapter = right if left == base else left
        row = tally.setdefault(adapter, {"adapter": adapter, "wins": 0, "losses": 0,
                                         "ties": 0, "both_bad": 0})
        if winner in ("tie", "both_bad"):
            row["ties" if winner == "tie" else "both_bad"] += 1
        else:
            row["wins" if (winner == "left") == (left == adapter) else "losses"] += 1
    return [_with_rate(row) for row in sorted(tally.values(), key=lambda r: r["adapter"])]


def _with_rate(row: dict) -> dict:
    n = row["wins"] + row["losses"] + row["ties"]
    if not n:
        return {**row, "votes": 0, "win_rate": None, "ci_low": None, "ci_high": None}
    rate = (row["wins"] + 0.5 * row["ties"]) / n
    low, high = wilson_interval(rate, n)
    return {**row, "votes": n, "win_rate": rate, "ci_low": low, "ci_high": high}


def wilson_interval(rate: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a proportion: sane at small n and near 0 or 1."""
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    spread = z * ((rate * (1 - rate) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - spread), min(1.0, centre + spread)


DECISION_KEY = "in_use_decision"
"""The newest run whose report card decided whether new chats use it, and what it
decided (services/report.py)."""


def settle_default(store: Store, decision: dict, expected: str) -> dict | None:
    """Record a run's decision, and make its adapter the chat's default when adopted, in
    one write transaction: two cards deciding at once record one decision, and a run
    older than the one decided last records nothing (None). When the default is no longer
    `expected` (the user chose another while the card was measured), her choice stays.
    Returns the decision as recorded."""
    with store.connect() as db:
        def setting(key: str, default: str) -> str:
            row = db.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
            return row[0] if row else default

        last = setting(DECISION_KEY, "")
        if last and json.loads(last)["run"] >= decision["run"]:
            return None
        current = setting(DEFAULT_ADAPTER_KEY, "")
        if _chosen_model(current) != _chosen_model(expected):
            decision = {**decision, "adopted": False, "in_use": current, "why": "chosen"}
        rows = [{"key": DECISION_KEY, "value": json.dumps(decision)}]
        if decision["adopted"]:
            rows += [{"key": PREVIOUS_DEFAULT_KEY, "value": current},
                     {"key": DEFAULT_ADAPTER_KEY, "value": decision["adapter"]}]
        db.table("settings").upsert_all(rows, pk="key")
    return decision


def _chosen_model(name: str) -> str:
    """The model a stored default serves: none chosen ("") is the plain model, and the
    user's facts and examples it draws on make no other choice."""
    return split_name(name or "base")[0]


def default_adapter(store: Store) -> str:
    """The model chosen for new chats (by a report card or the user); "" before any
    choice (services/models.chat_default says what that means)."""
    return get_setting(store, DEFAULT_ADAPTER_KEY, "")


def promote(store: Store, adapter: str) -> None:
    """Make `adapter` the chat's default; the one it replaces is kept for a roll back."""
    set_setting(store, PREVIOUS_DEFAULT_KEY, default_adapter(store))
    set_setting(store, DEFAULT_ADAPTER_KEY, adapter)


def roll_back(store: Store) -> str:
    """Restore the default before the last promotion; returns it."""
    previous = get_setting(store, PREVIOUS_DEFAULT_KEY, "")
    set_setting(store, PREVIOUS_DEFAULT_KEY, default_adapter(store))
    set_setting(store, DEFAULT_ADAPTER_KEY, previous)
    return previous
