"""The Compare tab: the report card (was the adapter worth it?), one prompt to two models
streamed side by side, blind votes with a win-rate table, and promoting an adapter to
the chat's default (and rolling back)."""

from __future__ import annotations

import random
from collections.abc import Callable

import gradio as gr

from core.errors import UserError
from services import compare, models, names, report
from services.compare import Pair
from services.context import Context
from services.names import Names
from web import cards
from web.common import NEWEST, Ui, shown_to_user


class NothingToMeasure(UserError):
    pass

VOTES = {"A is better": "a", "B is better": "b", "Tie": "tie", "Both bad": "both_bad"}
RATE_HEADERS = ["model", "wins", "losses", "ties", "both bad", "votes",
                "win rate against the plain model", "likely range"]
RATES_LABEL = ("How often each model wins against the plain model (blind and open votes; "
               "ties count half). The likely range narrows with more votes")


def rate_rows(rates: list[dict], label: Callable[[str], str] = str) -> list[list]:
    """The win-rate table, each model named by `label` (plain words in the page)."""
    def percent(value):
        return "" if value is None else f"{100 * value:.0f}%"

    return [[label(r["adapter"]), r["wins"], r["losses"], r["ties"], r["both_bad"], r["votes"],
             percent(r["win_rate"]), f"{percent(r['ci_low'])} to {percent(r['ci_high'])}"]
            for r in rates]


NO_ADAPTER_YET = ("No tuned assistant yet: the report card appears after the first training "
                  "run.")
MEASURE_CHOICES = [("auto: the style when your answers share one, else their form", "auto"),
                   ("style: the sign-off or greeting your answers share", "style"),
                   ("wording: how close to your words", "chrf"),
                   ("exact answer: word for word the label you wrote", "exact"),
                   ("fields: the same fields as your JSON answers", "json")]
"""What decides the verdict, as the list shows it (the value is the technical name)."""
MEASURE_DETAILS = (
    "<details><summary>details</summary>The technical names: <i>wording</i> is the "
    "chrF score (character n-gram F-score, 0-100) of each answer against yours; <i>exact "
    "answer</i> is exact match; <i>fields</i> is the share of JSON fields matched exactly; "
    "<i>style</i> looks for the phrases your answers share. The API and the command line "
    "take <code>auto</code>, <code>style</code>, <code>chrf</code>, <code>exact</code>, "
    "<code>json</code>.</details>")
RATES_DETAILS = (
    "<details><summary>details</summary>The likely range is a 95% Wilson score interval "
    "for the win rate; “both bad” votes are left out of the rate.</details>")
BLIND_WORDS = ("Blind: the two answers appear in random order, as A and B; the names are "
               "revealed after you vote")
LEFT_LABEL, RIGHT_LABEL = "One model", "The other model"
"""The two lists: neither promises a side (blind shuffles them)."""
NOTE = "compare-note"
SCROLL_TO_NOTE = (f"() => setTimeout(() => document.getElementById('{NOTE}')"
                  "?.scrollIntoView({block: 'nearest', behavior: 'smooth'}), 100)")
"""The vote's note is below the vote buttons, out of view on a laptop: brought into
view (only as far as needed) once it is drawn."""
VOTED = {"voted": True}
"""The pending vote after a vote: these two answers have theirs."""
NOTHING_TO_VOTE_ON = ("A vote needs both answers written to the end: press Compare, or wait "
                      "until both answers have finished, then vote.")
ALREADY_VOTED = ("Your vote on these two answers is stored. Press Compare for a new pair "
                 "to vote again.")


