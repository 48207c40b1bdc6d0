"""Facts and voice together: does the chat's default keep a business's voice and stop
inventing? One command from a fresh data home:

    .venv/bin/python examples/facts_walkthrough.py [--home DIR] [--out FILE]

Willow Yoga, a yoga studio whose owner ends every answer with "Breathe easy! - Willow
Yoga": her 40 voice examples (examples/willow-yoga.voice.jsonl) are imported, her facts
sheet (examples/willow-yoga.facts.md) added, and one adapter trained with the defaults.
Then 12 questions the examples never saw, whose answers are on the sheet
(examples/willow-yoga.questions.json; several invite inventing: dogs, hot yoga, private
sessions, refunds, parking), go to each contender greedily: base, run-1, run-1+facts,
run-1+facts+examples and base+facts+examples. For each contender it counts:

- voice kept: the answer holds the sign-off (and how many end with it);
- agrees with the facts: the questions file's rule (every must_say entry present in one
  of its forms, no must_not_say);
- invents: answers with a claim (price, number, time, name, yes/no policy) that the
  support does not back (services.claims.unsupported), the support being the whole facts
  sheet, her examples' answers and the question, so the count does not depend on what
  retrieval placed in the prompt; and the number of such claims.

Before the questions, the report card is computed as the app does after a run (six more
questions, examples/willow-yoga.checks.jsonl, are its facts checks) and decides what new
chats use. The goal set for the chat's default: the voice on at least 11 of
12, nothing invented on at least 10 of 12. Results, with every answer and its flags, the
machine, the date and the training time, go to examples/results/facts-walkthrough.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

VOICE = HERE / "willow-yoga.voice.jsonl"
FACTS = HERE / "willow-yoga.facts.md"
QUESTIONS = HERE / "willow-yoga.questions.json"
CHECKS = HERE / "willow-yoga.checks.jsonl"
"""Six more questions whose answers are on the sheet, imported for testing only and
marked as facts checks: the report card scores each contender's answers to them against
the facts, and picks what new chats use."""
SIGN_OFF = "Breathe easy! - Willow Yoga"
CONTENDERS = ["base", "run-1", "run-1+facts", "run-1+facts+examples", "base+facts+examples"]
GOAL = {"model": "the chat's default after the report card", "voice_at_least": 11,
        "no_invention_at_least": 10}


# --- the data, and what counts as agreeing (shared with facts_prompt_forms.py) ---

def fact_passages(path: Path = FACTS) -> list[str]:
    """The sheet's statements, one per bullet, without the leading dash."""
    return [line[2:].strip() for line in path.read_text().splitlines()
            if line.startswith("- ")]


def voice_examples(path: Path = VOICE) -> list[list[dict]]:
    return [json.loads(line)["messages"] for line in path.read_text().splitlines()
            if line.strip()]


def questions(path: Path = QUESTIONS) -> list[dict]:
    return json.loads(path.read_text())["questions"]


def _found(phrase: str, text: str) -> bool:
    """Case-insensitive and whole-token: '$2' is not in '$25' nor '$2.50', '8 am' is
    not in '18 am'."""
    pattern = r"(?<![\w.])" + re.escape(phrase) + r"(?!\w|[.,:]\d)"
    return re.search(pattern, text, re.IGNORECASE) is not None


def agrees(answer: str, question: dict) -> bool:
    """Every must_say entry present in one of its forms, and no must_not_say."""
    answer = answer.replace("\u2019", "'")
    return (all(any(_found(form, answer) for form in entry)
                for entry in question["must_say"])
            and not any(_found(phrase, answer) for phrase in question.get("must_not_say", [])))


def voice_kept(answer: str) -> bool:
    return SIGN_OFF.lower() in " ".join(answer.split()).lower()


def ends_signed(answer: str) -> bool:
    return " ".join(answer.split()).lower().rstrip(" .!").endswith(
        SIGN_OFF.lower().rstrip(" .!"))


