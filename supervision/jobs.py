"""Start the trainer as its own process, watch it, cancel it, and recover after a crash.

The app never trains: it queues a run (with a frozen snapshot of its examples) and
launches `python -m trainer RUN_ID`. The database owns the run's life (storage/runs.py:
the trainer's pid, host and heartbeat; conditional updates): any process that reads runs
fails one whose trainer is gone. The launcher's watcher thread only adds speed and
detail: if its process dies without recording an end (a crash, kill -9, out of memory),
the run is failed with the exit reason and the last lines of its log within a second."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError
from core.processes import pid_alive, this_host
from core.version import code_version
from storage import placement, runs
from storage.db import Store
from trainer.config import TrainConfig
from trainer.dataset import RunData
from trainer.objectives import OBJECTIVES

CANCEL_GRACE_S = 20
REPO = Path(__file__).resolve().parent.parent


class LaunchFailed(UserError):
    pass


class StillStopping(UserError):
    pass


@dataclass
class Jobs:
    """Runs for one data home and one base model."""

    store: Store
    base_model: Path
    """The base model's local folder (resolved by assistant.bases)."""
    standby: bool = False
    """Keep a trainer process ready, its imports done, for the next one-process run
    (see prepare_standby). The web app does; the command line waits on its one run."""

    def __post_init__(self):
        self._processes: dict[int, subprocess.Popen] = {}
        self._standby: subprocess.Popen | None = None
        self._standby_lock = threading.Lock()

    @property
    def home(self) -> Path:
        return self.store.home

    def start(self, config: TrainConfig) -> int:
        """Queue a run on every trainable example and launch its process."""
        run_id = self.prepare(config)
        if runs.get_run(self.store, run_id)["cancel_requested"]:  # while it was copied
            runs.finish_run(self.store, run_id, "cancelled")
        else:
            self._launch(run_id)
        return run_id

    def prepare(self, config: TrainConfig) -> int:
        """Queue a run on every trainable example, frozen as they are now, for this app
        or a launcher of the user's (`accelerate launch -m trainer RUN_ID`) to run."""
        objective = OBJECTIVES[config.objective]
        settings = {**config.to_dict(), "base_model": str(self.base_model)}

        def enough_to_learn(run_id: int) -> None:
            if objective.needs:
                from trainer.stages import check_data

                check_data(objective.needs,
                           RunData.from_run(runs.run_examples(self.store, run_id)))

        return placement.freeze_run(self.store, settings, objective.preferences,
                                    config.continue_from, code_version(), enough_to_learn)

    def resume(self, run_id: int) -> int:
        """Run a failed or cancelled run again; it continues from its last checkpoint, on
        the examples it was queued with. Of two resumes at once, one launches a trainer."""
        runs.settle_dead_runs(self.store)
        run = runs.get_run(self.store, run_id)
        if run["status"] not in runs.ACTIVE and run["pid"] and \
                run.get("host") in (None, this_host()) and pid_alive(run["pid"]):
            raise StillStopping(f"Run #{run_id}'s trainer process is still shutting down; "
                                "resume it again in a few seconds.")
        # pid cleared too: the old process's watcher may still be about to record its
        # exit, scoped to its pid, and must not fail the run now queued again.
        runs.requeue(self.store, run_id)
        self._launch(run_id)
        return run_id

    def cancel(self, run_id: int) -> None:
        """Ask the trainer to stop after its current step; force it after a grace time.
        A run never launched, or whose trainer is gone, is cancelled at once."""
        run = runs.get_run(self.store, run_id)
        if not run["frozen"]:  # its examples are being copied: start() sees the flag
            runs.request_cancel(self.store, run_id)
            return
        gone = runs.trainer_gone(run)
        if gone or (run["status"] == "queued" and not run["pid"]
                    and run_id not in self._processes):
            runs.finish_run(self.store, run_id, "cancelled", error=gone, pid=run["pid"])
            return
        if not runs.request_cancel(self.store, run_id):
            return  # it ended meanwhile
        if run_id in self._processes or run.get("host") in (None, this_host()):
            threading.Thread(target=self._force_stop, args=(run_id,), daemon=True).start()

    def wait(self, run_id: int, poll_s: float = 0.5, on_progress=None) -> dict:
        while True:
            run = runs.get_run(self.store, run_id)
            if on_progress:
                on_progress(run)
            if run["status"] in runs.FINISHED:
                return run
            time.sleep(poll_s)

    def prepare_standby(self, on_ready: Callable[[float], None] | None = None) -> None:
        """Start a trainer process that imports its libraries now and waits for the next
        run, unless one is waiting already. It costs the memory of those libraries while
        it waits, and saves their import time (seconds) when a run starts. `on_ready`
        is called with the seconds it took, once it waits."""
        if not self.standby:
            return
        with self._standby_lock:
            if self._standby is not None and self._standby.poll() is None:
                return
            started = time.monotonic()
            try:
                self._standby = process = subprocess.Popen(
                    [sys.executable, "-m", "trainer", "--standby", "--home", str(self.home)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL, cwd=REPO, env=_thread_env(1),
                    start_new_session=True)
            except OSError:  # no standby: runs start their own process, as without one
                self._standby = None
                return

        def wait_until_ready() -> None:
            assert process.stdout is not None
            with process.stdout:  # one line, then the trainer writes to its run's log
                said = process.stdout.readline()
            if said.strip() == b"ready" and on_ready is not None:
                on_ready(time.monotonic() - started)

        threading.Thread(target=wait_until_ready, daemon=True).start()

    def _from_standby(self, run_id: int, log: Path) -> subprocess.Popen | None:
        """Hand the run to the waiting trainer process, if one is alive and takes it."""
        with self._standby_lock:
            process, self._standby = self._standby, None
        if process is None or process.poll() is not None or process.stdin is None:
            return None
        try:
            process.stdin.write(f"{run_id} {log}\n".encode())
            process.stdin.close()
        except OSError:  # it died meanwhile
            process.kill()
            return None
        return process

    def _launch(self, run_id: int) -> None:
        log = self.home / "runs" / str(run_id) / "trainer.log"
        nproc = TrainConfig.from_dict(runs.get_run(self.store, run_id)["config"]).nproc
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            process = self._from_standby(run_id, log) if nproc == 1 else None
            if process is None:
                with log.open("ab") as out:
                    process = subprocess.Popen(trainer_command(run_id, self.home, nproc),
                                               stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                               env=_thread_env(nproc), start_new_session=True)
        except OSError as error:  # the run must not stay queued, blocking every later one
            message = f"The trainer process could not be started: {error}."
            runs.finish_run(self.store, run_id, "failed", error=message)
            raise LaunchFailed(f"Run #{run_id}: {message} Check the disk and the Python "
                               "environment, then resume the run.") from error
        runs.WATCHED.add(process.pid)
        runs.launched(self.store, run_id, process.pid, str(log))
        self._processes[run_id] = process
        threading.Thread(target=self._watch, args=(run_id, process, log), daemon=True).start()

    def _watch(self, run_id: int, process: subprocess.Popen, log: Path) -> None:
        code = process.wait()
        if self._processes.get(run_id) is process:
            del self._processes[run_id]
        # The trainer records its own end; this only catches deaths it could not record
        # (a cancel forced by SIGTERM is still a cancel).
        try:
            if runs.get_run(self.store, run_id)["cancel_requested"]:
                runs.finish_run(self.store, run_id, "cancelled", error="stopped by force",
                                pid=process.pid)
            else:
                runs.finish_run(self.store, run_id, "failed",
                                error=_death_reason(code, log), pid=process.pid)
        finally:  # else any reader fails it (settle_dead_runs), with less detail
            runs.WATCHED.discard(process.pid)
        # The next standby starts once this run is over, not beside it: its imports
        # would take the CPU the run trains on.
        self.prepare_standby()

    def _force_stop(self, run_id: int) -> None:
        """The trainer had CANCEL_GRACE_S to stop by itself; then SIGTERM, then SIGKILL.
        Works on a trainer another process launched too (same machine): its pid is on
        the run, and the signal goes only while the run still names that pid."""
        for signum, wait_s in ((None, CANCEL_GRACE_S), (signal.SIGTERM, 5.0),
                               (signal.SIGKILL, 5.0)):
            run = runs.get_run(self.store, run_id)
            if run["status"] not in runs.ACTIVE or not run["pid"]:
                return
            if signum is not None:
                try:
                    os.kill(run["pid"], signum)
                except ProcessLookupError:
                    break
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and pid_alive(run["pid"]):
                time.sleep(0.2)
            if not pid_alive(run["pid"]):
                break
        run = runs.get_run(self.store, run_id)
        if run["status"] in runs.ACTIVE and run["pid"] and not pid_alive(run["pid"]):
            runs.finish_run(self.store, run_id, "cancelled", error="stopped by force",
                            pid=run["pid"])


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
