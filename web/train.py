"""The Train tab: settings, Start / Cancel / Resume, a live progress bar with the time
left, the loss curve (train and eval), the history of runs and a selected run's lineage.
The tab only reads the run records the trainer process writes; it never trains."""

from __future__ import annotations

import html
from datetime import datetime, timezone
from typing import Any

import gradio as gr

from services import training
from services.context import Context
from trainer.config import METHODS, TrainConfig
from web.common import Ui, shown_to_user

NEW_ADAPTER = "(a new adapter)"
HISTORY_HEADERS = ["#", "status", "adapter", "examples", "eval loss before", "eval loss after",
                   "tokens/s", "seconds", "started", "error"]


def eta_seconds(run: dict) -> float | None:
    if not run.get("started_at") or not run.get("step") or not run.get("total_steps"):
        return None
    started = datetime.fromisoformat(run["started_at"])
    elapsed = (datetime.now(timezone.utc) - started).total_seconds()
    return max(0.0, elapsed / run["step"] * (run["total_steps"] - run["step"]))


def status_html(run: dict | None, auto: training.AutoStart) -> str:
    waiting = next_run_line(auto)
    if not run:
        return f'<div id="train-status"><p>No training runs yet.</p><p>{waiting}</p></div>'
    step, total = run.get("step") or 0, run.get("total_steps") or 0
    eta = eta_seconds(run) if run["status"] == "running" else None
    line = f"Run #{run['id']} · <b>{run['status']}</b>"
    if total:
        line += f" · step {step} of {total}"
    if eta is not None:
        line += f" · about {eta:.0f} s left"
    if run["status"] == "succeeded":
        line += f" · adapter <b>{run['adapter']}</b> is ready in the Chat tab's Model list"
    if run.get("error"):
        line += f"<br><span style='color:#b91c1c'>{html.escape(run['error'])}</span>"
    bar = (f'<progress value="{step}" max="{total}" style="width:100%"></progress>'
           if total else "")
    return f'<div id="train-status"><p>{line}</p>{bar}<p>{waiting}</p></div>'


def next_run_line(auto: training.AutoStart) -> str:
    if not auto.enabled:
        return f"{auto.new_examples} new examples since the last run; auto-start is off."
    return (f"{auto.new_examples} new examples since the last run; the next run starts by "
            f"itself at {auto.threshold} ({auto.to_go} to go).")


def loss_points(run: dict | None) -> list[dict]:
    if not run:
        return []
    return ([{"step": p["step"], "loss": p["loss"], "series": "train"} for p in run["losses"]]
            + [{"step": p["step"], "loss": p["loss"], "series": "eval"}
               for p in run["eval_losses"]])


def history_rows(all_runs: list[dict]) -> list[list]:
    def number(value, digits=3):
        return round(value, digits) if isinstance(value, (int, float)) else ""

    return [[r["id"], r["status"], r["adapter"] or "", len(r["example_ids"]),
             number(r["metrics"].get("eval_loss_before")),
             number(r["metrics"].get("eval_loss_after")),
             number(r["metrics"].get("tokens_per_second"), 1),
             number(r["metrics"].get("train_seconds"), 1),
             (r["started_at"] or "")[:16].replace("T", " "), r["error"] or ""]
            for r in all_runs]


def lineage_markdown(lineage: training.Lineage) -> str:
    lines = [f"**{label}**: {html.escape(str(value))}" for label, value in lineage.summary()]
    return "  \n".join(lines)


class TrainHandlers:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def start(self, method: str, epochs: float, learning_rate: float, rank: float,
              continue_from: str) -> str:
        config = TrainConfig(method=method, epochs=int(epochs) or None,
                             learning_rate=float(learning_rate), rank=int(rank),
                             continue_from=None if continue_from in (None, NEW_ADAPTER)
                             else continue_from)
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
        points = pd.DataFrame(loss_points(current), columns=["step", "loss", "series"])
        # Numeric dtypes even when empty, so the plot's axes stay quantitative.
        points = points.astype({"step": "int64", "loss": "float64", "series": "string"})
        return (status_html(current, training.auto_start(self.ctx)), points,
                history_rows(training.history(self.ctx)))

    def show_lineage(self, event: gr.SelectData) -> str:
        return lineage_markdown(training.lineage(self.ctx, int(event.row_value[0])))


def build(ui: Ui) -> None:
    if not ui.ctx.can_train:
        gr.Markdown("Training is not available in this app.")
        return
    handlers = TrainHandlers(ui.ctx)
    with gr.Row():
        method = gr.Radio(list(METHODS), value="auto", label="Method",
                          info="qlora: 4-bit base, about a third of the memory; "
                               "auto picks it when memory is short")
        epochs = gr.Number(0, label="Epochs", precision=0, minimum=0, maximum=100,
                           info="0 = chosen by the number of examples")
        learning_rate = gr.Number(TrainConfig.learning_rate, label="Learning rate", minimum=0)
        rank = gr.Slider(4, 64, value=TrainConfig.rank, step=4, label="LoRA rank")
    with gr.Row():
        continue_from = ui.model_list("Train", with_base=False, first=(NEW_ADAPTER,),
                                      default=lambda ctx: NEW_ADAPTER,
                                      info="or continue an adapter on new examples")
        threshold = gr.Number(handlers.threshold_box(),
                              label="Auto-start after new examples", precision=0, minimum=0,
                              info="0 = off")
    with gr.Row():
        start = gr.Button("Start training", variant="primary", elem_id="start-training")
        cancel = gr.Button("Cancel", elem_id="cancel-training")
        resume = gr.Button("Resume last failed run")
    note = gr.Markdown(elem_id="train-note")
    status = gr.HTML(elem_id="train-status-box")
    curve = gr.LinePlot(x="step", y="loss", color="series", title="Loss", height=260,
                        elem_id="loss-curve")
    history = gr.Dataframe(headers=HISTORY_HEADERS, interactive=False, label="Runs "
                           "(click one to see what it trained on)", elem_id="runs-table")
    lineage = gr.Markdown(elem_id="run-lineage")
    refresh: dict[str, Any] = dict(fn=handlers.refresh, inputs=None,
                                   outputs=[status, curve, history],
                                   api_visibility="private", show_progress="hidden")
    gr.Timer(1.0).tick(**refresh)
    start.click(shown_to_user(handlers.start), [method, epochs, learning_rate, rank,
                                                continue_from], note,
                api_name="train").then(**refresh)
    cancel.click(shown_to_user(handlers.cancel), None, note, api_name="cancel_run")
    resume.click(shown_to_user(handlers.resume), None, note, api_name="resume_run")
    threshold.input(shown_to_user(handlers.set_threshold), threshold, note,
                    api_visibility="private")
    ui.on_load(handlers.threshold_box, None, threshold)
    history.select(shown_to_user(handlers.show_lineage), None, lineage,
                   api_visibility="private")
