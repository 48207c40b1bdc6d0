"""The Train tab: settings, Start / Cancel / Resume, a live progress bar with the time
left, the loss curve (train and eval), the history of runs and a selected run's lineage.
The tab only reads the run records the trainer process writes; it never trains.

Its timer reads the runs table once a tick (`TrainHandlers.refresh`) and hands the rows
to every helper that needs them."""

from __future__ import annotations

import dataclasses
import html
import itertools
import math
import re
from dataclasses import dataclass
from typing import Any

import gradio as gr

from core.adapters import BASE
from services import contenders, models, names, report, training
from services.context import Context
from storage.runs import ACTIVE, RunActive
from trainer.config import METHODS, TrainConfig
from trainer.objectives import OBJECTIVES
from web import cards as cards_svg
from web.common import ModelList, Ui, shown_to_user

NEW_ADAPTER = "(a new adapter)"
"""The continue-from list's value for a fresh start (what the /train API takes)."""
NEW_WORDS = "a new assistant (start fresh)"
"""What the continue-from list shows for NEW_ADAPTER."""
HISTORY_HEADERS = ["#", "status", "model", "score", "examples",
                   "error on examples it never saw, before", "after",
                   "speed (word pieces a second)", "time (s)", "started", "note"]
RUNS_DETAILS = (
    "<details><summary>details</summary>The technical names: <i>error on examples it never "
    "saw</i> is the held-out loss, on the examples its run set aside (lower is better), "
    "before and after training; <i>speed</i> is training tokens per second; "
    "<i>model</i> is the run's LoRA adapter, <code>run-N</code> in the API and the command "
    "line.</details>")
CARD_SAYS = {"yes": "", "too_few": "",
             "no": "an option that needs no training does better",
             "even": "an option that needs no training does about as well"}
"""What the card's answer (services/report.py answer) weighs against a run that took
over, after "but" (too few tests is said with their number)."""
TRAIN, HELD_OUT, PREFERENCES = ("your examples (train)", "examples it never saw (held out)",
                                "learning your preferences (preference stage)")
COLORS = {TRAIN: "#2563eb", HELD_OUT: "#f97316", PREFERENCES: "#16a34a"}
METHOD_WORDS = {"auto": "auto", "lora": "normal (lora)", "qlora": "low memory (qlora)"}
OBJECTIVE_WORDS = {
    "auto": "auto: what was measured to help",
    "sft": "your answers",
    "sft+dpo": "your answers, then your corrections and vote winners over what they "
               "replaced",
    "sft+kto": "your answers, then also what to avoid: thumbs-down and replaced answers",
    "dpo": "only your preferences, on a model you choose",
    "kto": "only what to avoid, on a model you choose"}
"""What each objective learns from, in plain words; the technical names are under
"details" (OBJECTIVE_DETAILS)."""
OBJECTIVE_DETAILS = (
    "<details><summary>details</summary>The technical names (<code>tunechat train "
    "--objective</code>): " + "; ".join(f"<i>{words}</i>: <code>{name}</code>"
                                         for name, words in OBJECTIVE_WORDS.items())
    + ". sft is supervised fine-tuning, dpo direct preference optimization, kto "
    "Kahneman-Tversky optimization.</details>")
STAGES = {"sft": "learning your answers", "dpo": "learning your preferences: dpo stage",
          "kto": "learning what to avoid: kto stage"}
HISTORY_ROWS = 50
"""Runs the tab reads a tick (the runs table shows them). The active run is always among
them: a new run is the newest, and Resume takes up only the newest run."""
RESUMABLE = ("failed", "cancelled")
"""What services/training.py resume() takes up (supervision/jobs.py: from its last complete
checkpoint, else from the start, on the examples it was queued with)."""


def eta_seconds(run: dict) -> float | None:
    """Time left from the pace of the steps so far (loading the model and the first
    evaluation are not steps, so they do not count); None until two steps are done."""
    timed = [p for p in run.get("losses") or [] if "t" in p]
    total = run.get("total_steps") or 0
    if len(timed) < 2 or not total or timed[-1]["step"] <= timed[0]["step"]:
        return None
    pace = (timed[-1]["t"] - timed[0]["t"]) / (timed[-1]["step"] - timed[0]["step"])
    return max(0.0, pace * (total - (run.get("step") or timed[-1]["step"])))


