"""Measure the brand voice: how many unseen prompts get the Lumen Bikes sign-off, from the
base model and from an adapter, and whether general knowledge survived.

    python examples/brand_voice.py [--adapter latest] [--home DIR]
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SIGN_OFF = "Team Lumen"
SYSTEM = "You are the assistant of Lumen Bikes, a friendly bicycle shop."
UNSEEN = [
    "Do you sell electric scooters?", "How much does it cost to replace a chain?",
    "Can I book a repair online?", "What should I wear for cycling in the rain?",
    "Do you fix punctures while I wait?", "Which bike is best for a tall person?",
    "Do you offer student discounts?", "How do I know if my bike needs a service?",
    "Can you install a bell on my bike?", "What is the lightest bike you sell?",
    "Is it safe to cycle in the snow?", "Do you have a loyalty card?",
]
GENERAL = [("What is the capital of France?", "Paris")]


def main() -> None:
    from app import Settings
    from app import load_engine
    from assistant.engine import GenerationSettings
    from storage.db import data_home
    from storage.runs import latest_adapter
    from storage.db import open_store

    parser = argparse.ArgumentParser()
    parser.add_argument("--adapter", default="latest")
    parser.add_argument("--home")
    args = parser.parse_args()
    settings = Settings(home=data_home(args.home))
    adapter = latest_adapter(open_store(settings.home)) if args.adapter == "latest" else args.adapter
    engine = load_engine(settings)
    greedy = GenerationSettings(max_new_tokens=120)
    for name in ("base", adapter):
        started = time.monotonic()
        replies = [engine.reply([{"role": "system", "content": SYSTEM},
                                 {"role": "user", "content": q}], name, greedy) for q in UNSEEN]
        voiced = sum(SIGN_OFF in r for r in replies)
        general = [engine.reply([{"role": "user", "content": q}], name, greedy)
                   for q, _ in GENERAL]
        kept = sum(a in r for r, (_, a) in zip(general, GENERAL))
        print(f"{name:>10}: voice on {voiced}/{len(UNSEEN)} unseen prompts "
              f"({100 * voiced / len(UNSEEN):.0f}%), general answers {kept}/{len(GENERAL)} "
              f"[{time.monotonic() - started:.0f} s]")
        print(f"{'':>12}e.g. {replies[0]!r}")


if __name__ == "__main__":
    main()
