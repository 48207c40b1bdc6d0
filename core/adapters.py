"""Adapter folders: which ones are finished, and whether one can be used with a base
model. Shared by the engine (hot-swaps), the trainer (continue from, merged export) and
the services (model names)."""

from __future__ import annotations

import json
from pathlib import Path

from core.errors import UserError

BASE = "base"


WITH_FACTS, WITH_EXAMPLES = "+facts", "+examples"
"""What a model name may add to the model served: the user's facts, then her examples
(services/contenders.py builds the prompts)."""


def split_name(name: str) -> tuple[str, bool, bool]:
    """A model name -> (the model the engine serves, with facts, with examples)."""
    with_examples = name.endswith(WITH_EXAMPLES)
    name = name.removesuffix(WITH_EXAMPLES)
    with_facts = name.endswith(WITH_FACTS)
    return name.removesuffix(WITH_FACTS), with_facts, with_examples


class UnknownAdapter(UserError):
    """A request named a model the app does not have."""


class BadAdapter(UnknownAdapter):
    """An adapter folder that cannot be used: unreadable, pickle-only, or made for
    another base model. Refused before any layer changes, so live adapters stay live."""


def adapter_folders(adapters_dir: Path | None) -> list[Path]:
    """Finished adapters, oldest first: a folder is renamed into place when complete."""
    if adapters_dir is None or not adapters_dir.is_dir():
        return []
    found = [p for p in adapters_dir.iterdir() if not p.name.startswith(".")
             and (p / "adapter_config.json").is_file()]
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


def check_adapter_folder(folder: Path, model, base_name: str) -> None:
    """Raise BadAdapter unless the folder holds a readable safetensors LoRA whose layers
    fit this base model. Pickle files (.bin, .pt) are never loaded: they can run code."""
    from safetensors import SafetensorError, safe_open

    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth"))
        found = f" (it has {', '.join(pickles)}, a pickle format)" if pickles else ""
        raise BadAdapter(
            f"Adapter {folder.name!r} has no adapter_model.safetensors{found}. tunechat loads "
            "adapters only from safetensors, since pickle files can run code. Save it with "
            "PEFT's save_pretrained (safetensors is its default) or train it again.")
    try:
        config = json.loads((folder / "adapter_config.json").read_text())
        with safe_open(weights, "pt") as tensors:
            shapes = {key: tensors.get_slice(key).get_shape() for key in tensors.keys()}
    except (OSError, ValueError, SafetensorError) as error:
        raise BadAdapter(
            f"Adapter {folder.name!r} cannot be read ({error}): the files look truncated or "
            f"damaged. Delete {folder} or train it again.") from error
    _check_layers_fit(folder.name, config, shapes, model, base_name)


def _check_layers_fit(name: str, config: dict, shapes: dict, model, base_name: str) -> None:
    modules = dict(model.named_modules())
    trained_on = config.get("base_model_name_or_path") or "another model"
    for key, shape in shapes.items():
        path, _, which = key.removeprefix("base_model.model.").rpartition(".lora_")
        layer = modules.get(path)
        if layer is not None and hasattr(layer, "get_base_layer"):
            layer = layer.get_base_layer()
        wanted = {"A.weight": ("in_features", 1), "B.weight": ("out_features", 0)}.get(which)
        if layer is None or (wanted and getattr(layer, wanted[0], shape[wanted[1]])
                             != shape[wanted[1]]):
            raise BadAdapter(
                f"Adapter {name!r} was trained for another base model ({trained_on}): its "
                f"layer {path} does not fit {base_name}. Serve it with the base it was "
                "trained on (--model), or train it again on this one.")