def held_out_worse(run: dict, say: names.Names = names.AS_IS) -> str:
    """Did the run make things worse on its held-out examples? Said next to succeeded."""
    metrics = run.get("metrics") or {}
    before, after = metrics.get("eval_loss_before"), metrics.get("eval_loss_after")
    if run.get("status") != "succeeded" or before is None or after is None or after <= before:
        return ""
    parent = run["config"].get("continue_from")
    return (f"worse than {say(parent)}, which it continued," if parent else
            "worse than the plain model") + " on examples it never saw (held-out loss)"


def status_html(run: dict | None, auto: training.AutoStart, progress: str,
                shown: str | None = None, card: str = "") -> str:
    """The run's state; `shown`: its model's name in plain words; `card`: how far the
    report card being measured now is (card_progress_line)."""
    waiting = next_run_line(auto, progress)
    card_line = f'<p class="card-progress">{html.escape(card)}</p>' if card else ""
    if not run:
        return (f'<div id="train-status"><p>No training runs yet.</p>{card_line}'
                f'<p>{waiting}</p></div>')
    step, total = run.get("step") or 0, run.get("total_steps") or 0
    line = f"Run #{run['id']} · <b>{run['status']}</b>"
    if total:
        line += f" · step {step} of {total}"
        stage = ((run.get("losses") or [{}])[-1]).get("stage")
        line += f" ({STAGES.get(stage, stage)})" if stage and run["status"] == "running" \
            else ""
    if run["status"] == "running":
        eta = eta_seconds(run)
        line += (" · getting ready..." if not total else
                 f" · about {eta:.0f} s left" if eta is not None else " · timing the steps...")
    if run["status"] == "succeeded":
        worse = held_out_worse(run)
        line += f" · <b>{worse}</b>" if worse else ""
        line += (f" · <b>{html.escape(shown or run['adapter'] or '')}</b> is ready in the "
                 "Chat tab's Model list")
    if run.get("error"):
        line += f"<br><span style='color:#b91c1c'>{html.escape(run['error'])}</span>"
    bar = (f'<progress value="{step}" max="{total}" style="width:100%"></progress>'
           if total else "")
    return f'<div id="train-status"><p>{line}</p>{bar}{card_line}<p>{waiting}</p></div>'


def card_progress_line(current: dict | None, say: names.Names) -> str:
    """What the report-card worker measures now, in plain words ("" when nothing):
    `current` is services/report.py ReportWorker.current."""
    if not current or not current.get("adapter"):
        return ""
    return (f"Measuring {say(current['adapter'])} for its report card: "
            f"{report.ReportWorker.how_far(current)}. The chat "
            "stays usable; the card appears in the Compare tab.")


def measured_now(ctx: Context) -> dict | None:
    """A copy of what the report-card worker measures now (it clears it when done)."""
    worker = ctx.reports
    current = worker.current if worker is not None else None
    return dict(current) if current else None


def resumable(rows: list[dict]) -> dict | None:
    """The run Resume takes up: the newest run, when it failed or was cancelled and no
    run is queued or training (services/training.py resume() takes the newest failed or
    cancelled run; an older one, with a newer run after it, is not offered)."""
    if not rows or any(r["status"] in ACTIVE for r in rows):
        return None
    return rows[0] if rows[0]["status"] in RESUMABLE else None


def resume_button(rows: list[dict]) -> gr.Button:
    """The Resume button, shown only when there is a run it can take up."""
    run = resumable(rows)
    if run is None:
        return gr.Button("Resume", visible=False)
    return gr.Button(f"Resume run #{run['id']} from where it stopped", visible=True)


def next_run_line(auto: training.AutoStart, progress: str) -> str:
    if not auto.enabled:
        return f"{progress}."
    return f"{progress}; the next run starts by itself at {auto.threshold}."


def loss_points(run: dict | None) -> list[dict]:
    if not run:
        return []
    return ([{"step": p["step"], "loss": p["loss"],
              "series": TRAIN if p.get("stage", "sft") == "sft" else PREFERENCES}
             for p in run["losses"]]
            + [{"step": step, "loss": loss, "series": HELD_OUT}  # one point a step
               for step, loss in {p["step"]: p["loss"] for p in run["eval_losses"]}.items()])


def step_ticks(last: int, most: int = 8) -> list[int]:
    """Whole-number ticks from 0 to `last` steps, 1, 2, 5, 10, 20, 50... apart, at most
    `most` of them (a step is never cut in fifths)."""
    gaps = (m * 10 ** k for k in itertools.count() for m in (1, 2, 5))
    gap = next(g for g in gaps if last // g + 1 <= most)
    return list(range(0, last + 1, gap))


def loss_ticks(low: float, high: float, most: int = 5) -> list[float]:
    """Round ticks covering low to high (1, 2 or 5 times a power of ten apart)."""
    if not high > low:
        return [low]
    raw = (high - low) / max(1, most - 1)
    power = 10 ** math.floor(math.log10(raw))
    gap = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / gap) * gap
    return [round(first + i * gap, 10) for i in range(int(math.ceil((high - first) / gap)) + 1)]


