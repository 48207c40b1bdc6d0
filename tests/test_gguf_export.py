"""GGUF export: the adapter as a GGUF LoRA read back by the format's own reader, what it
refuses to convert, and (with the embedded model) a merged 16-bit GGUF that transformers
reads back into the same model as tunechat's base + adapter."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from core import gguf as core_gguf
from core.gguf import GGUFExportError
from trainer import gguf_export

from helpers import lora_adapter


def base_config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def test_the_adapter_round_trips_through_the_gguf_reader(tiny_model_dir, tmp_path):
    import gguf

    adapter = lora_adapter(tiny_model_dir, tmp_path / "run-1")
    files = gguf_export.export_gguf(tiny_model_dir, None, adapter, tmp_path / "out")
    assert [f.name for f in files] == ["adapter.gguf"]  # no GGUF base: no merged model
    reader = gguf.GGUFReader(files[0])
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    assert reader.fields["adapter.lora.alpha"].contents() == 8.0
    assert reader.fields["general.architecture"].contents() == "llama"
    shapes = {name: shape for name, _, shape in core_gguf.tensors(files[0])}
    # 2 blocks x 7 matrices, an A and a B each, in llama.cpp's names and layout
    assert len(shapes) == 2 * 7 * 2
    assert shapes["blk.0.attn_q.weight.lora_a"] == (4, 64)  # rank x in
    assert shapes["blk.0.attn_q.weight.lora_b"] == (64, 4)  # out x rank
    assert shapes["blk.1.attn_k.weight.lora_b"] == (32, 4)  # 2 key heads of 16
    assert shapes["blk.1.ffn_down.weight.lora_a"] == (4, 128)


def test_query_and_key_rows_take_llama_cpps_order(tiny_model_dir, tmp_path):
    """The rotary halves of each head interleaved, as llama.cpp stores q and k; v and the
    rest as PEFT wrote them."""
    from safetensors.numpy import load_file

    adapter = lora_adapter(tiny_model_dir, tmp_path / "run-1")
    saved = load_file(adapter / "adapter_model.safetensors")
    converted = core_gguf.read_adapter(adapter, base_config(tiny_model_dir))
    pairs = {pair.name: pair for pair in converted.pairs}
    peft_b = saved["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"]
    head = 16  # 64 / 4 heads: rows 0..7 and 8..15 are the two rotary halves of head 0
    ours = pairs["blk.0.attn_q.weight"].b
    assert np.array_equal(ours[0], peft_b[0]) and np.array_equal(ours[1], peft_b[head // 2])
    assert np.array_equal(ours[head], peft_b[head])  # head 1 starts where it did
    v = saved["base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight"]
    assert np.array_equal(pairs["blk.0.attn_v.weight"].b, v)
    assert pairs["blk.0.attn_q.weight"].a.shape == (4, 64)


@pytest.mark.parametrize("lora, says", [
    ({"target_modules": ["q_proj", "embed_tokens"]}, "embed_tokens.*--merged"),
    ({"use_dora": True}, "DoRA"),
    ({"rank_pattern": {"q_proj": 8}}, "rank or alpha per layer"),
])
def test_what_llama_cpp_cannot_apply_is_refused_in_words(tiny_model_dir, tmp_path, lora, says):
    adapter = lora_adapter(tiny_model_dir, tmp_path / "run-1", **lora)
    with pytest.raises(GGUFExportError, match=says):
        gguf_export.export_gguf(tiny_model_dir, None, adapter, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["run-1"]  # no scratch left behind


def test_another_architecture_is_refused_with_what_to_do(tiny_model_dir, tmp_path):
    adapter = lora_adapter(tiny_model_dir, tmp_path / "run-1")
    config = base_config(tiny_model_dir) | {"architectures": ["GPTNeoXForCausalLM"]}
    with pytest.raises(GGUFExportError, match="GPTNeoXForCausalLM.*--merged"):
        core_gguf.read_adapter(adapter, config)


def test_an_existing_folder_is_not_written_into(tiny_model_dir, tmp_path):
    adapter = lora_adapter(tiny_model_dir, tmp_path / "run-1")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    with pytest.raises(GGUFExportError, match="not an empty folder"):
        gguf_export.export_gguf(tiny_model_dir, None, adapter, tmp_path / "out")
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep"


def test_the_modelfile_carries_the_chat_turns_and_stop_token():
    text = gguf_export.modelfile("{{ '<|im_start|>' + message['role'] }}")
    assert text.startswith("FROM ./model-q8_0.gguf\n")
    assert '<|im_start|>{{ .Role }}' in text and 'PARAMETER stop "<|im_end|>"' in text
    assert "TEMPLATE" not in gguf_export.modelfile("[INST] {{ message }} [/INST]")


@pytest.mark.integration
def test_the_merged_gguf_is_the_tuned_model(tmp_path):
    """transformers reads the 16-bit merged file (undoing llama.cpp's row order itself):
    the same next-token scores as tunechat's base + adapter. A wrong row order or scale
    moves them far past this tolerance."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from assistant.bases import embedded_gguf_path, resolve_model

    _, base = resolve_model(None)
    adapter = lora_adapter(base, tmp_path / "run-1", spread=0.5,
                           layers_to_transform=list(range(20, 30)),
                           target_modules=["q_proj", "k_proj", "v_proj", "down_proj"])
    out = tmp_path / "gguf"
    files = gguf_export.export_gguf(base, embedded_gguf_path(), adapter, out)
    assert [f.name for f in files] == ["Modelfile", "adapter.gguf", "model-f16.gguf",
                                       "model-q8_0.gguf"]
    tokenizer = AutoTokenizer.from_pretrained(base)
    ids = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(
            base, dtype=torch.float32), adapter)(**ids).logits[0, -1]
        plain = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)(
            **ids).logits[0, -1]
        exported = AutoModelForCausalLM.from_pretrained(
            out, gguf_file="model-f16.gguf", dtype=torch.float32)(**ids).logits[0, -1]
    assert (tuned - plain).abs().max() > 1.0  # the adapter changes the answer's scores
    assert (exported - tuned).abs().max() < 0.1 * (tuned - plain).abs().max()
    assert exported.argmax() == tuned.argmax()


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                    reason="llama-cpp-python is not installed")
def test_llama_cpp_applies_the_exported_adapter(tmp_path):
    from llama_cpp import Llama

    from assistant.bases import embedded_gguf_path, resolve_model

    _, base = resolve_model(None)
    adapter = lora_adapter(base, tmp_path / "run-1", spread=0.5,
                           layers_to_transform=list(range(20, 30)),
                           target_modules=["q_proj", "k_proj", "v_proj", "down_proj"])
    out = tmp_path / "gguf"
    gguf_export.export_gguf(base, embedded_gguf_path(), adapter, out)
    checked = gguf_export.check_export(base, embedded_gguf_path(), adapter, out,
                                       ["What is the capital of France?", "Say hello."])
    assert checked.adapter_exact and not checked.failures()
    engines = {replay.engine for replay in checked.replays}
    assert engines == {"transformers", "llama.cpp"}
    model = Llama(model_path=str(out / "model-q8_0.gguf"), verbose=False)
    assert model.create_completion("Hello", max_tokens=4)["choices"][0]["text"]


