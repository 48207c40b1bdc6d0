"""The Train and Compare tabs after a bike-shop owner's second try (/tmp/try2): the
Train tab's line on the model in use agrees with the Compare tab's card, and offers to
go back when a run took over with something against it; the corrections sentence is
the newest run's only; a vote's note comes into view and a second vote is refused in
plain words; plain words in headers, charts and lists; a progress line that does not
flicker; flipped questions that Markdown cannot break. Handlers only, no browser."""

from __future__ import annotations

import re

import gradio as gr
import pytest

from services import models, names, report
from storage import reports, runs
from web import cards, train

TESTS_TOO_FEW = 3


def adapter(ctx, store, name: str) -> int:
    """A succeeded run with an adapter folder (enough for the lists and the names)."""
    folder = ctx.adapters_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text("{}")
    run_id = runs.create_run(store, {}, [])
    runs.finish_run(store, run_id, "succeeded", adapter=name)
    return run_id


def card_of(name: str, in_use: str, ours: float, theirs: float, n: int,
            baseline: float = 0.0, forgot: int = 0, old_way: int = 0,
            corrections: int = 0) -> dict:
    """A card as services/report.py stores it: `n` test examples, the run against the
    model in use and the options without training (each scores the same on every row)."""
    scores = {"base": baseline, "base+examples": baseline, in_use: theirs, name: ours}
    rows = [{"id": i + 1, "source": "kept", "split": "held_out", "prompt": f"Q{i}?",
             "reference": f"A{i}.", "flips": {},
             "answers": {model: {"text": "...", "score": s} for model, s in scores.items()}}
            for i in range(n)]
    general = {"n": 100, "users": 0, "models": [
        {"name": "base", "right": 95, "lost": 0, "gained": 0, "forgot": False, "flips": []},
        {"name": name, "right": 95 - forgot, "lost": forgot, "gained": 0,
         "forgot": bool(forgot), "flips": []}]}
    return {"adapter": name, "in_use": in_use, "n": n, "rows": rows,
            "contenders": [{"name": model, "score": s, "ci_low": s, "ci_high": s, "n": n,
                            "prompt_tokens": 40, "latency_ms": 5} for model, s in
                           scores.items()],
            "measure": {"name": "style", "binary": True}, "general": general,
            "corrections": {"n": corrections, "old_way": [
                {"id": 30 + i, "prompt": f"Can you fix motor {i}?", "answer": "Yes.",
                 "correction": "No."} for i in range(old_way)]}}


def decided(ctx, store, card: dict, run_id: int) -> dict:
    """The card stored on its run and its decision recorded, as report.evaluate does."""
    decision = runs.settle_default(store, report.decide_in_use(card, {"id": run_id}),
                                   card["in_use"])
    assert decision is not None
    reports.save_report(store, run_id, card["adapter"], {**card, "decision": decision})
    return decision


def refreshed(ctx) -> dict:
    """The Train tab's tick, by name."""
    (status, curve, history, scores, signals, start, line, button, offer,
     resume) = train.TrainHandlers(ctx).refresh()
    return {"status": status, "curve": curve, "line": line, "button": button,
            "offer": offer}


def plain(ctx, name: str) -> str:
    return names.plain(ctx, [name])(name)


# 1. One verdict on both tabs, and a way back.

def test_a_run_that_took_over_on_too_few_tests_says_what_its_card_says(ctx, store):
    """Before: "✓ New chats use run-2: it did at least as well as run-1 (100 against 80
    on its report card)", beside a Compare card that said "Too early to say"."""
    adapter(ctx, store, "run-1")
    models.promote(ctx, "run-1")
    second = adapter(ctx, store, "run-2")
    card = card_of("run-2", "run-1", 100, 80, TESTS_TOO_FEW, baseline=100, forgot=13,
                   old_way=2, corrections=5)  # 2 of 5: it still takes over, with caveats
    decision = decided(ctx, store, card, second)
    assert decision["adopted"] and models.chat_default(ctx) == "run-2"
    headline = cards.headline(card, names.plain(ctx, cards.card_names(card)))
    assert headline.startswith("Too early to say:")

    tick = refreshed(ctx)
    line, button = tick["line"], tick["button"]
    assert "✓" not in line
    assert line.startswith(
        f"New chats use **{plain(ctx, 'run-2')}**: it scored 100 against 80 for "
        f"{plain(ctx, 'run-1')}, but on only 3 tests, too few to be sure (the Compare "
        "tab's card: Too early to say).")
    assert "It forgot 13 of 100 general questions the plain model knew" in line
    assert "It still answers 2 of your 5 corrections the old way." in line
    # the corrections line names them, without counting them a second time
    assert "Those it still answers the old way: “Can you fix motor 0?” (#30)" in line
    assert line.count("corrections the old way") == 1
    assert tick["offer"] == "run-1"
    assert isinstance(button, gr.Button) and button.visible
    shown = names.label(ctx, "run-1")
    assert button.value == f"Keep using {shown[0].lower() + shown[1:]} instead"

    note, again, hidden = train.TrainHandlers(ctx).use_anyway(tick["offer"])
    assert models.chat_default(ctx) == "run-1"
    assert note.startswith(f"✓ New chats use **{names.label(ctx, 'run-1')}**")
    assert refreshed(ctx)["line"].startswith(
        f"New chats use **{plain(ctx, 'run-1')}**, as you chose.")
    assert not refreshed(ctx)["button"].visible