def loss_chart_html(run: dict | None, width: int = 640, height: int = 240) -> str:
    """The error curve of `run` (train, held out, preference stage) as an SVG with whole
    steps on its x-axis, and a legend in HTML that wraps instead of cutting its words."""
    points = [p for p in loss_points(run) if math.isfinite(p["loss"])]
    title = (f"Run #{run['id']}: error while learning (lower is better)" if run else
             "Error while learning (lower is better)")
    legend = "".join(
        f'<span style="display:inline-flex;align-items:center;gap:6px;margin-right:16px">'
        f'<span style="width:14px;height:3px;background:{color};display:inline-block">'
        f'</span>{html.escape(series)}</span>' for series, color in COLORS.items()
        if series != PREFERENCES or any(p["series"] == PREFERENCES for p in points))
    head = (f'<div style="font-weight:600">{html.escape(title)}</div>'
            f'<div style="display:flex;flex-wrap:wrap;font-size:13px;margin:4px 0">{legend}'
            "</div>")
    if not run:
        return f'<div class="loss-chart">{head}<p>No training runs yet.</p></div>'
    left, right, top, bottom = 56, 16, 10, 44
    last = math.ceil(max([run.get("total_steps") or 0] + [p["step"] for p in points] + [1]))
    losses = [p["loss"] for p in points] or [0.0, 1.0]
    if max(losses) == min(losses):  # one value (the first held-out error): in the middle
        losses = [math.floor(losses[0]), math.floor(losses[0]) + 1]
    y_ticks = loss_ticks(min(losses), max(losses))
    low, high = y_ticks[0], y_ticks[-1] if y_ticks[-1] > y_ticks[0] else y_ticks[0] + 1
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(step: float) -> float:
        return left + plot_w * step / last

    def y(loss: float) -> float:
        return top + plot_h * (1 - (loss - low) / (high - low))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'width="100%" style="max-width:{width * 1.25:.0f}px" role="img" '
             f'aria-label="{html.escape(title)}" font-family="sans-serif" font-size="12">']
    for tick in y_ticks:
        parts.append(f'<line x1="{left}" y1="{y(tick):.1f}" x2="{width - right}" '
                     f'y2="{y(tick):.1f}" stroke="#e5e7eb"/><text x="{left - 6}" '
                     f'y="{y(tick) + 4:.1f}" text-anchor="end" fill="#6b7280">'
                     f'{_decimals(tick)}</text>')
    for tick in step_ticks(last):
        parts.append(f'<line x1="{x(tick):.1f}" y1="{top + plot_h}" x2="{x(tick):.1f}" '
                     f'y2="{top + plot_h + 4}" stroke="#6b7280"/><text x="{x(tick):.1f}" '
                     f'y="{top + plot_h + 17}" text-anchor="middle" fill="#6b7280">{tick}'
                     "</text>")
    parts.append(f'<text x="{left + plot_w / 2:.0f}" y="{height - 6}" text-anchor="middle" '
                 'fill="#374151">training step</text>'
                 f'<text transform="translate(14 {top + plot_h / 2:.0f}) rotate(-90)" '
                 'text-anchor="middle" fill="#374151">error</text>')
    if not points:
        parts.append(f'<text x="{left + plot_w / 2:.0f}" y="{top + plot_h / 2:.0f}" '
                     'text-anchor="middle" fill="#6b7280">the curve starts with the first '
                     "steps</text>")
    for series, color in COLORS.items():
        mine = sorted((p for p in points if p["series"] == series), key=lambda p: p["step"])
        if not mine:
            continue
        path = " ".join(f"{'M' if i == 0 else 'L'}{x(p['step']):.1f},{y(p['loss']):.1f}"
                        for i, p in enumerate(mine))
        parts.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        marks = series == HELD_OUT or len(mine) <= 60
        for p in mine if marks else []:
            parts.append(f'<circle cx="{x(p["step"]):.1f}" cy="{y(p["loss"]):.1f}" r="3" '
                         f'fill="{color}"><title>{html.escape(series)}: step {p["step"]}, '
                         f'error {p["loss"]:.3f}</title></circle>')
    parts.append("</svg>")
    return f'<div class="loss-chart">{head}{"".join(parts)}</div>'


