"""ChatEngine: one base model shared by every user, replies streamed through the
model's own chat template."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from assistant.bases import LoadedModel
from core.adapters import BASE, UnknownAdapter, adapter_folders, check_adapter_folder
from core.chatformat import context_window, stop_token_ids
from core.errors import UserError

# A reply needs room: refuse a prompt that leaves less than this for the answer.
MIN_REPLY_TOKENS = 32


class ContextTooLong(UserError):
    """The conversation does not fit in the model's context window."""


class EmptyMessage(UserError):
    """The user sent nothing to answer."""


class BadSetting(UserError):
    """A generation setting is out of range."""


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 512
    """Upper bound on the reply's length in tokens (also bounded by the context)."""
    temperature: float = 0.0
    """0 decodes greedily (same prompt, same answer); above 0 samples."""
    top_p: float = 0.95
    """Nucleus sampling cut-off, used only when temperature > 0."""
    stop_loops: bool = True
    """End a reply that has started repeating itself (see repeats_at_end): small models
    often loop until the token limit, and nobody should wait for a wall of repeats."""

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise BadSetting("max_new_tokens must be at least 1.")
        if not 0 <= self.temperature <= 2:
            raise BadSetting("temperature must be between 0 and 2.")


class ChatEngine:
    """Serves one base model to many concurrent requests.

    Each request gets its own streamer and cancel flag; nothing per-request is stored on
    the engine, so two tabs never see each other's tokens.
    """

    def __init__(self, loaded: LoadedModel | Future, adapters_dir: Path | None = None,
                 max_concurrent: int = 4, max_loaded_adapters: int = 8,
                 name: str | None = None):
        if not isinstance(loaded, Future):
            name, ready = loaded.name, Future[LoadedModel]()
            ready.set_result(loaded)
            loaded = ready
        self._loaded = loaded
        self._name = name or "the model"
        self.adapters_dir = adapters_dir
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._peft: Any = None  # the PeftModel around self.model, once an adapter is loaded
        # Loaded adapters, least recently used first, each in a LoRA slot of its own (a
        # PEFT adapter named slotNN). Beyond the budget the oldest adapter's slot is reused
        # for the next one, and the oldest is loaded again on its next request.
        self._slot_of: OrderedDict[str, str] = OrderedDict()
        self._slots_made = 0
        self.max_loaded_adapters = max_loaded_adapters
        # Readers (generations) and writers (loading an adapter changes the layers). A
        # waiting load holds back new generations, so steady traffic cannot starve it.
        self._gate = threading.Condition()
        self._generating = 0
        self._loads_waiting = 0

    @classmethod
    def load_in_background(cls, load: Callable[[], LoadedModel], name: str,
                           **kwargs) -> ChatEngine:
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
        return context_window(self.loaded.tokenizer, self.loaded.model.config)

    @cached_property
    def stop_token_ids(self) -> list[int]:
        return stop_token_ids(self.loaded.tokenizer, self.loaded.model.generation_config)

    def adapters(self) -> list[str]:
        """The names a request may pick: "base" first, then adapters, oldest first."""
        return [BASE] + [path.name for path in adapter_folders(self.adapters_dir)]

    def loaded_adapters(self) -> list[str]:
        return list(self._slot_of)

    def _make_ready(self, adapter: str) -> None:
        """Hot-swap (call holding the gate): add the adapter's LoRA weights beside the base
        weights, which stay where they are. A load waits for the requests already
        generating, since it changes the layers they run through; requests that arrive
        meanwhile wait behind it."""
        while True:
            self._gate.wait_for(lambda: self._loads_waiting == 0)
            if adapter == BASE or adapter in self._slot_of:
                break
            self._loads_waiting += 1
            try:
                self._gate.wait_for(lambda: self._generating == 0)
                if adapter not in self._slot_of:  # another request may have loaded it
                    self._load(adapter)
            finally:
                self._loads_waiting -= 1
                self._gate.notify_all()
        if adapter != BASE:
            self._slot_of.move_to_end(adapter)

    def _load(self, adapter: str) -> None:
        assert self.adapters_dir is not None, "an engine without adapters has none to load"
        folder = self.adapters_dir / adapter
        check_adapter_folder(folder, self.model, self.name)
        if len(self._slot_of) < self.max_loaded_adapters:
            self._slot_of[adapter] = self._new_slot(folder)
            return
        oldest, slot = self._slot_of.popitem(last=False)
        try:
            swapped = _swap_into(self._peft, slot, folder)
        except BaseException:  # raised before any weight moved: the slot is still oldest's
            self._slot_of[oldest] = slot
            self._slot_of.move_to_end(oldest, last=False)
            raise
        if not swapped:
            # The map no longer names this slot, so a failure to build the new one below
            # leaves no entry pointing at a deleted slot.
            self._peft.delete_adapter(slot)
            slot = self._new_slot(folder)
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
               settings: GenerationSettings = GenerationSettings(),
               stop: Callable[[], bool] | None = None,
               cut: Callable[[str], None] | None = None) -> Generator[str, None, None]:
        """Yield the reply in pieces as they are generated (only new text, no prompt).

        Closing the iterator early (a closed tab) stops generation at the next token; so
        does `stop()` turning true, also before the first piece has arrived. A reply
        that ends before its end-of-turn token for a reason of the engine's calls
        `cut(why)` once it is over: "loop" (it had started repeating itself) or
        "length" (it reached its token budget).
        """
        self.check_adapter(adapter)
        inputs = self.encode(messages)
        budget = min(settings.max_new_tokens, self.context_window - inputs["input_ids"].shape[1])
        with self._slots, self.using(adapter):
            generation = _Generation(self, inputs, budget, settings, adapter, stop)
            yield from generation.run()
        if generation.cut and cut is not None:
            cut(generation.cut)

    def reply(self, messages: list[dict], adapter: str = BASE,
              settings: GenerationSettings = GenerationSettings()) -> str:
        return "".join(self.stream(messages, adapter, settings)).strip()

    def reply_many(self, conversations: list[list[dict]], adapter: str = BASE,
                   max_new_tokens: int = 64, batch_size: int = 16,
                   progress: Callable[[int], None] | None = None) -> list[str]:
        """Greedy replies to many conversations at once, in left-padded batches of
        similar length (the report card's answers: many short prompts, one adapter).
        A conversation that does not fit the context raises ContextTooLong.
        `progress(done)` is called after each batch."""
        self.check_adapter(adapter)
        texts = [self._prompt_text(messages, max_new_tokens) for messages in conversations]
        if self.tokenizer.pad_token is None:  # batches need one; any token will do
            self.tokenizer.pad_token = self.tokenizer.eos_token
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        replies: list[str] = [""] * len(texts)
        for start in range(0, len(order), batch_size):
            chosen = order[start:start + batch_size]
            # A batch at a time holds the adapter and a slot: a chat request between two
            # batches (or one that loads another adapter) waits one batch at most.
            with self._slots, self.using(adapter):
                new = self._generate_batch([texts[i] for i in chosen], adapter,
                                           max_new_tokens)
            for i, tokens in zip(chosen, new):
                replies[i] = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
            if progress:
                progress(min(start + batch_size, len(order)))
        return replies

    def _generate_batch(self, texts: list[str], adapter: str, max_new_tokens: int):
        import torch

        inputs = self.tokenizer(texts, return_tensors="pt", padding=True, padding_side="left",
                                add_special_tokens=False)
        room = self.context_window - inputs["input_ids"].shape[1]
        routing = self.routing_for(adapter)
        _routing.adapter_names = routing * len(texts) if routing else None
        try:
            with torch.inference_mode():
                out = self.model.generate(
                    **inputs, do_sample=False, max_new_tokens=max(1, min(max_new_tokens, room)),
                    eos_token_id=self.stop_token_ids, pad_token_id=self._pad_token_id)
        finally:
            _routing.adapter_names = None
        return out[:, inputs["input_ids"].shape[1]:]

    def fits(self, messages: list[dict], reply_tokens: int = MIN_REPLY_TOKENS) -> bool:
        """Do `messages`, as the model reads them, leave room for a reply?"""
        try:
            self._prompt_text(messages, reply_tokens)
        except ContextTooLong:
            return False
        return True

    def _prompt_text(self, messages: list[dict], reply_tokens: int) -> str:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                  tokenize=False)
        used = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        if used + min(reply_tokens, MIN_REPLY_TOKENS) > self.context_window:
            raise ContextTooLong(f"A prompt of {used:,} tokens does not fit {self.name}'s "
                                 f"context of {self.context_window:,} tokens.")
        return text

    @cached_property
    def _pad_token_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return self.stop_token_ids[0] if pad is None else pad

    def check_adapter(self, adapter: str) -> None:
        if adapter not in self.adapters():
            raise UnknownAdapter(
                f"No adapter named {adapter!r}. Choose one of: {', '.join(self.adapters())}."
            )


