"""ChatEngine: one base model shared by every user, replies streamed through the
model's own chat template."""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterator

from assistant.models import LoadedModel

BASE = "base"
# End-of-turn markers of common chat templates; whichever the vocabulary has also stops
# generation, so a model whose config names only </s> still stops at the end of its turn.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>")
# A reply needs room: refuse a prompt that leaves less than this for the answer.
MIN_REPLY_TOKENS = 32


class ContextTooLong(Exception):
    """The conversation does not fit in the model's context window."""


class UnknownAdapter(Exception):
    """A request named an adapter the engine does not have."""


class BadAdapter(UnknownAdapter):
    """An adapter folder that cannot be used: unreadable, pickle-only, or made for
    another base model. Refused before any layer changes, so live adapters stay live."""


class EmptyMessage(Exception):
    """The user sent nothing to answer."""


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 512
    """Upper bound on the reply's length in tokens (also bounded by the context)."""
    temperature: float = 0.0
    """0 decodes greedily (same prompt, same answer); above 0 samples."""
    top_p: float = 0.95
    """Nucleus sampling cut-off, used only when temperature > 0."""

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1.")
        if not 0 <= self.temperature <= 2:
            raise ValueError("temperature must be between 0 and 2.")


class ChatEngine:
    """Serves one base model to many concurrent requests.

    Each request gets its own streamer and cancel flag; nothing per-request is stored on
    the engine, so two tabs never see each other's tokens.
    """

    def __init__(self, loaded: LoadedModel | Future, adapters_dir: Path | None = None,
                 max_concurrent: int = 4, max_loaded_adapters: int = 8,
                 name: str | None = None):
        if not isinstance(loaded, Future):
            name, ready = loaded.name, Future()
            ready.set_result(loaded)
            loaded = ready
        self._loaded = loaded
        self._name = name
        self.adapters_dir = adapters_dir
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._peft = None  # the PeftModel around self.model, once an adapter is loaded
        # Loaded adapters, least recently used first, each in a LoRA slot of its own (a
        # PEFT adapter named slotNN). Beyond the budget the oldest adapter's slot is reused
        # for the next one, and the oldest is loaded again on its next request.
        self._slot_of: OrderedDict[str, str] = OrderedDict()
        self._slots_made = 0
        self.max_loaded_adapters = max_loaded_adapters
        # Readers (generations) and one writer (loading an adapter changes the layers).
        self._gate = threading.Condition()
        self._generating = 0

    @classmethod
    def load_in_background(cls, load: Callable[[], LoadedModel], name: str,
                           **kwargs) -> "ChatEngine":
        """An engine whose model loads in a thread, so that the page can be served
        meanwhile; requests wait for the model (and get its loading error, if any)."""
        loaded: Future = Future()

        def run() -> None:
            try:
                loaded.set_result(load())
            except BaseException as error:
                loaded.set_exception(error)

        threading.Thread(target=run, name="model-load", daemon=True).start()
        return cls(loaded, name=name, **kwargs)

    @property
    def name(self) -> str:
        return self._name

    @property
    def loaded(self) -> LoadedModel:
        return self._loaded.result()

    def when_loaded(self, callback: Callable[[Future], None]) -> None:
        self._loaded.add_done_callback(callback)

    @cached_property
    def model(self):
        return self.loaded.model

    @cached_property
    def tokenizer(self):
        return self.loaded.tokenizer

    @cached_property
    def context_window(self) -> int:
        return _context_window(self.loaded)

    @cached_property
    def stop_token_ids(self) -> list[int]:
        return _stop_token_ids(self.loaded)

    def adapters(self) -> list[str]:
        """The names a request may pick: "base" first, then adapters, oldest first."""
        return [BASE] + [path.name for path in adapter_folders(self.adapters_dir)]

    def loaded_adapters(self) -> list[str]:
        return list(self._slot_of)

    def _make_ready(self, adapter: str) -> None:
        """Hot-swap (call holding the gate): add the adapter's LoRA weights beside the base
        weights, which stay where they are. Loading waits for requests already
        generating, since it changes the layers they run through."""
        if adapter == BASE:
            return
        if adapter not in self._slot_of:
            self._gate.wait_for(lambda: self._generating == 0)
        if adapter not in self._slot_of:  # another request may have loaded it
            self._load(adapter)
        self._slot_of.move_to_end(adapter)

    def _load(self, adapter: str) -> None:
        folder = self.adapters_dir / adapter
        check_adapter_folder(folder, self.model, self.name)
        if len(self._slot_of) < self.max_loaded_adapters:
            slot = self._new_slot(folder)
        else:
            oldest, slot = next(iter(self._slot_of.items()))
            if not _swap_into(self._peft, slot, folder):
                self._peft.delete_adapter(slot)
                slot = self._new_slot(folder)
            del self._slot_of[oldest]
        self._slot_of[adapter] = slot

    def _new_slot(self, folder: Path) -> str:
        """Add LoRA layers for one more adapter: PEFT builds every layer (about 0.2 s for
        the embedded model), which is why full slots are refilled instead."""
        from peft import PeftModel

        slot = f"slot{self._slots_made:02d}"  # fixed width: PEFT matches names as substrings
        self._slots_made += 1
        if self._peft is None:
            self._peft = PeftModel.from_pretrained(self.model, folder, adapter_name=slot)
            self._peft.eval()
        else:
            try:
                self._peft.load_adapter(folder, adapter_name=slot)
            except Exception:  # leave no half-built slot behind
                if slot in self._peft.peft_config:
                    self._peft.delete_adapter(slot)
                raise
        _route_by_thread(self.model)
        return slot

    def routing_for(self, adapter: str) -> list[str] | None:
        """The LoRA routing of one request, or None while no adapter is loaded."""
        if self._peft is None:
            return None
        return ["__base__" if adapter == BASE else self._slot_of[adapter]]

    @contextmanager
    def using(self, adapter: str):
        """Hold `adapter` loaded (and unevictable) while a request generates with it."""
        with self._gate:
            self._make_ready(adapter)
            self._generating += 1
        try:
            yield
        finally:
            with self._gate:
                self._generating -= 1
                self._gate.notify_all()

    def encode(self, messages: list[dict]) -> dict:
        """Apply the chat template; raise ContextTooLong if no room is left to answer."""
        if not messages or not str(messages[-1].get("content", "")).strip():
            raise EmptyMessage("The message is empty: type something to send.")
        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        used = inputs["input_ids"].shape[1]
        if used + MIN_REPLY_TOKENS > self.context_window:
            raise ContextTooLong(
                f"This conversation is {used:,} tokens long, but {self.name} reads at most "
                f"{self.context_window:,} tokens, its reply included. Shorten the message or "
                "start a new conversation."
            )
        return inputs

    def stream(self, messages: list[dict], adapter: str = BASE,
               settings: GenerationSettings = GenerationSettings()) -> Iterator[str]:
        """Yield the reply in pieces as they are generated (only new text, no prompt).

        Closing the iterator early (a closed tab) stops generation at the next token.
        """
        self.check_adapter(adapter)
        inputs = self.encode(messages)
        budget = min(settings.max_new_tokens, self.context_window - inputs["input_ids"].shape[1])
        with self._slots, self.using(adapter):
            yield from _Generation(self, inputs, budget, settings, adapter).run()

    def reply(self, messages: list[dict], adapter: str = BASE,
              settings: GenerationSettings = GenerationSettings()) -> str:
        return "".join(self.stream(messages, adapter, settings)).strip()

    def check_adapter(self, adapter: str) -> None:
        if adapter not in self.adapters():
            raise UnknownAdapter(
                f"No adapter named {adapter!r}. Choose one of: {', '.join(self.adapters())}."
            )