def _decimals(value: float) -> str:
    """0.25 -> "0.25", 1.0 -> "1": an axis label without trailing zeros."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


def history_rows(all_runs: list[dict], cards: dict[int, dict] | None = None,
                 shown: dict[str, str] | None = None) -> list[list]:
    """One row a run; the score is its adapter's on its report card (0-100); `shown`:
    adapters in plain words."""
    def number(value, digits=3):
        return round(value, digits) if isinstance(value, (int, float)) else ""

    say = names.Names(shown or {})

    def score(run: dict) -> str:
        mine = report.adapter_score((cards or {}).get(run["id"], {}))
        return f"{mine['score']:.0f}" if mine else ""

    return [[r["id"], r["status"], (shown or {}).get(r["adapter"], r["adapter"] or ""),
             score(r), r["example_count"] or 0,
             number(r["metrics"].get("eval_loss_before")),
             number(r["metrics"].get("eval_loss_after")),
             number(r["metrics"].get("tokens_per_second"), 1),
             number(r["metrics"].get("train_seconds"), 1),
             (r["started_at"] or "")[:16].replace("T", " "),
             r["error"] or held_out_worse(r, say) or kept_out((cards or {}).get(r["id"], {}), say)]
            for r in all_runs]


def kept_out(card: dict, say: names.Names = names.AS_IS) -> str:
    """The runs table's note on a run its card did not let replace the model in use."""
    decided = card.get("decision") or {}
    if decided.get("adopted", True):
        return ""
    return f"not used: {_why(decided, say)}"


def scores_chart(cards: dict[int, dict]) -> str:
    """Each run's adapter score on its report card, run after run: only the cards that
    tested on the same examples, by the same measure, as the newest one."""
    scored = {run_id: card for run_id, card in cards.items() if report.adapter_score(card)}
    if not scored:
        return ""
    newest = scored[max(scored)]

    def same(card: dict) -> bool:
        return card.get("test_set") is not None and \
            card.get("test_set") == newest.get("test_set") and \
            (card.get("measure") or {}).get("name") == (newest.get("measure") or {}).get("name")

    points = []
    for run_id in sorted(scored):
        mine = report.adapter_score(scored[run_id])
        if mine and (run_id == max(scored) or same(scored[run_id])):
            points.append((f"#{run_id}", mine["score"], mine["ci_low"], mine["ci_high"]))
    apart = len(scored) - len(points)
    note = (f" {apart} other run{'s were' if apart > 1 else ' was'} scored on other test "
            "examples or by another measure, so not shown: scores on different tests do not "
            "compare." if apart else "")
    return ("<p>Score of each run's tuned assistant on its report card (0-100, with its "
            f"likely range), on the same test examples: did each run improve?{note}</p>"
            + cards_svg.runs_chart_svg(points))


@dataclass(frozen=True)
class Seen:
    """What one tick of the tab reads, once: the runs (newest first), their report cards,
    the last decision on the model in use, that model, what the report-card worker
    measures now, and every model name the tab shows, in plain words."""

    rows: list[dict]
    cards: dict[int, dict]
    decided: dict | None
    in_use: str
    measured: dict | None
    labels: dict[str, str]

    @property
    def say(self) -> names.Names:
        return names.Names({name: shown for name, shown in self.labels.items()
                            if shown != name}, plain_words=True)

    @property
    def current(self) -> dict:
        """The active run, else the newest; {} before any (as training.status)."""
        return next((r for r in self.rows if r["status"] in ACTIVE),
                    self.rows[0] if self.rows else {})

    @property
    def newest(self) -> dict | None:
        """The newest run that made a tuned assistant (its card is the one that counts)."""
        return next((r for r in self.rows if r["status"] == "succeeded" and r["adapter"]),
                    None)

    @property
    def newest_card(self) -> dict:
        """The newest succeeded run's report card; {} while it is measured (an older
        run's card says nothing about it)."""
        return self.cards.get(self.newest["id"], {}) if self.newest else {}


def look(ctx: Context) -> Seen:
    """Read the runs table (and the cards, the decision, the names) once for a tick."""
    rows = training.history(ctx, HISTORY_ROWS)
    decided, in_use, measured = report.last_decision(ctx), models.chat_default(ctx), \
        measured_now(ctx)
    wanted = [models.BASE, in_use] + [r["adapter"] for r in rows if r["adapter"]] + \
        ([decided["adapter"], decided["in_use"]] if decided else []) + \
        ([measured["adapter"]] if measured else [])
    return Seen(rows, report.cards_by_run(ctx), decided, in_use, measured,
                names.labels(ctx, list(dict.fromkeys(wanted))))