def check_data() -> list[str]:
    """What is inconsistent in the data files (empty when all is well)."""
    problems = []
    sheet = FACTS.read_text()
    examples = voice_examples()
    if len(examples) != 40:
        problems.append(f"{len(examples)} voice examples, 40 expected")
    for messages in examples:
        if not messages[-1]["content"].endswith(SIGN_OFF):
            problems.append(f"voice answer without the sign-off: {messages[-1]['content']!r}")
    asked = {m[0]["content"].lower() for m in examples}
    for q in questions():
        if q["question"].lower() in asked:
            problems.append(f"question also in the voice examples: {q['question']!r}")
        if not q["answer"].endswith(SIGN_OFF):
            problems.append(f"reference answer without the sign-off: {q['question']!r}")
        if not agrees(q["answer"], q):
            problems.append(f"reference answer does not agree by the rule: {q['question']!r}")
        for entry in q["must_say"]:
            if not _found(entry[0], sheet):
                problems.append(f"{entry[0]!r} is not on the facts sheet")
    return problems


# --- the walkthrough ---

def support_texts(passages: list[str]) -> list[str]:
    """What an answer may rest on, apart from the question itself: every passage of the
    sheet (not only those retrieval placed) and her example answers."""
    return passages + [m[-1]["content"] for m in voice_examples()]


def score_answers(name: str, asked: list[dict], answers: list[str],
                  support: list[str]) -> dict:
    from services import claims
    from services.claims import FLAGGED

    rows = []
    for q, answer in zip(asked, answers):
        flagged = claims.unsupported(answer, support + [q["question"]])
        rows.append({"question": q["question"], "answer": answer,
                     "voice": voice_kept(answer), "ends_signed": ends_signed(answer),
                     "agrees": agrees(answer, q),
                     "flags": [{"text": c.text, "kind": c.kind} for c in flagged]})
    return {"model": name, "n": len(rows),
            "voice": sum(r["voice"] for r in rows),
            "ends_signed": sum(r["ends_signed"] for r in rows),
            "agrees": sum(r["agrees"] for r in rows),
            "invents": sum(bool(r["flags"]) for r in rows),
            "no_invention": sum(not r["flags"] for r in rows),
            "flagged_claims": sum(len(r["flags"]) for r in rows),
            # what the chat flags (services/claims.FLAGGED): the kinds whose flags were right
            "flagged_in_chat": sum(any(f["kind"] in FLAGGED for f in r["flags"])
                                   for r in rows),
            "answers": rows}


def ask_all(ctx, model: str, asked: list[dict]) -> tuple[list[str], float]:
    from services import chat

    started = time.monotonic()
    answers = [chat.ask(ctx, q["question"], model).text for q in asked]
    return answers, time.monotonic() - started


def print_table(rows: list[dict]) -> None:
    n = rows[0]["n"] if rows else 0
    print(f"\n{'model':<22} {'voice':>7} {'agrees':>7} {'invents':>8} {'claims':>7} "
          f"{'in chat':>8}")
    for r in rows:
        print(f"{r['model']:<22} {r['voice']:>4}/{n} {r['agrees']:>4}/{n} "
              f"{r['invents']:>5}/{n} {r['flagged_claims']:>7} "
              f"{r.get('flagged_in_chat', 0):>5}/{n}")


