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
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from sweep_defaults import general_right, load  # noqa: E402

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

# The same six questions as another customer would put them, and what an answer that
# follows her correction says to them: does a learned correction carry over to words she
# did not train on?
PARAPHRASES = [
    ("Is my dog allowed inside with me?", r"can't|cannot|can not|not allowed|no dogs"),
    ("Can I come by on a Sunday?", r"closed|(can't|cannot) come"),
    ("Can I pay in cash?", r"card only|no cash|(can't|cannot|don't|do not) (pay|accept|take)"),
    ("Do you have skateboards?", r"only (sell|have) bikes|(don't|do not) (sell|have)"),
    ("Can you bring the bike to my house?",
     r"(don't|do not|can't|cannot) (deliver|bring)|picked up at the shop"),
    ("Can I just walk in and try a bike?", r"book"),
]


def follows(answer: str, pattern: str) -> bool:
    return re.search(pattern, answer, re.IGNORECASE) is not None


def main(argv: list[str] | None = None) -> int:
    from assistant.bases import load_model, resolve_model
    from assistant.engine import ChatEngine
    from core.hardware import describe_machine
    from services.general import shipped
    from storage.placement import choose_held_out
    from storage.runs import RunExample
    from trainer.common import Quiet
    from trainer.config import TrainConfig
    from trainer.dataset import RunData, answer_characters
    from trainer.sft import run_sft

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ways", default="1,3,5,1+drill,3+drill",
                        help="comma-separated: how many times SFT sees each correction, "
                             "+drill for the steps after the epochs (trainer/corrections.py)")
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
    paraphrased = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": p}]
                   for p, _ in PARAPHRASES]
    general = shipped()
    base_right = general_right(engine, "base", general)
    report["base_general_right"] = sum(base_right)
    for way in args.ways.split(","):
        repeats, _, drilled = way.partition("+")
        config = replace(TrainConfig(), correction_repeats=int(repeats),
                         correction_steps=TrainConfig().correction_steps if drilled else 0)
        config = replace(config, epochs=config.epochs_for(answer_characters(data.train)))
        name = f"repeats-{repeats}" + ("-drilled" if drilled else "")
        started = time.monotonic()
        metrics = run_sft(config, data, base, adapters / name, work / name, Quiet()).metrics
        seconds = time.monotonic() - started
        answers = engine.reply_many(asked, name, 80)
        others = engine.reply_many(paraphrased, name, 80)
        right = general_right(engine, name, general)
        row = {"way": way, "repeats": int(repeats), "drilled": bool(drilled),
               "follows": sum(follows(a, p) for a, (_, _, p) in zip(answers, CORRECTIONS)),
               "follows_paraphrased": sum(follows(a, p) for a, (_, p) in
                                          zip(others, PARAPHRASES)),
               "general_right": sum(right),
               "general_forgot": sum(b and not r for b, r in zip(base_right, right)),
               "train_seconds": round(seconds, 1),
               **{k: v for k, v in metrics.items() if k.startswith("correction")},
               "answers": answers, "paraphrased_answers": others}
        report["rows"].append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
    Path(args.json).write_text(json.dumps(report, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