def in_use_line(ctx: Context, cards: dict[int, dict] | None = None,
                seen: Seen | None = None) -> tuple[str, str | None]:
    """(what the newest run's report card decided about the model new chats use, the
    model to offer: "use it anyway" for a run that did not take over, "keep using" the
    one it replaced for a run that took over with a caveat): a worse run never takes over
    in silence, and a ✓ only when its report card has nothing against it.
    `seen`: what this tick read (read here when not given)."""
    seen = seen or look(ctx)
    cards = seen.cards if cards is None else cards
    decided, in_use, say = seen.decided, seen.in_use, seen.say
    newest = seen.newest
    if newest and (not decided or decided["run"] < newest["id"]) and \
            newest["id"] not in cards:
        failed = ctx.reports.failure(newest["adapter"]) if ctx.reports else None
        if failed:
            return (f"Run #{newest['id']} is done, but its report card failed (the Compare "
                    f"tab says why): new chats keep {say(in_use)}.", newest["adapter"])
        older = next((c["decision"] for c in cards.values()
                      if (c.get("decision") or {}).get("newer") == newest["adapter"]), None)
        before = (f" Run #{older['run']}'s card decided nothing: {_why(older, say)}."
                  if older else "")
        return (f"Run #{newest['id']} is done. Its report card is being measured: "
                f"{say(newest['adapter'])} replaces {say(in_use)} in new chats if it does at "
                f"least as well there.{before}", None)
    if not decided:
        return "", None
    adapter = decided["adapter"]
    if decided["adopted"]:
        if in_use != adapter:  # rolled back, or another chosen since
            return f"New chats use **{say(in_use)}**, as you chose.", None
        if not report.caveated(decided):
            return (f"✓ New chats use **{say(adapter)}**: {_why(decided, say)}, and the "
                    "Compare tab's card says Yes: it does better than every option that "
                    "needs no training.", None)
        return f"New chats use **{say(adapter)}**: {_caveats(decided, say)}", \
            decided["in_use"]
    if in_use == adapter:
        return f"New chats use **{say(adapter)}**, as you chose, though " \
            f"{_why(decided, say)}.", None
    return (f"New chats keep **{say(in_use)}**: {say(adapter)} is not used, as "
            f"{_why(decided, say)}.", adapter)


def _caveats(decided: dict, say: names.Names) -> str:
    """Why a run took over, and what its card has against it, in the card's words."""
    answer, tests = decided.get("answer"), decided.get("tests")
    scored = decided.get("why", "scores") == "scores"
    if scored:
        said = (f"it scored {decided['score']:.0f} against {decided['their_score']:.0f} "
                f"for {say(decided['in_use'])}")
    else:  # too few tests to score it (said so), or no score for the model in use
        said = _why(decided, say)
    if answer == "too_few" and scored:
        said += (f", but on only {tests} test{'s' * (tests != 1)}, too few to be sure"
                 if tests else ", but on too few tests to be sure")
    elif CARD_SAYS.get(answer or ""):
        said += f", but {CARD_SAYS[answer or '']}"
    if answer in cards_svg.ANSWER_WORDS:
        said += f" (the Compare tab's card: {cards_svg.ANSWER_WORDS[answer]})."
    else:  # an older decision: what its card says was not recorded with it
        said += ". Its report card in the Compare tab says how sure that is."
    if decided.get("forgot"):
        said += (f" It forgot {decided['forgot']} of {decided.get('general') or '?'} general "
                 f"questions {say(BASE)} knew (the Compare tab lists them).")
    if decided.get("old_way"):
        said += (f" It still answers {decided['old_way']} of your "
                 f"{decided.get('corrections') or decided['old_way']} corrections the old "
                 "way.")
    return said


def says_old_way(decided: dict | None, in_use: str) -> bool:
    """Does the line on the model in use already count the corrections the run still
    answers the old way (so the corrections line only names them)?"""
    return bool(decided and decided["adopted"] and in_use == decided["adapter"]
                and report.caveated(decided) and decided.get("old_way"))


