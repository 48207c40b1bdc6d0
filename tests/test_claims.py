"""The invented-claims checker: what it flags, what it lets through, and the script that
measures it on the labelled set."""

import importlib.util
import json
from pathlib import Path

from services.claims import Claim, claims_in, unsupported

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FACTS = [
    "Willow Yoga is a small yoga studio at 14 Elm Street.",
    "We are open Monday to Saturday, 7am to 8pm. Closed on Sundays.",
    "A drop-in class costs $18. Private sessions with Maya cost $100 for one hour.",
    "Classes last 60 minutes and have at most 12 students.",
    "Dogs are not allowed in the studio, but there is a water bowl outside.",
    "Mats are free to borrow.",
]
EXAMPLE_ANSWER = "Yes! There is a water bowl outside for your dog. Breathe easy!\n— Willow Yoga"
SUPPORT = FACTS + [EXAMPLE_ANSWER]


def flagged(answer: str, question: str = "") -> list[str]:
    return [c.text for c in unsupported(answer, SUPPORT + [question])]


def test_a_price_in_another_currency_is_flagged_and_the_same_price_is_not():
    assert flagged("A 1-on-1 session is £100 for one hour.") == ["£100"]
    assert flagged("A 1-on-1 session is $100 for one hour.") == []
    assert flagged("A drop-in class is 18 dollars.") == []
    assert flagged("A drop-in class is $18.00.") == []
    assert flagged("A drop-in class is $20.") == ["$20"]


def test_a_class_that_is_not_in_the_facts_is_flagged():
    assert any("hot yoga" in text for text in flagged("Yes, we do hot yoga every Friday!"))


def test_a_paraphrase_of_a_fact_is_not_flagged():
    answer = ("Our classes are 60 minutes long, with a maximum of twelve students. You can "
              "borrow a mat for free. We are open from 7 am, Mon-Sat!")
    assert flagged(answer) == []


def test_a_policy_with_the_opposite_polarity_is_flagged():
    assert flagged("Dogs are welcome in the studio!") == ["Dogs are welcome in the studio"]
    assert flagged("Yes, we're open on Sundays.") == ["we're open on Sundays"]
    assert flagged("Sorry, dogs are not allowed in the studio.") == []


def test_an_invented_amenity_is_flagged():
    answer = "Yes! You can bring your dog to class, we have a quiet room for dogs."
    assert flagged(answer) == ["You can bring your dog to class",
                               "we have a quiet room for dogs"]


def test_what_the_question_said_is_not_invented():
    question = "Can my friend Jenny come to the 6pm class with me?"
    assert flagged("Of course, Jenny is welcome at the 6pm class!", question) == []
    assert flagged("Of course, Jenny is welcome at the 6pm class!") == ["Jenny", "6pm"]


def test_a_question_claims_no_policy():
    """Repeating the customer's yes/no question as a yes is still the invented claim."""
    assert flagged("Yes, we sell yoga pants!", "Do you sell yoga pants?") == [
        "we sell yoga pants"]


def test_the_sign_off_is_not_flagged():
    answer = "Mats are free to borrow. Breathe easy!\n— Willow Yoga"
    assert flagged(answer) == []
    assert flagged("Mats are free to borrow. Breathe easy! — Willow Yoga") == []


def test_times_and_numbers_are_compared_as_values():
    assert flagged("We open at 7:00 am.") == []
    assert flagged("We open at 6am.") == ["6am"]
    assert flagged("We open at 7.") == []
    assert flagged("Classes last 90 minutes.") == ["90 minutes"]
    assert flagged("Under twelve students per class.") == []
    assert flagged("Students get 10% off.") == ["10%"]


def test_claims_in_finds_each_kind_in_reading_order():
    claims = claims_in("Maya teaches Sunset Flow at 6:30pm on Fridays for $20, "
                       "and you can bring 2 friends.")
    kinds = {c.kind for c in claims}
    assert kinds == {"name", "time", "price", "number", "policy"}
    assert Claim("Sunset Flow", "name") in claims and Claim("$20", "price") in claims
    assert Claim("Fridays", "time") in claims and Claim("2 friends", "number") in claims


def test_the_measurement_runs_on_the_set_and_reports_numbers(tmp_path):
    spec = importlib.util.spec_from_file_location("claims_check",
                                                  EXAMPLES / "claims_check.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    labelled = json.loads((EXAMPLES / "claims_check.json").read_text())
    answers = [a for b in labelled["businesses"] for a in b["answers"]]
    assert len(answers) >= 60 and {a["split"] for a in answers} == {"dev", "check"}
    for business in labelled["businesses"]:
        for answer in business["answers"]:
            for claim in answer["invented"]:
                assert claim.lower() in answer["answer"].lower(), claim
    out = tmp_path / "claims_check.json"
    assert script.main(["--json", str(out)]) == 0
    result = json.loads(out.read_text())
    for half in ("dev", "check"):
        for measure in ("precision", "recall", "answer_accuracy"):
            assert 0.0 <= result[half][measure] <= 1.0
    assert result["machine"] and result["date"]
