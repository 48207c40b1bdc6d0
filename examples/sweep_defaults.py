"""Which defaults learn the task without forgetting? One command:

    .venv/bin/python examples/sweep_defaults.py [--levers today,lr-1e-3,...] [--json FILE]

For each lever (a change to TrainConfig's defaults, replay among them: a share of the
base model's own answers to everyday prompts mixed into the training data, see
trainer/replay.py; or the adapter served at half its strength) and each of the
three walkthroughs, it trains an adapter on the walkthrough's data as a run would (the
same held-out split), with tunechat's SFT recipe in this process, then measures: the
walkthrough's 12 unseen prompts (its own check), the general check's 100 questions
(services/general.py) against the base's answers, and the training time. Greedy
answers, the embedded model. Results go to examples/sweep_defaults.json."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from walkthrough import WALKTHROUGHS  # noqa: E402

from trainer.config import TrainConfig  # noqa: E402

# Each lever against the defaults before this sweep: every block, no replay.
BEFORE = {"upper_layers": 1.0, "replay": 0.0}
LEVERS: dict[str, dict] = {
    "before": {},
    "lr-1e-3": {"learning_rate": 1e-3},
    "lr-1e-3-2x-epochs": {"learning_rate": 1e-3, "epochs_factor": 2},
    "upper-half-layers": {"upper_layers": 0.5},
    "rank-4": {"rank": 4, "alpha": 8},
    "replay-20%": {"replay": 0.2},
    "replay-40%": {"replay": 0.4},
    "replay-20%+upper-half-layers": {"replay": 0.2, "upper_layers": 0.5},
    "before-served-at-half-scale": {"serve_scale": 0.5},
    "short-replay-50%+upper-half-layers": {"replay": 0.5, "upper_layers": 0.5,
                                           "replay_pool": "short"},
    "replay-20%+upper-half-layers+lr-1e-3": {"replay": 0.2, "upper_layers": 0.5,
                                             "learning_rate": 1e-3},
}
"""Replay draws on trainer/replay.py's open requests; with `replay_pool: short`, on
SHORT's short questions too."""

SHORT = [
    "What is the capital of Australia?", "What is 5 plus 7?",
    "How many minutes are in an hour?", "What planet do we live on?",
    "What is the plural of goose?", "What color is a banana?",
    "What is the capital of Mexico?", "What is 6 times 4?",
    "How many days are in a leap year?", "What do bees make?",
    "What is the opposite of early?", "Who wrote Hamlet?",
    "What is the capital of Argentina?", "What is 30 divided by 3?",
    "How many millimeters are in a centimeter?", "What is the closest star to Earth?",
    "How do you say thank you in French?", "What do you call a baby cat?",
    "What is the capital of Turkey?", "What is 15 minus 8?",
    "How many weeks are in a year?", "What gas do plants give off?",
    "What is the opposite of young?", "Who was the first president of the United States?",
    "What is the capital of the Netherlands?", "What is 7 times 8?",
    "How many legs does a spider have?", "Which planet is the largest in our solar system?",
    "What language is spoken in France?", "What color is snow?",
    "What is the capital of Switzerland?", "What is 50 plus 50?",
    "How many wheels does a bicycle have?", "What do caterpillars turn into?",
    "What is the plural of leaf?", "What is the currency of the United Kingdom?",
    "What is the capital of Finland?", "What is a quarter of 100?",
    "How many sides does a hexagon have?", "What is ice made of?",
    "How do you say goodbye in Spanish?", "What do you call a baby dog?",
    "What is the capital of Denmark?", "What is 11 plus 9?",
    "How many players are on a soccer team?", "What is the hardest natural substance?",
    "What language is spoken in China?", "Which day comes after Monday?",
    "Which continent is France in?", "What is 4 times 5?",
    "How many hours are in two days?", "What part of a plant grows underground?",
    "What is the opposite of light?", "What is the last month of the year?",
    "Which continent is Japan in?", "What is 9 plus 6?",
    "What is the smallest continent?", "What is the fastest land animal?",
    "What is the plural of woman?", "What season comes after winter?",
    "What is the largest country by area?", "What is 100 minus 40?",
    "In which city is the Eiffel Tower?", "What animal is known as the king of the jungle?",
    "What do you call a doctor who treats animals?", "What holiday is celebrated on October 31?",
    "What is the longest river in South America?", "What is 8 divided by 2?",
    "What instrument has six strings?", "What is the largest bird?",
    "What is the currency of the European Union?", "What shape has three sides?",
]
"""Short questions of the kinds the general check asks (places, sums, units, science,
words, common knowledge) but none of its questions, for the "short-replay" levers: replayed
beside trainer/replay.py's open requests. They lost more, not less (docs/training.md), so the
default replays the open requests only."""



