"""Hand a trained adapter to llama.cpp and Ollama: the adapter as a GGUF LoRA, the base
with the adapter merged in as GGUF (8-bit and 16-bit), and an Ollama Modelfile, checked
by replaying prompts through the files written. The conversion itself is core/gguf.py.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.gguf import GGUFExportError, read_adapter, write_adapter, write_merged

ADAPTER_FILE = "adapter.gguf"
MERGED_FILES = {"Q8_0": "model-q8_0.gguf", "F16": "model-f16.gguf"}
"""The merged model at 8 bits (what Ollama and LM Studio users usually pick) and 16 bits
(the closest to the tuned model)."""


CHATML_TEMPLATE = """{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""
"""The ChatML turns of SmolLM2's chat template, in Ollama's Go template language."""


def modelfile(chat_template: str) -> str:
    """An Ollama Modelfile for the merged 8-bit model: its chat template and stop token.
    A template other than ChatML is left to Ollama (it reads the GGUF's own)."""
    lines = [f"FROM ./{MERGED_FILES['Q8_0']}"]
    if "<|im_start|>" in chat_template:
        lines += [f'TEMPLATE """{CHATML_TEMPLATE}"""', 'PARAMETER stop "<|im_end|>"']
    lines.append("PARAMETER temperature 0")
    return "\n".join(lines) + "\n"


def export_gguf(base_folder: Path, base_gguf: Path | None, adapter_folder: Path,
                out_dir: Path) -> list[Path]:
    """Write adapter.gguf, the merged model at 8 and 16 bits (where the base is a GGUF
    file) and a Modelfile into `out_dir`, all at once: into a scratch folder renamed when
    complete, so a failure leaves nothing half-written. Returns the files written."""
    out_dir = Path(out_dir)
    _check_destination(out_dir)
    base_config = json.loads((base_folder / "config.json").read_text())
    adapter = read_adapter(adapter_folder, base_config)
    name = adapter_folder.name
    scratch = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    scratch.mkdir()
    try:
        write_adapter(adapter, scratch / ADAPTER_FILE, name)
        if base_gguf is not None:
            for kind, file in MERGED_FILES.items():
                write_merged(base_gguf, adapter, scratch / file, kind, name)
            template = _chat_template(base_folder)
            (scratch / "Modelfile").write_text(modelfile(template))
        if out_dir.exists():
            out_dir.rmdir()
        scratch.rename(out_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return sorted(out_dir.iterdir())


def _check_destination(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise GGUFExportError(f"{out_dir} already exists and is not an empty folder; choose "
                              "a new folder.")
    if not out_dir.parent.is_dir():
        raise GGUFExportError(f"The folder {out_dir.parent} does not exist; create it first.")


def _chat_template(base_folder: Path) -> str:
    settings = base_folder / "tokenizer_config.json"
    template = json.loads(settings.read_text()).get("chat_template") if settings.is_file() \
        else None
    if not template and (base_folder / "chat_template.jinja").is_file():
        template = (base_folder / "chat_template.jinja").read_text()
    return template or ""


REPLAY_TOKENS = 48
"""Greedy tokens compared per prompt: enough for a sign-off or a first sentence to differ."""

MATCH_NEEDED = 0.75
"""The share of replayed prompts whose greedy answer from the 16-bit merged file (read by
transformers, and by llama.cpp where installed) must equal the in-app adapter's, else
the export fails. bench/gguf_export.py measured every answer equal; the margin leaves
room for fp16 rounding to tip a near tie (docs/serving-and-export.md)."""


@dataclass
class Replay:
    file: str
    engine: str
    """What read the file: transformers (the merged models) or llama.cpp (all three)."""
    answers: list[str]

    def same(self, reference: list[str]) -> int:
        return sum(a == b for a, b in zip(self.answers, reference))


@dataclass
class ExportCheck:
    prompts: list[str]
    in_app: list[str]
    replays: list[Replay]
    adapter_exact: bool
    """adapter.gguf, read back with the gguf reader, holds exactly the pairs converted."""

    def lines(self) -> list[str]:
        n = len(self.prompts)
        said = [f"{r.file} ({r.engine}): {r.same(self.in_app)} of {n} greedy answers as in "
                "tunechat" for r in self.replays]
        return ["adapter.gguf read back: " + ("the adapter's numbers, exactly"
                                              if self.adapter_exact else "DIFFERENT")] + said

    def failures(self) -> list[str]:
        wrong = [] if self.adapter_exact else ["adapter.gguf does not hold the adapter's "
                                               "numbers"]
        for replay in self.replays:
            if replay.file == MERGED_FILES["F16"] and \
                    replay.same(self.in_app) < MATCH_NEEDED * len(self.prompts):
                wrong.append(f"{replay.file} ({replay.engine}) gives the in-app answer on only "
                             f"{replay.same(self.in_app)} of {len(self.prompts)} prompts "
                             f"(needed: {MATCH_NEEDED:.0%})")
        return wrong


def check_export(base_folder: Path, base_gguf: Path | None, adapter_folder: Path,
                 out_dir: Path, prompts: list[str], progress=None) -> ExportCheck:
    """Replay `prompts` greedily through the in-app adapter (PEFT on the base) and through
    the exported files: the merged ones with transformers, and every file with llama.cpp
    where llama-cpp-python is installed. `progress(done, total)` follows the prompts."""
    import importlib.util

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_folder)
    texts = [str(tokenizer.apply_chat_template([{"role": "user", "content": p}],
                                               tokenize=False, add_generation_prompt=True))
             for p in prompts]
    merged = [f for f in MERGED_FILES.values() if (out_dir / f).is_file()]
    llama = importlib.util.find_spec("llama_cpp") is not None and base_gguf is not None
    total = len(prompts) * (1 + len(merged) + (1 + len(merged)) * llama)
    done = [0]

    def tick():
        done[0] += 1
        if progress:
            progress(done[0], total)

    def greedy(model) -> list[str]:
        answers = []
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
            with torch.no_grad():
                out = model.generate(**ids, max_new_tokens=REPLAY_TOKENS, do_sample=False)
            answers.append(str(tokenizer.decode(out[0, ids["input_ids"].shape[1]:],
                                                skip_special_tokens=True)).strip())
            tick()
        return answers

    base = AutoModelForCausalLM.from_pretrained(base_folder, dtype=torch.float32)
    in_app = greedy(PeftModel.from_pretrained(base, adapter_folder).eval())
    replays = [Replay(f, "transformers", greedy(AutoModelForCausalLM.from_pretrained(
        out_dir, gguf_file=f, dtype=torch.float32).eval())) for f in merged]
    if llama and base_gguf is not None:
        replays += _llama_replays(base_gguf, out_dir, merged, texts, tick)
    config = json.loads((base_folder / "config.json").read_text())
    return ExportCheck(prompts, in_app, replays,
                       _reads_back(out_dir / ADAPTER_FILE, adapter_folder, config))


def _llama_replays(base_gguf: Path, out_dir: Path, merged: list[str], texts: list[str],
                   tick) -> list[Replay]:
    from llama_cpp import Llama

    def greedy(model_path: Path, lora: Path | None = None) -> list[str]:
        model = Llama(model_path=str(model_path), lora_path=str(lora) if lora else None,
                      n_ctx=2048, verbose=False, seed=0)
        answers = []
        for text in texts:
            out: Any = model.create_completion(text, max_tokens=REPLAY_TOKENS,
                                               temperature=0.0, top_k=1)
            answers.append(out["choices"][0]["text"].strip())
            tick()
        model.close()
        return answers

    return [Replay(f"{base_gguf.name} + {ADAPTER_FILE}", "llama.cpp",
                   greedy(base_gguf, out_dir / ADAPTER_FILE))] + \
        [Replay(f, "llama.cpp", greedy(out_dir / f)) for f in merged]


def _reads_back(path: Path, adapter_folder: Path, base_config: dict) -> bool:
    """adapter.gguf's tensors equal what read_adapter makes of the adapter folder."""
    import gguf

    wanted = read_adapter(adapter_folder, base_config)
    reader = gguf.GGUFReader(path)
    found = {t.name: np.asarray(t.data) for t in reader.tensors}
    alpha = reader.fields[gguf.Keys.Adapter.LORA_ALPHA].contents()
    return math.isclose(alpha, wanted.alpha, rel_tol=1e-6) and len(found) == \
        2 * len(wanted.pairs) and all(
            np.array_equal(found[p.name + ".lora_a"], p.a.astype(np.float32)) and
            np.array_equal(found[p.name + ".lora_b"], p.b.astype(np.float32))
            for p in wanted.pairs)
