"""The Train tab: settings, Start / Cancel / Resume, a live progress bar with the time
left, the loss curve (train and eval), the history of runs and a selected run's lineage.
The tab only reads the run records the trainer process writes; it never trains."""

from __future__ import annotations

import html
import math
from typing import Any

import gradio as gr

from services import contenders, models, names, report, training
from services.context import Context
from storage.runs import ACTIVE, RunActive
from trainer.config import METHODS, TrainConfig
from trainer.objectives import OBJECTIVES
from web import cards as cards_svg
from web.common import Ui, shown_to_user

NEW_ADAPTER = "(a new adapter)"
HISTORY_HEADERS = ["#", "status", "model", "score", "examples",
                   "error on examples it never saw, before (held-out loss)", "after",
                   "speed (tokens/s)", "time (s)", "started", "note"]
TRAIN, HELD_OUT, PREFERENCES = ("your examples (train)", "examples it never saw (held out)",
                                "learning your preferences (preference stage)")
COLORS = {TRAIN: "#2563eb", HELD_OUT: "#f97316", PREFERENCES: "#16a34a"}
METHOD_WORDS = {"auto": "auto", "lora": "normal (lora)", "qlora": "low memory (qlora)"}
OBJECTIVE_WORDS = {
    "auto": "auto: what was measured to help",
    "sft": "your answers (sft)",
    "sft+dpo": "your answers, then your corrections and vote winners over what they "
               "replaced (sft+dpo)",
    "sft+kto": "your answers, then also what to avoid: thumbs-down and replaced answers "
               "(sft+kto)",
    "dpo": "only your preferences, on a model you choose (dpo)",
    "kto": "only what to avoid, on a model you choose (kto)"}
"""What each objective learns from, in plain words (the technical name in brackets)."""
STAGES = {"sft": "learning your answers", "dpo": "learning your preferences: dpo stage",
          "kto": "learning what to avoid: kto stage"}


def eta_seconds(run: dict) -> float | None:
    """Time left from the pace of the steps so far (loading the model and the first
    evaluation are not steps, so they do not count); None until two steps are done."""
    timed = [p for p in run.get("losses") or [] if "t" in p]
    total = run.get("total_steps") or 0
    if len(timed) < 2 or not total or timed[-1]["step"] <= timed[0]["step"]:
        return None
    pace = (timed[-1]["t"] - timed[0]["t"]) / (timed[-1]["step"] - timed[0]["step"])
    return max(0.0, pace * (total - (run.get("step") or timed[-1]["step"])))


def verdict(run: dict, say: names.Names = names.AS_IS) -> str:
    """Did the run make things worse on its held-out examples? Said next to succeeded."""
    metrics = run.get("metrics") or {}
    before, after = metrics.get("eval_loss_before"), metrics.get("eval_loss_after")
    if run.get("status") != "succeeded" or before is None or after is None or after <= before:
        return ""
    parent = run["config"].get("continue_from")
    return (f"worse than {say(parent)}, which it continued," if parent else
            "worse than the plain model") + " on examples it never saw (held-out loss)"


def status_html(run: dict | None, auto: training.AutoStart, progress: str,
                shown: str | None = None) -> str:
    """The run's state; `shown`: its model's name in plain words."""
    waiting = next_run_line(auto, progress)
    if not run:
        return f'<div id="train-status"><p>No training runs yet.</p><p>{waiting}</p></div>'
    step, total = run.get("step") or 0, run.get("total_steps") or 0
    line = f"Run #{run['id']} · <b>{run['status']}</b>"
    if total:
        line += f" · step {step} of {total}"
        stage = ((run.get("losses") or [{}])[-1]).get("stage")
        line += f" ({STAGES.get(stage, stage)})" if stage and run["status"] == "running" \
            else ""
    if run["status"] == "running":
        eta = eta_seconds(run)
        line += f" · about {eta:.0f} s left" if eta is not None else " · timing the steps..."
    if run["status"] == "succeeded":
        worse = verdict(run)
        line += f" · <b>{worse}</b>" if worse else ""
        line += (f" · <b>{html.escape(shown or run['adapter'] or '')}</b> is ready in the "
                 "Chat tab's Model list")
    if run.get("error"):
        line += f"<br><span style='color:#b91c1c'>{html.escape(run['error'])}</span>"
    bar = (f'<progress value="{step}" max="{total}" style="width:100%"></progress>'
           if total else "")
    return f'<div id="train-status"><p>{line}</p>{bar}<p>{waiting}</p></div>'


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
             score(r), len(r["example_ids"]),
             number(r["metrics"].get("eval_loss_before")),
             number(r["metrics"].get("eval_loss_after")),
             number(r["metrics"].get("tokens_per_second"), 1),
             number(r["metrics"].get("train_seconds"), 1),
             (r["started_at"] or "")[:16].replace("T", " "),
             r["error"] or verdict(r, say) or kept_out((cards or {}).get(r["id"], {}), say)]
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
            points.append((scored[run_id]["adapter"], mine["score"], mine["ci_low"],
                           mine["ci_high"]))
    apart = len(scored) - len(points)
    note = (f" {apart} other run{'s were' if apart > 1 else ' was'} scored on other test "
            "examples or by another measure, so not shown: scores on different tests do not "
            "compare." if apart else "")
    return ("<p>Score of each run's adapter on its report card (0-100, with its likely "
            f"range), on the same test examples: did each run improve?{note}</p>"
            + cards_svg.runs_chart_svg(points))