class _Generation:
    """One request: model.generate in a worker thread feeding a private streamer."""

    def __init__(self, engine: ChatEngine, inputs: dict, budget: int,
                 settings: GenerationSettings, adapter: str = BASE):
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        self.engine = engine
        self.cancelled = threading.Event()
        self.error: BaseException | None = None
        self.streamer = TextIteratorStreamer(
            engine.tokenizer, skip_prompt=True, skip_special_tokens=True
        )
        cancelled = self.cancelled

        class StopWhenCancelled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return cancelled.is_set()

        sampling = (
            {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p}
            if settings.temperature > 0 else {"do_sample": False}
        )
        self.routing = engine.routing_for(adapter)
        self.kwargs = dict(
            **inputs, **sampling, max_new_tokens=budget, streamer=self.streamer,
            eos_token_id=engine.stop_token_ids, pad_token_id=engine.stop_token_ids[0],
            stopping_criteria=StoppingCriteriaList([StopWhenCancelled()]),
        )

    def run(self) -> Iterator[str]:
        worker = threading.Thread(target=self._generate, daemon=True)
        worker.start()
        try:
            for piece in self.streamer:
                if piece:
                    yield piece
        finally:
            self.cancelled.set()
            worker.join()
        if self.error is not None:
            raise self.error

    def _generate(self) -> None:
        import torch

        _routing.adapter_names = self.routing
        try:
            with torch.inference_mode():
                self.engine.model.generate(**self.kwargs)
        except BaseException as error:  # handed to the consumer, never lost in the thread
            self.error = error
            self.streamer.end()
        finally:
            _routing.adapter_names = None


