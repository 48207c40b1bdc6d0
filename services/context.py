"""Context: what the actions work on (one data home; its model and its runs)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from storage.db import Store, open_store

if TYPE_CHECKING:
    from assistant.engine import ChatEngine
    from supervision.jobs import Jobs


class NotAvailable(RuntimeError):
    """An action needs a part this context was built without (a bug in the edge)."""


class CardWorker(Protocol):
    """What the edges read of the web app's report-card worker (services/report.py's
    ReportWorker), named here so that the context needs nothing of the report."""

    current: dict | None
    """The card being measured: {"adapter", "done", "total", "step"}, else None."""

    def failure(self, adapter: str) -> str | None: ...
    def forget_failure(self, adapter: str) -> None: ...


class Context:
    """One data home, and where an edge has them, its live model and its runs."""

    def __init__(self, store: Store, engine: ChatEngine | None = None,
                 jobs: Jobs | Callable[[], Jobs] | None = None):
        """`jobs` may be a function that makes them, called on first use: the command
        line resolves the base model only when an action really starts a run."""
        self.store = store
        self._engine = engine
        self._jobs = jobs
        self.reports: CardWorker | None = None
        """The web app's ReportWorker (services/report.py), computing report cards in the
        background; None elsewhere."""

    @property
    def engine(self) -> ChatEngine:
        if self._engine is None:
            raise NotAvailable("This action needs the model, and none was loaded.")
        return self._engine

    @property
    def jobs(self) -> Jobs:
        if self._jobs is None:
            raise NotAvailable("This action needs training, which this app does not offer.")
        if callable(self._jobs):
            self._jobs = self._jobs()
        return self._jobs

    @property
    def can_train(self) -> bool:
        return self._jobs is not None

    @property
    def adapters_dir(self) -> Path:
        return self.store.home / "adapters"

    @classmethod
    def open(cls, home, model: str | None = None, *, engine: bool = False,
             trust_remote_code: bool = False) -> Context:
        """A context for one command of the command line: the data home, the model when
        `engine` is asked for, and runs of the base model `model` when needed."""
        store = open_store(home)
        loaded = None
        if engine:
            from assistant.bases import load_model
            from assistant.engine import ChatEngine

            loaded = ChatEngine(load_model(model, trust_remote_code=trust_remote_code),
                                adapters_dir=store.home / "adapters")

        def make_jobs() -> Jobs:
            from assistant.bases import resolve_model
            from supervision.jobs import Jobs

            return Jobs(store, resolve_model(model)[1])

        return cls(store, loaded, make_jobs)
