"""Training runs and comparison votes. Runs are written by the trainer (next issues);
for now the app only lists them."""

from __future__ import annotations

from storage.db import Store


def list_runs(store: Store) -> list[dict]:
    with store.read() as db:
        return list(db["runs"].rows_where(order_by="id desc"))
