"""The Compare tab: one prompt to two models, streamed side by side; blind votes with a
win-rate table; promote an adapter to the chat's default (and roll back); and the replay
of held-out examples ("did it learn my corrections?")."""

from __future__ import annotations

import random

import gradio as gr

from services import compare, models
from services.compare import Pair
from services.context import Context
from web.common import NEWEST, Ui, shown_to_user

VOTES = {"A is better": "a", "B is better": "b", "Tie": "tie", "Both bad": "both_bad"}
RATE_HEADERS = ["adapter", "wins", "losses", "ties", "both bad", "votes", "win rate vs base",
                "likely range"]
REPLAY_HEADERS = ["#", "source", "prompt", "what you wrote", "base", "adapter",
                  "base: closeness", "adapter: closeness"]


def rate_rows(rates: list[dict]) -> list[list]:
    def percent(value):
        return "" if value is None else f"{100 * value:.0f}%"

    return [[r["adapter"], r["wins"], r["losses"], r["ties"], r["both_bad"], r["votes"],
             percent(r["win_rate"]), f"{percent(r['ci_low'])} to {percent(r['ci_high'])}"]
            for r in rates]


class CompareHandlers:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def stream_both(self, prompt: str, system: str, left: str, right: str, blind: bool):
        """Stream both answers; yields (A text, B text, A label, B label, pending vote)."""
        names = [left, right]
        if blind:
            random.shuffle(names)
        labels = ("Model A", "Model B") if blind else (f"A: {names[0]}", f"B: {names[1]}")
        a_text = b_text = ""
        for a_text, b_text in compare.stream_pair(self.ctx, prompt, system, names[0],
                                                  names[1]):
            yield a_text, b_text, gr.Markdown(labels[0]), gr.Markdown(labels[1]), None
        pending = {"prompt": prompt, "system": system or "", "a": names[0], "b": names[1],
                   "a_reply": a_text, "b_reply": b_text, "blind": bool(blind)}
        yield a_text, b_text, gr.skip(), gr.skip(), pending

    def record_vote(self, choice: str, pending: dict | None):
        """Store the vote and reveal the names: (note, A label, B label, pending, rates)."""
        if not pending:
            return "Compare two models first, then vote.", gr.skip(), gr.skip(), None, gr.skip()
        winner = {"a": "left", "b": "right"}.get(VOTES[choice], VOTES[choice])
        pair = Pair(pending["a"], pending["b"], pending["a_reply"], pending["b_reply"])
        rates = compare.vote(self.ctx, pair, winner, pending["prompt"], pending["system"],
                             blind=pending["blind"])
        note = (f"✓ Vote stored: {choice}. A was **{pending['a']}**, B was "
                f"**{pending['b']}**.")
        return (note, gr.Markdown(f"A: {pending['a']}"), gr.Markdown(f"B: {pending['b']}"),
                None, rate_rows(rates))

    def promote(self, adapter: str) -> str:
        return f"✓ New chats start with **{models.promote(self.ctx, adapter)}**. Roll back to undo."

    def roll_back(self) -> str:
        return f"✓ New chats start with **{models.roll_back(self.ctx)}** again."

    def replay(self, adapter: str, progress=gr.Progress()):
        """(rows, summary) for the adapter's held-out examples."""
        results = compare.replay(self.ctx, adapter,
                                 lambda i, n: progress((i, n), desc="Replaying examples"))
        rows = [[r["id"], r["source"], r["prompt"], r["wanted"], r["base"], r["adapter"],
                 r["base_chrf"], r["adapter_chrf"]] for r in results]
        base_mean = sum(r["base_chrf"] for r in results) / len(results)
        tuned_mean = sum(r["adapter_chrf"] for r in results) / len(results)
        summary = (f"On {len(results)} held-out examples (never trained on), how close each "
                   f"answer is to what you wrote, 0-100: base **{base_mean:.1f}**, {adapter} "
                   f"**{tuned_mean:.1f}**. (chrF: shared character sequences; 100 is the "
                   "same text.)")
        return rows, summary

    def rates(self) -> list[list]:
        return rate_rows(compare.win_rates(self.ctx))


def build(ui: Ui) -> None:
    handlers = CompareHandlers(ui.ctx)
    with gr.Row():
        prompt = gr.Textbox(label="Prompt", scale=3, elem_id="compare-prompt")
        system = gr.Textbox(label="System prompt", scale=2)
    with gr.Row():
        left = ui.model_list("Model A (left)", default=lambda ctx: models.BASE,
                             elem_id="model-a")
        right = ui.model_list("Model B (right)", follow=NEWEST, elem_id="model-b")
        blind = gr.Checkbox(True, label="Blind: shuffle and hide the names until I vote")
        go = gr.Button("Compare", variant="primary", elem_id="compare-button")
    with gr.Row():
        with gr.Column():
            a_label = gr.Markdown("Model A", elem_id="label-a")
            a_text = gr.Textbox(show_label=False, lines=8, interactive=False, elem_id="answer-a")
        with gr.Column():
            b_label = gr.Markdown("Model B", elem_id="label-b")
            b_text = gr.Textbox(show_label=False, lines=8, interactive=False, elem_id="answer-b")
    pending = gr.State(None)
    with gr.Row():
        vote_buttons = [gr.Button(choice) for choice in VOTES]
    note = gr.Markdown(elem_id="compare-note")
    rates = gr.Dataframe(headers=RATE_HEADERS, interactive=False,
                         label="Win rate against the base (blind and open votes; the "
                               "likely range is a 95% interval: more votes narrow it)",
                         elem_id="win-rates")
    with gr.Accordion("Chat default", open=False):
        with gr.Row():
            chosen = ui.model_list("Adapter", follow=NEWEST, elem_id="promote-model")
            promote = gr.Button("Make it the chat's default")
            roll_back = gr.Button("Roll back")
    with gr.Accordion("Did it learn my corrections?", open=False):
        replay_adapter = ui.model_list("Adapter", follow=NEWEST, elem_id="replay-model")
        replay = gr.Button("Replay its held-out examples")
        replay_summary = gr.Markdown(elem_id="replay-summary")
        replay_rows = gr.Dataframe(headers=REPLAY_HEADERS, interactive=False, wrap=True)

    go.click(shown_to_user(handlers.stream_both), [prompt, system, left, right, blind],
             [a_text, b_text, a_label, b_label, pending], api_visibility="private")
    for button in vote_buttons:
        button.click(shown_to_user(handlers.record_vote), [button, pending],
                     [note, a_label, b_label, pending, rates], api_visibility="private")
    promote.click(shown_to_user(handlers.promote), chosen, note, api_visibility="private")
    roll_back.click(shown_to_user(handlers.roll_back), None, note, api_visibility="private")
    replay.click(shown_to_user(handlers.replay), replay_adapter, [replay_rows, replay_summary],
                 api_visibility="private")
    ui.on_load(handlers.rates, None, rates)  # the win rates as they are, on every load