def in_use_line(ctx: Context, cards: dict[int, dict] | None = None
                ) -> tuple[str, str | None]:
    """(what the newest run's report card decided about the model new chats use, the
    adapter to offer "use it anyway" for): a worse run never takes over in silence."""
    cards = report.cards_by_run(ctx) if cards is None else cards
    decided = report.last_decision(ctx)
    newest = next((r for r in training.history(ctx, 20) if r["status"] == "succeeded"
                   and r["adapter"]), None)
    in_use = models.chat_default(ctx)
    if newest and (not decided or decided["run"] < newest["id"]) and \
            newest["id"] not in cards:
        say = names.plain(ctx, [newest["adapter"], in_use])
        failed = ctx.reports.failure(newest["adapter"]) if ctx.reports else None
        if failed:
            return (f"Run #{newest['id']} is done, but its report card failed (the Compare "
                    f"tab says why): new chats keep {say(in_use)}.", newest["adapter"])
        return (f"Run #{newest['id']} is done. Its report card is being measured: "
                f"{say(newest['adapter'])} replaces {say(in_use)} in new chats if it does at "
                "least as well there.", None)
    if not decided:
        return "", None
    adapter, before = decided["adapter"], decided["in_use"]
    say = names.plain(ctx, [adapter, before, in_use])
    if decided["adopted"]:
        if in_use != adapter:  # rolled back, or another chosen since
            return f"New chats use **{say(in_use)}**, as you chose.", None
        return f"✓ New chats use **{say(adapter)}**: {_why(decided, say)}.{_forgot(decided)}", \
            None
    if in_use == adapter:
        return f"New chats use **{say(adapter)}**, as you chose, though " \
            f"{_why(decided, say)}.", None
    return (f"New chats keep **{say(in_use)}**: {say(adapter)} is not used, as "
            f"{_why(decided, say)}.", adapter)


def _forgot(decided: dict) -> str:
    """What the adopted run forgot, beyond chance (its card's general check)."""
    if not decided.get("forgot"):
        return ""
    return (f" But it forgot things the plain model knew: {decided['forgot']} of "
            f"{decided['general']} general questions (the Compare tab lists them).")


def _why(decided: dict, say: names.Names) -> str:
    """Why a run's card did or did not let it replace the model in use."""
    before, why = say(decided["in_use"]), decided.get("why", "scores")
    if why == "scores":
        verb = "did at least as well as" if decided["adopted"] else "did worse than"
        return (f"it {verb} {before} ({decided['score']:.0f} against "
                f"{decided['their_score']:.0f} on its report card)")
    if why == "chosen":
        return f"you chose {before} while its report card was measured"
    if why == "not_on_card":
        return f"its report card could not measure {before} beside it"
    if decided["adopted"]:
        return (f"its report card has too few test examples to compare it with {before}, "
                "and the plain model was in use")
    return f"its report card has too few test examples to compare it with {before}"


