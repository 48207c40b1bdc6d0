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
}

def load(path: Path) -> list[list[dict]]:
    return [json.loads(line)["messages"] for line in path.read_text().splitlines() if line]


def train(config: TrainConfig, train_set: list, held_out: list, base: Path, out: Path,
          work: Path) -> float:
    from trainer.dataset import RunData
    from trainer.sft import run_sft

    class Quiet:
        def started(self, *args): ...
        def progress(self, *args): ...
        def cancelled(self): return False

    started = time.monotonic()
    run_sft(config, RunData(train_set, held_out), base, out, work / out.name, Quiet())
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
    from assistant.engine import ChatEngine
    from assistant.models import load_model, resolve_model
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
            config = replace(TrainConfig(), **(BEFORE | settings))
            epochs = config.epochs_for(answer_characters(split.train))
            config = replace(config, epochs=epochs * factor)
            adapter = f"{lever}-{name}".replace("%", "pct").replace(".", "-").replace("+", "-")
            seconds = train(config, split.train, split.held_out, base, adapters / adapter, work)
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