def test_a_check_mark_only_when_the_card_has_nothing_against_it(ctx, store):
    adapter(ctx, store, "run-1")
    second = adapter(ctx, store, "run-2")
    card = card_of("run-2", "base", 100, 0, 12)
    decided(ctx, store, card, second)
    assert cards.headline(card, names.AS_IS).startswith("Yes:")
    tick = refreshed(ctx)
    assert tick["line"].startswith(f"✓ New chats use **{plain(ctx, 'run-2')}**: it did at "
                                   "least as well as the plain model (100 against 0")
    assert "the Compare tab's card says Yes: it does better than every option that needs " \
        "no training" in tick["line"]
    assert tick["offer"] is None and not tick["button"].visible


@pytest.mark.parametrize("answer, said", [
    ("even", "but an option that needs no training does about as well (the Compare tab's "
             "card: Not clearly)"),
    ("no", "but an option that needs no training does better (the Compare tab's card: "
           "No)")])
def test_a_run_no_better_than_an_option_without_training_gets_no_check_mark(
        ctx, store, answer, said):
    """The owner: "when a model isn't better than 'plain model + a few of your
    examples', I'd like to be asked before it becomes the default"."""
    adapter(ctx, store, "run-1")
    models.promote(ctx, "run-1")
    second = adapter(ctx, store, "run-2")
    baseline = 60 if answer == "even" else 100
    card = card_of("run-2", "run-1", 60, 50, 12, baseline=baseline)
    decision = decided(ctx, store, card, second)
    assert decision["answer"] == answer and decision["adopted"]
    line, offer = train.in_use_line(ctx)
    assert "✓" not in line and said in line and offer == "run-1"
    assert cards.headline(card, names.AS_IS).startswith(cards.ANSWER_WORDS[answer] + ":")


def test_a_decision_recorded_before_the_caveats_were_gets_no_check_mark(ctx, store):
    adapter(ctx, store, "run-1")
    models.promote(ctx, "run-1")
    second = adapter(ctx, store, "run-2")
    old = {"run": second, "adapter": "run-2", "in_use": "run-1", "adopted": True,
           "why": "scores", "score": 90.0, "their_score": 80.0, "forgot": 0, "general": 100}
    runs.settle_default(store, old, "run-1")
    reports.save_report(store, second, "run-2", {"adapter": "run-2", "decision": old})
    line, offer = train.in_use_line(ctx)
    assert "✓" not in line and offer == "run-1"
    assert "it scored 90 against 80" in line and "says how sure that is" in line


# 2. The corrections sentence is the newest run's, and only once its card is there.

def test_the_corrections_line_is_the_newest_runs_only(ctx, store):
    """Before: while run #2's card was measured, the Train tab said run #1's "It answers
    all 1 of your corrections it trained on your way."."""
    first = adapter(ctx, store, "run-1")
    decided(ctx, store, card_of("run-1", "base", 100, 0, 12, corrections=1), first)
    assert "It answers all 1 of your corrections" in refreshed(ctx)["line"]
    second = adapter(ctx, store, "run-2")  # its card is being measured
    line = refreshed(ctx)["line"]
    assert f"Run #{second} is done. Its report card is being measured" in line
    assert "corrections" not in line
    decided(ctx, store, card_of("run-2", "run-1", 100, 100, 12, corrections=2, old_way=2),
            second)
    line = refreshed(ctx)["line"]
    assert "all 1" not in line and "2 of your 2 corrections the old way" in line