def _why(decided: dict, say: names.Names) -> str:
    """Why a run's card did or did not let it replace the model in use."""
    before, why = say(decided["in_use"]), decided.get("why", "scores")
    if why == "scores":
        verb = "did at least as well as" if decided["adopted"] else "did worse than"
        facts = "" if decided.get("facts") is None or decided.get("their_facts") is None \
            else (f", and agreed with your facts in {decided['facts']:.0f}% of your facts "
                  f"checks against {decided['their_facts']:.0f}%")
        return (f"it {verb} {before} ({decided['score']:.0f} against "
                f"{decided['their_score']:.0f} on its report card{facts})")
    if why == "forgot_more":
        versus = decided.get("versus") or {}
        scored = "" if decided.get("score") is None or decided.get("their_score") is None \
            else (f" (on your examples it scored {decided['score']:.0f} against "
                  f"{decided['their_score']:.0f})")
        return (f"it forgot more than {before}: of the general questions, it gets "
                f"{versus.get('worse', '?')} wrong that {before} gets right, and only "
                f"{versus.get('better', '?')} the other way round{scored}")
    if why == "old_way":
        return (f"it still answers {decided.get('old_way')} of your "
                f"{decided.get('corrections')} corrections the old way")
    if why == "newer":
        return (f"{say(decided['newer'])} finished before its report card did, so the "
                "newer run's card decides")
    if why == "chosen":
        return f"you chose {before} while its report card was measured"
    if why == "not_on_card":
        return f"its report card could not measure {before} beside it"
    if decided["adopted"]:
        return (f"its report card has too few test examples to compare it with {before}, "
                "and the plain model was in use")
    return f"its report card has too few test examples to compare it with {before}"


def corrections_line(card: dict, counted: bool = False) -> str:
    """Which corrections the run trained on it still answers the old way; `card`: the
    newest succeeded run's ({} while it is measured: nothing to say yet). `counted`: the
    line on the model in use said how many already, so only which."""
    learned = card.get("corrections") or {}
    old_way = learned.get("old_way") or []
    if not learned.get("n"):
        return ""
    if not old_way:
        return (f"It answers all {learned['n']} of your corrections it trained on your "
                "way.")
    asked = ", ".join(f"“{html.escape(c['prompt'])}” (#{c['id']})" for c in old_way[:3])
    more = " ..." if len(old_way) > 3 else ""
    if counted:
        return (f"Those it still answers the old way: {asked}{more}. More examples that say "
                "the same thing teach it better than one.")
    return (f"It still answers {len(old_way)} of the {learned['n']} corrections it trained "
            f"on the old way: {asked}{more}. More examples that say the same thing teach it "
            "better than one.")


def offer_button(seen: Seen, offer: str | None) -> gr.Button:
    """The button beside the line on the model in use: *Keep using X instead* for the
    model a run replaced, *Use X anyway* for a run that did not replace it."""
    if offer is None:
        return gr.Button("Use it anyway", visible=False)
    shown = seen.say(offer)  # inside a sentence: "the plain model"
    if seen.decided and offer == seen.decided["in_use"] and offer != seen.in_use:
        return gr.Button(f"Keep using {shown} instead", visible=True)
    return gr.Button(f"Use {shown} anyway", visible=True)


def lineage_markdown(lineage: training.Lineage) -> str:
    lines = [f"**{label}**: {html.escape(str(value))}" for label, value in lineage.summary()]
    return "  \n".join(lines)


