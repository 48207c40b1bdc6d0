"""The Train tab: settings, Start / Cancel / Resume, a live progress bar with the time
left, the loss curve (train and eval), the history of runs and a selected run's lineage.
The tab only reads the run records the trainer process writes; it never trains."""

from __future__ import annotations

import html
import math
from typing import Any

import gradio as gr

from services import contenders, report, training
from services.context import Context
from trainer.config import METHODS, TrainConfig
from trainer.objectives import OBJECTIVES
from web import cards as cards_svg
from web.common import Ui, shown_to_user

NEW_ADAPTER = "(a new adapter)"
HISTORY_HEADERS = ["#", "status", "adapter", "score", "examples", "held-out error before",
                   "after", "tokens/s", "seconds", "started", "note"]
COLORS = {"train": "#2563eb", "held out": "#f97316", "preference stage": "#16a34a"}


def eta_seconds(run: dict) -> float | None:
    """Time left from the pace of the steps so far (loading the model and the first
    evaluation are not steps, so they do not count); None until two steps are done."""
    timed = [p for p in run.get("losses") or [] if "t" in p]
    total = run.get("total_steps") or 0
    if len(timed) < 2 or not total or timed[-1]["step"] <= timed[0]["step"]:
        return None
    pace = (timed[-1]["t"] - timed[0]["t"]) / (timed[-1]["step"] - timed[0]["step"])
    return max(0.0, pace * (total - (run.get("step") or timed[-1]["step"])))


def verdict(run: dict) -> str:
    """Did the run make things worse on its held-out examples? Said next to succeeded."""
    metrics = run.get("metrics") or {}
    before, after = metrics.get("eval_loss_before"), metrics.get("eval_loss_after")
    if run.get("status") != "succeeded" or before is None or after is None or after <= before:
        return ""
    parent = run["config"].get("continue_from")
    return (f"worse than {parent}, the adapter it continued" if parent else
            "worse than the base model") + " on its held-out examples"


def status_html(run: dict | None, auto: training.AutoStart, progress: str) -> str:
    waiting = next_run_line(auto, progress)
    if not run:
        return f'<div id="train-status"><p>No training runs yet.</p><p>{waiting}</p></div>'
    step, total = run.get("step") or 0, run.get("total_steps") or 0
    line = f"Run #{run['id']} · <b>{run['status']}</b>"
    if total:
        line += f" · step {step} of {total}"
        stage = ((run.get("losses") or [{}])[-1]).get("stage")
        line += f" ({stage} stage)" if stage and run["status"] == "running" else ""
    if run["status"] == "running":
        eta = eta_seconds(run)
        line += f" · about {eta:.0f} s left" if eta is not None else " · timing the steps..."
    if run["status"] == "succeeded":
        worse = verdict(run)
        line += f" · <b>{worse}</b>" if worse else ""
        line += f" · adapter <b>{run['adapter']}</b> is ready in the Chat tab's Model list"
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
              "series": "train" if p.get("stage", "sft") == "sft" else "preference stage"}
             for p in run["losses"]]
            + [{"step": step, "loss": loss, "series": "held out"}  # one point a step
               for step, loss in {p["step"]: p["loss"] for p in run["eval_losses"]}.items()])


