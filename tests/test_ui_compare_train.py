"""The Train and Compare tabs' handlers, as a person who is not an engineer reads them:
Resume only when there is a run to resume, the report card being measured said in both
tabs, one read of the runs table a tick, a loss chart with whole steps and whole legend
words, blind labels that promise no side, and plain words with the technical ones
folded. No browser: the handlers and the built app's components."""

from __future__ import annotations

import re

import gradio as gr
import pytest

from services import names, report
from storage import runs


def finished(store, status: str = "succeeded", adapter: str | None = None) -> int:
    run_id = runs.create_run(store, {}, [])
    runs.finish_run(store, run_id, status, adapter=adapter,
                    error="boom" if status == "failed" else None)
    return run_id


def measuring(ctx, adapter: str, done: int = 40, total: int = 240) -> None:
    """The report-card worker (not started) as it is while measuring `adapter`."""
    ctx.reports = report.ReportWorker(ctx)
    ctx.reports.current = {"adapter": adapter, "done": done, "total": total,
                           "step": f"answers {done} of {total}, about 9 min left: {adapter}"}


def mid_sentence(ctx, adapter: str) -> str:
    shown = names.label(ctx, adapter)
    return shown[0].lower() + shown[1:]


def resume_of(ctx) -> gr.Button:
    from web.train import TrainHandlers

    button = TrainHandlers(ctx).refresh()[-1]
    assert isinstance(button, gr.Button)
    return button


def test_resume_is_shown_only_when_the_newest_run_can_be_resumed(ctx, store):
    """Before: *Resume last failed run* was always there, even with nothing to resume."""
    assert not resume_of(ctx).visible  # no runs yet
    finished(store, "succeeded", "run-1")
    assert not resume_of(ctx).visible
    failed = finished(store, "failed")
    button = resume_of(ctx)
    assert button.visible and button.value == f"Resume run #{failed} from where it stopped"
    cancelled = finished(store, "cancelled")
    assert resume_of(ctx).value == f"Resume run #{cancelled} from where it stopped"
    queued = runs.create_run(store, {}, [])  # a run is queued: nothing to resume now
    assert not resume_of(ctx).visible
    runs.finish_run(store, queued, "succeeded", adapter="run-4")
    assert not resume_of(ctx).visible  # an older failed run, with a newer one after it


def test_the_train_tab_says_which_report_card_is_being_measured(ctx, store):
    """Before: while a finished run's card was computed, the Train tab said nothing."""
    from web.train import TrainHandlers

    finished(store, "succeeded", "run-1")
    assert "Measuring" not in TrainHandlers(ctx).refresh()[0]
    measuring(ctx, "run-1")
    status = TrainHandlers(ctx).refresh()[0]
    assert (f"Measuring {mid_sentence(ctx, 'run-1')} for its report card: answers 40 of 240, "
            "about 9 min left. The chat stays usable; the card appears in the Compare "
            "tab.") in status
    assert "run-1" not in status.split("card-progress")[1]  # plain words only
    measuring(ctx, "run-1", 0, 0)
    assert "for its report card: starting." in TrainHandlers(ctx).refresh()[0]


def test_the_compare_tab_says_a_card_is_measured_for_whichever_adapter(ctx, store):
    """Before: the card list showed the adapter in use (run-1) while run-2's card was
    computed, and the status said nothing about it."""
    from web.compare import CompareHandlers

    finished(store, "succeeded", "run-1")
    finished(store, "succeeded", "run-2")
    measuring(ctx, "run-2")
    handlers = CompareHandlers(ctx)
    other = (f"Measuring the report card of {mid_sentence(ctx, 'run-2')} too: answers 40 of "
             "240, about 9 min left.")
    assert other in handlers.status("run-1")
    assert other in handlers.follow("run-1", None)[0]  # the timer says it too
    assert handlers.status("run-2").startswith(
        f"Measuring {mid_sentence(ctx, 'run-2')}: answers 40 of 240, about 9 min left.")
    assert "too:" not in handlers.status("run-2")
    handlers.measuring["run-1"] = "answers 3 of 90"  # *Measure again* of another one
    assert f"Measuring the report card of {mid_sentence(ctx, 'run-1')} too: answers 3 " \
        "of 90." in handlers.status("run-2")
    ctx.reports.current = None
    handlers.measuring.clear()
    assert "Measuring" not in handlers.status("run-1")


def test_the_train_tab_reads_the_runs_table_once_a_tick(ctx, store, monkeypatch):
    """Before: six reads a tick (status, the newest run, the names twice, the history
    twice). Left: one here, and one each in services/names.py (labels) and
    services/training.py (progress_line), which read it themselves."""
    from web.train import TrainHandlers

    finished(store, "failed")
    finished(store, "succeeded", "run-2")  # no card yet: the in-use line names it
    measuring(ctx, "run-2")
    read = runs.list_runs
    calls = []
    monkeypatch.setattr(runs, "list_runs", lambda *a, **k: calls.append(1) or read(*a, **k))
    TrainHandlers(ctx).refresh()
    assert len(calls) <= 3