# 3. The vote's note comes into view; a second vote is refused in plain words.

def test_a_vote_brings_its_note_into_view_and_a_second_one_says_why_not(ctx):
    from web.app import build_app
    from web.compare import ALREADY_VOTED, NOTE, SCROLL_TO_NOTE, CompareHandlers

    app = build_app(ctx)
    assert "scrollIntoView({block: 'nearest'" in SCROLL_TO_NOTE
    assert f"getElementById('{NOTE}')" in SCROLL_TO_NOTE
    scrolls = [d for d in app.fns.values() if d.js == SCROLL_TO_NOTE]
    assert len(scrolls) == 4 and all(d.fn is None for d in scrolls)  # one per vote button
    for scroll in scrolls:
        assert app.fns[scroll.trigger_after].fn.__name__ == "record_vote"

    handlers = CompareHandlers(ctx)
    pending = {"prompt": "Say hello.", "system": "", "a": "base", "b": "base+examples",
               "a_reply": "Hello.", "b_reply": "Hi!", "blind": True}
    note, _, _, after, _ = handlers.record_vote("B is better", pending)
    assert note.startswith("✓ Vote stored: B is better.")
    again = handlers.record_vote("A is better", after)
    assert again[0] == ALREADY_VOTED == ("Your vote on these two answers is stored. Press "
                                         "Compare for a new pair to vote again.")
    # before Compare, or while the answers are still written (no pending vote yet)
    assert handlers.record_vote("A is better", None)[0].startswith(
        "A vote needs both answers written to the end")
    from services import compare

    assert sum(r["votes"] for r in compare.win_rates(ctx)) == 1  # the second one not stored


# 4. Plain words.

def test_the_runs_table_and_the_scores_chart_speak_plain_words(ctx, store):
    from web.app import build_app

    for header in train.HISTORY_HEADERS:
        assert "(held-out loss)" not in header and "tokens/s" not in header
    assert "held-out loss" in train.RUNS_DETAILS and "tokens per second" in train.RUNS_DETAILS

    def scored(run: int, score: float) -> dict:
        return {"adapter": f"run-{run}", "test_set": "a", "measure": {"name": "chrf"},
                "contenders": [{"name": f"run-{run}", "score": score, "ci_low": score - 5,
                                "ci_high": score + 5}]}

    chart = train.scores_chart({1: scored(1, 30), 2: scored(2, 60)})
    assert ">#1<" in chart and ">#2<" in chart and "run-" not in chart
    assert "Score of each run's tuned assistant" in chart and "adapter" not in chart
    crowded = cards.runs_chart_svg([(f"#{i}", 50, 40, 60) for i in range(1, 61)])
    labels = re.findall(r'text-anchor="middle">(#\d+)</text>', crowded)
    assert labels[-1] == "#60" and 5 < len(labels) < 60  # thinned, the last one kept

    app = build_app(ctx)
    continue_from = next(b for b in app.blocks.values()
                         if getattr(b, "elem_id", None) == "continue-from")
    assert continue_from.choices[0] == (train.NEW_WORDS, train.NEW_ADAPTER)
    assert continue_from.value == train.NEW_ADAPTER == "(a new adapter)"  # the API's value
    adapter(ctx, store, "run-1")  # a new adapter arrives: the list follows, same words
    from web.common import Ui

    ui = Ui(ctx)
    with gr.Blocks():
        train.build(ui)
    update = next(e for e in ui.lists if e.dropdown.elem_id == "continue-from").update(ctx)
    assert update.choices == [(train.NEW_WORDS, train.NEW_ADAPTER),
                              (names.label(ctx, "run-1"), "run-1")]
    assert update.value == train.NEW_ADAPTER
    assert cards.CARD_HEADERS[3] == "question length it reads (word pieces)"


# 5. The progress line does not flicker.

def test_the_evaluation_before_the_first_step_keeps_the_step_count(store):
    """Before: started() wrote 8 steps, then the evaluation before training wrote 0 (the
    Trainer counts its steps only once training starts): the bar came and went."""
    from trainer.__main__ import DatabaseReporter

    run_id = runs.create_run(store, {}, [])
    runs.start_running(store, run_id, None)
    reporter = DatabaseReporter(store, run_id)
    reporter.started(8, 20, 4)
    first = train.status_html(runs.get_run(store, run_id), _auto(), "0 of 20")
    reporter.progress(0, 0, {"eval_loss": 3.4})  # as the Trainer reports it
    run = runs.get_run(store, run_id)
    assert run["total_steps"] == 8
    assert train.status_html(run, _auto(), "0 of 20") == first
    assert "step 0 of 8" in first and "<progress" in first
    chart = train.loss_chart_html(run)
    ticks = [float(t) for t in re.findall(r'text-anchor="end" fill="#6b7280">([^<]*)<',
                                          chart)]
    assert min(ticks) < 3.4 < max(ticks)  # the first point within the chart, not its floor


