"""Was it worth it? The measures on known answers, the intervals on known data, the
verdict rules on constructed cards, the contenders' prompts (no test example can leak
into them), and the report card end to end on the tiny model."""

import json

import pytest

import app
from services import contenders, models, names, report, scoring
from services.context import Context
from storage import examples, placement, runs
from trainer.config import TrainConfig

from helpers import fill, voice_examples


def test_the_measure_is_picked_from_the_references():
    assert scoring.choose_measure(["billing", "shipping", "billing", "account",
                                   "technical", "billing"]).name == "exact"
    assert scoring.choose_measure(['{"name": "Anna", "quantity": 2}'] * 5).name == "json"
    prose = ["We open at nine on weekdays.", "Yes, we repair e-bikes of every brand.",
             "A tune-up takes a day.", "Rentals start at 35 euros.", "We are on Canal St."]
    assert scoring.choose_measure(prose).name == "chrf"


def test_the_measures_on_known_answers():
    assert scoring.exact_label(" Billing. ", "billing") == 1.0
    assert scoring.exact_label("It is billing", "billing") == 0.0
    wanted = '{"name": "Anna", "item": "vase", "quantity": 2}'
    assert scoring.json_fields('{"name": "Anna", "item": "vase", "quantity": 2}', wanted) == 1
    assert scoring.json_fields('{"name": "Anna", "item": "vase", "quantity": "2"}',
                               wanted) == pytest.approx(2 / 3)
    assert scoring.json_fields("Sure! Here is your JSON", wanted) == 0
    assert scoring.chrf("same text", "same text") == pytest.approx(1.0)
    assert scoring.chrf("something else", "same text") < 0.3


def test_style_phrases_are_what_most_references_share():
    references = [f"Answer number {i}. — Team Lumen 🚲" for i in range(8)] + ["No sign-off."]
    assert scoring.style_phrases(references)[0] == "— Team Lumen 🚲"
    assert scoring.carries("Sure thing — team  lumen 🚲", "— Team Lumen 🚲")
    assert scoring.style_phrases(["a b c", "d e f", "g h i"]) == []


def test_the_interval_on_known_data():
    # 5 right of 5 is no certainty: the Wilson interval (57 to 100), not "100 to 100"
    low, high = scoring.interval([1.0] * 5)
    assert high == 1.0 and 0.5 < low < 0.6
    assert scoring.interval([1.0] * 10)[0] < 0.75
    low, high = scoring.interval([1.0] * 5 + [0.0] * 5)
    assert 0.15 < low < 0.5 < high < 0.85
    low, high = scoring.difference_interval([1.0] * 10, [0.0] * 10)
    assert low == high == 1.0


def card(scores: dict[str, list[float]], tokens: dict[str, int] | None = None,
         binary: bool = False, general: dict | None = None) -> dict:
    """A report card with these per-example scores (0-100)."""
    n = len(next(iter(scores.values())))
    rows = [{"id": i + 1, "answers": {name: {"text": "", "score": s[i]}
                                      for name, s in scores.items()},
             "flips": {name: "broke" for name, s in scores.items()
                       if s[i] < 50 <= scores["base"][i]}} for i in range(n)]
    summary = [{"name": name, "score": scoring.mean(s),
                "prompt_tokens": (tokens or {}).get(name, 40)} for name, s in scores.items()]
    return {"n": n, "rows": rows, "contenders": summary, "general": general,
            "measure": {"name": "exact" if binary else "chrf", "binary": binary}}


def block(lost: int, gained: int) -> dict:
    """A general check where run-3 lost and gained these many of 100 questions."""
    p = scoring.sign_test(gained, lost)
    return {"n": 100, "users": 0, "models": [
        {"name": "base", "right": 90, "lost": 0, "gained": 0, "p": 1.0, "forgot": False},
        {"name": "run-3", "right": 90 - lost + gained, "lost": lost, "gained": gained,
         "p": p, "forgot": lost > gained and p < scoring.ALPHA}]}


def test_verdict_the_adapter_beats_every_baseline():
    line = report.verdict(card({"base": [0] * 12, "base+examples": [0, 100] * 6,
                                "run-3": [100] * 12}, binary=True), "run-3")
    assert line.startswith("run-3 beats every option without training beyond chance on the "
                           "exact label, on 12 test examples")
    assert "(chance alone gives a gap this big 3.1% of the time: p = 0.031, adjusted for 2 " \
        "comparisons)" in line


