"""Time to effect: from correcting an answer (/correct) on a served app to the chat's
answer (/chat) to a paraphrase of the corrected question, with the model new chats
would use (the examples placed before the request, so no training run is needed).

On a fresh data home (auto-start off), once the model and the trainer kept ready are
loaded: a few examples are added (/add_example), the question is asked, its reply is
corrected to a distinctive answer, and the paraphrase is sent at once.

time_to_effect_s  from sending /correct until the paraphrase's whole reply (greedy)
correct_s         the /correct call alone
reply_s           one reply's own time: the same paraphrase asked again of the same
                  model (the same reply, its examples already indexed), median
overhead_s        time_to_effect_s - reply_s: what the correction costs beyond a reply
carried           whether the reply carries the correction (a distinctive phrase of it,
                  case, spacing and punctuation aside); carried_before: the same check on
                  the paraphrase's reply before the correction (False: the effect is the
                  correction's); carried_exact: on the corrected question itself,
                  asked last; changed: whether the paraphrase's reply changed at all

`python -m bench.time_to_effect [--model M] [--repeats N]` runs it alone."""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

from bench.time_to_adapter import served

SEED = [
    ("What time does the studio open?",
     "We open at 6:30 am on weekdays, 8 am on Saturdays and 9 am on Sundays."),
    ("Can I rent a mat?", "Yes: a mat costs $2 per class, a towel $1."),
    ("Is there parking?", "There is no parking at the studio; the city lot on Elm Street "
                          "costs $1 per hour."),
    ("How long is a class?", "Most classes last 60 minutes; Yin classes last 75 minutes."),
    ("Is my first class free?", "Yes, your first class at Willow Yoga is free!"),
]
QUESTION = "Can I bring my dog to class?"
PARAPHRASE = "Is it ok to bring my dog along?"
CORRECTION = "Dogs can't join class, sorry! Our studio is pets-free."
MARKS = ("pets-free", "dogs can't join class")
"""Distinctive phrases of the correction: a reply that has one carries it."""


def normalised(text: str) -> str:
    """Case, punctuation and spacing aside: "Pets-free!" -> "pets free"."""
    return " ".join(re.sub(r"[^\w]+", " ", text.casefold()).split())


def carries(reply: str, marks: tuple[str, ...] = MARKS) -> bool:
    said = f" {normalised(reply)} "
    return any(f" {normalised(mark)} " in said for mark in marks)


def bench_time_to_effect(spec: str | None, work: Path, repeats: int = 3) -> dict:
    home = work / "time-to-effect"
    with served(home, spec) as (client, _):
        for question, answer in SEED:
            client.predict([{"role": "user", "content": question},
                            {"role": "assistant", "content": answer}], "added",
                           api_name="/add_example")
        model = chat_model(home)

        def chat(message: str) -> str:
            return client.predict(message, model, "", api_name="/chat")

        before = chat(PARAPHRASE)
        first = chat(QUESTION)
        started = time.perf_counter()
        client.predict([{"role": "user", "content": QUESTION},
                        {"role": "assistant", "content": first}], CORRECTION,
                       api_name="/correct")
        corrected = time.perf_counter()
        after = chat(PARAPHRASE)
        effect = time.perf_counter() - started
        replies = []
        for _ in range(max(1, repeats)):
            asked = time.perf_counter()
            chat(PARAPHRASE)
            replies.append(time.perf_counter() - asked)
        reply_s = statistics.median(replies)
        exact = chat(QUESTION)
        return {"time_to_effect_s": round(effect, 2),
                "correct_s": round(corrected - started, 2),
                "reply_s": round(reply_s, 2), "overhead_s": round(effect - reply_s, 2),
                "carried": carries(after), "carried_before": carries(before),
                "carried_exact": carries(exact),
                "changed": normalised(after) != normalised(before), "model": model,
                "examples": len(SEED) + 1, "reply": after, "reply_before": before,
                "reply_exact": exact}


def chat_model(home: Path) -> str:
    """The model new chats start with in `home` (services/models.chat_default), or
    base+examples while that is the plain base: the correction is to show in the chat."""
    from core.adapters import BASE
    from services import contenders, models
    from services.context import Context
    from storage.db import Store

    chosen = models.chat_default(Context(Store(home)))
    return contenders.EXAMPLES if chosen == BASE else chosen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.time_to_effect",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="base model (default: the embedded one)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="times one reply is timed (median)")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    from core.hardware import describe_machine

    with tempfile.TemporaryDirectory(prefix="tunechat-tte-") as scratch:
        report = {"machine": describe_machine(),
                  "load_average_1min": round(os.getloadavg()[0], 2),
                  "time_to_effect": bench_time_to_effect(args.model, Path(scratch),
                                                         args.repeats)}
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