def main(argv: list[str] | None = None) -> int:
    import app

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", help="data home to use (default: a new temporary one)")
    parser.add_argument("--out", default=str(HERE / "results" / "facts-walkthrough.json"),
                        help="where to write the results")
    parser.add_argument("--models", default=",".join(CONTENDERS),
                        help="contenders to ask, comma-separated")
    parser.add_argument("--rescore", action="store_true",
                        help="score the answers in --out again (after the rules changed)")
    parser.add_argument("--sweep-passages", metavar="HOME",
                        help="on a home this script trained: ask the chat's default with "
                             "1, 2 and 3 fact passages placed (services.facts.FACTS_K)")
    args = parser.parse_args(argv)
    if args.rescore:
        return rescore(Path(args.out))
    if args.sweep_passages:
        return sweep_passages(Path(args.sweep_passages))
    problems = check_data()
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    home = Path(args.home or tempfile.mkdtemp(prefix="tunechat-willow-"))
    common = ["--home", str(home)]
    print(f"Data home: {home}")
    # Auto-start off: this walkthrough starts the run itself, to time it.
    if app.main(["import", str(VOICE), "--threshold", "0"] + common) or \
            app.main(["import", str(CHECKS), "--test"] + common):
        return 1
    from core.hardware import describe_machine
    from services import examples, facts, models, report
    from services.context import Context

    ctx = Context.open(home, engine=True)
    source, added = facts.add_file(ctx, FACTS)
    print(f"facts: {added} passages from {source}")
    for example in examples.find(ctx):
        if example.test_only:  # the checks imported above: answers must agree with facts
            examples.mark_facts_check(ctx, example.id, True)
    passages = [fact.text for fact in facts.list_facts(ctx)]
    support = support_texts(passages)
    started = time.monotonic()
    if app.main(["train"] + common):
        return 1
    trained_in = time.monotonic() - started
    adapter = ctx.engine.adapters()[-1]
    # The report card (as the app computes it after a run) decides what new chats use.
    card = report.evaluate(ctx, adapter)
    default = models.chat_default(ctx)
    print(f"report card: {card['verdict']}\nnew chats use {default}")
    asked, results = questions(), []
    wanted = [m.replace("run-1", adapter) for m in args.models.split(",")]
    for model in dict.fromkeys(wanted + [default]):
        answers, seconds = ask_all(ctx, model, asked)
        result = score_answers(model, asked, answers, support)
        result["answer_s"] = round(seconds, 1)
        results.append(result)
        print(json.dumps({k: v for k, v in result.items() if k != "answers"}), flush=True)
    print(f"\ntraining took {trained_in:.0f} s")
    write({"machine": describe_machine(), "date": datetime.date.today().isoformat(),
           "adapter": adapter, "training_s": round(trained_in, 1),
           "chat_default": default, "card": _card_summary(card), "goal": GOAL,
           "sign_off": SIGN_OFF, "voice_examples": len(voice_examples()),
           "fact_passages": passages}, results, Path(args.out))
    return 0


def sweep_passages(home: Path, out: Path = HERE / "results" / "facts-passages.json") -> int:
    """How many fact passages to place: the chat's default asked the 12 questions with
    1, 2 and 3 (services.facts.FACTS_K is what the app places)."""
    from core.hardware import describe_machine
    from services import facts, models
    from services.context import Context

    ctx = Context.open(home, engine=True)
    support = support_texts([fact.text for fact in facts.list_facts(ctx)])
    default, asked, results = models.chat_default(ctx), questions(), []
    for k in (1, 2, 3):
        facts.FACTS_K = k  # read when a model name is turned into a contender
        answers, seconds = ask_all(ctx, default, asked)
        result = score_answers(f"{default}, {k} passages", asked, answers, support)
        result["answer_s"] = round(seconds, 1)
        results.append(result)
    print_table(results)
    out.write_text(json.dumps({"machine": describe_machine(), "date":
                               datetime.date.today().isoformat(), "model": default,
                               "results": results}, indent=1, ensure_ascii=False) + "\n")
    print(f"results: {out}")
    return 0


def _card_summary(card: dict) -> dict:
    """What the report card measured and decided, without its rows."""
    return {"verdict": card["verdict"], "tests": card["n"],
            "facts_checks": (card.get("facts_check") or {}).get("n", 0),
            "scores": {c["name"]: c["score"] for c in card["contenders"]},
            "facts_check_scores": (card.get("facts_check") or {}).get("scores", {}),
            "decision": card.get("decision")}


def write(report: dict, results: list[dict], out: Path) -> None:
    """The table, the goal's verdict, and the results file."""
    print_table(results)
    goal = next((r for r in results if r["model"] == report.get("chat_default")), None)
    met = bool(goal and goal["voice"] >= GOAL["voice_at_least"]
               and goal["no_invention"] >= GOAL["no_invention_at_least"])
    print(f"goal for {report.get('chat_default')}, {GOAL['model']} "
          f"(voice on >= {GOAL['voice_at_least']}/12, nothing "
          f"invented on >= {GOAL['no_invention_at_least']}/12): "
          f"{'met' if met else 'NOT met'}")
    report.update(goal_met=met,
                  totals=[{k: v for k, v in r.items() if k != "answers"} for r in results],
                  answers={r["model"]: r["answers"] for r in results})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print(f"results: {out}")


def rescore(out: Path) -> int:
    """The stored answers scored again with the rules as they are now."""
    report = json.loads(out.read_text())
    asked, support = questions(), support_texts(report["fact_passages"])
    results = []
    for total in report["totals"]:
        answers = [row["answer"] for row in report["answers"][total["model"]]]
        result = score_answers(total["model"], asked, answers, support)
        result["answer_s"] = total.get("answer_s")
        results.append(result)
    write(report, results, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
