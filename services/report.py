"""The report card: was the adapter worth it? Every adapter is measured, on examples it
never saw, against what a prompt or a few examples in the prompt would have done, with
honest uncertainty and a one-line verdict (the rules are in the README).

evaluate() computes a card and stores it on the run; ReportWorker does so by itself,
in the background of the web app, after every successful run."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from assistant.engine import ContextTooLong, GenerationSettings
from core.adapters import BASE
from core.chatformat import token_count
from core.errors import UserError
from services import contenders, fewshot, models, scoring
from services.context import Context
from storage import examples, reports, runs
from storage.conversations import now
from trainer.objectives import OBJECTIVES

MIN_TEST = 5
"""Fewer test examples than this give a report that says so instead of scores."""
MATCH_TOLERANCE = 0.05
"""A baseline matches the adapter on an example when it scores at most this much less."""
SHIFT = 0.2
"""For closeness measures, a change this big against the base counts as a flip."""

Progress = Callable[[int, int, str], None]


class NothingToEvaluate(UserError):
    pass


@dataclass(frozen=True)
class TestExample:
    id: int
    source: str
    split: str
    """held_out (by the run) or test_only (marked by the user)."""
    messages: list[dict]

    @property
    def reference(self) -> str:
        return self.messages[-1]["content"]

    @property
    def prompt(self) -> list[dict]:
        return self.messages[:-1]


def test_set(ctx: Context, run: dict | None) -> list[TestExample]:
    """The run's held-out examples as it froze them, and every example marked test only;
    corrections first (did it learn my corrections?)."""
    held = runs.run_examples(ctx.store, run["id"], "held_out") if run else []
    found = [TestExample(e.example_id, e.source, "held_out", e.messages) for e in held]
    seen = {e.id for e in found}
    found += [TestExample(e.id, e.source, "test_only", e.messages)
              for e in reversed(examples.list_examples(ctx.store, test_only=True))
              if e.id not in seen]
    found.sort(key=lambda e: e.source != "corrected")
    return found


def lineup(ctx: Context, adapter: str, run: dict | None) -> tuple[list[str], list[dict]]:
    """(contenders to measure, those skipped with the reason)."""
    names = [BASE]
    skipped = []
    if contenders.baseline_prompt(ctx):
        names.append(contenders.PROMPT)
    else:
        skipped.append({"name": contenders.PROMPT, "why": (
            "no baseline system prompt is set: write the best prompt you would use instead "
            "of fine-tuning in the Train tab, or pass `tunechat eval --system TEXT`")})
    names += [contenders.EXAMPLES]
    sft_only = _sft_only_beside(ctx, run)
    if sft_only:
        names.append(sft_only)
    return names + [adapter, adapter + contenders.WITH_EXAMPLES], skipped


def _sft_only_beside(ctx: Context, run: dict | None) -> str | None:
    """For a preference-tuned adapter, the SFT-only adapter to show beside it: the one
    its preference stage started from, else the newest SFT-only run's before it on the
    same base model."""
    config = (run or {}).get("config", {})
    objective = OBJECTIVES.get(config.get("objective", "sft"))
    if run is None or objective is None or not objective.preferences:
        return None
    available = models.adapter_names(ctx)
    if objective.tunes_an_adapter:
        return config.get("continue_from") if config.get("continue_from") in available else None
    earlier = [r for r in runs.list_runs(ctx.store, 1000) if r["id"] < run["id"]
               and r["status"] == "succeeded" and r["adapter"] in available
               and r["config"].get("base_model") == config.get("base_model")
               and not OBJECTIVES.get(r["config"].get("objective", "sft"),
                                      OBJECTIVES["sft"]).preferences]
    return max(earlier, key=lambda r: r["id"])["adapter"] if earlier else None


def evaluate(ctx: Context, adapter: str | None = None, progress: Progress | None = None,
             save: bool = True) -> dict:
    """Measure an adapter ("latest" when None) against the base and the prompting
    baselines on its test set; returns the report card (and stores it on the run)."""
    adapter = models.resolve_adapter(ctx, adapter or models.LATEST, "to evaluate")
    run = runs.run_of_adapter(ctx.store, adapter)
    tests = test_set(ctx, run)
    names, skipped = lineup(ctx, adapter, run)
    card: dict = {"adapter": adapter, "run": run["id"] if run else None,
                  "created_at": now(), "n": len(tests), "skipped": skipped,
                  "test_examples": {s: sum(t.split == s for t in tests)
                                    for s in ("held_out", "test_only")}}
    if len(tests) < MIN_TEST:
        card.update(contenders=[], rows=[], measure=None, style_phrases=[],
                    votes={}, verdict=too_few(adapter, len(tests)))
    else:
        card.update(_measure(ctx, names, tests, run, progress))
        card["votes"] = votes_beside(ctx, card, tests)
        card["verdict"] = verdict(card, adapter)
    if save and run is not None:
        reports.save_report(ctx.store, run["id"], adapter, card)
    return card


def cards_by_run(ctx: Context) -> dict[int, dict]:
    """Run id -> its newest report card."""
    return reports.reported_runs(ctx.store)


def adapter_score(card: dict) -> dict | None:
    """The adapter's own row of its card (score, ci_low, ci_high), if it was scored."""
    return next((c for c in card.get("contenders", []) if c["name"] == card["adapter"]), None)


