"""A PEFT LoRA adapter as llama.cpp reads it: the adapter as a GGUF LoRA, or merged into
a base GGUF file (8-bit or 16-bit). Read by the export (trainer/gguf_export.py) and the
llama.cpp chat engine (assistant/llama_engine.py), which converts each adapter it serves.

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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import UserError

ARCHITECTURES = {"LlamaForCausalLM": "llama"}
"""Hugging Face architectures whose tensor layout this converter knows, and their GGUF
name. Others are refused (llama.cpp's convert_lora_to_gguf.py knows more)."""

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


def write_copy(base_gguf: Path, path: Path, kind: str) -> None:
    """The base GGUF as it is, every matrix stored as `kind` (F16 from a 4-bit file)."""
    import gguf

    arch = gguf.GGUFReader(base_gguf).fields["general.architecture"].contents()
    write_merged(base_gguf, GGUFAdapter(arch, [], alpha=1.0, rank=1), path, kind, "base")


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


def tensors(path: Path) -> Iterator[tuple[str, str, tuple[int, ...]]]:
    """(name, type, shape) of each tensor in a GGUF file, shape as numpy orders it."""
    import gguf

    for tensor in gguf.GGUFReader(path).tensors:
        yield tensor.name, tensor.tensor_type.name, tuple(int(n) for n in reversed(tensor.shape))