def test_the_answer_to_was_it_worth_it_follows_the_verdict_rules():
    """The headline a person reads first (yes / no / not clearly / too early) says what
    the verdict's paragraph says, never more."""
    wins = card({"base": [0] * 12, "base+examples": [0, 100] * 6, "run-3": [100] * 12},
                binary=True)
    loses = card({"base": [100] * 8, "run-3": [0] * 8})
    even = card({"base": [0] * 8, "base+examples": [100] * 7 + [0], "run-3": [100] * 8})
    few = card({"base": [0] * 3, "run-3": [100] * 3})
    for found, answer, rival in ((wins, "yes", "base+examples"), (loses, "no", "base"),
                                 (even, "even", "base+examples"), (few, "too_few", "base")):
        found["adapter"] = "run-3"
        assert report.answer(found) == {"answer": answer, "rival": rival, "forgot": False}
    wins["general"] = block(9, 1)
    assert report.answer(wins)["forgot"] is True


def test_plain_words_leave_the_statistics_to_the_details():
    from services.names import Names

    plain = Names({"run-3": "Your assistant", "base": "The plain model"}, plain_words=True)
    line = report.verdict(card({"base": [0] * 12, "base+examples": [0, 100] * 6,
                                "run-3": [100] * 12}), "run-3", plain)
    assert line.startswith("Your assistant beats every option without training beyond "
                           "chance on closeness to your wording, on 12 test examples")
    for technical in ("p = ", "chrF", "adjusted for", "run-3"):
        assert technical not in line, technical


def test_verdict_a_baseline_that_cannot_be_told_apart_says_what_it_costs():
    line = report.verdict(card({"base": [0] * 8, "base+examples": [100] * 7 + [0],
                                "run-3": [100] * 8},
                               {"base": 40, "base+examples": 430, "run-3": 40}), "run-3")
    assert line.startswith("run-3 and base+examples cannot be told apart on closeness to "
                           "your wording (chrF) with 8 test examples (100 against 88; run-3 "
                           "ahead on 1, behind on 0")
    assert ("base+examples needs no training, but reads 390 more word pieces with every "
            "question (390 more prompt tokens per request).") in line
    assert "run-3 does beat the base beyond chance." in line


def test_verdict_a_baseline_does_better():
    line = report.verdict(card({"base": [100] * 8, "run-3": [0] * 8}), "run-3")
    assert line.startswith("The base does better than run-3 beyond chance")
    assert line.endswith("run-3 is worse than the base on examples #1, #2, #3, #4, #5, #6, "
                         "#7, #8.")


def test_verdict_never_claims_more_than_the_test_set_supports():
    assert "too few to judge run-3" in report.too_few("run-3", 3)
    line = report.verdict(card({"base": [0, 100, 0, 100, 0, 100, 0],
                                "run-3": [100, 0, 100, 0, 100, 0, 100]}), "run-3")
    assert line.startswith("run-3 and the base cannot be told apart") and "beyond" not in line
    assert "match" not in line


def test_five_wins_of_five_are_not_called_certain():
    """5 of 5 is p = 0.06 in an exact sign test: too few, and the card says how many
    more test examples it takes."""
    scores = {"base": [0] * 5, "base+prompt": [0] * 5, "base+examples": [0] * 5,
              "run-1": [100] * 5}
    line = report.verdict(card(scores, binary=True), "run-1")
    assert line.startswith("Only 5 test examples: too few for a clear result even if run-1 "
                           "won every one (against 3 options without training that takes "
                           "7). Mark 2 more")
    assert "beyond" not in line
    assert scoring.sign_test(5, 0) == pytest.approx(0.0625)


def claims_a_difference(line: str) -> bool:
    return "beyond chance" in line


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("n", [5, 7, 10, 20, 50])
def test_no_difference_is_claimed_at_most_5_percent_of_the_time(n, binary, monkeypatch):
    """Simulated cards where every model is as good as every other: the verdict claims
    a difference (a win either way) in at most 5% of them. 400 simulated cards estimate
    that share to within a few points, so the test fails only when 5% is clearly
    exceeded (the count is beyond what a true 5% gives 99 times in 100): the bootstrap
    intervals the card used before claimed one in 7% to 20% of them."""
    import random

    from scipy.stats import binom

    # Fewer random sign patterns keep the test quick; the p-value stays valid for any
    # number of them ((hits + 1) / (patterns + 1)).
    monkeypatch.setattr(scoring, "PERMUTATIONS", 999)
    rng = random.Random(n * 10 + binary)
    trials, claimed = 400, 0
    for _ in range(trials):
        if binary:
            hardness = [rng.uniform(0.2, 0.8) for _ in range(n)]
            scores = {name: [100.0 * (rng.random() < h) for h in hardness]
                      for name in ("base", "base+prompt", "base+examples", "run-1")}
        else:
            level = [rng.uniform(0.2, 0.8) for _ in range(n)]
            scores = {name: [100 * min(1.0, max(0.0, x + rng.gauss(0, 0.15))) for x in level]
                      for name in ("base", "base+prompt", "base+examples", "run-1")}
        claimed += claims_a_difference(report.verdict(card(scores, binary=binary), "run-1"))
    assert claimed <= binom.ppf(0.99, trials, 0.05), f"{claimed} of {trials}"