def card_for(ctx: Context, adapter: str) -> dict | None:
    """The adapter's newest report card, if it has one."""
    return reports.latest_report(ctx.store, adapter)


def too_few(adapter: str, n: int) -> str:
    return (f"Only {n} test example{'s' * (n != 1)}: too few to judge {adapter}. A run holds "
            f"some out once it has 20 examples; or mark examples as test only in the "
            f"Examples tab (or import some with `tunechat import --test FILE`) to reach "
            f"{MIN_TEST}.")


def _measure(ctx: Context, names: list[str], tests: list[TestExample], run: dict | None,
             progress: Progress | None) -> dict:
    references = [t.reference for t in tests]
    measure = scoring.choose_measure(references)
    phrases = scoring.style_phrases(references)
    pool = contenders.run_pool(ctx, run["id"]) if run else contenders.live_pool(ctx)
    settings = GenerationSettings(max_new_tokens=_budget(ctx, references))
    answers: dict[str, list[dict]] = {}
    total, done = len(names) * len(tests), 0
    for name in names:
        chosen = models.contender(ctx, name)
        answers[name] = []
        for test in tests:
            if progress:
                progress(done, total, f"{name} answering test example #{test.id}")
            answers[name].append(_answer(ctx, chosen, test, pool, settings, measure))
            done += 1
    if progress:
        progress(total, total, "done")
    rows = _rows(tests, answers, measure)
    return {"measure": {"name": measure.name, "why": measure.why}, "style_phrases": phrases,
            "contenders": [_summary(name, answers[name], phrases, run) for name in names],
            "rows": rows}


def _budget(ctx: Context, references: list[str]) -> int:
    longest = max(len(ctx.engine.tokenizer(r, add_special_tokens=False)["input_ids"])
                  for r in references)
    return max(48, min(256, 2 * longest))


def _answer(ctx: Context, chosen: contenders.Contender, test: TestExample,
            pool: fewshot.ExamplePool, settings: GenerationSettings,
            measure: scoring.Measure) -> dict:
    prompt = contenders.build_prompt(ctx, chosen, test.prompt, pool)
    started = time.perf_counter()
    try:
        text = ctx.engine.reply(prompt, chosen.adapter, settings)
    except ContextTooLong:  # e.g. a long baseline prompt on a short-context model
        return {"text": "(no answer: the prompt does not fit the model's context)",
                "score": 0.0, "seconds": 0.0,
                "prompt_tokens": token_count(ctx.engine.tokenizer, prompt)}
    return {"text": text, "score": measure.score(text, test.reference),
            "seconds": time.perf_counter() - started,
            "prompt_tokens": token_count(ctx.engine.tokenizer, prompt)}


