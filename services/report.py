"""The report card: was the adapter worth it? Every adapter is measured, on examples it
never saw (storage/placement.py), against what a prompt or a few examples in the prompt
would have done, with paired tests that never claim more than the data, and on the
general check (services/general.py: what it forgot); a verdict sums it up (the rules
are in docs/report-card.md).

evaluate() computes a card and stores it on the run; ReportWorker does so by itself,
in the background of the web app, after every successful run."""

from __future__ import annotations

import hashlib
import json
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

from core.adapters import BASE, WITH_EXAMPLES, WITH_FACTS, split_name
from core.chatformat import token_count
from core.errors import UserError
from services import claims, contenders, facts, fewshot, general, models, scoring
from services.context import Context
from services.names import AS_IS, Names
from storage import examples, placement, reports, runs
from storage.conversations import now
from trainer.objectives import OBJECTIVES

MIN_TEST = 5
"""Fewer test examples than this give a report that says so instead of scores."""
SHIFT = 0.2
"""For closeness measures, a change this big against the base counts as a flip."""
MEASURE_KEY = "report_measure"
"""The setting naming what decides the verdict (one of MEASURES), or auto."""
MEASURES = {"style": "style", "chrf": "closeness to your wording (chrF)",
            "exact": "the exact label",
            "json": "the JSON fields"}
"""What can decide a verdict, as a user reads it."""
BATCH = 16
"""Test answers generated at once."""
TIME_LEFT_AFTER = 10
"""Answers measured before the card's progress says how long is left (a pace to go by)."""
INSTANT = 0.05
"""Seconds an answer takes at least when it is written, not read from a cache."""

Progress = Callable[[int, int, str], None]


class NothingToEvaluate(UserError):
    pass


class UnknownMeasure(UserError):
    pass


def chosen_measure(ctx: Context) -> str:
    return runs.get_setting(ctx.store, MEASURE_KEY, "auto")


def choose_measure(ctx: Context, name: str) -> str:
    """What decides the verdicts of the cards from now on: auto (the style when the
    references share one, else the measure their form calls for) or one of MEASURES."""
    if name != "auto" and name not in MEASURES:
        raise UnknownMeasure(f"The verdict can be decided by auto, {', '.join(MEASURES)}; "
                             f"not {name!r}.")
    runs.set_setting(ctx.store, MEASURE_KEY, name)
    return name


def lineup(ctx: Context, adapter: str, run: dict | None, in_use: str | None = None,
           helped: str = "") -> tuple[list[str], list[dict]]:
    """(contenders to measure, those skipped with the reason); `in_use`: the older
    adapter new chats use, measured beside the new one. With facts (`helped`, from
    contenders.helped), the base and the adapter with her facts and examples too."""
    names = [BASE]
    skipped = []
    for name, baseline in contenders.BASELINES.items():
        why = baseline.missing(ctx)
        if why:
            skipped.append({"name": name, "why": why})
        else:
            names.append(name)
    with_facts = [helped] if WITH_FACTS in helped else []
    names += [contenders.EXAMPLES] + [BASE + h for h in with_facts]
    for beside in (_sft_only_beside(ctx, run), in_use):
        if beside and beside not in names:
            names.append(beside)
    return names + [adapter + h for h in ["", WITH_EXAMPLES] + with_facts], skipped