# Which adapter each generating thread uses. PEFT's own `generate(adapter_names=...)`
# installs hooks on the shared layers for the length of a call, so two concurrent calls
# see each other's hooks and mix adapters; a hook reading a thread-local does not.
_routing = threading.local()


def _route_hook(module, args, kwargs):
    names = getattr(_routing, "adapter_names", None)
    if names is not None:
        kwargs["adapter_names"] = names
    return args, kwargs


def _route_by_thread(model) -> None:
    """Give every LoRA layer (once) the hook that routes it by the calling thread."""
    from peft.tuners.lora import LoraLayer

    for module in model.modules():
        if isinstance(module, LoraLayer) and not getattr(module, "_tunechat_routed", False):
            module.register_forward_pre_hook(_route_hook, with_kwargs=True)
            module._tunechat_routed = True


def check_adapter_folder(folder: Path, model, base_name: str) -> None:
    """Raise BadAdapter unless the folder holds a readable safetensors LoRA whose layers
    fit this base model. Pickle files (.bin, .pt) are never loaded: they can run code."""
    import json

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


def _swap_into(peft_model, slot: str, folder: Path) -> bool:
    """Copy an adapter's weights into an existing slot (PEFT's hotswap: no new layers,
    about 40 ms instead of 200). False, with the slot untouched, when the adapter does
    not fit it (other target modules or dropout/DoRA settings); a file that cannot be
    read raises before anything changes."""
    from peft import PeftConfig
    from peft.utils.hotswap import check_hotswap_configs_compatible, hotswap_adapter_from_state_dict
    from peft.utils.save_and_load import _insert_adapter_name_into_state_dict, load_peft_weights

    config = PeftConfig.from_pretrained(folder)
    weights = load_peft_weights(str(folder), device="cpu")
    try:
        check_hotswap_configs_compatible(peft_model.peft_config[slot], config)
        hotswap_adapter_from_state_dict(
            peft_model, _insert_adapter_name_into_state_dict(weights, slot, "lora_"), slot, config)
    except (ValueError, RuntimeError):  # raised by the dry run, before any weight moved
        return False
    return True


def adapter_folders(adapters_dir: Path | None) -> list[Path]:
    """Finished adapters only: a folder is renamed into place when complete."""
    if adapters_dir is None or not adapters_dir.is_dir():
        return []
    found = [p for p in adapters_dir.iterdir() if not p.name.startswith(".")
             and (p / "adapter_config.json").is_file()]
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


def _context_window(loaded: LoadedModel) -> int:
    config_limit = getattr(loaded.model.config, "max_position_embeddings", None)
    tokenizer_limit = getattr(loaded.tokenizer, "model_max_length", None)
    # Tokenizers without a limit report a huge sentinel (about 1e30).
    limits = [n for n in (config_limit, tokenizer_limit) if n and n < 10_000_000]
    return min(limits) if limits else 2048


def _stop_token_ids(loaded: LoadedModel) -> list[int]:
    configured = loaded.model.generation_config.eos_token_id
    ids = list(configured) if isinstance(configured, (list, tuple)) else [configured]
    ids.append(loaded.tokenizer.eos_token_id)
    vocab = loaded.tokenizer.get_vocab()
    ids.extend(vocab[token] for token in END_OF_TURN_TOKENS if token in vocab)
    return list(dict.fromkeys(i for i in ids if i is not None))
