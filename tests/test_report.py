"""Was it worth it? The measures on known answers, the intervals on known data, the
verdict rules on constructed cards, the contenders' prompts (no test example can leak
into them), and the report card end to end on the tiny model."""

import json

import pytest

import app
from services import contenders, models, report, scoring
from services.context import Context
from storage import examples, runs
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
    assert scoring.interval([1.0] * 10) == (1.0, 1.0)
    low, high = scoring.interval([1.0] * 5 + [0.0] * 5)
    assert 0.15 < low < 0.5 < high < 0.85
    low, high = scoring.difference_interval([1.0] * 10, [0.0] * 10)
    assert low == high == 1.0


def card(scores: dict[str, list[float]], tokens: dict[str, int] | None = None) -> dict:
    """A report card with these per-example scores (0-100)."""
    n = len(next(iter(scores.values())))
    rows = [{"id": i + 1, "answers": {name: {"text": "", "score": s[i]}
                                      for name, s in scores.items()},
             "flips": {name: "broke" for name, s in scores.items()
                       if s[i] < 50 <= scores["base"][i]}} for i in range(n)]
    summary = [{"name": name, "score": scoring.mean(s),
                "prompt_tokens": (tokens or {}).get(name, 40)} for name, s in scores.items()]
    return {"n": n, "rows": rows, "contenders": summary}


def test_verdict_the_adapter_beats_every_baseline():
    line = report.verdict(card({"base": [0] * 8, "base+examples": [0, 100] * 4,
                                "run-3": [100] * 8}), "run-3")
    assert line.startswith("run-3 beats every prompting baseline beyond the uncertainty on 8")


def test_verdict_a_baseline_does_as_well_and_says_what_it_costs():
    line = report.verdict(card({"base": [0] * 8, "base+examples": [100] * 7 + [0],
                                "run-3": [100] * 8},
                               {"base": 40, "base+examples": 430, "run-3": 40}), "run-3")
    assert line.startswith("base+examples matches run-3 on 7 of 8 test examples, within the "
                           "uncertainty")
    assert line.endswith("it costs 390 more prompt tokens per request and no training.")


def test_verdict_a_baseline_does_better():
    line = report.verdict(card({"base": [100] * 8, "run-3": [0] * 8}), "run-3")
    assert line.startswith("base does better than run-3 beyond the uncertainty")
    assert line.endswith("run-3 is worse than the base on examples #1, #2, #3, #4, #5, #6, "
                         "#7, #8.")


def test_verdict_never_claims_more_than_the_test_set_supports():
    assert "too few to judge run-3" in report.too_few("run-3", 3)
    line = report.verdict(card({"base": [0, 100, 0, 100, 0], "run-3": [100, 0, 100, 0, 100]}),
                          "run-3")
    assert line.startswith("base matches run-3") and "beyond" not in line


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
    tests = report.test_set(ctx, runs.get_run(store, run_id))
    assert len(tests) == len(held) + 1
    secret = {t.reference for t in tests}
    chosen = models.contender(ctx, "base+examples")
    for pool in (contenders.live_pool(ctx), contenders.run_pool(ctx, run_id)):
        for test in tests:
            prompt = contenders.build_prompt(ctx, chosen, test.prompt, pool)
            assert not secret & {m["content"] for m in prompt}
    runs.finish_run(store, run_id, "cancelled")


def test_the_report_card_end_to_end(ctx, store, tiny_model_dir, tmp_path, capsys):
    fill(store, 24)
    run = ctx.jobs.wait(ctx.jobs.start(TrainConfig(epochs=3, batch_size=8)))
    assert run["status"] == "succeeded", run["error"]
    contenders.set_baseline_prompt(ctx, "End with Cheers, Brewster.")
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
    assert progress[-1][0] == progress[-1][1] == 25
    assert result["verdict"] and report.card_for(ctx, run["adapter"]) == result

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
