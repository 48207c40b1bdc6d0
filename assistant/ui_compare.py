"""The Compare tab: one prompt to two models, streamed side by side; blind votes with a
win-rate table; promote an adapter to the chat's default (and roll back); and the replay
of held-out examples ("did it learn my corrections?")."""

from __future__ import annotations

import random

import gradio as gr

from assistant.compare import held_out_examples, replay_held_out, stream_pair
from assistant.engine import BASE, ChatEngine
from storage import runs
from storage.db import Store

VOTES = {"A is better": "a", "B is better": "b", "Tie": "tie", "Both bad": "both_bad"}
RATE_HEADERS = ["adapter", "wins", "losses", "ties", "both bad", "votes", "win rate vs base",
                "95% interval"]
REPLAY_HEADERS = ["#", "source", "prompt", "what you wrote", "base", "adapter",
                  "base chrF", "adapter chrF"]


def rate_rows(store: Store) -> list[list]:
    def percent(value):
        return "" if value is None else f"{100 * value:.0f}%"

    return [[r["adapter"], r["wins"], r["losses"], r["ties"], r["both_bad"], r["votes"],
             percent(r["win_rate"]), f"{percent(r['ci_low'])} to {percent(r['ci_high'])}"]
            for r in runs.win_rates(store)]


class CompareActions:
    def __init__(self, engine: ChatEngine, store: Store):
        self.engine, self.store = engine, store

    def stream_both(self, prompt: str, system: str, left: str, right: str, blind: bool):
        """Stream both answers; yields (A text, B text, A label, B label, pending vote)."""
        from assistant.ui import with_system

        if not (prompt or "").strip():
            raise gr.Error("Type a prompt to compare.")
        names = [left, right]
        if blind:
            random.shuffle(names)
        labels = ("Model A", "Model B") if blind else (f"A: {names[0]}", f"B: {names[1]}")
        messages = with_system(system, [{"role": "user", "content": prompt}])
        a_text = b_text = ""
        for a_text, b_text in stream_pair(self.engine, messages, names[0], names[1]):
            yield a_text, b_text, gr.Markdown(labels[0]), gr.Markdown(labels[1]), None
        pending = {"prompt": prompt, "system": system or "", "a": names[0], "b": names[1],
                   "a_reply": a_text, "b_reply": b_text, "blind": bool(blind)}
        yield a_text, b_text, gr.skip(), gr.skip(), pending

    def record_vote(self, choice: str, pending: dict | None):
        """Store the vote and reveal the names: (note, A label, B label, pending, rates)."""
        if not pending:
            return "Compare two models first, then vote.", gr.skip(), gr.skip(), None, gr.skip()
        winner = {"a": "left", "b": "right"}.get(VOTES[choice], VOTES[choice])
        runs.add_vote(self.store, prompt=pending["prompt"], system=pending["system"],
                      left=pending["a"], right=pending["b"], left_reply=pending["a_reply"],
                      right_reply=pending["b_reply"], winner=winner, blind=pending["blind"])
        note = (f"✓ Vote stored: {choice}. A was **{pending['a']}**, B was "
                f"**{pending['b']}**.")
        return (note, gr.Markdown(f"A: {pending['a']}"), gr.Markdown(f"B: {pending['b']}"),
                None, rate_rows(self.store))

    def promote(self, adapter: str) -> str:
        if adapter not in self.engine.adapters():
            raise gr.Error(f"No adapter named {adapter!r}.")
        runs.promote(self.store, adapter)
        return f"✓ New chats start with **{adapter}**. Roll back to undo."

    def roll_back(self) -> str:
        return f"✓ New chats start with **{runs.roll_back(self.store)}** again."

    def replay(self, adapter: str, progress=gr.Progress()):
        """(rows, summary) for the adapter's held-out examples."""
        if adapter in (None, BASE):
            raise gr.Error("Pick an adapter to check.")
        held = held_out_examples(self.store, adapter)
        if not held:
            raise gr.Error(f"{adapter} has no held-out examples: a run holds some out once "
                           "it has 20 or more examples.")
        results = replay_held_out(self.engine, held, adapter,
                                  lambda i, n: progress((i, n), desc="Replaying examples"))
        rows = [[r["id"], r["source"], r["prompt"], r["wanted"], r["base"], r["adapter"],
                 r["base_chrf"], r["adapter_chrf"]] for r in results]
        base_mean = sum(r["base_chrf"] for r in results) / len(results)
        tuned_mean = sum(r["adapter_chrf"] for r in results) / len(results)
        summary = (f"On {len(results)} held-out examples (never trained on), closeness to "
                   f"what you wrote (chrF, 0-100): base **{base_mean:.1f}**, {adapter} "
                   f"**{tuned_mean:.1f}**.")
        return rows, summary

    def compare_api(self, prompt: str, left: str = BASE, right: str = "latest",
                    system: str = "") -> dict:
        """Both answers to one prompt (not blind): {"left", "right", "left_reply",
        "right_reply"}. "latest" is the newest adapter."""
        from assistant.ui import with_system

        names = [self._resolve(left), self._resolve(right)]
        messages = with_system(system, [{"role": "user", "content": prompt}])
        *_, (left_reply, right_reply) = stream_pair(self.engine, messages, *names)
        return {"left": names[0], "right": names[1], "left_reply": left_reply,
                "right_reply": right_reply}

    def vote_api(self, prompt: str, left: str, right: str, winner: str,
                 left_reply: str = "", right_reply: str = "", system: str = "") -> list[dict]:
        """Store a vote (winner: left, right, tie or both_bad); returns the win rates."""
        runs.add_vote(self.store, prompt=prompt, system=system, left=left, right=right,
                      left_reply=left_reply, right_reply=right_reply, winner=winner,
                      blind=False)
        return runs.win_rates(self.store)

    def _resolve(self, name: str) -> str:
        return (runs.latest_adapter(self.store) or BASE) if name == "latest" else name


