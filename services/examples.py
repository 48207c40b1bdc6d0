"""The dataset a user builds: keep, correct or dislike a reply; add, edit, delete and
restore examples; import and export files. Every action that adds training examples
may start a run by itself (see training.after_examples_added)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError
from files import formats, sources
from services import general, training
from services.context import Context
from storage import examples, placement, runs
from storage.examples import Example


class NotACheck(UserError):
    """Only an answer the user endorsed can be kept as a must-not-change check."""


VERDICTS = ("kept", "corrected", "disliked", "undo")
SAID = {"kept": "kept", "corrected": "your correction", "disliked": "a bad answer"}


@dataclass(frozen=True)
class Saved:
    """What a keep, correction, dislike, undo or addition did."""

    example_id: int
    mark: str
    progress: str
    """Where the training examples stand (training.progress_line)."""
    run_started: int | None = None
    previous: str | None = None
    """The mark this one replaced on the same reply."""

    def message(self, progress: bool = True) -> str:
        """What was done, then (with `progress`) where the training examples stand. The
        chat leaves the count out: its header shows it, recounted, and a count in a note
        under a reply would go stale with the next run."""
        number = f"#{self.example_id}"
        what = {"kept": f"Kept as example {number}",
                "corrected": f"Correction saved as example {number}",
                "disliked": f"Marked as a bad answer ({number}): never imitated; runs that "
                            "learn what to avoid (Train tab, *What to learn from*) learn "
                            "from it",
                "added": f"Added example {number}",
                "undo": f"Undone: {number} ({SAID.get(self.previous or '', 'judged')}) is "
                        "removed; Undo delete in the Examples tab brings it back"}[self.mark]
        if self.previous and self.previous != self.mark and self.mark != "undo":
            what += f", instead of {SAID[self.previous]}"
        count = f" {self.progress}." if progress else ""
        return f"✓ {what}.{count}" + started_note(self.run_started)


def started_note(run_id: int | None) -> str:
    return f" Training run #{run_id} started by itself (see the Train tab)." if run_id else ""


def judge(ctx: Context, conversation_id: int, index: int, mark: str,
          corrected: str | None = None) -> Saved:
    """Keep, correct or dislike the reply at `index` of a stored conversation, or undo
    a keep or a dislike (mark "undo")."""
    judged = examples.judge_reply(ctx.store, conversation_id, index, mark, corrected)
    return _saved(ctx, judged.example_id, mark, judged.previous)


def add(ctx: Context, messages: list[dict], source: str = "added") -> Saved:
    example_id = examples.add_example(ctx.store, messages, source)
    return _saved(ctx, example_id, "added")


def correct(ctx: Context, messages: list[dict], corrected: str) -> Saved:
    """A correction from outside the chat: `messages` end with the answer to replace,
    which is kept as the rejected side."""
    example_id = examples.correct_messages(ctx.store, messages, corrected)
    return _saved(ctx, example_id, "corrected")


def _saved(ctx: Context, example_id: int, mark: str, previous: str | None = None) -> Saved:
    adds = mark in ("kept", "corrected", "added")
    run_id = training.after_examples_added(ctx) if adds else None
    return Saved(example_id, mark, training.progress_line(ctx), run_id, previous)


def marks(ctx: Context, conversation_id: int) -> list[str | None]:
    """The mark on each message of a stored conversation (None where there is none),
    in the order get_conversation returns them."""
    from storage import conversations

    stored = conversations.get_conversation(ctx.store, conversation_id)
    judged = examples.marks(ctx.store, conversation_id)
    return [judged.get(position) for position in stored.positions]


def edit(ctx: Context, example_id: int, messages: list[dict]) -> None:
    examples.update_example(ctx.store, example_id, messages)


def editing_during_run(ctx: Context) -> str:
    """One line for the example editor while a run is queued or training ("" when none
    is): the run trains on the copy of the examples taken when it was queued, so an edit
    now counts from the next run."""
    run = runs.active_run(ctx.store)
    if run is None:
        return ""
    if run["status"] == "queued":
        return (f"Run #{run['id']} is about to train on a copy of your examples taken when "
                "it was started: edits count from the next run.")
    return (f"Run #{run['id']} is training on a copy of your examples taken when it "
            "started: edits count from the next run.")


def set_test_only(ctx: Context, example_id: int, test_only: bool) -> str:
    examples.set_test_only(ctx.store, example_id, test_only)
    return (f"✓ Example #{example_id} is kept for testing only: never trained on, never "
            "placed in a prompt." if test_only else
            f"✓ Example #{example_id} is a training example again.")


def set_must_keep(ctx: Context, example_id: int, must_keep: bool) -> str:
    if must_keep:
        chosen = examples.get_example(ctx.store, example_id)
        if chosen.source not in placement.ENDORSED:
            raise NotACheck(f"Example #{example_id} is a {chosen.source} answer, not one to "
                            "keep: correct it first, or add the check with the answer you "
                            "want.")
        general.check_pattern(chosen.answer)
    examples.set_must_keep(ctx.store, example_id, must_keep)
    return (f"✓ Example #{example_id} is a must-not-change check: every report card asks "
            "the plain model and your tuned assistant its question and checks that the "
            "answer still has yours (its words in order, or /a regex/). It is never trained on."
            if must_keep else f"✓ Example #{example_id} is no longer a must-not-change check "
            "(it is still kept for testing only).")


def mark_facts_check(ctx: Context, example_id: int, on: bool) -> str:
    """Mark an example as a facts check (the answer to its question must agree with the
    user's facts; the report card scores answers to it against them), or unmark it. A
    facts check is kept for testing only: never trained on, never placed in a prompt."""
    examples.set_facts_check(ctx.store, example_id, on)
    if not on:
        return (f"✓ Example #{example_id} is no longer a facts check (it is still kept for "
                "testing only).")
    return (f"✓ Example #{example_id} is a facts check: every report card scores answers to "
            "its question against your facts. It is kept for testing only, never trained on.")


def add_check(ctx: Context, prompt: str, answer: str, system: str = "") -> int:
    """A must-not-change check: a question every report card asks the base and the
    adapter, right when the answer contains `answer` (its words in order, or /a regex/)."""
    general.check_pattern(answer)
    messages = ([{"role": "system", "content": system}] if system.strip() else []) + [
        {"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    return examples.add_example(ctx.store, messages, "added", must_keep=True)


def delete(ctx: Context, example_id: int) -> None:
    examples.delete_example(ctx.store, example_id)


def restore(ctx: Context, example_id: int) -> None:
    examples.restore_example(ctx.store, example_id)


def get(ctx: Context, example_id: int) -> Example:
    return examples.get_example(ctx.store, example_id)


def find(ctx: Context, search: str = "", source: str = "all") -> list[Example]:
    return examples.list_examples(ctx.store, search or "", source or "all")


PAGE_ROWS = 50
"""Examples shown at a time in the Examples tab."""


@dataclass(frozen=True)
class Page:
    """One page of the examples a search finds, newest first."""

    examples: list[Example]
    number: int
    """1 for the newest; a page past the end is the last one."""
    total: int
    size: int = PAGE_ROWS

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    def line(self) -> str:
        if not self.examples:
            return ""
        first = (self.number - 1) * self.size + 1
        return (f"Examples {first:,}–{first + len(self.examples) - 1:,} of {self.total:,}, "
                f"newest first · page {self.number:,} of {self.pages:,}")


def page(ctx: Context, search: str = "", source: str = "all", number: int = 1,
         size: int = PAGE_ROWS) -> Page:
    """The page `number` of what a search finds (searched and paged in SQLite)."""
    found, total, number = examples.page_of_examples(ctx.store, search or "", source or "all",
                                                     size, number)
    return Page(found, number, total, size)


def counts(ctx: Context) -> dict[str, int]:
    return examples.counts(ctx.store)


@dataclass(frozen=True)
class Imported:
    done: formats.Imported
    file_name: str
    run_started: int | None = None
    test_only: bool = False
    report: Path | None = None
    """The skipped rows' report, when rows were skipped."""

    def message(self) -> str:
        done = self.done
        kinds = kinds_line(done.added) or "0 examples"
        kept = " for testing only (never trained on)" if self.test_only else ""
        skipped = [f"{n} {what}" for n, what in (
            (done.repeated, "repeated inside the file"), (done.present, "already present"))
            if n]
        line = (f"✓ Imported {kinds}{kept} from {self.file_name}"
                + (f" ({', '.join(skipped)}, skipped)" if skipped else "") + ".")
        if done.bad:
            line += (f" {len(done.bad)} bad row{'s' * (len(done.bad) != 1)} left out, "
                     f"the first: {done.bad[0]}. {listed_in(self.report)}")
        return line + started_note(self.run_started)


def kinds_line(added: dict[str, int]) -> str:
    """{"example": 3, "pair": 1} -> "3 examples, 1 preference pair"."""
    return ", ".join(f"{n} {_plural(kind, n)}" for kind, n in added.items())


def _plural(kind: str, n: int) -> str:
    names = {"example": "examples", "pair": "preference pairs",
             "thumbs-down": "thumbs-down"}
    return {"pair": "preference pair"}.get(kind, kind) if n == 1 else names.get(kind, kind)


def import_file(ctx: Context, path: str | Path, fmt: str = "auto", test_only: bool = False,
                mapping: str | None = None, skip_bad: bool = False,
                progress: Callable[[int], None] | None = None) -> Imported:
    """Import a file's rows (all or nothing; with `skip_bad`, the good ones, and the bad
    ones listed in a report in the data home); with `test_only`, for testing only.
    `mapping`: "question=user,answer=assistant" for spreadsheet columns; `progress(rows
    read)` is called now and then."""
    done = formats.import_file(ctx.store, path, fmt, test_only,
                               sources.parse_mapping(mapping), skip_bad, progress=progress)
    report = skipped_report(ctx, path)
    if done.bad:
        formats.write_bad_rows(done.bad, report)
    else:  # an earlier import's report of this file would speak of rows now imported
        report.unlink(missing_ok=True)
    trainable = done.added.get("example", 0) + done.added.get("pair", 0)
    run_id = training.after_examples_added(ctx) if trainable and not test_only else None
    return Imported(done, Path(path).name, run_id, test_only, report if done.bad else None)


def listed_in(report: Path | None) -> str:
    """The import line's sentence that says where the rows it left out are listed (the
    web app puts its download in place of this sentence)."""
    return f"Every one is listed in {report}."


def skipped_report(ctx: Context, path: str | Path) -> Path:
    """Where the rows an import of this file left out are listed (a CSV in the data
    home), when it left some out."""
    return ctx.store.home / "imports" / f"{Path(path).stem}.skipped.csv"


def preview(ctx: Context, path: str | Path, fmt: str = "auto",
            mapping: str | None = None) -> formats.Preview:
    """What importing the file would store and skip, without storing anything."""
    return formats.preview(ctx.store, path, fmt, sources.parse_mapping(mapping))


@dataclass(frozen=True)
class Exported:
    written: int
    fmt: str
    path: Path

    def message(self) -> str:
        unit = formats.FORMATS[self.fmt].unit
        return f"✓ Wrote {self.written} {unit}{'s' * (self.written != 1)} to {self.path.name}."


def export_file(ctx: Context, path: str | Path, fmt: str = "openai",
                run_id: int | None = None) -> Exported:
    """The trainable examples as they are now, or with `run_id` exactly what that run
    trained on, as it was when queued."""
    if run_id is not None:
        written = training.export_training_set(ctx, run_id, path, fmt)
    else:
        written = formats.export_file(ctx.store, path, fmt)
    return Exported(written, fmt, Path(path))