class TrainHandlers:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def start(self, method: str, epochs: float, learning_rate: float, rank: float,
              continue_from: str, objective: str = "auto") -> str:
        config = TrainConfig(method=method, epochs=int(epochs) or None,
                             learning_rate=float(learning_rate), rank=int(rank),
                             continue_from=None if continue_from in (None, NEW_ADAPTER)
                             else continue_from, objective=objective or "auto")
        same = bool(training.history(self.ctx, 1)) and \
            training.auto_start(self.ctx).new_examples == 0  # read before the run exists
        try:
            started = f"Started run #{training.start(self.ctx, config)}."
        except RunActive as busy:  # a second click, or another tab: no error badge
            return f"Run #{busy.run_id} is {busy.state}: wait for it to finish, or press Cancel."
        if same:
            started += (" No examples were added since the last run: it learns the same ones "
                        "again (with the settings you chose).")
        return started

    def cancel(self) -> str:
        run_id = training.cancel(self.ctx)
        return f"Cancelling run #{run_id} after its current step..."

    def resume(self) -> str:
        run_id = training.resume(self.ctx)
        return f"Resuming run #{run_id} from its last checkpoint."

    def set_threshold(self, threshold: float) -> str:
        auto = training.set_threshold(self.ctx, int(threshold or 0))
        if auto.enabled:
            return f"A run starts by itself after {auto.threshold} new examples."
        return "Auto-start is off."

    def threshold_box(self) -> int:
        """The threshold as it is now, 0 when auto-start is off."""
        auto = training.auto_start(self.ctx)
        return auto.threshold if auto.enabled else 0

    def use_anyway(self, adapter: str | None):
        """(note, the line on the model in use, the button): the user's own choice, the
        run that did not take over (*Use X anyway*) or the model a run replaced (*Keep
        using X instead*)."""
        if not adapter:
            return "", gr.skip(), gr.skip()
        models.promote(self.ctx, adapter)
        return (f"✓ New chats use **{names.label(self.ctx, adapter)}**. *Roll back* in the "
                "Compare tab (Model for new chats) undoes it.", "", gr.Button(visible=False))

    def refresh(self):
        """(status, loss curve, history, scores chart, signals, the Start button, the
        line on the model in use, its "use anyway" button, the adapter it offers, the
        Resume button) of the active run, else the latest one. The runs table is read
        once (look)."""
        seen = look(self.ctx)
        current, cards, shown = seen.current, seen.cards, seen.labels
        line, offer = in_use_line(self.ctx, seen=seen)
        decided, newest = seen.decided, seen.newest
        counted = bool(decided and newest and decided["run"] == newest["id"]
                       and says_old_way(decided, seen.in_use))
        line = f"{line} {corrections_line(seen.newest_card, counted)}".strip()
        active = current.get("status") in ACTIVE
        return (status_html(current, training.auto_start(self.ctx),
                            training.progress_line(self.ctx),
                            shown.get(current.get("adapter") or ""),
                            card_progress_line(seen.measured, seen.say)),
                loss_chart_html(current or None), history_rows(seen.rows, cards, shown),
                scores_chart(cards), f"Learning from now: {training.signals_line(self.ctx)}.",
                gr.Button(interactive=not active), line, offer_button(seen, offer), offer,
                resume_button(seen.rows))

    def settled_note(self, note: str | None):
        """The note under the buttons, on each tick: "Started run #2." (or Cancelling,
        Resuming) goes once that run has ended, where the status box says how."""
        found = re.match(r"(?:Started|Cancelling|Resuming) run #(\d+)", note or "")
        if not found or training.status(self.ctx, int(found[1])).get("status") in ACTIVE:
            return gr.skip()
        return ""

    def set_baseline(self, text: str) -> str:
        saved = contenders.set_baseline_prompt(self.ctx, text)
        if not saved:
            return ("No instructions saved: the report cards leave out the plain model + "
                    "your instructions (base+prompt).")
        return ("✓ Saved. The report cards now measure the plain model with these "
                "instructions; chat with it as *The plain model + your instructions* "
                "(base+prompt).")

    def show_lineage(self, event: gr.SelectData) -> str:
        return lineage_markdown(training.lineage(self.ctx, int(event.row_value[0])))


def start_fresh_words(choices: list) -> list:
    """The continue-from list's (label, value) pairs, a fresh start in plain words (its
    value stays NEW_ADAPTER, which the /train API takes)."""
    return [(NEW_WORDS, value) if value == NEW_ADAPTER else (label, value)
            for label, value in choices]


class _StartFresh(ModelList):
    """The continue-from list, which follows new adapters as every list does, with a
    fresh start said in plain words."""

    def update(self, ctx: Context, move: bool = True) -> gr.Dropdown:
        sent = super().update(ctx, move)
        args = dict(sent.constructor_args)
        args["choices"] = start_fresh_words(args.get("choices") or [])
        return gr.Dropdown(**args)


def _start_fresh_in_plain_words(ui: Ui, dropdown: gr.Dropdown) -> None:
    dropdown.choices = start_fresh_words(dropdown.choices)
    entry = next(e for e in ui.lists if e.dropdown is dropdown)
    ui.lists[ui.lists.index(entry)] = _StartFresh(**{
        field.name: getattr(entry, field.name) for field in dataclasses.fields(entry)
        if field.init})