def _summary(name: str, answers: list[dict], phrases: list[str], run: dict | None) -> dict:
    scores = [a["score"] for a in answers]
    low, high = scoring.interval(scores)
    row = {"name": name, "score": _pct(scoring.mean(scores)), "ci_low": _pct(low),
           "ci_high": _pct(high), "n": len(scores),
           "prompt_tokens": round(scoring.mean([a["prompt_tokens"] for a in answers])),
           "latency_ms": round(1000 * statistics.median(
               [a["seconds"] for a in answers if a["seconds"]] or [0.0])),
           "style": {p: _pct(scoring.mean([float(scoring.carries(a["text"], p))
                                           for a in answers])) for p in phrases}}
    if run and name == run.get("adapter"):
        row["training_s"] = run["metrics"].get("train_seconds")
    return row


def _rows(tests: list[TestExample], answers: dict[str, list[dict]],
          measure: scoring.Measure) -> list[dict]:
    rows = []
    for i, test in enumerate(tests):
        base = answers[BASE][i]["score"]
        row = {"id": test.id, "source": test.source, "split": test.split,
               "prompt": test.prompt[-1]["content"], "reference": test.reference,
               "answers": {name: {"text": a[i]["text"], "score": _pct(a[i]["score"])}
                           for name, a in answers.items()},
               "flips": {}}
        for name, a in answers.items():
            flip = _flip(measure, base, a[i]["score"])
            if name != BASE and flip:
                row["flips"][name] = flip
        rows.append(row)
    return rows


def _flip(measure: scoring.Measure, base: float, other: float) -> str | None:
    """"fixed" (was wrong, now right) or "broke" (was right, now wrong) against the base."""
    if measure.binary:
        was, now_ = measure.right(base), measure.right(other)
        return None if was == now_ else ("fixed" if now_ else "broke")
    if other - base >= SHIFT:
        return "fixed"
    return "broke" if base - other >= SHIFT else None


def _pct(value: float) -> float:
    return round(100 * value, 1)


# The verdict, by the rules the README states.

def verdict(card: dict, adapter: str) -> str:
    scores = {name: [row["answers"][name]["score"] for row in card["rows"]]
              for name in card["rows"][0]["answers"]}
    summary = {c["name"]: c for c in card["contenders"]}
    mine = scores[adapter]
    baselines = [n for n in (BASE, contenders.PROMPT, contenders.EXAMPLES) if n in scores]
    n = card["n"]
    gaps = {b: scoring.difference_interval(mine, scores[b]) for b in baselines}
    if all(low > 0 for low, _ in gaps.values()):
        best = max(baselines, key=lambda b: summary[b]["score"])
        low, high = gaps[best]
        line = (f"{adapter} beats every prompting baseline beyond the uncertainty on {n} test "
                f"examples: {summary[adapter]['score']:.0f} against {summary[best]['score']:.0f}"
                f" for the best of them, {best} (a difference of {low:+.0f} to {high:+.0f}).")
    else:
        line = _a_baseline_does_as_well(adapter, baselines, gaps, scores, summary, n)
    broke = [row["id"] for row in card["rows"] if row["flips"].get(adapter) == "broke"]
    if broke:
        line += (f" {adapter} is worse than the base on example"
                 f"{'s' * (len(broke) > 1)} {', '.join(f'#{i}' for i in broke)}.")
    return line