class CompareHandlers:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.measuring: dict[str, str] = {}
        """Adapters a *Measure again* is computing now -> how far it is."""
        self.failed: dict[str, str] = {}
        """Adapters whose *Measure again* failed -> why (until it succeeds)."""

    def say(self, *shown: str) -> Names:
        """These models' names in plain words."""
        return names.plain(self.ctx, list(shown))

    def stream_both(self, prompt: str, system: str, left: str, right: str, blind: bool):
        """Stream both answers; yields (A text, B text, A label, B label, pending vote)."""
        pair = [left, right]
        if blind:
            random.shuffle(pair)
        say = self.say(*pair)
        # Blind: A and B, in random order, named after the vote; else which is which.
        labels = ("Model A", "Model B") if blind else (f"A: {say.first(pair[0])}",
                                                       f"B: {say.first(pair[1])}")
        a_text = b_text = ""
        for a_text, b_text in compare.stream_pair(self.ctx, prompt, system, pair[0],
                                                  pair[1]):
            yield a_text, b_text, gr.Markdown(labels[0]), gr.Markdown(labels[1]), None
        pending = {"prompt": prompt, "system": system or "", "a": pair[0], "b": pair[1],
                   "a_reply": a_text, "b_reply": b_text, "blind": bool(blind)}
        yield a_text, b_text, gr.skip(), gr.skip(), pending

    def record_vote(self, choice: str, pending: dict | None):
        """Store the vote and reveal the names: (note, A label, B label, pending, rates).
        A second vote on the same answers is refused, saying so."""
        if pending and pending.get("voted"):
            return ALREADY_VOTED, gr.skip(), gr.skip(), pending, gr.skip()
        if not pending:
            return NOTHING_TO_VOTE_ON, gr.skip(), gr.skip(), None, gr.skip()
        winner = {"a": "left", "b": "right"}.get(VOTES[choice], VOTES[choice])
        pair = Pair(pending["a"], pending["b"], pending["a_reply"], pending["b_reply"])
        rates, pair_id = compare.vote(self.ctx, pair, winner, pending["prompt"],
                                      pending["system"], blind=pending["blind"])
        say = self.say(pending["a"], pending["b"], *(r["adapter"] for r in rates))
        a, b = say.first(pending["a"]), say.first(pending["b"])
        note = f"✓ Vote stored: {choice}. A was **{a}**, B was **{b}**."
        if pair_id:
            note += (f" The winner's answer over the other is kept as a preference, #{pair_id}"
                     " in the Examples tab (source *vote*): runs that learn from your "
                     "preferences learn from it (in the Train tab, *What to learn from*). "
                     "If the winner is wrong too, correct it there: a vote says only which "
                     "answer is better.")
        return (note, gr.Markdown(f"A: {a}"), gr.Markdown(f"B: {b}"), dict(VOTED),
                rate_rows(rates, say.first))

    def promote(self, adapter: str) -> str:
        chosen = models.promote(self.ctx, adapter)
        return f"✓ New chats start with **{self.say(chosen).first(chosen)}**. Roll back to undo."

    def roll_back(self) -> str:
        chosen = models.roll_back(self.ctx)
        return f"✓ New chats start with **{self.say(chosen).first(chosen)}** again."

    def card(self, adapter: str | None):
        """(status, summary, chart, table, example rows, shown card's time) for the
        adapter's newest report card."""
        if not adapter:
            return NO_ADAPTER_YET, "", "", [], gr.Dataframe(value=[]), None
        card = report.card_for(self.ctx, adapter)
        if card is None:
            return (self.status(adapter), "", "", [], gr.Dataframe(value=[]), None)
        say = self.say(*cards.card_names(card))
        headers, rows = cards.example_rows(card, say)
        return (self.status(adapter), cards.summary_markdown(card, say),
                cards.chart_svg(card, say), cards.card_rows(card, say),
                gr.Dataframe(value=rows, headers=headers), card["created_at"])

    def status(self, adapter: str | None) -> str:
        """The chosen adapter's card's state, and any card being measured now, whichever
        adapter it is for (the list may show another: the one new chats use)."""
        if not adapter:
            return NO_ADAPTER_YET
        worker = self.ctx.reports
        current = worker.current if worker is not None else None  # the worker may reset it
        current = dict(current) if current else None
        lines = [self._status_of(adapter, current)] + [
            self._measuring_other(other, far) for other, far in self._measured_now(current)
            if other != adapter]
        return "\n\n".join(line for line in lines if line)

    def _measured_now(self, current: dict | None) -> list[tuple[str, str]]:
        """(adapter, how far) for each card being measured now: *Measure again*, then the
        worker's card of a finished run."""
        found = dict(self.measuring)
        if current and current.get("adapter") and current["adapter"] not in found:
            found[current["adapter"]] = report.ReportWorker.how_far(current)
        return list(found.items())

    def _measuring_other(self, adapter: str, far: str) -> str:
        return (f"Measuring the report card of {self.say(adapter)(adapter)} too: {far}. "
                "Choose it in *Report card of* to see it when it is done; the chat stays "
                "usable meanwhile.")

    def _status_of(self, adapter: str, current: dict | None) -> str:
        # Named only when a line is shown: this runs every two seconds.
        if adapter in self.measuring:
            return (f"Measuring {self.say(adapter)(adapter)} again: "
                    f"{self.measuring[adapter]}. The chat stays usable meanwhile.")
        if current and current["adapter"] == adapter:
            return (f"Measuring {self.say(adapter)(adapter)}: "
                    f"{report.ReportWorker.how_far(current)}. The chat stays usable meanwhile.")
        worker = self.ctx.reports
        failed = self.failed.get(adapter) or (worker.failure(adapter) if worker else None)
        if failed:
            return (f"⚠ The report card of {self.say(adapter)(adapter)} could not be "
                    f"computed: {failed}. Press *Measure again* to retry.")
        if report.card_for(self.ctx, adapter or "") is None:
            return (f"{names.label(self.ctx, adapter)} has no report card yet: it is computed "
                    "by itself after a run, or press *Measure again*.")
        return ""

    def follow(self, adapter: str | None, shown: str | None):
        """Every few seconds: the status, and the card once a newer one exists (not
        while *Measure again* computes it: the old card stays off the screen)."""
        if adapter in self.measuring:
            return (self.status(adapter),) + (gr.skip(),) * 5
        card = report.card_for(self.ctx, adapter or "") if adapter else None
        if card is not None and card["created_at"] != shown:
            return self.card(adapter)
        return (self.status(adapter),) + (gr.skip(),) * 5

    def measure(self, adapter: str | None, progress=gr.Progress()):
        """Measure again: the old card leaves the screen at once, progress shows, then
        the new card (or what went wrong, on the card)."""
        if not adapter:
            raise NothingToMeasure("Train an adapter first: there is nothing to measure.")
        self.measuring[adapter] = "its test examples, then the general questions"
        yield (self.status(adapter), "", "", [], gr.Dataframe(value=[]), None)

        def show(done: int, total: int, step: str) -> None:
            step = step.split(":")[0]  # "answers 12 of 240", without the technical name
            self.measuring[adapter] = step
            progress((done, total), desc=step)

        try:
            report.evaluate(self.ctx, adapter, show)
        except UserError:
            raise
        except Exception as error:  # noqa: BLE001 - shown on the card, with a retry
            self.failed[adapter] = f"{type(error).__name__}: {error}"
            yield (self.status(adapter),) + (gr.skip(),) * 5
            return
        finally:
            self.measuring.pop(adapter, None)
        self.failed.pop(adapter, None)
        if self.ctx.reports is not None:
            self.ctx.reports.forget_failure(adapter)
        yield self.card(adapter)

    def chosen_measure(self) -> str:
        return report.chosen_measure(self.ctx)

    def set_measure(self, name: str) -> str:
        chosen = report.choose_measure(self.ctx, name)
        words = dict((value, shown) for shown, value in MEASURE_CHOICES).get(chosen, chosen)
        return (f"✓ The verdicts are decided by *{words}* from now on. Press *Measure again* "
                "to see this card with it.")

    def rates(self) -> list[list]:
        rates = compare.win_rates(self.ctx)
        return rate_rows(rates, self.say(*(r["adapter"] for r in rates)).first)