def build(ui: Ui) -> None:
    if not ui.ctx.can_train:
        gr.Markdown("Training is not available in this app.")
        return
    handlers = TrainHandlers(ui.ctx)
    gr.Markdown("**Just press Start: the settings are chosen for your data.** Runs also "
                "start by themselves when enough new examples arrive (below). A run takes "
                "a minute or two for a few dozen examples; the chat stays usable meanwhile.")
    with gr.Row():
        continue_from = ui.model_list("Train", with_base=False, first=(NEW_ADAPTER,),
                                      default=lambda ctx: NEW_ADAPTER,
                                      info="start a new assistant, or keep teaching one "
                                           "you have on your new examples",
                                      elem_id="continue-from")
        _start_fresh_in_plain_words(ui, continue_from)
        threshold = gr.Number(handlers.threshold_box(),
                              label="Start by itself after this many new examples",
                              precision=0, minimum=0, info="0 = only when you press Start")
    with gr.Accordion("What to learn from", open=False):
        objective = gr.Radio(
            [(OBJECTIVE_WORDS.get(name, name), name) for name in OBJECTIVES], value="auto",
            label="What to learn from", elem_id="objective")
        gr.Markdown(OBJECTIVE_DETAILS)
        signals = gr.Markdown(elem_id="signals")
    with gr.Accordion("Advanced settings", open=False):
        with gr.Row():
            method = gr.Radio([(METHOD_WORDS.get(m, m), m) for m in METHODS], value="auto",
                              label="Memory use (method)",
                              info="low memory keeps the plain model in 4 bits (qlora): "
                                   "about a third of the memory; auto picks it when memory "
                                   "is short")
            epochs = gr.Number(0, label="Passes over your examples (epochs)", precision=0,
                               minimum=0, maximum=100,
                               info="0 = chosen by how long the answers are")
            learning_rate = gr.Number(TrainConfig.learning_rate,
                                      label="Step size (learning rate)",
                                      minimum=0, info="how big each step is; too high "
                                      "forgets what the model knew, too low learns little")
            rank = gr.Slider(4, 64, value=TrainConfig.rank, step=4,
                             label="How much it can learn (LoRA rank)",
                             info="8-32 suits a voice or a format; higher takes more memory")
    with gr.Row():
        start = gr.Button("Start training", variant="primary", elem_id="start-training")
        cancel = gr.Button("Cancel", elem_id="cancel-training")
        resume = gr.Button("Resume", visible=False, elem_id="resume-training")
    note = gr.Markdown(elem_id="train-note")
    with gr.Row():
        in_use = gr.Markdown(elem_id="in-use-line")
        use_anyway = gr.Button("Use it anyway", visible=False, scale=0, min_width=300,
                               elem_id="use-anyway")
    offered = gr.State(None)
    status = gr.HTML(elem_id="train-status-box")
    curve = gr.HTML(loss_chart_html(None), elem_id="loss-curve")
    history = gr.Dataframe(headers=HISTORY_HEADERS, interactive=False, wrap=True,
                           label="Runs (click one to see what it trained on)",
                           elem_id="runs-table")  # wrap: headers whole, not "speed (word p…"
    gr.Markdown(RUNS_DETAILS)
    lineage = gr.Markdown(elem_id="run-lineage")
    scores = gr.HTML(elem_id="scores-chart")
    with gr.Accordion("Would a prompt have done as well?", open=False):
        baseline = gr.Textbox(contenders.baseline_prompt(ui.ctx), lines=3,
                              label="Your best instructions, instead of training",
                              info="each report card measures the plain model with them "
                                   "(base+prompt) beside your assistant", elem_id="baseline")
        save_baseline = gr.Button("Save the prompt")
    refresh: dict[str, Any] = dict(fn=handlers.refresh, inputs=None,
                                   outputs=[status, curve, history, scores, signals,
                                            start, in_use, use_anyway, offered, resume],
                                   api_visibility="private", show_progress="hidden")
    timer = gr.Timer(1.0)
    timer.tick(**refresh)
    timer.tick(handlers.settled_note, note, note, api_visibility="private",
               show_progress="hidden")
    # Their notes say what happened within a second: no "processing" overlay meanwhile.
    start.click(shown_to_user(handlers.start), [method, epochs, learning_rate, rank,
                                                continue_from, objective], note,
                api_name="train", show_progress="hidden").then(**refresh)
    use_anyway.click(shown_to_user(handlers.use_anyway), offered, [note, in_use, use_anyway],
                     api_visibility="private", show_progress="hidden")
    cancel.click(shown_to_user(handlers.cancel), None, note, api_name="cancel_run",
                 show_progress="hidden")
    resume.click(shown_to_user(handlers.resume), None, note,
                 api_name="resume_run", show_progress="hidden").then(**refresh)
    threshold.input(shown_to_user(handlers.set_threshold), threshold, note,
                    api_visibility="private", show_progress="hidden")
    history.select(shown_to_user(handlers.show_lineage), None, lineage,
                   api_visibility="private")
    ui.on_load(handlers.threshold_box, None, threshold)
    save_baseline.click(shown_to_user(handlers.set_baseline), baseline, note,
                        api_visibility="private", show_progress="hidden")
    ui.on_load(lambda: contenders.baseline_prompt(ui.ctx), None, baseline)