def compare_tab(engine: ChatEngine, store: Store, shown_to_user) -> list[gr.Dropdown]:
    """Build the tab; returns the model selectors, kept current as adapters arrive."""
    actions = CompareActions(engine, store)
    names = engine.adapters()
    with gr.Row():
        prompt = gr.Textbox(label="Prompt", scale=3, elem_id="compare-prompt")
        system = gr.Textbox(label="System prompt", scale=2)
    with gr.Row():
        left = gr.Dropdown(names, value=BASE, label="Model A (left)")
        right = gr.Dropdown(names, value=names[-1], label="Model B (right)")
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
    rates = gr.Dataframe(rate_rows(store), headers=RATE_HEADERS, interactive=False,
                         label="Win rate against the base (blind and open votes)",
                         elem_id="win-rates")
    with gr.Accordion("Chat default", open=False):
        with gr.Row():
            chosen = gr.Dropdown(names, value=names[-1], label="Adapter")
            promote = gr.Button("Make it the chat's default")
            roll_back = gr.Button("Roll back")
    with gr.Accordion("Did it learn my corrections?", open=False):
        replay_adapter = gr.Dropdown(names, value=names[-1], label="Adapter")
        replay = gr.Button("Replay its held-out examples")
        replay_summary = gr.Markdown(elem_id="replay-summary")
        replay_rows = gr.Dataframe(headers=REPLAY_HEADERS, interactive=False, wrap=True)

    go.click(shown_to_user(actions.stream_both), [prompt, system, left, right, blind],
             [a_text, b_text, a_label, b_label, pending], api_visibility="private")
    for button in vote_buttons:
        button.click(shown_to_user(actions.record_vote), [button, pending],
                     [note, a_label, b_label, pending, rates], api_visibility="private")
    promote.click(shown_to_user(actions.promote), chosen, note, api_visibility="private")
    roll_back.click(actions.roll_back, None, note, api_visibility="private")
    replay.click(shown_to_user(actions.replay), replay_adapter, [replay_rows, replay_summary],
                 api_visibility="private")
    gr.api(shown_to_user(actions.compare_api), api_name="compare")
    gr.api(shown_to_user(actions.vote_api), api_name="vote")
    return [left, right, chosen, replay_adapter]