def _a_baseline_does_as_well(adapter: str, baselines: list[str], gaps: dict,
                             scores: dict, summary: dict, n: int) -> str:
    """A baseline clearly better than the adapter, else the cheapest one that is not
    clearly worse, and what it costs."""
    better = [b for b in baselines if gaps[b][1] < 0]
    if better:
        best = max(better, key=lambda b: summary[b]["score"])
        return (f"{best} does better than {adapter} beyond the uncertainty on {n} test "
                f"examples: {summary[best]['score']:.0f} against "
                f"{summary[adapter]['score']:.0f}. Fine-tuning did not pay off here.")
    cheapest = min((b for b in baselines if gaps[b][0] <= 0),
                   key=lambda b: summary[b]["prompt_tokens"])
    low, high = gaps[cheapest]
    matches = sum(b >= a - 100 * MATCH_TOLERANCE
                  for a, b in zip(scores[adapter], scores[cheapest]))
    extra = summary[cheapest]["prompt_tokens"] - summary[adapter]["prompt_tokens"]
    cost = (f"it costs {extra} more prompt tokens per request and no training"
            if extra > 0 else "and it needs no training")
    return (f"{cheapest} matches {adapter} on {matches} of {n} test examples, within the "
            f"uncertainty ({summary[cheapest]['score']:.0f} against "
            f"{summary[adapter]['score']:.0f}; {adapter} leads by {low:+.0f} to {high:+.0f}); "
            f"{cost}.")


def votes_beside(ctx: Context, card: dict, tests: list[TestExample]) -> dict:
    """The user's votes between models of this card, and how often the automatic score
    agrees with them. A vote's answers are scored against the reference when its prompt
    is a test example's, else by the style phrases (when the references have some)."""
    names = {c["name"] for c in card["contenders"]}
    references = {t.prompt[-1]["content"].strip(): t.reference for t in tests}
    measure = scoring.choose_measure([t.reference for t in tests])
    phrases = card["style_phrases"]
    scored = agree = 0
    with ctx.store.read() as db:
        votes = db.execute("SELECT prompt, left, right, winner, left_reply, right_reply "
                           "FROM votes WHERE winner IN ('left', 'right')").fetchall()
    for prompt, left, right, winner, left_reply, right_reply in votes:
        if {left, right} - names or not (left_reply and right_reply):
            continue
        reference = references.get(prompt.strip())
        if reference is not None:
            a, b = measure.score(left_reply, reference), measure.score(right_reply, reference)
        elif phrases:
            a, b = (sum(scoring.carries(r, p) for p in phrases) for r in (left_reply,
                                                                           right_reply))
        else:
            continue
        if a != b:
            scored += 1
            agree += (a > b) == (winner == "left")
    rates = [r for r in runs.win_rates(ctx.store) if r["adapter"] in names]
    return {"scored": scored, "agree": agree,
            "agreement": _pct(agree / scored) if scored else None, "win_rates": rates}


class ReportWorker:
    """Computes the report card of every successful run that has none, newest first, in
    a background thread of the web app; the chat stays usable (it shares the model)."""

    POLL_S = 3.0

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.current: dict | None = None
        """What is being computed: {"adapter", "done", "total", "step"}."""
        self.failed: dict[int, str] = {}
        self._wake = threading.Event()

    def start(self) -> ReportWorker:
        threading.Thread(target=self._loop, name="report-cards", daemon=True).start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while True:
            run = self._next_run()
            if run is None:
                self._wake.wait(self.POLL_S)
                self._wake.clear()
                continue
            self.current = {"adapter": run["adapter"], "done": 0, "total": 0, "step": ""}
            try:
                evaluate(self.ctx, run["adapter"], self._progress)
            except Exception as error:  # noqa: BLE001 - shown on the card, not lost
                self.failed[run["id"]] = f"{type(error).__name__}: {error}"
            finally:
                self.current = None

    def _progress(self, done: int, total: int, step: str) -> None:
        if self.current is not None:
            self.current.update(done=done, total=total, step=step)

    def _next_run(self) -> dict | None:
        reported = reports.reported_runs(self.ctx.store)
        names = models.adapter_names(self.ctx)
        for run in runs.list_runs(self.ctx.store, 20):
            if run["status"] == "succeeded" and run["adapter"] in names and \
                    run["id"] not in reported and run["id"] not in self.failed:
                return run
        return None