def corrections_line(card: dict) -> str:
    """Which corrections the run trained on it still answers the old way."""
    learned = card.get("corrections") or {}
    old_way = learned.get("old_way") or []
    if not learned.get("n"):
        return ""
    if not old_way:
        return (f"It answers all {learned['n']} of your corrections it trained on your "
                "way.")
    asked = ", ".join(f"“{html.escape(c['prompt'])}” (#{c['id']})" for c in old_way[:3])
    return (f"It still answers {len(old_way)} of the {learned['n']} corrections it trained "
            f"on the old way: {asked}{' ...' if len(old_way) > 3 else ''}. More examples "
            "that say the same thing teach it better than one.")


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
        try:
            return f"Started run #{training.start(self.ctx, config)}."
        except RunActive as busy:  # a second click, or another tab: no error badge
            return f"Run #{busy.run_id} is {busy.state}: wait for it to finish, or press Cancel."

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
        """(note, the line on the model in use, the button): the user's own choice."""
        if not adapter:
            return "", gr.skip(), gr.skip()
        models.promote(self.ctx, adapter)
        return (f"✓ New chats use **{names.label(self.ctx, adapter)}**. *Roll back* in the "
                "Compare tab (Model for new chats) undoes it.", "", gr.Button(visible=False))

    def refresh(self):
        """(status, loss curve, history, scores chart, signals, the Start button, the
        line on the model in use, its "use anyway" button, the adapter it offers) of the
        active run, else the latest one."""
        import pandas as pd

        current = training.status(self.ctx)
        # The page draws only the series that were in the data when it built the chart
        # (a Train tab opened before a run stayed blank): every series is there from
        # the start, with an empty point, which a line does not draw.
        placeholders = [{"step": 0, "loss": math.nan, "series": name} for name in COLORS]
        points = pd.DataFrame(placeholders + loss_points(current))
        points = points.astype({"step": "int64", "loss": "float64", "series": "string"})
        cards = report.cards_by_run(self.ctx)
        line, offer = in_use_line(self.ctx, cards)
        newest = cards.get(max(cards)) if cards else None
        line = f"{line} {corrections_line(newest or {})}".strip()
        active = current.get("status") in ACTIVE
        every = training.history(self.ctx)
        shown = names.labels(self.ctx, [models.BASE] + [r["adapter"] for r in every
                                                        if r["adapter"]])
        return (status_html(current, training.auto_start(self.ctx),
                            training.progress_line(self.ctx),
                            shown.get(current.get("adapter") or "")),
                points, history_rows(every, cards, shown), scores_chart(cards),
                f"Learning from now: {training.signals_line(self.ctx)}.",
                gr.Button(interactive=not active), line,
                gr.Button(f"Use {names.label(self.ctx, offer)} anyway" if offer else
                          "Use it anyway",
                          visible=offer is not None), offer)

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
        threshold = gr.Number(handlers.threshold_box(),
                              label="Start by itself after this many new examples",
                              precision=0, minimum=0, info="0 = only when you press Start")
    with gr.Accordion("What to learn from", open=False):
        objective = gr.Radio(
            [(OBJECTIVE_WORDS.get(name, name), name) for name in OBJECTIVES], value="auto",
            label="What to learn from (objective)", elem_id="objective")
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
        resume = gr.Button("Resume last failed run")
    note = gr.Markdown(elem_id="train-note")
    with gr.Row():
        in_use = gr.Markdown(elem_id="in-use-line")
        use_anyway = gr.Button("Use it anyway", visible=False, scale=0, elem_id="use-anyway")
    offered = gr.State(None)
    status = gr.HTML(elem_id="train-status-box")
    curve = gr.LinePlot(x="step", y="loss", color="series", title="Error while learning "
                        "(lower is better)", height=260, elem_id="loss-curve",
                        y_title="error (lower is better)", x_title="training step",
                        y_axis_format=".2~f", color_map=COLORS)
    history = gr.Dataframe(headers=HISTORY_HEADERS, interactive=False, label="Runs "
                           "(click one to see what it trained on)", elem_id="runs-table")
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
                                            start, in_use, use_anyway, offered],
                                   api_visibility="private", show_progress="hidden")
    gr.Timer(1.0).tick(**refresh)
    start.click(shown_to_user(handlers.start), [method, epochs, learning_rate, rank,
                                                continue_from, objective], note,
                api_name="train").then(**refresh)
    use_anyway.click(shown_to_user(handlers.use_anyway), offered, [note, in_use, use_anyway],
                     api_visibility="private")
    cancel.click(shown_to_user(handlers.cancel), None, note, api_name="cancel_run")
    resume.click(shown_to_user(handlers.resume), None, note, api_name="resume_run")
    threshold.input(shown_to_user(handlers.set_threshold), threshold, note,
                    api_visibility="private")
    history.select(shown_to_user(handlers.show_lineage), None, lineage,
                   api_visibility="private")
    ui.on_load(handlers.threshold_box, None, threshold)
    save_baseline.click(shown_to_user(handlers.set_baseline), baseline, note,
                        api_visibility="private")
    ui.on_load(lambda: contenders.baseline_prompt(ui.ctx), None, baseline)
