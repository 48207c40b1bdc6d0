"""Our GGUF LoRA beside llama.cpp's own converter: the same tensors, shapes and numbers?

tunechat writes adapter.gguf itself (trainer/gguf_export.py: llama.cpp's converter is a
script inside its source tree, not a package). This runs that script,
`convert_lora_to_gguf.py` from a llama.cpp checkout (the one vendored in the
llama-cpp-python sdist will do), on the same PEFT adapter and compares the two files
tensor by tensor, with the adapter's alpha and type.

`python -m bench.gguf_versus_llama_cpp --llama-cpp DIR --home H [--adapter NAME]
[--json FILE]`"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

KEYS = ["general.architecture", "general.type", "adapter.type", "adapter.lora.alpha"]


def compare(ours: Path, theirs: Path) -> dict:
    import gguf

    readers = gguf.GGUFReader(ours), gguf.GGUFReader(theirs)
    mine, other = ({t.name: np.array(t.data, dtype=np.float32) for t in r.tensors}
                   for r in readers)
    shared = sorted(set(mine) & set(other))
    return {
        "tensors": {"ours": len(mine), "llama_cpp": len(other), "shared": len(shared)},
        "same_shapes": all(mine[n].shape == other[n].shape for n in shared),
        "max_abs_difference": max((float(np.abs(mine[n] - other[n]).max()) for n in shared),
                                  default=None),
        "keys": {key: [str(r.fields[key].contents()) if key in r.fields else None
                       for r in readers] for key in KEYS},
    }


def main() -> None:
    from assistant.bases import resolve_model
    from core import gguf as core_gguf

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-cpp", type=Path, required=True,
                        help="a llama.cpp source folder (holds convert_lora_to_gguf.py)")
    parser.add_argument("--home", type=Path, required=True, help="a tunechat data home")
    parser.add_argument("--adapter", default="run-1")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    _, base_folder = resolve_model(None)
    adapter = args.home / "adapters" / args.adapter
    with tempfile.TemporaryDirectory() as work:
        ours, theirs = Path(work) / "ours.gguf", Path(work) / "llama_cpp.gguf"
        config = json.loads((base_folder / "config.json").read_text())
        core_gguf.write_adapter(core_gguf.read_adapter(adapter, config), ours,
                                  args.adapter)
        # its own gguf-py beside it: the script follows that copy, not our pinned one
        env = {**os.environ, "PYTHONPATH": str(args.llama_cpp / "gguf-py")}
        subprocess.run([sys.executable, str(args.llama_cpp / "convert_lora_to_gguf.py"),
                        "--base", str(base_folder), "--outtype", "f32", "--outfile",
                        str(theirs), str(adapter)], check=True, capture_output=True, env=env)
        found = compare(ours, theirs)
    print(json.dumps(found, indent=2))
    if args.json:
        args.json.write_text(json.dumps(found, indent=2))


if __name__ == "__main__":
    main()