@pytest.mark.parametrize("binary", [True, False])
def test_a_real_difference_is_found_at_50(binary):
    import random

    rng = random.Random(7)
    n = 50
    if binary:
        base = [100.0 * (rng.random() < 0.4) for _ in range(n)]
        scores = {"base": base, "base+examples": [100.0 * (rng.random() < 0.4) for _ in base],
                  "run-1": [100.0 * (rng.random() < 0.8) for _ in base]}
    else:
        level = [rng.uniform(0.2, 0.6) for _ in range(n)]
        scores = {"base": [100 * x for x in level],
                  "base+examples": [100 * (x + rng.gauss(0, 0.1)) for x in level],
                  "run-1": [100 * (x + 0.15 + rng.gauss(0, 0.1)) for x in level]}
    assert report.verdict(card(scores, binary=binary), "run-1").startswith(
        "run-1 beats every option without training beyond chance")


def test_the_verdict_is_decided_by_the_style_when_the_references_share_one():
    """The yoga studio's case: her answers end with a sign-off; wording alone had
    base+examples "match" run-1 while run-1 kept the sign-off on 8 of 8 and base+examples
    on 2."""
    answers = ["Mats are free.", "Park behind the studio.", "A class is $20.", "Sadly, no dogs.",
               "Showers are upstairs.", "Kids join at 12.", "Classes start at 7.", "Ana teaches."]
    references = [f"{answer} Breathe easy! - Willow Yoga" for answer in answers]
    phrases = scoring.style_phrases(references)
    measures = scoring.measures_for(references, phrases)
    assert [m.name for m in measures] == ["chrf", "style"] and measures[1].binary
    style = measures[1]
    assert style.score("Sure. Breathe easy!  - willow yoga", "") == 1.0
    assert report._deciding(measures, "auto").name == "style"
    assert report._deciding(measures, "chrf").name == "chrf"
    assert report._deciding(measures, "json").name == "style"  # nothing to measure: auto

    sign_off = [100.0] * 8
    scores = {"base": [0.0] * 8, "base+examples": [100.0, 100.0] + [0.0] * 6, "run-1": sign_off}
    shown = card(scores, binary=True)
    shown["measure"]["name"] = "style"
    shown["measures"] = [{"name": "chrf"}, {"name": "style"}]
    for row, wording in zip(shown["contenders"], (20, 27, 32)):
        row["scores"] = {"chrf": wording, "style": row["score"]}
    line = report.verdict(shown, "run-1")
    assert line.startswith("run-1 beats every option without training beyond chance on "
                           "style")
    assert "On closeness to your wording (chrF): 32 for run-1, 27 for base+examples." in line


def test_forgetting_is_named_when_beyond_chance():
    scores = {"base": [0] * 8, "run-3": [100] * 8}
    line = report.verdict(card(scores, binary=True, general=block(9, 1)), "run-3")
    assert line.endswith("run-3 forgot things the base knew: 9 of 100 general questions the "
                         "base got right it now gets wrong (it gained 1; chance alone gives "
                         "a loss this big 2.1% of the time: p = 0.021).")
    line = report.verdict(card(scores, binary=True, general=block(2, 1)), "run-3")
    assert line.endswith("General knowledge: no clear loss (90 of 100 right for the base, 89 "
                         "for run-3).")


def test_contenders_are_model_names_everywhere(ctx, store):
    fill(store, 16)
    assert models.model_names(ctx) == ["base", "base+examples"]
    contenders.set_baseline_prompt(ctx, "Sign every answer with Cheers, Brewster.")
    assert models.model_names(ctx) == ["base", "base+prompt", "base+examples"]
    prompt = contenders.build_prompt(ctx, models.contender(ctx, "base+prompt"),
                                     [{"role": "user", "content": "Say hello number 3."}])
    assert prompt[0] == {"role": "system", "content": "Sign every answer with Cheers, "
                                                      "Brewster."}
    built = contenders.build_prompt(ctx, models.contender(ctx, "base+examples"),
                                    [{"role": "user", "content": "Say hello number 13."}])
    assert len(built) == 9 and built[0]["content"] == "Say hello number 13."  # the best match
    assert built[-1] == {"role": "user", "content": "Say hello number 13."}


