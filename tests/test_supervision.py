"""A run's life is owned by the database: a trainer whose launcher is gone is still
watched (pid, host, heartbeat), two resumes start one trainer, a cancel during the final
save leaves no model behind, and a busy database never stops training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from core.processes import this_host
from services import models
from services.context import Context
from storage import runs
from storage.db import open_store
from supervision.jobs import Jobs
from trainer.config import TrainConfig

from helpers import fill, voice_examples, wait_for

REPO = Path(__file__).resolve().parent.parent


def tunechat(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The command line as a user runs it: its own process, which exits."""
    return subprocess.run([sys.executable, "-m", "app", *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_a_trainer_killed_after_the_import_that_started_it_exited(tiny_model_dir, tmp_path):
    """Before: the import's watcher died with it, and the killed run stayed "running"
    forever, refusing every later one."""
    home, data = tmp_path / "home", tmp_path / "voice.jsonl"
    data.write_text("".join(json.dumps({"messages": m}) + "\n" for m in voice_examples(24)))
    imported = tunechat("import", str(data), "--home", str(home), "--model",
                        str(tiny_model_dir), "--threshold", "20")
    assert imported.returncode == 0, imported.stderr
    assert "Run #1 trains in the background and goes on after this command exits" in \
        imported.stdout and "tunechat cancel 1" in imported.stdout
    store = open_store(home)
    run = wait_for(lambda: (r := runs.get_run(store, 1))["pid"] and r, timeout=60, every=0.02)
    assert run["status"] in runs.ACTIVE, run  # still training: its launcher is gone
    os.kill(run["pid"], signal.SIGKILL)
    killed_at = time.monotonic()
    listed = tunechat("runs", "--home", str(home), timeout=60)
    assert time.monotonic() - killed_at < 10
    assert "#1    failed" in listed.stdout and "ended without recording an end" in \
        listed.stdout, listed.stdout + listed.stderr
    trained = tunechat("train", "--home", str(home), "--model", str(tiny_model_dir),
                       "--epochs", "1")
    assert trained.returncode == 0, trained.stderr
    assert trained.stdout.strip().splitlines()[-1] == "run-2"


def test_two_resumes_at_once_start_one_trainer(store, tiny_model_dir):
    """Two tabs (here two launchers, as two processes would be) resume one run: one
    trainer starts, the other is told a run is active. Before: both checked, then both
    queued it, and two trainers shared one work folder and one adapter."""
    fill(store, 12)
    first = Jobs(store, tiny_model_dir)
    run_id = first.prepare(TrainConfig(epochs=1))
    runs.finish_run(store, run_id, "failed", error="for the test")
    launchers, barrier = [first, Jobs(store, tiny_model_dir)], threading.Barrier(2)
    outcomes: list[str] = []

    def resume(jobs: Jobs) -> None:
        barrier.wait()
        try:
            jobs.resume(run_id)
            outcomes.append("started")
        except runs.RunActive:
            outcomes.append("refused")

    threads = [threading.Thread(target=resume, args=(jobs,)) for jobs in launchers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused", "started"]
    done = first.wait(run_id)
    assert done["status"] == "succeeded", done["error"]


def test_a_cancel_during_the_final_save_leaves_no_model(store, tiny_model_dir, monkeypatch):
    """The cancel lands after the last step, while the adapter is saved: the run is
    cancelled, its folder goes, and no model list offers it (lists read folders: one
    left by a kill mid-save is not offered either)."""
    import trainer.__main__ as trainer_main

    fill(store, 12)
    run_id = Jobs(store, tiny_model_dir).prepare(TrainConfig(epochs=1))
    sft = trainer_main.OBJECTIVES["auto"]

    def cancelled_while_saving(*args):
        result = sft.recipe()(*args)
        runs.request_cancel(store, run_id)
        return result

    # the registry finds a recipe by name: this module's, for this test
    monkeypatch.setitem(globals(), "recipe_under_test", cancelled_while_saving)
    monkeypatch.setitem(trainer_main.OBJECTIVES, "auto",
                        replace(sft, where=f"{__name__}:recipe_under_test"))
    assert trainer_main.train(str(store.home), run_id, already_lowered=True) == 0
    assert runs.get_run(store, run_id)["status"] == "cancelled"
    folder = store.home / "adapters" / f"run-{run_id}"
    assert not folder.exists()
    folder.mkdir(parents=True)  # as a forced kill mid-save would leave it
    (folder / "adapter_config.json").write_text("{}")
    assert f"run-{run_id}" not in models.adapter_names(Context(store))


def test_a_forced_cancel_is_recorded_as_cancelled(store, tmp_path):
    """The trainer killed by the cancel's SIGTERM: cancelled, not "failed: SIGTERM"."""
    jobs = Jobs(store, tmp_path)
    run_id = runs.create_run(store, {}, [])
    process = subprocess.Popen(["sleep", "60"])
    runs.launched(store, run_id, process.pid, str(tmp_path / "log"))
    jobs._processes[run_id] = process
    watcher = threading.Thread(target=jobs._watch, args=(run_id, process, tmp_path / "log"))
    watcher.start()
    runs.request_cancel(store, run_id)
    process.terminate()
    watcher.join(timeout=30)
    run = runs.get_run(store, run_id)
    assert (run["status"], run["error"]) == ("cancelled", "stopped by force")


def test_a_silent_trainer_elsewhere_is_failed_and_cancel_ends_a_dead_run(store):
    quiet = runs.create_run(store, {}, [])
    runs.update_run(store, quiet, status="running", pid=1, host="another-machine",
                    heartbeat_at=time.time() - runs.STALE_S - 5)
    assert runs.settle_dead_runs(store) == [quiet]
    assert "has not reported for" in runs.get_run(store, quiet)["error"]

    dead = runs.create_run(store, {}, [])
    runs.update_run(store, dead, status="running", pid=2**22 + 12345, host=this_host(),
                    heartbeat_at=time.time())
    Jobs(store, Path(".")).cancel(dead)  # at once: nobody is left to read the flag
    run = runs.get_run(store, dead)
    assert run["status"] == "cancelled" and "ended without recording an end" in run["error"]


def test_a_busy_database_delays_progress_but_never_stops_training(store, monkeypatch):
    """Another process holds the write lock (a big import's merge): the progress write
    gives up and training goes on; the next write carries every point."""
    import sqlite3

    import storage.db
    from trainer.__main__ import DatabaseReporter

    monkeypatch.setattr(storage.db, "BUSY_TIMEOUT_MS", 200)
    run_id = runs.create_run(store, {}, [])
    reporter = DatabaseReporter(store, run_id)
    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        reporter.progress(1, 10, {"loss": 2.0})  # before: "database is locked" ended the run
        assert reporter.cancelled() is False
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    reporter.progress(2, 10, {"loss": 1.5})
    assert [p["step"] for p in runs.get_run(store, run_id)["losses"]] == [1, 2]


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_resume_is_refused_while_another_run_is_active(store, status):
    done = runs.create_run(store, {}, [])
    runs.finish_run(store, done, status)
    active = runs.create_run(store, {}, [])
    with pytest.raises(runs.RunActive, match=f"Run #{active} is"):
        runs.requeue(store, done)
    runs.finish_run(store, active, "succeeded")
    with pytest.raises(runs.RunNotResumable, match="only failed or cancelled runs resume"):
        runs.requeue(store, active)


def test_a_large_import_while_a_run_trains(tiny_model_dir, tmp_path):
    """An import in its own process writes in short batches: the run goes on and
    succeeds, and the app's writes meanwhile wait well under a second (before: one merge
    held the lock for the whole import, the app's writes failed after 10 s and the
    trainer's progress write killed the run)."""
    from storage import examples

    home, data = tmp_path / "home", tmp_path / "big.jsonl"
    store = open_store(home)
    fill(store, 24)
    rows = 20_000
    with data.open("w") as out:
        for i in range(rows):
            out.write(json.dumps({"messages": [
                {"role": "user", "content": f"Question {i} about the shop? " + "x" * 300},
                {"role": "assistant", "content": f"Answer {i}. " + "y" * 300}]}) + "\n")
    jobs = Jobs(store, tiny_model_dir)
    run_id = jobs.start(TrainConfig(epochs=30))
    wait_for(lambda: runs.get_run(store, run_id)["status"] == "running", timeout=120)
    waits: list[float] = []
    importing = threading.Event()
    importing.set()

    def the_app_writes() -> None:
        i = 0
        while importing.is_set():
            started = time.monotonic()
            examples.add_example(store, [{"role": "user", "content": f"Live {i}?"},
                                         {"role": "assistant", "content": "Yes."}])
            waits.append(time.monotonic() - started)
            i += 1
            time.sleep(0.05)

    writer = threading.Thread(target=the_app_writes)
    writer.start()
    try:
        imported = tunechat("import", str(data), "--home", str(home), "--threshold", "0")
        during = runs.get_run(store, run_id)["status"]
    finally:
        importing.clear()
        writer.join()
    assert imported.returncode == 0, imported.stderr
    assert f"Imported {rows:,} examples" in imported.stdout or \
        f"Imported {rows} examples" in imported.stdout, imported.stdout
    assert during == "running"  # the import went in while the run trained
    assert max(waits) < 1.0, sorted(waits)[-5:]
    done = jobs.wait(run_id)
    assert done["status"] == "succeeded", done["error"]
    assert examples.counts(store)["imported"] == rows


def test_a_runs_examples_are_copied_in_bounded_memory(store, tmp_path):
    """Freezing a run's examples reads no example into Python: its memory does not grow
    with the examples' number (here 20,000 of about 600 bytes: 12 MB)."""
    import tracemalloc

    from files.formats import Item
    from storage import placement
    from storage.examples import add_items

    add_items(store, ((f"row {i}", Item([
        {"role": "user", "content": f"Question {i}? " + "x" * 300},
        {"role": "assistant", "content": f"Answer {i}. " + "y" * 300}], "imported"))
        for i in range(20_000)))
    tracemalloc.start()
    run_id = placement.freeze_run(store, {}, with_preferences=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert runs.get_run(store, run_id)["example_count"] == 20_000
    assert len(runs.run_examples(store, run_id, "held_out")) == 30
    assert peak < 2_000_000, peak


def test_two_imports_of_the_same_rows_at_once_store_them_once(store, monkeypatch):
    """An import's rows are hidden until it publishes; another import (or a keep in the
    chat) of the same rows meanwhile must not leave them twice."""
    import storage.examples as stored

    rows = [m for m in voice_examples(5)]
    publishing, go = threading.Event(), threading.Event()
    settle = stored._settle_import

    def held_back(store_, token, publish):
        if publish and not go.is_set():
            publishing.set()
            go.wait(30)
        settle(store_, token, publish)

    monkeypatch.setattr(stored, "_settle_import", held_back)
    first = threading.Thread(target=stored.add_many, args=(store, rows))
    first.start()
    assert publishing.wait(30)
    go.set()  # the second import runs through while the first's rows are hidden
    stored.add_many(store, rows)
    first.join()
    assert stored.counts(store)["imported"] == 5
