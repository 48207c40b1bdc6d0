"""Hand a trained adapter to llama.cpp and Ollama: the adapter as a GGUF LoRA, the base
with the adapter merged in as GGUF (8-bit and 16-bit), and an Ollama Modelfile.

Written with the `gguf` package (the format's own library). The conversion follows
llama.cpp's own layout for llama-family models: tensors named as in its name map
(`blk.N.attn_q`), each LoRA pair as `<tensor>.lora_a` (rank x in) and `.lora_b` (out x
rank), and the query and key rows permuted as llama.cpp stores them for its rotary
embedding. What it cannot convert (another architecture, adapters on the embeddings or
the output head, per-layer ranks, DoRA) is refused with a message, never written wrong.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import UserError

ARCHITECTURES = {"LlamaForCausalLM": "llama"}
"""Hugging Face architectures whose tensor layout this converter knows, and their GGUF
name. Others are refused (llama.cpp's convert_lora_to_gguf.py knows more)."""

ADAPTER_FILE = "adapter.gguf"
MERGED_FILES = {"Q8_0": "model-q8_0.gguf", "F16": "model-f16.gguf"}
"""The merged model at 8 bits (what Ollama and LM Studio users usually pick) and 16 bits
(the closest to the tuned model)."""


class GGUFExportError(UserError):
    """The adapter or base cannot be written as GGUF; the message says why and what to do."""


@dataclass(frozen=True)
class LoraPair:
    name: str
    """The base tensor's GGUF name, e.g. blk.29.attn_q.weight."""
    a: np.ndarray
    """rank x in, as PEFT's lora_A."""
    b: np.ndarray
    """out x rank, as PEFT's lora_B, with llama.cpp's row order."""

    def delta(self, scale: float) -> np.ndarray:
        """What merging adds to the base tensor: scale * B @ A (out x in)."""
        return scale * (self.b.astype(np.float32) @ self.a.astype(np.float32))


@dataclass(frozen=True)
class GGUFAdapter:
    arch: str
    pairs: list[LoraPair]
    alpha: float
    """llama.cpp's alpha: it scales each pair by alpha / rank, as PEFT by lora_alpha / r
    (or / sqrt(r) with rsLoRA, folded into alpha here)."""
    rank: int

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def read_adapter(adapter_folder: Path, base_config: dict) -> GGUFAdapter:
    """The adapter's LoRA pairs in llama.cpp's names and layout, or GGUFExportError."""
    import gguf
    from safetensors.numpy import load_file

    arch = _architecture(base_config)
    config = json.loads((adapter_folder / "adapter_config.json").read_text())
    _refuse_unconvertible(config)
    rank = int(config["r"])
    alpha = float(config["lora_alpha"]) * (math.sqrt(rank) if config.get("use_rslora") else 1)
    blocks = int(base_config["num_hidden_layers"])
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], blocks)
    halves: dict[str, dict[str, np.ndarray]] = {}
    for key, value in load_file(adapter_folder / "adapter_model.safetensors").items():
        module, _, which = key.removeprefix("base_model.model.").rpartition(".lora_")
        if which not in ("A.weight", "B.weight"):
            raise GGUFExportError(
                f"The adapter holds {key}, which is not a LoRA pair (trained embeddings or "
                "new tokens?). llama.cpp cannot apply it; export the merged Hugging Face "
                "folder instead (--merged).")
        target = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if target is None or module.endswith(("embed_tokens", "lm_head")):
            raise GGUFExportError(
                f"The adapter trains {module}, which llama.cpp does not accept in a LoRA "
                "(embeddings and the output head are tied in this model). Train without it "
                "or export the merged Hugging Face folder instead (--merged).")
        halves.setdefault(target, {})[which[0]] = value
    pairs = [LoraPair(name, ab["A"], _llama_rows(ab["B"], name, base_config))
             for name, ab in sorted(halves.items())]
    if not pairs or any(len(ab) != 2 for ab in halves.values()):
        raise GGUFExportError(f"{adapter_folder.name} holds no complete LoRA pairs; train it "
                              "again.")
    return GGUFAdapter(arch, pairs, alpha, rank)


def _architecture(base_config: dict) -> str:
    found = (base_config.get("architectures") or ["an unnamed architecture"])[0]
    if found not in ARCHITECTURES:
        raise GGUFExportError(
            f"The base model is a {found}; the GGUF export knows {', '.join(ARCHITECTURES)} "
            "only. Export the merged Hugging Face folder (--merged) and convert it with "
            "llama.cpp's convert_hf_to_gguf.py.")
    return ARCHITECTURES[found]