def history_rows(all_runs: list[dict], cards: dict[int, dict] | None = None) -> list[list]:
    """One row a run; the score is its adapter's on its report card (0-100)."""
    def number(value, digits=3):
        return round(value, digits) if isinstance(value, (int, float)) else ""

    def score(run: dict) -> str:
        mine = report.adapter_score((cards or {}).get(run["id"], {}))
        return f"{mine['score']:.0f}" if mine else ""

    return [[r["id"], r["status"], r["adapter"] or "", score(r), len(r["example_ids"]),
             number(r["metrics"].get("eval_loss_before")),
             number(r["metrics"].get("eval_loss_after")),
             number(r["metrics"].get("tokens_per_second"), 1),
             number(r["metrics"].get("train_seconds"), 1),
             (r["started_at"] or "")[:16].replace("T", " "), r["error"] or verdict(r)]
            for r in all_runs]


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
        return f"Started run #{training.start(self.ctx, config)}."

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

    def refresh(self):
        """(status, loss curve, history) of the active run, else the latest one."""
        import pandas as pd

        current = training.status(self.ctx)
        # The page draws only the series that were in the data when it built the chart
        # (a Train tab opened before a run stayed blank): every series is there from
        # the start, with an empty point, which a line does not draw.
        placeholders = [{"step": 0, "loss": math.nan, "series": name} for name in COLORS]
        points = pd.DataFrame(placeholders + loss_points(current))
        points = points.astype({"step": "int64", "loss": "float64", "series": "string"})
        cards = report.cards_by_run(self.ctx)
        return (status_html(current, training.auto_start(self.ctx),
                            training.progress_line(self.ctx)),
                points, history_rows(training.history(self.ctx), cards), scores_chart(cards),
                f"Learning from now: {training.signals_line(self.ctx)}.")

    def set_baseline(self, text: str) -> str:
        saved = contenders.set_baseline_prompt(self.ctx, text)
        if not saved:
            return "No baseline prompt: base+prompt is left out of the report cards."
        return ("✓ Saved. The report cards measure base+prompt with it, and you can chat "
                "with it as *base+prompt*.")

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
                                      info="a new adapter, or continue one on new examples",
                                      elem_id="continue-from")
        threshold = gr.Number(handlers.threshold_box(),
                              label="Start by itself after this many new examples",
                              precision=0, minimum=0, info="0 = only when you press Start")
    with gr.Accordion("What to learn from", open=False):
        objective = gr.Radio(
            list(OBJECTIVES), value="auto", label="Objective", elem_id="objective",
            info=" · ".join(f"{o.name}: {o.learns_from}" for o in OBJECTIVES.values()))
        signals = gr.Markdown(elem_id="signals")
    with gr.Accordion("Advanced settings", open=False):
        with gr.Row():
            method = gr.Radio(list(METHODS), value="auto", label="Method",
                              info="qlora loads the base in 4 bits: about a third of the "
                                   "memory; auto picks it when memory is short")
            epochs = gr.Number(0, label="Epochs", precision=0, minimum=0, maximum=100,
                               info="passes over your examples; 0 = chosen by how long the "
                                    "answers are")
            learning_rate = gr.Number(TrainConfig.learning_rate, label="Learning rate",
                                      minimum=0, info="how big each step is; too high "
                                      "forgets what the model knew, too low learns little")
            rank = gr.Slider(4, 64, value=TrainConfig.rank, step=4, label="LoRA rank",
                             info="the adapter's capacity: 8-32 suits a voice or a format")
    with gr.Row():
        start = gr.Button("Start training", variant="primary", elem_id="start-training")
        cancel = gr.Button("Cancel", elem_id="cancel-training")
        resume = gr.Button("Resume last failed run")
    note = gr.Markdown(elem_id="train-note")
    status = gr.HTML(elem_id="train-status-box")
    curve = gr.LinePlot(x="step", y="loss", color="series", title="Error while learning "
                        "(lower is better)", height=260, elem_id="loss-curve",
                        y_title="error (loss)", color_map=COLORS)
    history = gr.Dataframe(headers=HISTORY_HEADERS, interactive=False, label="Runs "
                           "(click one to see what it trained on)", elem_id="runs-table")
    lineage = gr.Markdown(elem_id="run-lineage")
    scores = gr.HTML(elem_id="scores-chart")
    with gr.Accordion("Would a prompt have done as well?", open=False):
        baseline = gr.Textbox(contenders.baseline_prompt(ui.ctx), lines=3,
                              label="Your best system prompt, instead of fine-tuning",
                              info="each report card measures the base model with it "
                                   "(base+prompt) beside the adapter", elem_id="baseline")
        save_baseline = gr.Button("Save the prompt")
    refresh: dict[str, Any] = dict(fn=handlers.refresh, inputs=None,
                                   outputs=[status, curve, history, scores, signals],
                                   api_visibility="private", show_progress="hidden")
    gr.Timer(1.0).tick(**refresh)
    start.click(shown_to_user(handlers.start), [method, epochs, learning_rate, rank,
                                                continue_from, objective], note,
                api_name="train").then(**refresh)
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
