"""Start the trainer as its own process, watch it, cancel it, recover after a crash, and
start a run by itself when enough new examples have arrived.

The app never trains: it creates a run record and launches `python -m trainer RUN_ID`.
A watcher thread waits on the process; if it dies without recording an end (a crash,
kill -9, out of memory), the run is marked failed with the exit reason and the last
lines of its log, within a second."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from storage import examples as example_store
from storage import runs
from storage.db import Store
from trainer.config import TrainConfig

THRESHOLD_KEY = "auto_train_threshold"
AUTO_KEY = "auto_train"
DEFAULT_THRESHOLD = example_store.READY_THRESHOLD
CANCEL_GRACE_S = 20


@dataclass
class Jobs:
    """Runs for one data home and one base model."""

    store: Store
    base_model: Path
    """The base model's local folder (resolved by assistant.models)."""

    def __post_init__(self):
        self._processes: dict[int, subprocess.Popen] = {}

    @property
    def home(self) -> Path:
        return self.store.home

    def start(self, config: TrainConfig) -> int:
        """Queue a run on every trainable example and launch its process."""
        run_id = self.prepare(config)
        self._launch(run_id)
        return run_id

    def prepare(self, config: TrainConfig) -> int:
        """Queue a run on every trainable example, for a launcher of the user's
        (`accelerate launch -m trainer RUN_ID`) to run."""
        chosen = example_store.list_examples(self.store, sources=example_store.TRAINABLE)
        settings = {**config.to_dict(), "base_model": str(self.base_model)}
        return runs.create_run(self.store, settings, sorted(e.id for e in chosen))

    def resume(self, run_id: int) -> int:
        """Run a failed or cancelled run again; it continues from its last checkpoint."""
        run = runs.get_run(self.store, run_id)
        if run["status"] not in ("failed", "cancelled"):
            raise runs.RunActive(run_id) if run["status"] in runs.ACTIVE else ValueError(
                f"Run #{run_id} {run['status']}; only failed or cancelled runs resume.")
        active = runs.active_run(self.store)
        if active:
            raise runs.RunActive(active["id"])
        if run["pid"] and runs.pid_alive(run["pid"]):
            raise runs.RunActive(run_id)  # its old process is still shutting down
        # pid cleared too: the old process's watcher may still be about to record its
        # exit, scoped to its pid, and must not fail the run now queued again.
        runs.update_run(self.store, run_id, status="queued", error=None, cancel_requested=0,
                        finished_at=None, pid=None)
        self._launch(run_id)
        return run_id

    def cancel(self, run_id: int) -> None:
        """Ask the trainer to stop after its current step; force it after a grace time."""
        runs.update_run(self.store, run_id, cancel_requested=1)
        process = self._processes.get(run_id)
        if process is not None:
            threading.Thread(target=self._force_stop, args=(run_id, process), daemon=True).start()
        elif not runs.get_run(self.store, run_id)["pid"]:  # prepared, never launched
            runs.finish_run(self.store, run_id, "cancelled")

    def maybe_autostart(self) -> int | None:
        """Start one run when the examples added since the last run reach the threshold."""
        if runs.get_setting(self.store, AUTO_KEY, "1") != "1":
            return None
        if runs.examples_since_last_run(self.store) < self.threshold():
            return None
        try:
            return self.start(TrainConfig())
        except runs.RunActive:
            return None  # another session won the race, or a run is going

    def threshold(self) -> int:
        return int(runs.get_setting(self.store, THRESHOLD_KEY, str(DEFAULT_THRESHOLD)))

    def wait(self, run_id: int, poll_s: float = 0.5, on_progress=None) -> dict:
        while True:
            run = runs.get_run(self.store, run_id)
            if on_progress:
                on_progress(run)
            if run["status"] in runs.FINISHED:
                return run
            time.sleep(poll_s)

    def _launch(self, run_id: int) -> None:
        log = self.home / "runs" / str(run_id) / "trainer.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        nproc = TrainConfig.from_dict(runs.get_run(self.store, run_id)["config"]).nproc
        with log.open("ab") as out:
            process = subprocess.Popen(trainer_command(run_id, self.home, nproc),
                                       stdout=out, stderr=subprocess.STDOUT,
                                       cwd=Path(__file__).resolve().parent.parent,
                                       env=_thread_env(nproc), start_new_session=True)
        runs.update_run(self.store, run_id, pid=process.pid, log_path=str(log))
        self._processes[run_id] = process
        threading.Thread(target=self._watch, args=(run_id, process, log), daemon=True).start()

    def _watch(self, run_id: int, process: subprocess.Popen, log: Path) -> None:
        code = process.wait()
        if self._processes.get(run_id) is process:
            del self._processes[run_id]
        # The trainer records its own end; this only catches deaths it could not record.
        runs.finish_run(self.store, run_id, "failed", error=_death_reason(code, log),
                        pid=process.pid)

    def _force_stop(self, run_id: int, process: subprocess.Popen) -> None:
        try:
            process.wait(timeout=CANCEL_GRACE_S)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
            runs.finish_run(self.store, run_id, "cancelled", error="stopped by force",
                            pid=process.pid)


def trainer_command(run_id: int, home: Path, nproc: int = 1) -> list[str]:
    """One trainer process, or nproc of them under torchrun (its launcher is the process
    the watcher waits on; --standalone picks a free rendezvous port)."""
    launcher = ([] if nproc == 1 else
                ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"])
    return [sys.executable, *launcher, "-m", "trainer", str(run_id), "--home", str(home)]


def _thread_env(nproc: int) -> dict:
    """Share the cores among the processes instead of each taking them all."""
    env = dict(os.environ)
    if nproc > 1 and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    return env


def _death_reason(code: int, log: Path) -> str:
    how = (f"killed by signal {signal.Signals(-code).name}" if code < 0
           else f"exited with code {code}")
    tail = ""
    if log.is_file():
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()
                 if line.strip() and "warn" not in line.lower() and "%|" not in line]
        tail = " Last output: " + " | ".join(lines[-3:]) if lines else ""
    return f"The trainer process {how} before finishing.{tail}"