class _Generation:
    """One request: model.generate in a worker thread feeding a private streamer."""

    def __init__(self, engine: ChatEngine, inputs: dict, budget: int,
                 settings: GenerationSettings, adapter: str = BASE,
                 stop: Callable[[], bool] | None = None):
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        self.engine = engine
        self.stop = stop
        self.cancelled = threading.Event()
        self.error: BaseException | None = None
        self.cut = ""
        """Why the engine ended the reply early: "loop", "length", or "" (it ended)."""
        self.prompt_length, self.budget = inputs["input_ids"].shape[1], budget
        self.streamer = TextIteratorStreamer(
            engine.tokenizer, skip_prompt=True, skip_special_tokens=True
        )
        cancelled = self.cancelled

        prompt_length = inputs["input_ids"].shape[1]
        stop_loops = settings.stop_loops
        generation = self

        class StopWhenCancelled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                if cancelled.is_set() or (stop is not None and stop()):
                    return True
                tail = input_ids[0, max(prompt_length, input_ids.shape[1] - LOOP_WINDOW):]
                if stop_loops and repeats_at_end(tail.tolist()):
                    generation.cut = "loop"
                    return True
                return False

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
        if self.stop is not None and self.stop():  # stopped while it waited its turn
            return
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
                out = self.engine.model.generate(**self.kwargs)
            # the whole budget written, without an end of turn: cut at the longest reply
            # (unless the stream was closed or stopped before; the stop criteria say)
            if out.shape[1] - self.prompt_length >= self.budget and \
                    out[0, -1].item() not in self.engine.stop_token_ids:
                self.cut = self.cut or "length"
        except BaseException as error:  # handed to the consumer, never lost in the thread
            self.error = error
            self.streamer.end()
        finally:
            _routing.adapter_names = None