def test_a_tick_renders_the_same_as_the_one_before(ctx, store):
    run_id = runs.create_run(store, {}, [])
    runs.start_running(store, run_id, None)
    runs.update_run(store, run_id, step=0, total_steps=8,
                    eval_losses=[{"step": 0, "loss": 3.4}])
    handlers = train.TrainHandlers(ctx)
    first, second = handlers.refresh(), handlers.refresh()
    assert first[:2] == second[:2]
    assert "getting ready" not in first[0] and "step 0 of 8" in first[0]


def test_the_timer_and_the_buttons_show_no_processing_overlay(ctx):
    from web.app import build_app

    app = build_app(ctx)
    outputs = {id(b): getattr(b, "elem_id", None) for b in app.blocks.values()}
    for dependency in app.fns.values():
        written = {outputs.get(id(b)) for b in dependency.outputs}
        if written & {"train-status-box", "train-note", "in-use-line"}:
            assert dependency.show_progress == "hidden", written


def _auto():
    from services import training

    return training.AutoStart(True, 20, 0)


# 6. Flipped questions that Markdown cannot break.

def test_a_flipped_question_stays_on_one_line_in_unbroken_italics():
    """Before: "_To find half of 50, we divide 50 by 2.\\n\\n50 ÷ 2 = 20\\n\\nHalf of 50 is
    20._" broke the italics over three paragraphs; "...historic city loca" ended
    mid-word."""
    flip = {"now": "wrong", "question": "What is\nhalf of 50?",
            "base": "Half of 50 is 25.",
            "answer": "To find half of 50, we divide 50 by 2.\n\n50 ÷ 2 = 20\n\nHalf of 50 "
                      "is 20, a_b *c* and the historic city location of everything else."}
    line = cards._flip_line(flip, "run-2", names.AS_IS)
    assert "\n" not in line and "What is half of 50?" in line
    mine = line.split("run-2: ")[1]
    assert mine.startswith("_To find half of 50, we divide 50 by 2. 50 ÷ 2 = 20 Half of 50")
    assert mine.endswith("…_") and mine.count("_") - mine.count("\\_") == 2
    assert "a\\_b \\*c\\*" in mine
    words = cards.clipped(flip["answer"]).removesuffix("…").split()
    assert set(words) <= set(flip["answer"].split())  # whole words only
    assert cards.clipped("short\n answer") == "short answer"
    assert cards._italics("") == "(no answer)"


def test_a_run_note_goes_once_its_run_has_ended(ctx, store):
    """Before (the bike-shop try): "Started run #2." stayed above "Run #2 is done", and
    "Cancelling run #3 after its current step..." beside "cancelled"."""
    handlers = train.TrainHandlers(ctx)
    run_id = runs.create_run(store, {}, [])
    for note in (f"Started run #{run_id}.", f"Cancelling run #{run_id} after its current "
                 "step...", f"Resuming run #{run_id} from its last checkpoint."):
        assert handlers.settled_note(note) == gr.skip()  # queued: it stays
    runs.finish_run(store, run_id, "cancelled")
    assert handlers.settled_note(f"Cancelling run #{run_id} after its current step...") == ""
    assert handlers.settled_note("A run starts by itself after 20 new examples.") == gr.skip()
    assert handlers.settled_note("") == gr.skip()


def test_a_run_on_the_same_examples_says_so(ctx, store, monkeypatch):
    """Before (the bike-shop try): Start with "0 of 20 new examples" retrained on the
    same data and said nothing."""
    from services import training

    handlers = train.TrainHandlers(ctx)
    started: list = []
    monkeypatch.setattr(training, "start", lambda ctx, config: started.append(config) or 7)
    assert handlers.start("auto", 0, 2e-4, 16, train.NEW_ADAPTER) == "Started run #7."
    adapter(ctx, store, "run-1")  # a run now exists, and no example came since
    assert handlers.start("auto", 0, 2e-4, 16, train.NEW_ADAPTER) == (
        "Started run #7. No examples were added since the last run: it learns the same "
        "ones again (with the settings you chose).")