def build(ui: Ui) -> None:
    handlers = CompareHandlers(ui.ctx)
    _report_card(ui, handlers)
    gr.Markdown("### Side by side")
    with gr.Row():
        prompt = gr.Textbox(label="Prompt", scale=3, elem_id="compare-prompt")
        system = gr.Textbox(label="Instructions for both (system prompt)", scale=2)
    with gr.Row():
        left = ui.model_list(LEFT_LABEL, default=lambda ctx: models.BASE,
                             elem_id="model-a")
        right = ui.model_list(RIGHT_LABEL, default=models.adapter_to_show,
                              follow=NEWEST, elem_id="model-b")
        blind = gr.Checkbox(True, label=BLIND_WORDS)
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
    note = gr.Markdown(elem_id=NOTE)
    rates = gr.Dataframe(headers=RATE_HEADERS, interactive=False,
                         label=RATES_LABEL, elem_id="win-rates")
    gr.Markdown(RATES_DETAILS)
    with gr.Accordion("Chat default", open=False):
        with gr.Row():
            chosen = ui.model_list("Choose a model for new chats", follow=NEWEST,
                                   elem_id="promote-model")
            promote = gr.Button("Make it the chat's default")
            roll_back = gr.Button("Roll back")
    go.click(shown_to_user(handlers.stream_both), [prompt, system, left, right, blind],
             [a_text, b_text, a_label, b_label, pending], api_visibility="private")
    for button in vote_buttons:
        button.click(shown_to_user(handlers.record_vote), [button, pending],
                     [note, a_label, b_label, pending, rates], api_visibility="private") \
            .then(None, js=SCROLL_TO_NOTE, api_visibility="private")
    promote.click(shown_to_user(handlers.promote), chosen, note, api_visibility="private")
    roll_back.click(shown_to_user(handlers.roll_back), None, note, api_visibility="private")
    ui.on_load(handlers.rates, None, rates)  # the win rates as they are, on every load