def in_use_beside(ctx: Context, adapter: str, run: dict | None) -> str | None:
    """The adapter new chats use (as they use it: with or without the user's facts and
    examples), when it is older than `adapter`'s run: the card measures it too, and the
    new run takes its place only when it does as well."""
    in_use = models.chat_default(ctx)
    served = split_name(in_use)[0]
    if run is None or served == adapter or served not in models.adapter_names(ctx):
        return None
    used = runs.run_of_adapter(ctx.store, served)
    return in_use if used is not None and used["id"] < run["id"] else None


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
    baselines on its test set, and ask both the general check; returns the report card
    (and stores it on the run)."""
    adapter = models.resolve_adapter(ctx, adapter or models.LATEST, "to evaluate")
    run = runs.run_of_adapter(ctx.store, adapter)
    chosen_before = runs.default_adapter(ctx.store)  # a choice made meanwhile stays
    in_use = in_use_beside(ctx, adapter, run)
    # read once, before measuring: facts added meanwhile change nothing on this card
    in_use_now, helped = in_use or models.chat_default(ctx), contenders.helped(ctx)
    tests = placement.test_set(ctx.store, run, runs.run_of_adapter(
        ctx.store, split_name(in_use)[0]) if in_use else None)
    cases = tests.cases
    names, skipped = lineup(ctx, adapter, run, in_use, helped)
    scored = len(cases) >= MIN_TEST
    questions = general.questions(ctx)
    corrections = _trained_corrections(ctx, run)
    steps = _Steps(progress, len(names) * len(cases) * scored + 2 * len(questions)
                   + len(corrections))
    card: dict = {"adapter": adapter, "run": run["id"] if run else None,
                  "created_at": now(), "n": len(cases), "skipped": skipped,
                  "test_examples": {s: sum(t.split == s for t in cases)
                                    for s in ("held_out", "test_only")},
                  "left_out": tests.left_out, "test_set": test_set_id(cases),
                  "contenders": [], "rows": [], "measure": None, "measures": [],
                  "style_phrases": [], "votes": {}}
    steps.add(0, "starting")
    if scored:
        card.update(_measure(ctx, names, cases, run, chosen_measure(ctx), steps))
        card["votes"] = votes_beside(ctx, card, cases)
        card["facts_check"] = facts_check(ctx, card)
    card["general"] = general.check(ctx, questions, [BASE, adapter], steps.add)
    card["corrections"] = _corrections_learned(
        ctx, adapter, corrections, steps,
        card["style_phrases"] or scoring.style_phrases([e.messages[-1]["content"]
                                                        for e in corrections]))
    card["in_use"], card["helped"] = in_use_now, helped
    card["in_use_general"] = _general_entry(ctx, in_use)
    steps.finish()
    card["verdict"] = verdict(card, adapter) if scored else \
        f"{too_few(adapter, len(cases))} {forgetting(card, adapter)}"
    if save and run is not None:
        earlier = cards_by_run(ctx).get(run["id"])
        newest = runs.latest_adapter(ctx.store)
        decided = None if earlier or newest != adapter else \
            runs.settle_default(ctx.store, decide_in_use(card, run), chosen_before)
        if not earlier and newest != adapter:
            # a newer run finished first: its card decides, and this one says so
            decided = {"run": run["id"], "adapter": adapter, "in_use": in_use_now,
                       "adopted": False, "at": now(), "why": "newer", "newer": newest}
        # measured again: the decision its first card made stays on the card
        card["decision"] = decided or (earlier or {}).get("decision")
        reports.save_report(ctx.store, run["id"], adapter, card)
    return card


def _general_entry(ctx: Context, in_use: str | None) -> dict | None:
    """The general check of the adapter in use, from its own newest card (the base's
    answers are the same on every card, so its flips compare with this card's)."""
    served = split_name(in_use)[0] if in_use else BASE
    found = card_for(ctx, served) if served != BASE else None
    return next((m for m in ((found or {}).get("general") or {}).get("models", [])
                 if m["name"] == served), None)


def _trained_corrections(ctx: Context, run: dict | None) -> list[runs.RunExample]:
    """The corrections `run` trained on that kept the answer they replaced."""
    if run is None:
        return []
    return [e for e in runs.run_examples(ctx.store, run["id"], "train")
            if e.source == "corrected" and e.rejected]


LEARNED = 0.5
"""A correction counts as learned when the answer holds at least this much of it (chrF,
her voice's shared phrases left out): "Yes, we do." against "Sorry, we don't deliver:
pick-up only." shares the sign-off and little else, and scores about 0.1."""


def _corrections_learned(ctx: Context, adapter: str, corrections: list[runs.RunExample],
                         steps: _Steps, phrases: list[str]) -> dict:
    """Did the adapter learn the corrections it trained on? Each prompt is asked again,
    greedy; an answer is "still answered the old way" unless it holds most of her
    correction (LEARNED), leaving out the phrases her answers share (`phrases`: a
    sign-off says nothing about whether the answer changed), and is closer to it than to
    the answer she corrected."""
    if not corrections:
        return {"n": 0, "old_way": []}
    fixes = [e.messages[-1]["content"] for e in corrections]
    answers = ctx.engine.reply_many([e.messages[:-1] for e in corrections], adapter,
                                    _budget(ctx, fixes), BATCH)
    steps.add(len(corrections), "your corrections")

    def bare(text: str) -> str:
        for phrase in phrases:
            text = text.replace(phrase, "")
        return text.strip()

    def learned(answer: str, fix: str, old: str) -> bool:
        mine = scoring.chrf(bare(answer), bare(fix))
        return mine >= LEARNED and mine > scoring.chrf(bare(answer), bare(old))

    old_way = [{"id": e.example_id, "prompt": e.messages[-2]["content"], "answer": answer,
                "correction": fix}
               for e, fix, answer in zip(corrections, fixes, answers)
               if not learned(answer, fix, e.rejected or "")]
    return {"n": len(corrections), "old_way": old_way}


def decide_in_use(card: dict, run: dict) -> dict:
    """Does `run` replace the model new chats use (the card's `in_use`), and in which
    form (bare, or with the user's facts and examples)? The form that did best on the
    card's deciding measure plus its facts check (facts_check), ties to the cheaper
    (fewer prompt tokens), replaces it when it does at least as well; a card with too few
    test examples to score replaces only the plain model, with the user's facts and
    examples. Recorded once per run, on its first card, by storage/runs.settle_default,
    with what a person weighs before relying on it: the card's answer (yes / no / even /
    too_few: `answer`), its number of tests, what it forgot, and the corrections it still
    answers the old way."""
    adapter, in_use = card["adapter"], card["in_use"]
    scores = {c["name"]: c["score"] for c in card.get("contenders", [])}
    agreed = (card.get("facts_check") or {}).get("scores") or {}
    cost = {c["name"]: c.get("prompt_tokens", 0) for c in card.get("contenders", [])}

    def total(name: str) -> float | None:
        return None if scores.get(name) is None else scores[name] + agreed.get(name, 0.0)

    forms = [name for name in scores if split_name(name)[0] == adapter]
    form = max(forms, key=lambda n: (total(n), -cost[n]), default=None)
    ours, theirs = (total(form) if form else None), total(in_use)
    mine: dict = next((m for m in (card.get("general") or {}).get("models", [])
                       if m["name"] == adapter), {})
    # the plain model's answers are the check's reference: it has no flips of its own
    theirs_general = card.get("in_use_general") or (
        {"name": BASE, "flips": []} if split_name(in_use)[0] == BASE else None)
    worse, better, p = general.versus(mine, theirs_general) \
        if mine and theirs_general else (0, 0, 1.0)
    if ours is not None and theirs is not None:
        adopted, why = ours >= theirs, "scores"
        # as good on her examples is not enough when it forgot more than the model in use
        # (a tie), or clearly more (a sign test over the questions they answer differently)
        if adopted and worse > better and (ours == theirs or p < scoring.ALPHA):
            adopted, why = False, "forgot_more"
    else:
        form = adapter + card.get("helped", "")
        adopted, why = split_name(in_use)[0] == BASE, \
            "too_few" if ours is None else "not_on_card"
        # too few tests to score it: it replaces the plain model unless it clearly forgot
        if adopted and worse > better and p < scoring.ALPHA:
            adopted, why = False, "forgot_more"
    learned = card.get("corrections") or {}
    old_way = len(learned.get("old_way") or [])
    if adopted and learned.get("n") and 2 * old_way >= learned["n"]:
        # her corrections are what she taught by hand: a model that still answers most
        # of them the old way does not replace one she relies on, whatever its score
        adopted, why = False, "old_way"
    return {"run": run["id"], "adapter": form, "in_use": in_use, "adopted": adopted,
            "at": now(), "why": why, "score": scores.get(form), "their_score": scores.get(in_use),
            "versus": {"worse": worse, "better": better},
            "facts": agreed.get(form), "their_facts": agreed.get(in_use),
            "measure": (card.get("measure") or {}).get("name"),
            "forgot": mine.get("lost", 0) if mine.get("forgot") else 0,
            "general": (card.get("general") or {}).get("n", 0),
            # the caveats a person weighs before relying on it (the Train tab's line)
            "answer": answer(card)["answer"], "tests": card.get("n", 0),
            "old_way": old_way, "corrections": learned.get("n", 0)}


def caveated(decided: dict) -> bool:
    """Did a run take over with something against it on its card: an answer other than
    "yes" (too few tests, or an option without training as good or better), general
    questions it forgot, corrections it still answers the old way? A decision recorded
    before these were (a key missing) counts as unknown, so as caveated."""
    return not (decided.get("answer") == "yes" and decided.get("forgot") == 0
                and decided.get("old_way") == 0)


def facts_check(ctx: Context, card: dict) -> dict:
    """Of the card's test examples the user marked as a facts check, how many answers
    of each contender agree with her facts: they state no price, number or time her
    facts, the question or her answer do not back, and leave out none of her answer's
    (claims.FLAGGED: the kinds whose flags were right). {"n", "scores": {name:
    percent}, "ids"}."""
    checks = {e.id for e in examples.facts_checks(ctx.store)}
    rows = [row for row in card["rows"] if row["id"] in checks]
    if not rows:
        return {"n": 0, "scores": {}, "ids": []}
    known = [f.text for f in facts.list_facts(ctx)]

    def flagged(text: str, support: list[str]) -> bool:
        return any(c.kind in claims.FLAGGED for c in claims.unsupported(text, support))

    def agrees(answer: str, row: dict) -> bool:
        return not flagged(answer, known + [row["prompt"], row["reference"]]) \
            and not flagged(row["reference"], [answer, row["prompt"]])

    names = [c["name"] for c in card["contenders"]]
    return {"n": len(rows), "ids": [row["id"] for row in rows],
            "scores": {name: _pct(scoring.mean([float(agrees(row["answers"][name]["text"], row))
                                                for row in rows])) for name in names}}


def last_decision(ctx: Context) -> dict | None:
    """What the newest decided run's card decided, or None before any."""
    found = runs.get_setting(ctx.store, runs.DECISION_KEY, "")
    return json.loads(found) if found else None


class _Steps:
    """Progress across the card's parts: "answers 12 of 240, about 9 min left: run-3"
    (what comes after the colon is the technical name of the part)."""

    def __init__(self, progress: Progress | None, total: int):
        self.progress, self.total, self.done = progress, total, 0
        self.last = time.monotonic()
        self.paced, self.seconds = 0, 0.0
        """Answers that took time to write, and that time: answers kept from an earlier
        card (the base's) arrive at once and would make the pace look quicker."""

    def add(self, count: int, step: str) -> None:
        self.done += count
        now = time.monotonic()
        if now - self.last >= INSTANT * count:
            self.paced, self.seconds = self.paced + count, self.seconds + now - self.last
        self.last = now
        if self.progress:
            self.progress(self.done, self.total,
                          f"answers {self.done} of {self.total}{self._left()}: {step}")

    def _left(self) -> str:
        """The time left at the pace so far, once a few answers give a pace."""
        if self.paced < TIME_LEFT_AFTER or self.done >= self.total:
            return ""
        minutes = self.seconds / self.paced * (self.total - self.done) / 60
        return f", about {round(minutes)} min left" if minutes >= 1 else \
            ", less than a minute left"

    def finish(self) -> None:
        if self.progress:
            self.progress(self.total, self.total, "done")


def test_set_id(cases: list[placement.TestCase]) -> str:
    """Which test set a card used: cards compare runs only when these are equal."""
    canonical = json.dumps(sorted([c.id, c.reference] for c in cases), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def cards_by_run(ctx: Context) -> dict[int, dict]:
    """Run id -> its newest report card."""
    return reports.reported_runs(ctx.store)


def adapter_score(card: dict) -> dict | None:
    """The adapter's own row of its card (score, ci_low, ci_high), if it was scored."""
    return next((c for c in card.get("contenders", []) if c["name"] == card["adapter"]), None)


def card_for(ctx: Context, adapter: str) -> dict | None:
    """The adapter's newest report card, if it has one."""
    return reports.latest_report(ctx.store, adapter)


def too_few(adapter: str, n: int, say: Names = AS_IS) -> str:
    # Where to click, not a command: the web app shows this too (the command line's
    # `import --test` is in its --help).
    return (f"Only {n} test example{'s' * (n != 1)}: too few to judge {say(adapter)}. A run "
            f"sets some of your examples aside for testing once it has 20 (held out); or "
            f"mark examples *for testing only* in the Examples tab (one by one, or a whole "
            f"import) to reach {MIN_TEST}.")


def _measure(ctx: Context, names: list[str], tests: list[placement.TestCase],
             run: dict | None, wanted: str, steps: _Steps) -> dict:
    references = [t.reference for t in tests]
    phrases = scoring.style_phrases(references)
    measures = scoring.measures_for(references, phrases)
    decides = _deciding(measures, wanted)
    pool = contenders.run_pool(ctx, run) if run else contenders.live_pool(ctx)
    budget = _budget(ctx, references)
    answers = {name: _answers(ctx, models.contender(ctx, name), tests, pool, budget,
                              measures, steps) for name in names}
    return {"measure": {"name": decides.name, "why": decides.why, "binary": decides.binary,
                        "chosen": wanted},
            "measures": [{"name": m.name, "why": m.why} for m in measures],
            "style_phrases": phrases,
            "contenders": [_summary(name, answers[name], decides, measures, phrases, run)
                           for name in names],
            "rows": _rows(tests, answers, decides)}


def _deciding(measures: list[scoring.Measure], wanted: str) -> scoring.Measure:
    """The measure the user chose, else (auto) the style when the references share one,
    else the measure their form calls for."""
    found = {m.name: m for m in measures}
    if wanted in found:
        return found[wanted]
    auto = found.get("style") or measures[0]
    if wanted == "auto":
        return auto
    return replace(auto, why=f"{auto.why} (you chose {MEASURES.get(wanted, wanted)} to "
                             "decide, but your answers give it nothing to measure)")


def _budget(ctx: Context, references: list[str]) -> int:
    """Answers end a little past the longest reference: a longer one gains nothing on any
    measure, and rambling greedy answers are what made cards slow."""
    longest = max(len(ctx.engine.tokenizer(r, add_special_tokens=False)["input_ids"])
                  for r in references)
    return max(32, min(256, longest + longest // 2 + 8))


def _answers(ctx: Context, chosen: contenders.Contender, tests: list[placement.TestCase],
             pool: fewshot.ExamplePool, budget: int, measures: list[scoring.Measure],
             steps: _Steps) -> list[dict]:
    """Each test's answer by `chosen` (generated in batches), scored by every measure."""
    prompts = [contenders.build_prompt(ctx, chosen, test.prompt, pool) for test in tests]
    fits = [ctx.engine.fits(prompt, budget) for prompt in prompts]
    started = time.perf_counter()
    texts = iter(ctx.engine.reply_many([p for p, ok in zip(prompts, fits) if ok],
                                       chosen.adapter, budget, BATCH))
    seconds = (time.perf_counter() - started) / max(1, sum(fits))
    found = []
    for test, prompt, ok in zip(tests, prompts, fits):
        # e.g. a long baseline prompt on a short-context model: no answer, scored 0
        text = next(texts) if ok else "(no answer: the prompt does not fit the model's context)"
        found.append({"text": text, "seconds": seconds if ok else 0.0,
                      "scores": {m.name: m.score(text, test.reference) if ok else 0.0
                                 for m in measures},
                      "prompt_tokens": token_count(ctx.engine.tokenizer, prompt)})
    steps.add(len(tests), chosen.name)
    return found


def _summary(name: str, answers: list[dict], decides: scoring.Measure,
             measures: list[scoring.Measure], phrases: list[str], run: dict | None) -> dict:
    scores = [a["scores"][decides.name] for a in answers]
    low, high = scoring.interval(scores)
    row = {"name": name, "score": _pct(scoring.mean(scores)), "ci_low": _pct(low),
           "ci_high": _pct(high), "n": len(scores),
           "scores": {m.name: _pct(scoring.mean([a["scores"][m.name] for a in answers]))
                      for m in measures},
           "prompt_tokens": round(scoring.mean([a["prompt_tokens"] for a in answers])),
           "latency_ms": round(1000 * statistics.median(
               [a["seconds"] for a in answers if a["seconds"]] or [0.0])),
           "style": {p: _pct(scoring.mean([float(scoring.carries(a["text"], p))
                                           for a in answers])) for p in phrases}}
    if run and name == run.get("adapter"):
        row["training_s"] = run["metrics"].get("train_seconds")
    return row


def _rows(tests: list[placement.TestCase], answers: dict[str, list[dict]],
          decides: scoring.Measure) -> list[dict]:
    rows = []
    for i, test in enumerate(tests):
        base = answers[BASE][i]["scores"][decides.name]
        row = {"id": test.id, "source": test.source, "split": test.split,
               "prompt": test.prompt[-1]["content"], "reference": test.reference,
               "answers": {name: {"text": a[i]["text"],
                                  "score": _pct(a[i]["scores"][decides.name]),
                                  "scores": {m: _pct(v) for m, v in a[i]["scores"].items()}}
                           for name, a in answers.items()},
               "flips": {}}
        for name, a in answers.items():
            flip = _flip(decides, base, a[i]["scores"][decides.name])
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


# The verdict, by the rules docs/report-card.md states. `say` names the models: as they are for
# the command line and the card's JSON, in plain words for the web app (services/names.py).

def verdict(card: dict, adapter: str, say: Names = AS_IS) -> str:
    """One paragraph that never claims more than the test set supports: a difference is
    called only when a paired test (sign test for right/wrong, permutation test for
    closeness), Holm-adjusted over the baselines, puts it beyond chance."""
    measure = card.get("measure") or {}
    scores, summary, baselines = _scored(card)
    n, need = card["n"], scoring.fewest_for_a_clear_result(len(baselines))
    on = f" on {measure_words(measure.get('name'), say)}" if measure.get("name") in MEASURES \
        else ""
    if n < need:
        best = max(baselines, key=lambda b: summary[b]["score"])
        line = (f"Only {n} test examples: too few for a clear result even if {say(adapter)} "
                f"won every one (against {len(baselines)} option"
                f"{'s' * (len(baselines) > 1)} without training that takes {need}). Mark "
                f"{need - n} more examples as test only in the Examples tab. So far{on}: "
                f"{summary[adapter]['score']:.0f} for {say(adapter)}, "
                f"{summary[best]['score']:.0f} for the best option without training, "
                f"{say(best)}.")
    else:
        line = _compared(adapter, baselines, _p_values(card, adapter, scores, baselines),
                         scores, summary, n, on, say)
    line += _other_measures(card, adapter, baselines, say)
    broke = [row["id"] for row in card["rows"] if row["flips"].get(adapter) == "broke"]
    if broke:
        line += (f" {say.first(adapter)} is worse than {say(BASE)} on example"
                 f"{'s' * (len(broke) > 1)} {', '.join(f'#{i}' for i in broke)}.")
    return f"{line} {forgetting(card, adapter, say)}".strip()


def answer(card: dict) -> dict:
    """The card's answer to "was it worth it?", the first thing a person reads:
    {"answer": "yes" (beats every option without training beyond chance) | "no" (one of
    them does better beyond chance) | "even" (the best of them cannot be told apart) |
    "too_few", "rival": the option without training it is weighed against, "forgot":
    whether the general check found a loss beyond chance}. The same rules as `verdict`."""
    adapter = card["adapter"]
    mine: dict = next((m for m in (card.get("general") or {}).get("models", [])
                       if m["name"] == adapter), {})
    found = {"answer": "too_few", "rival": None, "forgot": bool(mine.get("forgot"))}
    if not card.get("contenders") or not card.get("rows"):
        return found
    scores, summary, baselines = _scored(card)
    best = max(baselines, key=lambda b: summary[b]["score"])
    if card["n"] < scoring.fewest_for_a_clear_result(len(baselines)):
        return {**found, "rival": best}
    p = _p_values(card, adapter, scores, baselines)
    beaten, better = _standing(baselines, p, summary, summary[adapter]["score"])
    if len(beaten) == len(baselines):
        return {**found, "answer": "yes", "rival": best}
    if better:
        return {**found, "answer": "no",
                "rival": max(better, key=lambda b: summary[b]["score"])}
    return {**found, "answer": "even", "rival": _rival(baselines, beaten, summary)}


def _scored(card: dict) -> tuple[dict[str, list[float]], dict[str, dict], list[str]]:
    """(each model's per-example scores, each model's summary, the options without
    training on the card)."""
    scores = {name: [row["answers"][name]["score"] for row in card["rows"]]
              for name in card["rows"][0]["answers"]}
    summary = {c["name"]: c for c in card["contenders"]}
    return scores, summary, [n for n in scores
                             if n in contenders.BASELINES or split_name(n)[0] == BASE]


def _p_values(card: dict, adapter: str, scores: dict, baselines: list[str]) -> dict:
    binary = (card.get("measure") or {}).get("binary", False)
    return scoring.holm({b: scoring.paired_p(scores[adapter], scores[b], binary)
                         for b in baselines})


def _standing(baselines: list[str], p: dict[str, float], summary: dict,
              mine: float) -> tuple[list[str], list[str]]:
    """(the options without training the adapter beats beyond chance, those that beat it)."""
    beaten = [b for b in baselines if p[b] < scoring.ALPHA and summary[b]["score"] < mine]
    better = [b for b in baselines if p[b] < scoring.ALPHA and summary[b]["score"] > mine]
    return beaten, better


def _rival(baselines: list[str], beaten: list[str], summary: dict) -> str:
    """The option a user would take instead: the best of those not clearly beaten (the
    cheapest of equals)."""
    undecided = [b for b in baselines if b not in beaten]
    return min(undecided, key=lambda b: (-summary[b]["score"], summary[b]["prompt_tokens"]))


def measure_words(name: str | None, say: Names = AS_IS) -> str:
    """What decided, as a sentence names it: without the metric's name for a person's
    eyes ("closeness to your wording"), with it for the command line."""
    words = MEASURES.get(name or "", name or "")
    return words.split(" (")[0] if say.plain_words else words


def retold(card: dict, say: Names) -> str:
    """The card's verdict with the models named by `say` (the web app's plain words); the
    card itself keeps the one with the technical names."""
    adapter = card["adapter"]
    if card.get("contenders") and card.get("rows"):
        return verdict(card, adapter, say)
    return f"{too_few(adapter, card['n'], say)} {forgetting(card, adapter, say)}".strip()


def chance(p: float, what: str = "gap", say: Names = AS_IS) -> str:
    """A p-value in words, the number after it for the command line: "chance alone gives
    a gap this big 2.1% of the time: p = 0.021"."""
    percent = 100 * p
    shown = ("under 0.1%" if percent < 0.1 else
             f"{percent:.1f}%" if percent < 10 else f"{percent:.0f}%")
    said = f"chance alone gives a {what} this big {shown} of the time"
    return said if say.plain_words else f"{said}: p = {p:.3f}"


def _compared(adapter: str, baselines: list[str], p: dict[str, float], scores: dict,
              summary: dict, n: int, on: str, say: Names = AS_IS) -> str:
    mine = summary[adapter]["score"]
    beaten, better = _standing(baselines, p, summary, mine)
    if len(beaten) == len(baselines):
        best = max(baselines, key=lambda b: summary[b]["score"])
        adjusted = "" if say.plain_words else \
            f", adjusted for {len(baselines)} comparison{'s' * (len(baselines) > 1)}"
        return (f"{say.first(adapter)} beats every option without training beyond "
                f"chance{on}, on {n} test examples: {mine:.0f} against "
                f"{summary[best]['score']:.0f} for the best of them, {say(best)} "
                f"({chance(p[best], say=say)}{adjusted}).")
    if better:
        best = max(better, key=lambda b: summary[b]["score"])
        return (f"{say.first(best)} does better than {say(adapter)} beyond chance{on}, on "
                f"{n} test examples: {summary[best]['score']:.0f} against {mine:.0f} "
                f"({chance(p[best], say=say)}). Fine-tuning did not pay off here.")
    rival = _rival(baselines, beaten, summary)
    ahead = sum(a > b for a, b in zip(scores[adapter], scores[rival]))
    behind = sum(a < b for a, b in zip(scores[adapter], scores[rival]))
    extra = summary[rival]["prompt_tokens"] - summary[adapter]["prompt_tokens"]
    tokens = "" if say.plain_words else f" ({extra} more prompt tokens per request)"
    cost = (f"{say(rival)} needs no training, but reads {extra} more word pieces with every "
            f"question{tokens}" if extra > 0 else f"{say(rival)} needs no training")
    line = (f"{say.first(adapter)} and {say(rival)} cannot be told apart{on} with {n} test "
            f"examples ({mine:.0f} against {summary[rival]['score']:.0f}; {say(adapter)} "
            f"ahead on {ahead}, behind on {behind}; {chance(p[rival], say=say)}); {cost}.")
    if beaten:
        line += (f" {say.first(adapter)} does beat {' and '.join(say(b) for b in beaten)} "
                 "beyond chance.")
    return line


def _other_measures(card: dict, adapter: str, baselines: list[str],
                    say: Names = AS_IS) -> str:
    """The measures that did not decide, a sentence each: " On style: 100 for run-1, 20
    for base+examples."""
    decided = (card.get("measure") or {}).get("name")
    parts = []
    for measure in card.get("measures", []):
        if measure["name"] == decided:
            continue
        by = {c["name"]: c["scores"][measure["name"]] for c in card["contenders"]}
        best = max(baselines, key=lambda b: by[b])
        parts.append(f" On {measure_words(measure['name'], say)}: {by[adapter]:.0f} for "
                     f"{say(adapter)}, {by[best]:.0f} for {say(best)}.")
    return "".join(parts)


def forgetting(card: dict, adapter: str, say: Names = AS_IS) -> str:
    """What the general check says, in one sentence."""
    block = card.get("general")
    if not block:
        return ""
    by = {m["name"]: m for m in block["models"]}
    mine, base = by[adapter], by[BASE]
    if mine["forgot"]:
        return (f"{say.first(adapter)} forgot things {say(BASE)} knew: {mine['lost']} of "
                f"{block['n']} general questions {say(BASE)} got right it now gets wrong (it "
                f"gained {mine['gained']}; {chance(mine['p'], 'loss', say)}).")
    return (f"General knowledge: no clear loss ({base['right']} of {block['n']} right for "
            f"{say(BASE)}, {mine['right']} for {say(adapter)}).")


def votes_beside(ctx: Context, card: dict, tests: list[placement.TestCase]) -> dict:
    """The user's votes between models of this card, and how often the automatic score
    agrees with them. A vote's answers are scored against the reference when its prompt
    is a test example's, else by the style phrases (when the references have some). The
    votes it could not score are counted by why (UNSCORED), so that "4 of the 4 it could
    score" after 5 votes says what became of the fifth."""
    names = {c["name"] for c in card["contenders"]}
    references = {t.prompt[-1]["content"].strip(): t.reference for t in tests}
    measure = scoring.choose_measure([t.reference for t in tests])
    scored = agree = 0
    unscored: Counter = Counter()
    for prompt, left, right, winner, left_reply, right_reply in runs.votes_with_replies(
            ctx.store):
        found = _vote_scores(names, (left, right), winner, (left_reply, right_reply),
                             references.get(prompt.strip()), measure, card["style_phrases"])
        if isinstance(found, str):
            unscored[found] += 1
            continue
        scored += 1
        agree += (found[0] > found[1]) == (winner == "left")
    rates = [r for r in runs.win_rates(ctx.store) if r["adapter"] in names]
    return {"scored": scored, "agree": agree,
            "agreement": _pct(agree / scored) if scored else None, "win_rates": rates,
            "unscored": dict(unscored)}


UNSCORED = ("other_models", "no_winner", "no_answers", "nothing_to_score", "same_score")
"""Why a vote was not scored: a model not on this card, a tie or both bad, answers an
older version did not store, a prompt that is no test example and no style phrase to
look for, or both answers scoring the same (the score picks no winner)."""


def _vote_scores(names: set[str], pair: tuple[str, str], winner: str,
                 replies: tuple[str, str], reference: str | None, measure: scoring.Measure,
                 phrases: list[str]) -> tuple[float, float] | str:
    """Both answers' scores, or why the vote cannot be scored (one of UNSCORED)."""
    if set(pair) - names:
        return "other_models"
    if winner not in ("left", "right"):
        return "no_winner"
    if not all(replies):
        return "no_answers"
    if reference is not None:
        a, b = (measure.score(reply, reference) for reply in replies)
    elif phrases:
        a, b = (sum(scoring.carries(reply, p) for p in phrases) for reply in replies)
    else:
        return "nothing_to_score"
    return "same_score" if a == b else (a, b)


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

    @staticmethod
    def how_far(current: dict) -> str:
        """How far a card is, from `current`: "answers 40 of 240, about 9 min left",
        without the technical name its step carries."""
        if not current.get("total"):
            return "starting"
        return current.get("step", "").split(":")[0] or \
            f"answers {current.get('done') or 0} of {current['total']}"

    def failure(self, adapter: str) -> str | None:
        """Why the card of `adapter` could not be computed, if it could not."""
        run = runs.run_of_adapter(self.ctx.store, adapter)
        return self.failed.get(run["id"]) if run else None

    def forget_failure(self, adapter: str) -> None:
        run = runs.run_of_adapter(self.ctx.store, adapter)
        if run:
            self.failed.pop(run["id"], None)

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


REPLAYED = 12
"""How many of a card's prompts an export replays: each costs a greedy answer per file."""


def replay_prompts(ctx: Context, adapter: str) -> list[str]:
    """What an export replays to check itself: the prompts of the adapter's report card,
    then (a small card, or none yet) the general check's questions; REPLAYED in all."""
    card = reports.latest_report(ctx.store, adapter)
    prompts = [row["prompt"] for row in (card or {}).get("rows", [])]
    return (prompts + [q.text for q in general.shipped()])[:REPLAYED]
