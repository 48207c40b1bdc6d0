"""What holds the DPO stage's memory? One command:

    .venv/bin/python bench/dpo_memory.py [--json FILE] [--variants default,...]

The brand-voice examples become 38 corrections as the preference walkthrough makes them
(the base's own greedy answer rejected, the voice's answer preferred); an SFT adapter is
trained on them with the defaults, then a DPO stage runs on the pairs through
trainer/dpo.py, once per variant, each in a fresh process (peak memory starts afresh).
A thread samples the process's resident memory every 20 ms and labels each sample with
the phase it fell in: loading, the trainer's setup, the measure before, training, the
measure after, saving. Results go to bench/results-dpo-memory-<machine>.json."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

VARIANTS: dict[str, dict] = {
    "whole-batch": {"preference_micro_batch": None},
    "micro-2": {"preference_micro_batch": 2},
    "micro-1": {"preference_micro_batch": 1},
    "precompute-ref": {"preference_micro_batch": None,
                       "extra": {"precompute_ref_log_probs": True}},
}
"""TrainConfig changes to try, by name."""


class Sampler:
    """Resident memory every 20 ms, by phase."""

    def __init__(self):
        import psutil

        self.process, self.phase, self.peaks = psutil.Process(), "loading", {}
        self.stopped = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            rss = self.process.memory_info().rss / 2**20
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), round(rss))
            time.sleep(0.02)

    def enter(self, phase: str) -> None:
        rss = self.process.memory_info().rss / 2**20
        self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), round(rss))
        self.phase = phase


def prepare(work: Path) -> None:
    """The pairs and the SFT adapter the stage starts from, written into `work`."""
    from dataclasses import replace

    from assistant.bases import load_model, resolve_model
    from assistant.engine import ChatEngine
    from trainer.config import TrainConfig
    from trainer.dataset import RunData, answer_characters
    from trainer.sft import run_sft

    voice = [json.loads(line)["messages"] for line in
             (HERE / "data/brand-voice.openai.jsonl").read_text().splitlines() if line]
    engine = ChatEngine(load_model(None))
    rejected = engine.reply_many([m[:-1] for m in voice], "base", 120)
    (work / "pairs.json").write_text(json.dumps([[m, r] for m, r in zip(voice, rejected)]))

    from trainer.common import Quiet

    data = RunData(voice, [])
    config = replace(TrainConfig(), epochs=TrainConfig().epochs_for(answer_characters(voice)))
    run_sft(config, data, resolve_model(None)[1], work / "sft", work / "sft-work", Quiet())


def measure(work: Path, variant: str) -> dict:
    """One DPO stage on the prepared pairs, its memory by phase (in this process)."""
    sampler = Sampler()
    from dataclasses import replace

    import trl

    from assistant.bases import resolve_model
    from trainer import stages
    from trainer.config import TrainConfig
    from trainer.dataset import Pair, RunData
    from trainer.dpo import run_dpo

    def phased(owner, name: str, phase: str) -> None:
        original = getattr(owner, name)

        def wrapped(*args, **kwargs):
            sampler.enter(phase)
            try:
                return original(*args, **kwargs)
            finally:
                sampler.enter("between")
        setattr(owner, name, wrapped)

    measured = iter(["measure before", "measure after"])
    original_measure = stages._measure

    def measure_phase(trainer):
        sampler.enter(next(measured))
        return original_measure(trainer)

    stages._measure = measure_phase
    phased(trl.DPOTrainer, "__init__", "trainer setup")
    phased(trl.DPOTrainer, "train", "training")
    phased(stages, "save_adapter", "saving")
    pairs = [Pair(m, r) for m, r in json.loads((work / "pairs.json").read_text())]
    config = replace(TrainConfig(objective="dpo", continue_from="sft"), **VARIANTS[variant])

    from trainer.common import Quiet

    started = time.monotonic()
    sampler.enter("loading")
    trained = run_dpo(config, RunData([], [], pairs=pairs), resolve_model(None)[1],
                      work / f"dpo-{variant}", work / f"dpo-{variant}-work", Quiet(),
                      continue_from=work / "sft")
    sampler.enter("done")
    sampler.stopped.set()
    return {"variant": variant, "changes": VARIANTS[variant], "pairs": len(pairs),
            "peak_mb_by_phase": sampler.peaks, "seconds": round(time.monotonic() - started, 1),
            "stage_peak_memory_mb": trained.metrics.get("peak_memory_mb"),
            "before": trained.metrics.get("before"), "after": trained.metrics.get("after")}


def main(argv: list[str] | None = None) -> int:
    from core.hardware import describe_machine

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--json", default=str(HERE / "results-dpo-memory-2core-epyc.json"))
    parser.add_argument("--work", help=argparse.SUPPRESS)  # a child process's folder
    parser.add_argument("--one", help=argparse.SUPPRESS)  # measure one variant, print JSON
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(Path(args.work), args.one)))
        return 0
    work = Path(tempfile.mkdtemp(prefix="tunechat-dpo-memory-"))
    prepare(work)
    rows = []
    for variant in args.variants.split(","):
        out = subprocess.run([sys.executable, __file__, "--work", str(work), "--one", variant],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    Path(args.json).write_text(json.dumps({"machine": describe_machine(), "rows": rows},
                                          indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