def test_the_chat_converts_each_adapter_once_and_drops_stale_files(tiny_model_dir, tmp_path):
    """The llama.cpp engine's GGUF LoRAs (assistant/llama_engine.py): one file per version
    of an adapter's weights, beside the adapters but not among them."""
    import os
    import shutil

    from assistant.llama_engine import lora_file
    from core.adapters import adapter_folders

    adapters, config = tmp_path / "adapters", base_config(tiny_model_dir)
    first_adapter = lora_adapter(tiny_model_dir, adapters / "run-1")
    first = lora_file(first_adapter, config)
    written = first.stat().st_mtime_ns
    assert lora_file(first_adapter, config) == first
    assert first.stat().st_mtime_ns == written  # not converted again
    weights = first_adapter / "adapter_model.safetensors"
    later = weights.stat().st_mtime_ns + 10**9
    os.utime(weights, ns=(later, later))  # written again
    again = lora_file(first_adapter, config)
    assert again != first and again.is_file() and not first.exists()
    second_adapter = lora_adapter(tiny_model_dir, adapters / "run-2", seed=1)
    shutil.rmtree(first_adapter)  # a deleted run's file goes at the next conversion
    lora_file(second_adapter, config)
    assert not again.exists()
    assert adapter_folders(adapters) == [second_adapter]