def _report_card(ui: Ui, handlers: CompareHandlers) -> None:
    """Was it worth it? The adapter against the base, a prompt and examples in the
    prompt, on examples it never saw."""
    with gr.Row():
        adapter = ui.model_list("Report card of", with_base=False, follow=NEWEST,
                                default=models.adapter_to_show, elem_id="card-model",
                                scale=3)
        with gr.Column(scale=2, min_width=160):
            decide = gr.Dropdown(MEASURE_CHOICES, value="auto",
                                 label="What decides the verdict", elem_id="card-measure")
            gr.Markdown(MEASURE_DETAILS)
        again = gr.Button("Measure again", scale=1, elem_id="measure")
    status = gr.Markdown(elem_id="card-status")
    summary = gr.Markdown(elem_id="card-summary")
    chart = gr.HTML(elem_id="card-chart")
    table = gr.Dataframe(headers=cards.CARD_HEADERS, interactive=False, wrap=True,
                         elem_id="card-table",  # wrap: its headers whole, not "time per a…"
                         label="Score (0-100) of each model on the test examples, the "
                               "range its true score likely lies in, and what it costs")
    with gr.Accordion("Each test example (your corrections first)", open=False):
        rows = gr.Dataframe(interactive=False, wrap=True, elem_id="card-rows")
    shown = gr.State(None)
    outputs = [status, summary, chart, table, rows, shown]
    adapter.change(shown_to_user(handlers.card), adapter, outputs, api_visibility="private")
    again.click(shown_to_user(handlers.measure), adapter, outputs, api_visibility="private")
    decide.input(shown_to_user(handlers.set_measure), decide, status, api_visibility="private")
    gr.Timer(2.0).tick(handlers.follow, [adapter, shown], outputs, api_visibility="private",
                       show_progress="hidden")
    ui.on_load(handlers.card, adapter, outputs)
    ui.on_load(handlers.chosen_measure, None, decide)