def _mixed(short: list[str], open_: list[str]) -> list[str]:
    """The short and the open requests in turns of three to one, so that any first part
    of the list holds both kinds."""
    mixed: list[str] = []
    for i in range(max(len(short), 3 * len(open_))):
        if i < len(short):
            mixed.append(short[i])
        if i % 3 == 2 and i // 3 < len(open_):
            mixed.append(open_[i // 3])
    return mixed


def load(path: Path) -> list[list[dict]]:
    return [json.loads(line)["messages"] for line in path.read_text().splitlines() if line]


def train(config: TrainConfig, data, base: Path, out: Path, work: Path) -> float:
    """tunechat's SFT recipe on `data` (a RunData), as a run trains; returns the seconds
    it took."""
    from trainer.common import Quiet
    from trainer.sft import run_sft

    started = time.monotonic()
    run_sft(config, data, base, out, work / out.name, Quiet())
    return time.monotonic() - started


def rescale(folder: Path, scale: float) -> None:
    """Serve an adapter at `scale` of its strength: LoRA's update is scaled by alpha / r."""
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text())
    config["lora_alpha"] = config["lora_alpha"] * scale
    path.write_text(json.dumps(config))


def task_score(engine, adapter: str, name: str) -> int:
    task = WALKTHROUGHS[name]
    replies = engine.reply_many([[{"role": "system", "content": task.system},
                                  {"role": "user", "content": prompt}]
                                 for prompt, _ in task.prompts], adapter, 120)
    return sum(task.score(reply, expected)
               for reply, (_, expected) in zip(replies, task.prompts))


def general_right(engine, adapter: str, questions) -> list[bool]:
    answers = engine.reply_many([q.messages for q in questions], adapter, 40)
    return [q.right(a) for q, a in zip(questions, answers)]


def main(argv: list[str] | None = None) -> int:
    from assistant.bases import load_model, resolve_model
    from assistant.engine import ChatEngine
    from core.hardware import describe_machine
    from services.general import shipped
    from trainer import replay
    from trainer.dataset import RunData, answer_characters

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levers", default=",".join(LEVERS))
    parser.add_argument("--tasks", default=",".join(WALKTHROUGHS))
    parser.add_argument("--json", default=str(HERE / "sweep_defaults.json"))
    args = parser.parse_args(argv)
    base = resolve_model(None)[1]
    adapters = Path(tempfile.mkdtemp(prefix="tunechat-sweep-"))
    work = Path(tempfile.mkdtemp(prefix="tunechat-sweep-work-"))
    engine = ChatEngine(load_model(None), adapters_dir=adapters)
    questions = shipped()
    base_general = general_right(engine, "base", questions)
    open_pool = list(replay.PROMPTS)
    report: dict = {"machine": describe_machine(), "base_general": sum(base_general),
                    "general_questions": len(questions), "rows": []}
    if Path(args.json).exists():  # go on from an interrupted sweep
        report["rows"] = json.loads(Path(args.json).read_text())["rows"]
    done = {(row["lever"], row["task"]) for row in report["rows"]}
    for lever in args.levers.split(","):
        for name in args.tasks.split(","):
            if (lever, name) in done:
                continue
            examples = load(HERE / WALKTHROUGHS[name].data)
            split = RunData.split(examples)
            settings = dict(LEVERS[lever])
            factor = settings.pop("epochs_factor", 1)
            scale = settings.pop("serve_scale", 1.0)
            replay.PROMPTS = _mixed(SHORT, open_pool) \
                if settings.pop("replay_pool", "") == "short" else open_pool
            config = replace(TrainConfig(), **(BEFORE | settings))
            epochs = config.epochs_for(answer_characters(split.train))
            config = replace(config, epochs=epochs * factor)
            adapter = f"{lever}-{name}".replace("%", "pct").replace(".", "-").replace("+", "-")
            seconds = train(config, split, base, adapters / adapter, work)
            if scale != 1.0:
                rescale(adapters / adapter, scale)
            right = general_right(engine, adapter, questions)
            row = {"lever": lever, "task": name, "task_right": task_score(engine, adapter, name),
                   "task_prompts": len(WALKTHROUGHS[name].prompts),
                   "general_right": sum(right),
                   "general_lost": sum(b and not r for b, r in zip(base_general, right)),
                   "general_gained": sum(r and not b for b, r in zip(base_general, right)),
                   "train_seconds": round(seconds, 1), "epochs": config.epochs,
                   "train_examples": len(split.train),
                   "replay_examples": replay.count_for(config.replay, len(split.train))}
            report["rows"].append(row)
            print(json.dumps(row), flush=True)
            Path(args.json).write_text(json.dumps(report, indent=1))
    print_table(report)
    return 0


def print_table(report: dict) -> None:
    """One markdown row per lever: each walkthrough's unseen prompts right, the general
    questions the base got right that the adapter lost, and the training seconds."""
    tasks = list(WALKTHROUGHS)
    print(f"machine: {report['machine']}; the base gets {report['base_general']} of "
          f"{report['general_questions']} general questions right\n")
    print("| lever | " + " | ".join(f"{t}: unseen right" for t in tasks)
          + " | general lost (" + " / ".join(tasks) + ") | training s (" + " / ".join(tasks)
          + ") |")
    print("|---" * (2 + len(tasks) + 1) + "|")
    by = {(r["lever"], r["task"]): r for r in report["rows"]}
    for lever in dict.fromkeys(r["lever"] for r in report["rows"]):
        rows = [by.get((lever, t)) for t in tasks]
        if None in rows:
            continue
        print(f"| {lever} | " + " | ".join(f"{r['task_right']}/{r['task_prompts']}"
                                           for r in rows)
              + " | " + " / ".join(str(r["general_lost"]) for r in rows)
              + " | " + " / ".join(f"{r['train_seconds']:.0f}" for r in rows) + " |")


if __name__ == "__main__":
    sys.exit(main())
