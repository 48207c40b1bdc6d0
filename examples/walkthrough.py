"""Three walkthroughs of what fine-tuning is good for, each one command from a fresh
setup: import the examples into a new data home, measure the base model on prompts the
training never saw, train with the defaults, measure the adapter the same way, then
print the run's report card (`tunechat eval`): the adapter against the base, the
walkthrough's best system prompt and few-shot examples, on the run's held-out examples.

    .venv/bin/python examples/walkthrough.py brand-voice   # a company's voice
    .venv/bin/python examples/walkthrough.py tickets       # one label from a fixed set
    .venv/bin/python examples/walkthrough.py order-json    # valid, schema-correct JSON

--home DIR keeps the data home (default: a new temporary one); --model picks the base.
The card, the unseen prompts' scores and the timings are written to
examples/results/NAME.json (--json FILE elsewhere), with the machine they ran on.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from make_walkthroughs import ORDER_SYSTEM, TICKET_SYSTEM, TICKETS  # noqa: E402


@dataclass
class Walkthrough:
    data: str
    system: str
    prompts: list[tuple[str, object]]
    """Unseen prompts and what a right answer holds (checked by `score`)."""
    score: Callable[[str, object], bool]
    measure: str
    baseline: str
    """The best system prompt a user would write instead of fine-tuning (base+prompt)."""


def signed_off(reply: str, expected) -> bool:
    return "Team Lumen" in reply


def exact_label(reply: str, expected) -> bool:
    return reply.strip().strip(".").lower() == expected


def matches_schema(reply: str, expected) -> bool:
    """Valid JSON, exactly the keys name/item/quantity with the right types."""
    try:
        value = json.loads(reply)
    except ValueError:
        return False
    return (isinstance(value, dict) and set(value) == {"name", "item", "quantity"}
            and isinstance(value["name"], str) and isinstance(value["item"], str)
            and isinstance(value["quantity"], int) and not isinstance(value["quantity"], bool))


WALKTHROUGHS = {
    "brand-voice": Walkthrough(
        "../bench/data/brand-voice.openai.jsonl",  # the benchmark trains on it too
        "You are the assistant of Lumen Bikes, a friendly bicycle shop.",
        [(q, None) for q in [
            "Do you sell electric scooters?", "How much does it cost to replace a chain?",
            "Can I book a repair online?", "What should I wear for cycling in the rain?",
            "Do you fix punctures while I wait?", "Which bike is best for a tall person?",
            "Do you offer student discounts?", "How do I know if my bike needs a service?",
            "Can you install a bell on my bike?", "What is the lightest bike you sell?",
            "Is it safe to cycle in the snow?", "Do you have a loyalty card?"]],
        signed_off, "answers in the voice (signed '— Team Lumen 🚲')",
        "Answer in two short, warm, upbeat sentences, like a friendly bike mechanic. "
        "Always end your answer with the sign-off: — Team Lumen 🚲"),
    "tickets": Walkthrough(
        "ticket-labels.openai.jsonl", TICKET_SYSTEM,
        [("I was charged for a plan I never ordered.", "billing"),
         ("Can I get a refund of the double payment?", "billing"),
         ("Where is my invoice for March?", "billing"),
         ("The parcel is stuck at customs.", "shipping"),
         ("Can you send the order by express delivery?", "shipping"),
         ("The delivery driver never came.", "shipping"),
         ("The app freezes when I press save.", "technical"),
         ("The printer driver will not install.", "technical"),
         ("Videos do not play in the browser.", "technical"),
         ("I want to rename my account.", "account"),
         ("How do I reset my password?", "account"),
         ("Please close my account.", "account")],
        exact_label, f"answers with exactly the right label ({', '.join(TICKETS)})",
        "Reply with one lowercase word and nothing else: billing (charges, refunds, "
        "invoices), shipping (parcels, delivery), technical (apps, devices, errors) or "
        "account (login, password, profile)."),
    "order-json": Walkthrough(
        "order-json.openai.jsonl", ORDER_SYSTEM,
        [(text, None) for text in [
            "Hi, Anna here. I'd like 2 flower vases.", "Leo: 5 cans of paint, please.",
            "This is Mira, one sleeping bag for me.", "Please send 4 dinner plates to Oscar.",
            "Greta would like 3 picture frames.", "I'm Dev and I want 6 glue sticks.",
            "Hugo. One camping stove, thanks.", "Can Iris get 8 clothes pegs?",
            "Noah here, 2 doormats please.", "Elif orders 10 paper cups.",
            "Hello, Tariq wants 1 bread knife.", "Sofia needs 7 hair ties."]],
        matches_schema, "answers with valid JSON of the right schema",
        'Reply with a single JSON object and no other text, for example {"name": "Ana", '
        '"item": "blue mugs", "quantity": 3}. quantity is a number.'),
}


def score(engine, adapter: str, task: Walkthrough) -> tuple[int, str]:
    from assistant.engine import GenerationSettings

    greedy = GenerationSettings(max_new_tokens=120)
    replies = [engine.reply([{"role": "system", "content": task.system},
                             {"role": "user", "content": prompt}], adapter, greedy)
               for prompt, _ in task.prompts]
    right = sum(task.score(reply, expected) for reply, (_, expected)
                in zip(replies, task.prompts))
    return right, replies[0]


def main(argv: list[str] | None = None) -> int:
    import app

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(WALKTHROUGHS))
    parser.add_argument("--home", help="data home to use (default: a new temporary one)")
    parser.add_argument("--model", help="base model (default: the embedded SmolLM2-135M)")
    parser.add_argument("--epochs", type=int, help="override the default epochs")
    parser.add_argument("--json", help="where to write the results (default: "
                                       "examples/results/NAME.json)")
    args = parser.parse_args(argv)
    task = WALKTHROUGHS[args.name]
    home = Path(args.home or tempfile.mkdtemp(prefix=f"tunechat-{args.name}-"))
    common = ["--home", str(home)] + (["--model", args.model] if args.model else [])
    print(f"Data home: {home}")
    # Auto-start off: this walkthrough starts the run itself, to time it.
    if app.main(["import", str(HERE / task.data), "--threshold", "0"] + common):
        return 1
    from services.context import Context

    engine = Context.open(home, args.model, engine=True).engine
    before = score(engine, "base", task)
    started = time.monotonic()
    train = ["train", "--epochs", str(args.epochs)] if args.epochs else ["train"]
    if app.main(train + common):
        return 1
    trained_in = time.monotonic() - started
    adapter = engine.adapters()[-1]
    after = score(engine, adapter, task)
    total = len(task.prompts)
    print(f"\n{args.name}: share of {total} unseen prompts that {task.measure}")
    for name, (right, example) in (("base", before), (adapter, after)):
        print(f"  {name:>8}: {right}/{total} ({100 * right / total:.0f}%)   e.g. {example[:80]!r}")
    print(f"  training took {trained_in:.0f} s\n")
    from core.hardware import describe_machine
    from services import contenders, report
    from storage.db import open_store

    ctx = Context(open_store(home), engine)
    contenders.set_baseline_prompt(ctx, task.baseline)
    started = time.monotonic()
    card = report.evaluate(ctx, adapter)
    card_seconds = time.monotonic() - started
    app.print_card(card)
    print(f"the report card took {card_seconds:.0f} s")
    out = Path(args.json or HERE / "results" / f"{args.name}.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "machine": describe_machine(), "walkthrough": args.name, "unseen_prompts": total,
        "base_right": before[0], "adapter_right": after[0], "adapter": adapter,
        "training_s": round(trained_in, 1), "card_s": round(card_seconds, 1),
        "card": card}, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