def test_no_test_example_can_reach_a_few_shot_prompt(ctx, store):
    """Examples held out by the newest run and examples marked test only never leave
    the test set, whichever pool a prompt is built from."""
    fill(store, 24)
    marked = examples.add_example(store, [{"role": "user", "content": "Say hello number 99."},
                                          {"role": "assistant", "content": "TEST ONLY."}])
    examples.set_test_only(store, marked, True)
    run_id = ctx.jobs.prepare(TrainConfig())
    held = runs.run_examples(store, run_id, "held_out")
    tests = placement.test_set(store, runs.get_run(store, run_id)).cases
    assert len(tests) == len(held) + 1
    secret = {t.reference for t in tests}
    chosen = models.contender(ctx, "base+examples")
    for pool in (contenders.live_pool(ctx), contenders.run_pool(ctx, runs.get_run(store, run_id))):
        for test in tests:
            prompt = contenders.build_prompt(ctx, chosen, test.prompt, pool)
            assert not secret & {m["content"] for m in prompt}
    runs.finish_run(store, run_id, "cancelled")


def test_the_report_card_end_to_end(ctx, store, tiny_model_dir, tmp_path, capsys):
    fill(store, 24)
    run = ctx.jobs.wait(ctx.jobs.start(TrainConfig(epochs=3, batch_size=8)))
    assert run["status"] == "succeeded", run["error"]
    contenders.set_baseline_prompt(ctx, "End with Cheers, Brewster.")
    check = examples.add_example(store, [{"role": "user", "content": "Capital of France?"},
                                         {"role": "assistant", "content": "Paris"}])
    examples.set_must_keep(store, check, True)
    progress = []
    result = report.evaluate(ctx, "latest", lambda *step: progress.append(step))
    names = [c["name"] for c in result["contenders"]]
    assert names == ["base", "base+prompt", "base+examples", run["adapter"],
                     run["adapter"] + "+examples"]
    assert result["n"] == 5 and len(result["rows"]) == 5 and result["measure"]["name"]
    for row in result["contenders"]:
        assert 0 <= row["ci_low"] <= row["score"] <= row["ci_high"] <= 100
        assert row["prompt_tokens"] > 0 and row["latency_ms"] >= 0
    few_shot = next(c for c in result["contenders"] if c["name"] == "base+examples")
    assert few_shot["prompt_tokens"] > result["contenders"][0]["prompt_tokens"]
    # 5 contenders x 5 tests, then the base and the adapter on 100 + 1 general questions
    assert progress[-1][0] == progress[-1][1] == 25 + 2 * 101
    assert progress[1][2].startswith("answers 5 of 227: base")
    assert result["verdict"] and report.card_for(ctx, run["adapter"]) == result
    block = result["general"]
    assert block["n"] == 101 and block["users"] == 1
    assert [m["name"] for m in block["models"]] == ["base", run["adapter"]]
    assert "General knowledge" in result["verdict"] or "forgot" in result["verdict"]
    assert check not in {row["id"] for row in result["rows"]}  # a check, not a task test

    # The command line prints the same card, and writes it as JSON.
    out = tmp_path / "card.json"
    assert app.main(["eval", "--model", str(tiny_model_dir), "--json", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    written = json.loads(out.read_text())
    assert printed[-1] == written["verdict"]
    assert {"name", "score", "ci_low", "ci_high", "n", "prompt_tokens", "latency_ms"} <= \
        set(written["contenders"][0])


def test_too_few_test_examples_say_so(ctx, store, two_adapters):
    import shutil

    shutil.copytree(two_adapters, store.home / "adapters")
    for messages in voice_examples(3):
        examples.add_example(store, messages)
    result = report.evaluate(Context(store, ctx.engine), "lumen")
    assert result["contenders"] == [] and result["verdict"].startswith(
        "Only 0 test examples: too few to judge lumen.")


def test_the_compare_tab_shows_a_failed_card_and_measures_again(ctx, store):
    """A card that fails says so on the card, with a retry; Measure again clears the old
    card first, then shows the new one."""
    from web.compare import CompareHandlers

    fill(store, 24)
    run = ctx.jobs.wait(ctx.jobs.start(TrainConfig(epochs=2, batch_size=8)))
    ctx.reports = report.ReportWorker(ctx)  # not started: failures are set by hand
    ctx.reports.failed[run["id"]] = "RuntimeError: out of memory"
    handlers = CompareHandlers(ctx)
    named = names.plain(ctx, [run["adapter"]])(run["adapter"])  # "your assistant tuned ..."
    assert named.startswith("your assistant #")
    assert handlers.status(run["adapter"]).startswith(
        f"⚠ The report card of {named} could not be computed: RuntimeError: out of "
        "memory. Press *Measure again* to retry.")

    steps = list(handlers.measure(run["adapter"], progress=lambda *a, **k: None))
    assert steps[0][0].startswith(f"Measuring {named} again") and steps[0][1] == ""
    status, summary = steps[-1][:2]
    assert status == "" and "General knowledge" in summary
    assert run["id"] not in ctx.reports.failed


def test_the_runs_chart_compares_runs_on_the_same_test_set_only():
    from web.train import scores_chart

    def card_of(run: int, test_set: str, score: float) -> dict:
        return {"adapter": f"run-{run}", "test_set": test_set, "measure": {"name": "chrf"},
                "contenders": [{"name": f"run-{run}", "score": score, "ci_low": score - 5,
                                "ci_high": score + 5}]}

    chart = scores_chart({1: card_of(1, "a", 30), 2: card_of(2, "b", 60),
                          3: card_of(3, "b", 70)})
    assert ">#2<" in chart and ">#3<" in chart and ">#1<" not in chart
    assert "1 other run was scored on other test examples" in chart


def test_the_general_block_of_a_forgetful_adapter_is_stored_as_json():
    """Found by the brand-voice walkthrough: scipy's p-value made "forgot" a numpy bool,
    which the card's JSON refused."""
    from services import general

    questions = [general.Question(f"g{i}", [{"role": "user", "content": "2+2?"}], r"\b4\b")
                 for i in range(10)]
    answers = {"base": ["4"] * 10, "run-1": ["five"] * 9 + ["4"]}
    right = {name: [q.right(a) for q, a in zip(questions, said)]
             for name, said in answers.items()}
    block = general._model("run-1", questions, answers, right)
    assert block["forgot"] is True and block["lost"] == 9
    assert json.loads(json.dumps(block))["forgot"] is True


def test_the_votes_it_could_not_score_say_why(store):
    """Before: "agrees with 4 of the 4 votes it could score" after 5 votes, and no word
    about the fifth."""
    from storage.placement import TestCase
    from web.cards import votes_line

    answer = "Yes, mats are free. Breathe easy!"
    tests = [TestCase(1, "kept", "held_out", [{"role": "user", "content": "Mats?"},
                                              {"role": "assistant", "content": answer}])]
    for prompt, right, replies, winner in [
            ("Mats?", "run-1", (answer, "No."), "left"),  # scored: the score agrees
            ("Mats?", "run-1", (answer, "No."), "tie"),
            ("Mats?", "run-9", (answer, "No."), "left"),
            ("Mats?", "run-1", ("No.", "No."), "right"),
            ("Hours?", "run-1", ("Nine.", "Ten."), "left")]:
        runs.add_vote(store, prompt=prompt, system="", left="base", right=right,
                      left_reply=replies[0], right_reply=replies[1], winner=winner,
                      blind=True)
    card = {"contenders": [{"name": "base"}, {"name": "run-1"}], "style_phrases": []}
    votes = report.votes_beside(Context(store), card, tests)
    assert (votes["scored"], votes["agree"]) == (1, 1)
    assert votes["unscored"] == {"no_winner": 1, "other_models": 1, "same_score": 1,
                                 "nothing_to_score": 1}
    assert votes_line(votes) == (
        "Your votes: the automatic score picks the same winner as you in 1 of the 1 vote it "
        "could score (100%). Not scored: 1 vote with no winner (a tie or both bad); 1 vote "
        "between models not on this card; 1 vote where both answers scored the same, so the "
        "score picks no winner; 1 vote on a question that is no test example, with no style "
        "to look for.")


def test_a_shipped_answer_pattern_does_not_take_a_wrong_answer():
    """The plain-nursery try: "The freezing point of water is -18.0°C" counted as right
    (the 0 of 18.0), and then as "now wrong" for the tuned model."""
    from services import general

    [freeze] = [q for q in general.shipped() if "water freeze" in q.text]
    assert freeze.right("Water freezes at 0°C (32°F).") and freeze.right("At zero degrees.")
    assert not freeze.right("The freezing point of water is -18.0°C")
    assert not freeze.right("Water freezes at 29°C (84°F)")
