"""The API routes that are not a tab's button: each a thin call of one action, callable
with gradio_client under the api_name docs/web-app.md lists."""

from __future__ import annotations

import gradio as gr

from services import chat, compare, contenders, examples, facts, models, report, training
from services.compare import Pair
from services.context import Context
from web.common import shown_to_user


def add_routes(ctx: Context) -> None:
    def chat_(message: str, adapter: str = "base", system: str = "") -> str:
        """Answer one message (greedy) and store it as a new conversation."""
        return chat.ask(ctx, message, adapter, system).text

    def adapters() -> list[str]:
        """The model names a request may use, "base" first."""
        return models.model_names(ctx)

    def list_examples(search: str = "", source: str = "all") -> list[dict]:
        """Stored examples, newest first: id, source, messages, rejected, near_duplicate_of."""
        return [{"id": e.id, "source": e.source, "messages": e.messages,
                 "rejected": e.rejected, "near_duplicate_of": e.near_duplicate_of}
                for e in examples.find(ctx, search, source)]

    def add_example(messages: list[dict], source: str = "added") -> int:
        """Store one example (chat messages, the last one the assistant's); returns its id."""
        return examples.add(ctx, messages, source).example_id

    def correct(messages: list[dict], corrected: str) -> int:
        """Store a correction: `messages` end with the answer to replace by `corrected`,
        which is kept as the rejected side. Returns the example's id."""
        return examples.correct(ctx, messages, corrected).example_id

    def delete_example(example_id: int) -> str:
        """Delete an example (undo with /restore_example)."""
        examples.delete(ctx, example_id)
        return f"Deleted example #{example_id}."

    def restore_example(example_id: int) -> str:
        """Bring back a deleted example."""
        examples.restore(ctx, example_id)
        return f"Restored example #{example_id}."

    def run_status(run_id: int = 0) -> dict:
        """A run's record (the active or latest one when run_id is 0)."""
        return training.status(ctx, run_id or None)

    def compare_(prompt: str, left: str = "base", right: str = models.LATEST,
                 system: str = "") -> dict:
        """Both answers to one prompt (not blind): {"left", "right", "left_reply",
        "right_reply"}. "latest" is the newest adapter."""
        return vars(compare.compare(ctx, prompt, left, right, system))

    def vote(prompt: str, left: str, right: str, winner: str, left_reply: str = "",
             right_reply: str = "", system: str = "") -> list[dict]:
        """Store a vote (winner: left, right, tie or both_bad); returns the win rates. A
        winner also stores a preference pair (Examples, source "vote")."""
        rates, _ = compare.vote(ctx, Pair(left, right, left_reply, right_reply), winner,
                                prompt, system)
        return rates

    def eval_(adapter: str = models.LATEST, system: str = "", measure: str = "") -> dict:
        """The report card of an adapter (computed now, and stored on its run): per model
        name, score, ci_low, ci_high, n, prompt_tokens, latency_ms; the measure that
        decided, the verdict, one row per test example, and the general check. `system`
        sets the baseline prompt; `measure` what decides (auto, style, chrf, exact,
        json), kept for later cards."""
        if system.strip():
            contenders.set_baseline_prompt(ctx, system)
        if measure.strip():
            report.choose_measure(ctx, measure.strip())
        return report.evaluate(ctx, adapter)

    def add_check(prompt: str, answer: str, system: str = "") -> int:
        """A must-not-change check every report card asks the base and the adapter: right
        when the answer contains `answer` (its words in order, or /a regex/)."""
        return examples.add_check(ctx, prompt, answer, system)

    def mark_facts_check(example_id: int, on: bool) -> str:
        """Mark an example as a facts check (the answer to its question must agree with
        your facts; the report card scores answers to it against them), or unmark it."""
        return examples.mark_facts_check(ctx, int(example_id), bool(on))

    for fn, name in [(chat_, "chat"), (eval_, "eval"), (adapters, "adapters"),
                     (list_examples, "examples"),
                     (add_example, "add_example"), (correct, "correct"),
                     (delete_example, "delete_example"), (restore_example, "restore_example"),
                     (run_status, "run_status"), (compare_, "compare"), (vote, "vote"),
                     (add_check, "add_check"), (mark_facts_check, "mark_facts_check")]:
        gr.api(shown_to_user(fn), api_name=name)

    def facts_add(text: str, source: str = facts.TYPED) -> int:
        """Store facts about your business (plain text or Markdown, split into passages
        of about a paragraph); how many were new."""
        return len(facts.add_text(ctx, text, source))

    def facts_list() -> list[dict]:
        """Every fact, in the order added: id, source ("typed" or a file's name), text."""
        return [{"id": f.id, "source": f.source, "text": f.text}
                for f in facts.list_facts(ctx)]

    def facts_delete(fact_id: int) -> str:
        """Delete one fact."""
        facts.delete(ctx, int(fact_id))
        return f"Deleted fact #{int(fact_id)}."

    for fn, name in [(facts_add, "facts_add"), (facts_list, "facts_list"),
                     (facts_delete, "facts_delete")]:
        gr.api(shown_to_user(fn), api_name=name)