LOOP_WINDOW = 160
"""Generated tokens looked at for a loop: a period of up to 80 tokens, seen twice."""


def repeats_at_end(tokens: list[int]) -> bool:
    """Do the last tokens repeat one sequence over and over? A sequence of 8 tokens or
    more seen twice in a row, or a shorter one repeated over 16 tokens or more (three
    times at least). Exact repeats that long are a loop in prose; lists and tables
    differ from line to line."""
    for period in range(1, min(len(tokens), LOOP_WINDOW) // 2 + 1):
        times = 2 if period >= 8 else max(3, -(-16 // period))
        span = period * times
        if span > len(tokens):
            continue
        tail = tokens[-span:]
        if tail == tail[:period] * times:
            return True
    return False


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
            layer: Any = module  # a torch Module too (LoraLayer alone is a mixin)
            layer.register_forward_pre_hook(_route_hook, with_kwargs=True)
            layer._tunechat_routed = True


def _swap_into(peft_model, slot: str, folder: Path) -> bool:
    """Copy an adapter's weights into an existing slot (PEFT's hotswap: no new layers,
    about 40 ms instead of 200). False, with the slot untouched, when the adapter does
    not fit it (other target modules or dropout/DoRA settings); a file that cannot be
    read raises before anything changes."""
    from peft import LoraConfig, PeftConfig
    from peft.utils.hotswap import check_hotswap_configs_compatible, hotswap_adapter_from_state_dict
    from peft.utils.save_and_load import _insert_adapter_name_into_state_dict, load_peft_weights

    config = PeftConfig.from_pretrained(str(folder))  # the subclass its peft_type names
    if not isinstance(config, LoraConfig):
        return False
    weights = load_peft_weights(str(folder), device="cpu")
    try:
        check_hotswap_configs_compatible(peft_model.peft_config[slot], config)
        hotswap_adapter_from_state_dict(
            peft_model, _insert_adapter_name_into_state_dict(weights, slot, "lora_"), slot, config)
    except (ValueError, RuntimeError):  # raised by the dry run, before any weight moved
        return False
    return True
