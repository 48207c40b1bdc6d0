"""Does a correction the user made stick after the next run? One command:

    .venv/bin/python examples/corrections_stick.py [--json FILE]

The brand-voice walkthrough's examples, plus six corrections of the kind a shop owner
makes (the base model says yes, she says no: dogs, Sundays, cash, ...), each stored with
the base's own first answer as the one it replaced. For each way of training them, an
adapter is trained with tunechat's SFT recipe and defaults (the held-out split of a run)
and asked each corrected prompt again, greedy: does the answer now say what she wrote?
Ways: the corrections seen once each (the defaults before), and repeated
(TrainConfig.correction_repeats). An answer follows a correction when it says what she
wrote (a pattern each: "closed" for Sundays, not just "No"). It also counts how many of
the six the held-out rule before would have held out (never trained on). Results go to
examples/corrections_stick.json."""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from sweep_defaults import load, train  # noqa: E402

SYSTEM = "You are the assistant of Lumen Bikes, a friendly bicycle shop."
CORRECTIONS = [
    ("Can I bring my dog into the shop?",
     "Sorry, dogs can't come into the shop, but there is a water bowl by the door. "
     "— Team Lumen 🚲", r"can't|cannot|can not|not allowed|no dogs"),
    ("Are you open on Sundays?",
     "No, we're closed on Sundays: see you Monday from 9. — Team Lumen 🚲",
     r"closed"),
    ("Do you accept cash?",
     "No, we're card only: every card and phone payment works. — Team Lumen 🚲",
     r"card only|no cash|(don't|do not|not) accept cash"),
    ("Do you sell skateboards?",
     "No, we only sell bikes and bike gear. — Team Lumen 🚲",
     r"only sell bikes|(don't|do not) sell skateboards"),
    ("Do you deliver bikes to my home?",
     "No, we don't deliver: every bike is picked up at the shop. — Team Lumen 🚲",
     r"(don't|do not) deliver|picked up at the shop"),
    ("Can I test ride a bike without booking?",
     "Please book a test ride a day ahead: we keep a bike ready for you. — Team Lumen 🚲",
     r"book"),
]


def follows(answer: str, pattern: str) -> bool:
    return re.search(pattern, answer, re.IGNORECASE) is not None


def main(argv: list[str] | None = None) -> int:
    from assistant.engine import ChatEngine
    from assistant.models import load_model, resolve_model
    from core.hardware import describe_machine
    from storage.placement import choose_held_out
    from storage.runs import RunExample
    from trainer.config import TrainConfig
    from trainer.dataset import RunData, answer_characters

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", default="1,3,5")
    parser.add_argument("--json", default=str(HERE / "corrections_stick.json"))
    args = parser.parse_args(argv)
    base = resolve_model(None)[1]
    adapters = Path(tempfile.mkdtemp(prefix="tunechat-corrections-"))
    work = Path(tempfile.mkdtemp(prefix="tunechat-corrections-work-"))
    engine = ChatEngine(load_model(None), adapters_dir=adapters)
    asked = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
             for prompt, _, _ in CORRECTIONS]
    first = engine.reply_many(asked, "base", 80)
    fixes = [messages + [{"role": "assistant", "content": fix}]
             for messages, (_, fix, _) in zip(asked, CORRECTIONS)]
    examples = load(HERE / "../bench/data/brand-voice.openai.jsonl")
    rows = [RunExample(i, "train", "imported", m) for i, m in enumerate(examples + fixes)]
    held_before = choose_held_out(rows)  # the rule before: any example may be held out
    split = RunData.split(examples)  # now: the user's corrections are always trained
    report: dict = {"machine": describe_machine(), "corrections": len(CORRECTIONS),
                    "held_out_by_the_rule_before": sum(i >= len(examples)
                                                       for i in held_before),
                    "base_follows": sum(follows(a, p) for a, (_, _, p) in
                                        zip(first, CORRECTIONS)),
                    "base_answers": first, "rows": []}
    data = RunData(split.train + fixes, split.held_out, corrected=fixes)
    for repeats in [int(r) for r in args.repeats.split(",")]:
        config = replace(TrainConfig(), correction_repeats=repeats)
        config = replace(config, epochs=config.epochs_for(answer_characters(data.train)))
        name = f"repeats-{repeats}"
        seconds = train(config, data, base, adapters / name, work)
        answers = engine.reply_many(asked, name, 80)
        row = {"repeats": repeats, "follows": sum(follows(a, p) for a, (_, _, p) in
                                                  zip(answers, CORRECTIONS)),
               "train_seconds": round(seconds, 1), "answers": answers}
        report["rows"].append(row)
        print(json.dumps(row), flush=True)
    Path(args.json).write_text(json.dumps(report, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
