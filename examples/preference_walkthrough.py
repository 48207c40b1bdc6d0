"""Does learning from the rejected side help? One command, from a fresh setup:

    .venv/bin/python examples/preference_walkthrough.py

The brand-voice examples become corrections as a user would make them in the chat: the
base model's own answer to each prompt is the rejected side, the voice's answer the fix.
Then three runs with the defaults, one per objective (sft, sft+dpo, sft+kto), each
measured on 12 prompts no run saw: answers in the voice, the recurring-phrase style
check, answers that still look like the base's, general knowledge kept (the capital of
France), and each stage's time and peak memory. --home DIR keeps the data home.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from walkthrough import WALKTHROUGHS  # noqa: E402

OBJECTIVES = ("sft", "sft+dpo", "sft+kto")
FRANCE = "What is the capital of France?"
LOOKS_LIKE = 0.5
"""chrF (0-1) above which an answer counts as still looking like the base's answer."""


def main(argv: list[str] | None = None) -> int:
    import app
    from assistant.engine import GenerationSettings
    from services import scoring, training
    from services.context import Context
    from storage import examples

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", help="data home to use (default: a new temporary one)")
    parser.add_argument("--model", help="base model (default: the embedded SmolLM2-135M)")
    args = parser.parse_args(argv)
    home = Path(args.home or tempfile.mkdtemp(prefix="tunechat-preference-"))
    common = ["--home", str(home)] + (["--model", args.model] if args.model else [])
    print(f"Data home: {home}")
    task = WALKTHROUGHS["brand-voice"]
    ctx = Context.open(home, args.model, engine=True)
    training.set_threshold(ctx, 0)  # this script starts each run itself
    greedy = GenerationSettings(max_new_tokens=120)

    # The corrections: the base's own answer rejected, the voice's answer preferred
    voice = [json.loads(line)["messages"] for line in
             (HERE / task.data).read_text().splitlines() if line.strip()]
    if not examples.counts(ctx.store)["corrected"]:
        for number, messages in enumerate(voice, start=1):
            first = ctx.engine.reply(messages[:-1], "base", greedy)
            examples.add_example(ctx.store, messages, "corrected", rejected=first)
            print(f"\rcorrections: {number}/{len(voice)}", end="", file=sys.stderr)
        print(file=sys.stderr)

    def answers(adapter: str) -> list[str]:
        return [ctx.engine.reply([{"role": "system", "content": task.system},
                                  {"role": "user", "content": prompt}], adapter, greedy)
                for prompt, _ in task.prompts]

    base_answers = answers("base")
    phrase = scoring.style_phrases([m[-1]["content"] for m in voice])[0]
    rows = []
    for objective in OBJECTIVES:
        if app.main(["train", "--objective", objective] + common):
            return 1
        run = training.history(ctx, 1)[0]
        replies = answers(run["adapter"])
        france = ctx.engine.reply([{"role": "user", "content": FRANCE}], run["adapter"], greedy)
        rows.append(row(objective, run, replies, base_answers, phrase, france, scoring))
    print(f"\nOn {len(task.prompts)} unseen prompts; style phrase {phrase!r}\n")
    print(table(rows))
    return 0


def row(objective: str, run: dict, replies: list[str], base_answers: list[str], phrase: str,
        france: str, scoring) -> dict:
    metrics = run["metrics"]
    stages = metrics.get("stages") or [{"stage": "sft", **metrics}]
    return {"objective": objective, "adapter": run["adapter"],
            "voice": sum("Team Lumen" in r for r in replies),
            "style": sum(scoring.carries(r, phrase) for r in replies),
            "base_like": sum(scoring.chrf(r, b) > LOOKS_LIKE
                             for r, b in zip(replies, base_answers)),
            "france": "Paris" in france, "france_answer": france[:60],
            "stages": [(s["stage"], s.get("train_seconds"), s.get("peak_memory_mb"),
                        s.get("before", {}), s.get("after", {})) for s in stages],
            "example": replies[0][:90]}


def table(rows: list[dict]) -> str:
    n = 12
    lines = ["| objective | in the voice | style phrase | still like the base | capital of "
             "France | stages: seconds, peak MB | preference stage: margin, chosen "
             "log-likelihood (before -> after) |", "|---" * 7 + "|"]
    for r in rows:
        stages = ", ".join(f"{name} {seconds} s / {memory} MB"
                           for name, seconds, memory, _, _ in r["stages"])
        moved = "; ".join(
            f"{b.get('rewards/margins', 0):.2f} -> {a.get('rewards/margins', 0):.2f}, "
            f"{b.get('logps/chosen', 0):.1f} -> {a.get('logps/chosen', 0):.1f}"
            for name, _, _, b, a in r["stages"] if name != "sft") or "-"
        lines.append(f"| {r['objective']} ({r['adapter']}) | {r['voice']}/{n} | "
                     f"{r['style']}/{n} | {r['base_like']}/{n} | "
                     f"{'yes' if r['france'] else 'no'}: {r['france_answer']!r} | {stages} | "
                     f"{moved} |")
    lines += ["", "First answer of each: " + " / ".join(
        f"{r['objective']}: {r['example']!r}" for r in rows)]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
