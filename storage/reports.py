"""Report cards: for each run, what its adapter was measured against and the verdict
(computed by services/report.py, stored as JSON, newest first)."""

from __future__ import annotations

import json

from storage.conversations import now
from storage.db import Store, new_id


def save_report(store: Store, run_id: int, adapter: str, report: dict) -> int:
    with store.connect() as db:
        return new_id(db.table("reports").insert({
            "run_id": run_id, "adapter": adapter, "created_at": now(),
            "report": json.dumps(report, ensure_ascii=False)}))


def latest_report(store: Store, adapter: str) -> dict | None:
    """The newest report card of an adapter, if it has one."""
    with store.read() as db:
        row = db.execute("SELECT report FROM reports WHERE adapter = ? ORDER BY id DESC "
                         "LIMIT 1", [adapter]).fetchone()
    return json.loads(row[0]) if row else None


def reported_runs(store: Store) -> dict[int, dict]:
    """Run id -> its newest report card."""
    with store.read() as db:
        rows = db.execute("SELECT run_id, report FROM reports ORDER BY id").fetchall()
    return {run_id: json.loads(report) for run_id, report in rows}