def test_the_loss_chart_counts_whole_steps_and_keeps_its_legend_whole(ctx, store):
    """Before: gr.LinePlot put ticks at 0.2 steps on a short run, and cut the legend's
    words ("examples it never saw (h...")."""
    from web.train import COLORS, HELD_OUT, TRAIN, TrainHandlers, loss_chart_html, step_ticks

    assert step_ticks(1) == [0, 1]
    assert step_ticks(5) == [0, 1, 2, 3, 4, 5]
    assert step_ticks(12) == [0, 2, 4, 6, 8, 10, 12]
    assert step_ticks(300) == [0, 50, 100, 150, 200, 250, 300]
    run = {"id": 3, "total_steps": 3, "step": 3,
           "losses": [{"step": s, "loss": 2.0 - 0.3 * s} for s in (1, 2, 3)],
           "eval_losses": [{"step": 0, "loss": 2.1}, {"step": 3, "loss": 1.4}]}
    chart = loss_chart_html(run)
    ticks = re.findall(r'text-anchor="middle" fill="#6b7280">([^<]*)</text>', chart)
    assert ticks == ["0", "1", "2", "3"]
    for series in COLORS:  # whole words, in a legend that wraps; no preference stage
        assert (f"</span>{series}</span>" in chart) == (series in (TRAIN, HELD_OUT))
    assert "flex-wrap:wrap" in chart
    assert "Run #3: error while learning (lower is better)" in chart
    assert chart.count("<path") == 2 and "<svg" in chart

    runs.create_run(store, {}, [])  # queued, no steps yet: the frame is drawn already
    curve = TrainHandlers(ctx).refresh()[1]
    assert "<svg" in curve and "the curve starts with the first steps" in curve


def test_blind_compare_promises_no_side_and_says_how_it_works(ctx):
    """Before: "Model A (left)" / "Model B (right)" over answers shown in random order."""
    from web.app import build_app

    app = build_app(ctx)
    by_id = {block.elem_id: block for block in app.blocks.values()
             if getattr(block, "elem_id", None)}
    labels = [by_id["model-a"].label, by_id["model-b"].label]
    assert labels == ["One model", "The other model"]
    for said in labels:
        assert not re.search(r"left|right|\bA\b|\bB\b", said)
    blind = next(block for block in app.blocks.values() if isinstance(block, gr.Checkbox)
                 and (block.label or "").startswith("Blind"))
    assert "random order, as A and B" in blind.label
    assert "names are revealed after you vote" in blind.label
    rates = by_id["win-rates"].label
    assert "Wilson" not in rates and "95%" not in rates
    assert "(chrF)" not in str(by_id["card-measure"].choices)
    assert ("chrf" in [value for _, value in by_id["card-measure"].choices])  # the value
    folded = [block.value for block in app.blocks.values() if isinstance(block, gr.Markdown)
              and "<details>" in str(block.value)]
    assert any("95% Wilson" in text for text in folded)
    assert any("chrF" in text for text in folded)


def test_open_compare_names_each_side_and_blind_names_none(ctx):
    from web.compare import CompareHandlers

    handlers = CompareHandlers(ctx)
    *_, (_, _, _, _, pending) = shown = list(handlers.stream_both("Say hello.", "", "base",
                                                                  "base", False))
    assert (shown[0][2].value, shown[0][3].value) == ("A: The plain model",
                                                      "B: The plain model")
    assert pending["blind"] is False
    blind = next(handlers.stream_both("Say hello.", "", "base", "base", True))
    assert (blind[2].value, blind[3].value) == ("Model A", "Model B")


def test_the_vote_note_and_the_measure_note_speak_plain_words(ctx):
    """Before: "(the sft+dpo objective)" after a vote, "(chrF)" after choosing the
    wording measure."""
    from web.compare import CompareHandlers

    handlers = CompareHandlers(ctx)
    pending = {"prompt": "Say hello.", "system": "", "a": "base", "b": "base+examples",
               "a_reply": "Hello.", "b_reply": "Hi!", "blind": True}
    note = handlers.record_vote("A is better", pending)[0]
    assert "kept as a preference" in note and "What to learn from" in note
    assert "sft" not in note and "dpo" not in note
    said = handlers.set_measure("chrf")
    assert "wording: how close to your words" in said and "chrF" not in said


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_resume_names_the_run_that_resume_takes_up(store, status):
    """The button's run is the one services/training.py resume() takes up: the newest
    failed or cancelled run."""
    from web.train import resumable

    finished(store, "failed")
    newest = finished(store, status)
    assert resumable(runs.list_runs(store, 50))["id"] == newest == next(
        r["id"] for r in runs.list_runs(store, 20) if r["status"] in ("failed", "cancelled"))


def test_a_cards_progress_says_how_long_is_left(monkeypatch):
    """A card asks a couple of hundred answers: its progress says the time left, at the
    pace so far, once a few answers give a pace; answers kept from an earlier card
    (they arrive at once) do not make the pace look quicker."""
    clock = iter([0.0, 15.0, 60.0, 60.01, 180.0])
    monkeypatch.setattr(report.time, "monotonic", lambda: next(clock))
    said: list[str] = []
    steps = report._Steps(lambda done, total, step: said.append(step), 240)
    steps.add(5, "run-1")  # too few for a pace
    steps.add(15, "run-1")  # 20 answers in 60 s: 220 more take 11 min
    steps.add(100, "general questions, base")  # kept from an earlier card: no time
    steps.add(119, "run-1")  # 139 written in 180 s: one more, less than a minute
    assert said == ["answers 5 of 240: run-1", "answers 20 of 240, about 11 min left: run-1",
                    "answers 120 of 240, about 6 min left: general questions, base",
                    "answers 239 of 240, less than a minute left: run-1"]
