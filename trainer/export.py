"""Hand a trained adapter to other engines: the base with the adapter merged in, as a
plain Hugging Face folder that needs no tunechat (nor PEFT) code to load."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from core.adapters import check_adapter_folder
from core.errors import UserError


class ExportError(UserError):
    """The export cannot be written; the message says where and how to fix it."""


def export_merged(base_folder: Path, base_name: str, adapter_folder: Path,
                  out_dir: Path) -> Path:
    """Write base + adapter, merged, to `out_dir` (safetensors, tokenizer, chat template).
    Written into a scratch folder beside it and renamed when complete, so a failure
    leaves nothing half-written."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(f"{out_dir} already exists and is not an empty folder; "
                          "choose a new folder.")
    if not out_dir.parent.is_dir():
        raise ExportError(f"The folder {out_dir.parent} does not exist; create it first.")
    # fp32 for the merge: adding the low-rank update in bf16 would round it away.
    model = AutoModelForCausalLM.from_pretrained(base_folder, dtype=torch.float32)
    check_adapter_folder(adapter_folder, model, base_name)
    merged = PeftModel.from_pretrained(model, adapter_folder).merge_and_unload()
    scratch = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    try:
        merged.save_pretrained(scratch)  # safetensors, config, generation config
        AutoTokenizer.from_pretrained(base_folder).save_pretrained(scratch)
        if out_dir.exists():
            out_dir.rmdir()
        scratch.rename(out_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out_dir
