"""The Train tab: settings, Start / Cancel / Resume, a live progress bar with ETA, the
loss curve (train and eval) and the history of runs. The tab only reads the run records
the trainer process writes; it never trains."""

from __future__ import annotations

import html
from datetime import datetime, timezone

import gradio as gr

from storage import runs
from trainer.config import TrainConfig
from trainer.jobs import Jobs

NEW_ADAPTER = "(a new adapter)"
HISTORY_HEADERS = ["#", "status", "adapter", "examples", "eval loss before", "eval loss after",
                   "tokens/s", "seconds", "started", "error"]


def autostart_note(jobs: Jobs | None) -> str:
    """Start a training run if the new examples reached the threshold; say so."""
    run_id = jobs.maybe_autostart() if jobs is not None else None
    return f" Training run #{run_id} started by itself (see the Train tab)." if run_id else ""


def eta_seconds(run: dict) -> float | None:
    if not run.get("started_at") or not run.get("step") or not run.get("total_steps"):
        return None
    started = datetime.fromisoformat(run["started_at"])
    elapsed = (datetime.now(timezone.utc) - started).total_seconds()
    return max(0.0, elapsed / run["step"] * (run["total_steps"] - run["step"]))


def status_html(run: dict | None, jobs: Jobs) -> str:
    waiting = _next_run_line(jobs)
    if run is None:
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


def _next_run_line(jobs: Jobs) -> str:
    new = runs.examples_since_last_run(jobs.store)
    if runs.get_setting(jobs.store, "auto_train", "1") != "1":
        return f"{new} new examples since the last run; auto-start is off."
    to_go = max(0, jobs.threshold() - new)
    return (f"{new} new examples since the last run; the next run starts by itself at "
            f"{jobs.threshold()} ({to_go} to go).")


def loss_points(run: dict | None) -> list[dict]:
    if run is None:
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


class TrainActions:
    def __init__(self, jobs: Jobs):
        self.jobs = jobs

    def start(self, method: str, epochs: float, learning_rate: float, rank: float,
              continue_from: str) -> str:
        config = TrainConfig(method=method, epochs=int(epochs) or None,
                             learning_rate=float(learning_rate), rank=int(rank),
                             continue_from=None if continue_from in (None, NEW_ADAPTER)
                             else continue_from)
        run_id = self.jobs.start(config)
        return f"Started run #{run_id}."

    def cancel(self) -> str:
        run = runs.active_run(self.jobs.store)
        if run is None:
            return "No run is training."
        self.jobs.cancel(run["id"])
        return f"Cancelling run #{run['id']} after its current step..."

    def resume(self) -> str:
        last = next((r for r in runs.list_runs(self.jobs.store, 10)
                     if r["status"] in ("failed", "cancelled")), None)
        if last is None:
            return "There is no failed or cancelled run to resume."
        self.jobs.resume(last["id"])
        return f"Resuming run #{last['id']} from its last checkpoint."

    def set_threshold(self, threshold: float) -> str:
        threshold = int(threshold or 0)
        runs.set_setting(self.jobs.store, "auto_train", int(threshold > 0))
        if threshold > 0:
            runs.set_setting(self.jobs.store, "auto_train_threshold", threshold)
            return f"A run starts by itself after {threshold} new examples."
        return "Auto-start is off."

    def refresh(self):
        """(status, loss curve, history) of the active run, else the latest one."""
        all_runs = runs.list_runs(self.jobs.store, 50)
        current = runs.active_run(self.jobs.store) or (all_runs[0] if all_runs else None)
        import pandas as pd

        points = pd.DataFrame(loss_points(current), columns=["step", "loss", "series"])
        # Numeric dtypes even when empty, so the plot's axes stay quantitative.
        points = points.astype({"step": "int64", "loss": "float64", "series": "string"})
        return status_html(current, self.jobs), points, history_rows(all_runs)

    def run_status(self, run_id: int = 0) -> dict:
        """A run's record (the latest when run_id is 0)."""
        if run_id:
            return runs.get_run(self.jobs.store, run_id)
        latest = runs.list_runs(self.jobs.store, 1)
        return latest[0] if latest else {}


def train_tab(jobs: Jobs, adapters: list[str], shown_to_user) -> TrainActions:
    actions = TrainActions(jobs)
    with gr.Row():
        method = gr.Radio(["auto", "lora", "qlora"], value="auto", label="Method",
                          info="qlora: 4-bit base, about a third of the memory; "
                               "auto picks it when memory is short")
        epochs = gr.Number(0, label="Epochs", precision=0, minimum=0, maximum=100,
                           info="0 = chosen by the number of examples")
        learning_rate = gr.Number(1e-3, label="Learning rate", minimum=0)
        rank = gr.Slider(4, 64, value=16, step=4, label="LoRA rank")
    with gr.Row():
        continue_from = gr.Dropdown([NEW_ADAPTER] + adapters[1:], value=NEW_ADAPTER,
                                    label="Train", info="or continue an adapter on new examples")
        threshold = gr.Number(jobs.threshold(), label="Auto-start after new examples",
                              precision=0, minimum=0, info="0 = off")
    with gr.Row():
        start = gr.Button("Start training", variant="primary", elem_id="start-training")
        cancel = gr.Button("Cancel", elem_id="cancel-training")
        resume = gr.Button("Resume last failed run")
    note = gr.Markdown(elem_id="train-note")
    status = gr.HTML(elem_id="train-status-box")
    curve = gr.LinePlot(x="step", y="loss", color="series", title="Loss", height=260,
                        elem_id="loss-curve")
    history = gr.Dataframe(headers=HISTORY_HEADERS, interactive=False, label="Runs",
                           elem_id="runs-table")
    refresh = dict(fn=actions.refresh, inputs=None, outputs=[status, curve, history],
                   api_visibility="private", show_progress="hidden")
    gr.Timer(1.0).tick(**refresh)
    start.click(shown_to_user(actions.start), [method, epochs, learning_rate, rank,
                                               continue_from], note,
                api_name="train").then(**refresh)
    cancel.click(shown_to_user(actions.cancel), None, note, api_name="cancel_run")
    resume.click(shown_to_user(actions.resume), None, note, api_name="resume_run")
    threshold.change(shown_to_user(actions.set_threshold), threshold, note,
                     api_visibility="private")
    gr.api(shown_to_user(actions.run_status), api_name="run_status")
    return actions