def _refuse_unconvertible(config: dict) -> None:
    if config.get("use_dora"):
        raise GGUFExportError("The adapter is a DoRA, which llama.cpp does not apply; export "
                              "the merged Hugging Face folder instead (--merged).")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise GGUFExportError("The adapter has a different rank or alpha per layer, which one "
                              "GGUF LoRA cannot say; export the merged folder (--merged).")


def _llama_rows(b: np.ndarray, name: str, base_config: dict) -> np.ndarray:
    """llama.cpp stores the query and key rows of each head with the two rotary halves
    interleaved; a LoRA's B writes rows, so it takes the same order as the base's."""
    heads = int(base_config["num_attention_heads"])
    if name.endswith("attn_k.weight"):
        heads = int(base_config.get("num_key_value_heads") or heads)
    elif not name.endswith("attn_q.weight"):
        return b
    rows = b.shape[0]
    return b.reshape(heads, 2, rows // heads // 2, *b.shape[1:]).swapaxes(1, 2).reshape(b.shape)


def write_adapter(adapter: GGUFAdapter, path: Path, adapter_name: str) -> None:
    """The adapter as a GGUF LoRA: for `llama-cli --lora`, llama-server, Ollama's ADAPTER."""
    import gguf

    writer = gguf.GGUFWriter(path, adapter.arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, adapter.alpha)
    writer.add_name(adapter_name)
    for pair in adapter.pairs:
        writer.add_tensor(pair.name + ".lora_a", pair.a.astype(np.float32))
        writer.add_tensor(pair.name + ".lora_b", pair.b.astype(np.float32))
    _finish(writer)


def write_merged(base_gguf: Path, adapter: GGUFAdapter, path: Path, kind: str,
                 adapter_name: str) -> None:
    """The base GGUF with the adapter added to its weights, every matrix stored as `kind`
    (Q8_0 or F16); the tokenizer, chat template and settings copied from the base."""
    import gguf
    from gguf.quants import dequantize, quantize

    qtype = gguf.GGMLQuantizationType[kind]
    reader = gguf.GGUFReader(base_gguf)
    arch = reader.fields["general.architecture"].contents()
    if arch != adapter.arch:
        raise GGUFExportError(f"{base_gguf.name} is a {arch} model and the adapter was "
                              f"trained on a {adapter.arch} one.")
    writer = gguf.GGUFWriter(path, arch)
    _copy_settings(reader, writer, kind, adapter_name)
    deltas = {pair.name: pair for pair in adapter.pairs}
    for tensor in reader.tensors:
        weights = dequantize(tensor.data, tensor.tensor_type).reshape(
            [int(n) for n in reversed(tensor.shape)])
        if tensor.name in deltas:
            weights = weights + deltas.pop(tensor.name).delta(adapter.scale)
        if weights.ndim != 2 or weights.shape[-1] % gguf.GGML_QUANT_SIZES[qtype][0]:
            # norms (and rows that do not fill whole blocks) stay in full precision,
            # as llama.cpp's own converter keeps them
            writer.add_tensor(tensor.name, weights.astype(np.float32))
        elif qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(tensor.name, weights.astype(np.float16))
        else:  # bytes, one row of blocks per weight row
            writer.add_tensor(tensor.name, quantize(weights.astype(np.float32), qtype),
                              raw_dtype=qtype)
    if deltas:
        raise GGUFExportError(f"{base_gguf.name} has no tensor {next(iter(deltas))}: the "
                              "adapter was trained on another model.")
    _finish(writer)


def _copy_settings(reader, writer, kind: str, adapter_name: str) -> None:
    import gguf

    skipped = {"general.architecture", "general.file_type", "general.name",
               "general.quantization_version"}
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in skipped:
            continue
        value = field.contents()
        sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, value, field.types[0], sub_type=sub_type)
    writer.add_name(adapter_name)
    writer.add_file_type({"Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
                          "F16": gguf.LlamaFileType.MOSTLY_F16}[kind])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _finish(writer) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


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


def tensors(path: Path) -> Iterator[tuple[str, str, tuple[int, ...]]]:
    """(name, type, shape) of each tensor in a GGUF file, shape as numpy orders it."""
    import gguf

    for tensor in gguf.GGUFReader(path).tensors:
        yield tensor.name, tensor.tensor_type.name, tuple(int(n) for n in reversed(tensor.shape))


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
