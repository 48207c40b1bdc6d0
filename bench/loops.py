"""How often the embedded model loops, and what ending loops saves:
`python -m bench.loops [--max-new-tokens 300]`.

Each prompt is answered greedily without the loop stop; the stop is then replayed on
the same tokens (it only ever ends a reply early, so the text before the cut is the
same), which gives where it would have cut and how many tokens that saves."""

from __future__ import annotations

import argparse
import json
import time

PROMPTS = [
    # The walkthroughs' unseen prompts and everyday chat questions.
    "Do you sell electric scooters?", "How much does it cost to replace a chain?",
    "Can I book a repair online?", "What should I wear for cycling in the rain?",
    "Do you fix punctures while I wait?", "Which bike is best for a tall person?",
    "I was charged twice for my order.", "My parcel never arrived.",
    "The app crashes when I open settings.", "How do I change my password?",
    "Hi, Anna here. I'd like 2 flower vases.", "Please send 3 notebooks to Tom.",
    "What is the capital of France?", "Write a short poem about the sea.",
    "Explain photosynthesis to a child.", "List five fruits.",
    "Write a very long story about a bicycle that travels around the world.",
    "Give me ten tips for a job interview.", "What is machine learning?",
    "Tell me a joke.",
]


def main() -> None:
    from assistant.bases import load_model
    from assistant.engine import ChatEngine, GenerationSettings, repeats_at_end

    parser = argparse.ArgumentParser()
    parser.add_argument("--max-new-tokens", type=int, default=300)
    args = parser.parse_args()
    engine = ChatEngine(load_model(None))
    free = GenerationSettings(max_new_tokens=args.max_new_tokens, stop_loops=False)
    rows: list[dict] = []
    for prompt in PROMPTS:
        started = time.perf_counter()
        reply = engine.reply([{"role": "user", "content": prompt}], settings=free)
        seconds = time.perf_counter() - started
        tokens = engine.tokenizer(reply, add_special_tokens=False)["input_ids"]
        cut = next((i for i in range(1, len(tokens) + 1) if repeats_at_end(tokens[:i])),
                   None)
        rows.append({"prompt": prompt, "tokens": len(tokens), "cut_at": cut,
                     "seconds": round(seconds, 1),
                     "saved_s": round(seconds * (1 - cut / len(tokens)), 1) if cut else 0})
    looped = [r for r in rows if r["cut_at"]]
    print(json.dumps({"prompts": len(rows), "looped": len(looped),
                      "tokens_saved": sum(r["tokens"] - r["cut_at"] for r in looped),
                      "seconds_saved": round(sum(r["saved_s"] for r in looped), 1),
                      "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
