"""`python -m trainer RUN_ID --home DIR`: train one run recorded in the database.

Started by supervision.jobs; also runs by hand, or under torchrun / accelerate."""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import threading
import time
import traceback
from pathlib import Path

from core.errors import UserError
from storage import runs
from storage.db import open_store
from trainer.common import lower_priority
from trainer.config import TrainConfig
from trainer.dataset import RunData
from trainer.objectives import OBJECTIVES

PROGRESS_EVERY_S = 0.5
RECORD_END_FOR_S = 3600.0
"""How long the trainer keeps trying to record its run's end through a busy database
(it keeps its heartbeat meanwhile, so no process takes it for dead)."""


class DatabaseReporter:
    """Carries progress into the run record (throttled) and the cancel request out."""

    def __init__(self, store, run_id: int):
        self.store, self.run_id = store, run_id
        self.losses: list[dict] = []
        self.eval_losses: list[dict] = []
        self._written = 0.0

    def started(self, total_steps: int, train_examples: int, eval_examples: int) -> None:
        runs.update_run(self.store, self.run_id, total_steps=total_steps)

    def progress(self, step: int, total: int, logs: dict) -> None:
        if "loss" in logs:  # with the time, for the time left (see web/train.py)
            self.losses.append({"step": step, "loss": round(float(logs["loss"]), 4),
                                "t": round(time.time(), 2)}
                               | ({"stage": logs["stage"]} if "stage" in logs else {}))
        if "eval_loss" in logs:
            self.eval_losses.append({"step": step, "loss": round(float(logs["eval_loss"]), 4)})
        if logs or time.monotonic() - self._written > PROGRESS_EVERY_S:
            # Best effort: a database held by someone else delays the curve, never the run
            # (the next write carries every point so far).
            # The evaluation before the first step reports 0 steps in all (the Trainer
            # counts them only once training starts): the count started() wrote stays.
            counted = {"total_steps": total} if total else {}
            try:
                runs.update_run(self.store, self.run_id, step=step, losses=self.losses,
                                eval_losses=self.eval_losses, **counted)
                self._written = time.monotonic()
            except sqlite3.OperationalError as error:
                print(f"progress not recorded ({error}); training goes on", file=sys.stderr)

    def cancelled(self) -> bool:
        """Asked to stop, or the run is no longer this trainer's (another process ended
        it, taking the trainer for dead)."""
        try:
            run = runs.get_run(self.store, self.run_id)
        except sqlite3.OperationalError:
            return False  # asked again after the next step
        return bool(run["cancel_requested"]) or run["status"] in runs.FINISHED


class QuietReporter(DatabaseReporter):
    """For the other processes of a distributed run: the first one alone writes."""

    def started(self, *args) -> None: ...
    def progress(self, *args) -> None: ...


class Heartbeat:
    """Says the run's trainer is alive every HEARTBEAT_S, from its own thread, until the
    run's end is recorded (storage/runs.py: how other processes read it)."""

    def __init__(self, store, run_id: int):
        self.store, self.run_id = store, run_id
        self._stop = threading.Event()

    def __enter__(self) -> Heartbeat:
        threading.Thread(target=self._beat, name="heartbeat", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()

    def _beat(self) -> None:
        while not self._stop.wait(runs.HEARTBEAT_S):
            runs.beat(self.store, self.run_id)


def record_end(store, run_id: int, status: str, **details) -> None:
    """The run's end, retried through a busy database until it lands: a run left
    "running" by a trainer that finished would block every later one."""
    deadline = time.monotonic() + RECORD_END_FOR_S
    while True:
        try:
            runs.finish_run(store, run_id, status, **details)
            return
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def train(home: str, run_id: int, already_lowered: bool = False) -> int:
    if not already_lowered:
        lower_priority()
    store = open_store(home)
    # Under torchrun every process runs this; the first records the run, and the run's
    # pid stays the launcher's, which the app's watcher waits on.
    first = int(os.environ.get("RANK", "0")) == 0
    distributed = "TORCHELASTIC_RUN_ID" in os.environ
    if first and not runs.start_running(store, run_id, None if distributed else os.getpid()):
        print(f"run #{run_id} is no longer queued (cancelled?): nothing to train",
              file=sys.stderr)
        return 0
    if not first:
        return _train(store, run_id, first)
    with Heartbeat(store, run_id):
        return _train(store, run_id, first)


def _train(store, run_id: int, first: bool) -> int:
    run = runs.get_run(store, run_id)
    config = TrainConfig.from_dict(run["config"])
    data = RunData.from_run(runs.run_examples(store, run_id))  # frozen when queued
    recipe = OBJECTIVES[config.objective].recipe()
    name = f"run-{run_id}"
    reporter = (DatabaseReporter if first else QuietReporter)(store, run_id)
    continue_from = store.home / "adapters" / config.continue_from if config.continue_from else None
    try:
        result = recipe(config, data, Path(run["config"]["base_model"]),
                         store.home / "adapters" / name, store.home / "runs" / str(run_id),
                         reporter, continue_from)
    except UserError as error:  # a sanity check: the message is the whole story
        if first:
            record_end(store, run_id, "failed", error=str(error))
        return 1
    except Exception as error:  # recorded for the user, then re-raised for the log
        if first:
            record_end(store, run_id, "failed", error=f"{type(error).__name__}: {error}")
        traceback.print_exc()
        return 1
    if not first:
        return 0
    if reporter.cancelled():  # asked during the final evaluation or save: no adapter
        shutil.rmtree(store.home / "adapters" / name, ignore_errors=True)
        record_end(store, run_id, "cancelled", metrics=result.metrics)
        return 0
    record_end(store, run_id, "succeeded", adapter=name, metrics=result.metrics)
    return 0


def standby(home: str) -> int:
    """Import what training needs, then wait for a run: the app keeps one such process
    ready (supervision/jobs.py), so a run skips the imports, most of a small run's start.
    Reads "RUN_ID LOG_PATH" on stdin, writes its output to that log and trains that
    run; exits when stdin closes without one (the app is gone)."""
    import peft  # noqa: F401  - every recipe loads its adapter with it

    for objective in OBJECTIVES.values():  # each recipe's file imports what it trains with
        objective.recipe()

    print("ready", flush=True)  # to the app, which says so in its log
    line = sys.stdin.readline().split(maxsplit=1)
    if len(line) != 2:
        return 0
    run_id, log = int(line[0]), line[1].strip()
    with open(log, "ab") as out:  # from here on, as if started with this log
        os.dup2(out.fileno(), sys.stdout.fileno())
        os.dup2(out.fileno(), sys.stderr.fileno())
    return train(home, run_id, already_lowered=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer")
    parser.add_argument("run_id", type=int, nargs="?")
    parser.add_argument("--home", required=True)
    parser.add_argument("--standby", action="store_true",
                        help="import now, then train the run named on stdin")
    args = parser.parse_args(argv)
    if args.standby:
        lower_priority()
        return standby(args.home)
    if args.run_id is None:
        parser.error("give a RUN_ID, or --standby")
    return train(args.home, args.run_id)


if __name__ == "__main__":
    sys.exit(main())
