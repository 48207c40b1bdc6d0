"""GGUF export: how long it takes, how large the files are, and how often the exported
files give the same greedy answer as the adapter in tunechat.

For each data set an adapter is trained with tunechat's defaults in a fresh data home
(`tunechat import` then `tunechat train`, the real commands), exported with
`trainer.gguf_export`, and the set's last REPLAYED prompts are replayed through the
in-app adapter and each exported file: the merged 8- and 16-bit models read by
transformers, and (where llama-cpp-python is installed) the adapter on the base GGUF and
both merged models in llama.cpp. Its numbers set `gguf_export.MATCH_NEEDED`.

`python -m bench.gguf_export [--json FILE] [DATA ...]`"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.hardware import describe_machine
from services.report import REPLAYED

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SETS = [ROOT / "examples" / name for name in (
    "willow-yoga.voice.jsonl", "ticket-labels.openai.jsonl", "order-json.openai.jsonl")]


def tunechat(home: Path, command: str, *args: str) -> None:
    """One CLI command; flags go after the command, where its parser reads them."""
    done = subprocess.run([sys.executable, "-m", "app", command, *args, "--home", str(home)],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"tunechat {command} failed: {done.stderr.strip()[-500:]}")


def last_prompts(data: Path) -> list[str]:
    rows = [json.loads(line) for line in data.read_text().splitlines() if line.strip()]
    users = [next(m["content"] for m in reversed(row["messages"][:-1]) if m["role"] == "user")
             for row in rows]
    return users[-REPLAYED:]


def one_set(data: Path, work: Path) -> dict:
    from assistant.bases import embedded_gguf_path, resolve_model
    from trainer import gguf_export

    home = work / data.stem
    tunechat(home, "import", str(data), "--threshold", "0")
    tunechat(home, "train")
    _, base = resolve_model(None)
    adapter, out = home / "adapters" / "run-1", home / "gguf"
    started = time.perf_counter()
    files = gguf_export.export_gguf(base, embedded_gguf_path(), adapter, out)
    export_s = time.perf_counter() - started
    started = time.perf_counter()
    checked = gguf_export.check_export(base, embedded_gguf_path(), adapter, out,
                                       last_prompts(data))
    return {
        "data": data.name, "export_s": round(export_s, 1),
        "check_s": round(time.perf_counter() - started, 1),
        "sizes_mb": {f.name: round(f.stat().st_size / 1e6, 1) for f in files},
        "adapter_exact": checked.adapter_exact, "prompts": len(checked.prompts),
        "same": {f"{r.file} ({r.engine})": r.same(checked.in_app) for r in checked.replays},
        "differing": [{"file": r.file, "engine": r.engine, "prompt": p, "in_app": a, "got": g}
                      for r in checked.replays
                      for p, a, g in zip(checked.prompts, checked.in_app, r.answers) if a != g],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="*", type=Path, default=DEFAULT_SETS)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        results = [one_set(data, Path(work)) for data in args.data]
    for result in results:
        print(f"{result['data']}: export {result['export_s']} s, check {result['check_s']} s")
        for name, same in result["same"].items():
            print(f"  {name}: {same} of {result['prompts']} as in tunechat")
    if args.json:
        args.json.write_text(json.dumps({"machine": describe_machine(), "sets": results},
                                        indent=2))


if __name__ == "__main__":
    main()
