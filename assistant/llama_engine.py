"""LlamaChatEngine: the chat's replies decoded by llama.cpp (llama-cpp-python, the extra
`tunechat[llama]`), with the adapter chosen per request as in the PyTorch engine.

Why: on a CPU llama.cpp decodes several times faster than PyTorch eager with an adapter
on, and answers as it does (docs/benchmarks.md, bench/generate_llama.py). It serves the
base's own GGUF file written once at F16 (the shipped 4-bit file changes most greedy
answers), and each adapter converted once to a GGUF LoRA (core/gguf.py).

What stays on PyTorch: the tokenizer and chat template (so a prompt is the same tokens in
both engines), the report card's batched answers (`reply_many`: the card judges the
adapter as it was trained), and any request llama.cpp cannot serve: llama.cpp still
starting, an adapter it cannot convert or load, a conversation longer than a context
holds (CONTEXT_CAP), no memory for another context. Training never runs here.

One llama.cpp model is shared by a pool of contexts, one per concurrent request; an
adapter is loaded once on the model and set on a context for the length of a request,
so two requests never see each other's adapter. A context keeps its conversation in its
cache, so the next message of the same conversation reads only what is new.
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from assistant.engine import (
    LOOP_WINDOW,
    MIN_REPLY_TOKENS,
    ChatEngine,
    GenerationSettings,
    repeats_at_end,
)
from core.adapters import BASE, check_adapter_folder
from core.paths import weights_written, write_atomically

F16_BASE = "model-f16.gguf"
"""The base as llama.cpp serves it, written beside the model converted for PyTorch."""

LORA_CACHE = ".llama-lora"
"""Adapters converted to GGUF LoRAs, in a hidden folder of the adapters folder (a file
inside an adapter's own folder would change its date, which orders the model lists)."""

THREADS_CHECKED_EVERY = 32
"""Tokens between two looks at how many threads a reply may use."""


def llama_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def why_not(source_gguf: Path | None) -> str | None:
    """Why llama.cpp cannot serve this base (None: it can): it is not installed, or the
    base is not a GGUF file of an architecture whose adapters core/gguf.py converts."""
    if not llama_installed():
        return ("llama.cpp is not installed: run `make llama` (or pip install "
                "'tunechat[llama]') for replies several times faster on a CPU")
    if source_gguf is None:
        return "llama.cpp serves a base given as a .gguf file (or the embedded model)"
    import gguf

    from core.gguf import ARCHITECTURES

    arch = gguf.GGUFReader(source_gguf).fields["general.architecture"].contents()
    if arch not in ARCHITECTURES.values():
        return (f"{source_gguf.name} is a {arch} model, and adapters are converted for "
                f"llama.cpp only for {', '.join(ARCHITECTURES.values())} models")
    return None


def f16_base(source_gguf: Path, folder: Path) -> Path:
    """The base's weights at F16 as llama.cpp loads them, written once (atomically: a
    crash leaves no half-written file that a later start would trust)."""
    from core.gguf import write_copy

    path = folder / F16_BASE
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda scratch: write_copy(source_gguf, scratch, "F16"))
    return path


_converting = threading.Lock()
"""One conversion at a time: two first requests for an adapter convert it once."""


def lora_file(adapter_folder: Path, base_config: dict) -> Path:
    """The adapter as a GGUF LoRA, converted once per version of its weights; older
    versions' files, and those of adapters that are gone, are removed on the way."""
    from core.gguf import read_adapter, write_adapter

    version = weights_written(adapter_folder)
    cache = adapter_folder.parent / LORA_CACHE
    path = cache / f"{adapter_folder.name}-{version}.gguf"
    if path.is_file():  # no wait behind another adapter's conversion
        return path
    with _converting:
        if path.is_file():
            return path
        cache.mkdir(exist_ok=True)
        for old in cache.glob("*.gguf"):
            owner, _, stamp = old.stem.rpartition("-")
            older = owner == adapter_folder.name and stamp.isdigit() and int(stamp) < version
            if older or not (adapter_folder.parent / owner).is_dir():
                old.unlink(missing_ok=True)
        adapter = read_adapter(adapter_folder, base_config)
        write_atomically(path, lambda scratch: write_adapter(adapter, scratch,
                                                             adapter_folder.name))
    return path


NOTHING_SET = "nothing set"

CONTEXT_CAP = 8192
"""The most tokens a llama.cpp context holds: each context reserves its whole cache when
it is made (a 128k-token window would take gigabytes per context); a longer
conversation is answered by PyTorch, which allocates as it goes."""


class Refused(Exception):
    """llama.cpp cannot take this request (no memory for a context): PyTorch answers it
    instead."""


class AdapterRefused(Refused):
    """llama.cpp cannot load this adapter: PyTorch answers for it from now on."""


@dataclass
class _Context:
    """One llama.cpp context: its cache holds `tokens`, computed with `lora` set (None:
    the base; NOTHING_SET: no adapter decided yet)."""
    pointer: Any
    lora: Path | str | None = NOTHING_SET
    tokens: list[int] = field(default_factory=list)


class _Llama:
    """One llama.cpp model, its loaded adapters and its pool of contexts."""

    def __init__(self, base: Path, n_ctx: int, max_loaded_adapters: int):
        import logging

        import llama_cpp

        self.lib = llama_cpp
        # llama.cpp logs every step of a load to stderr; only its errors are news
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        self.model = llama_cpp.llama_model_load_from_file(str(base).encode(), params)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {base}.")
        self.n_ctx = n_ctx
        self.max_loaded_adapters = max_loaded_adapters
        self.lock = threading.Lock()
        self.idle: list[_Context] = []
        self.loras: OrderedDict[Path, Any] = OrderedDict()
        """Adapters loaded on the model, least recently used first: GGUF file -> pointer.
        A file's name changes with its weights, so an adapter written again is another."""
        self.users: dict[Path | None, int] = {}

    def new_context(self) -> _Context:
        params = self.lib.llama_context_default_params()
        params.n_ctx = self.n_ctx
        params.n_batch = params.n_ubatch = 512
        params.n_seq_max = 1
        pointer = self.lib.llama_init_from_model(self.model, params)
        if not pointer:
            raise Refused("llama.cpp could not make a context (out of memory?).")
        return _Context(pointer)

    def acquire(self, lora: Path | None, prompt: list[int]) -> _Context:
        """A context of its own for one request, with the adapter `lora` set on it (None:
        the base): an idle one that already holds the longest start of `prompt` with
        that adapter, if any. Give it back with release(); Refused if there is none."""
        with self.lock:
            pointer = self._load(lora) if lora is not None else None
            self.users[lora] = self.users.get(lora, 0) + 1
            chosen = max(self.idle, default=None,
                         key=lambda c: (c.lora == lora, _shared(c.tokens, prompt)))
            if chosen is not None:
                self.idle.remove(chosen)
        try:
            if chosen is None:
                chosen = self.new_context()
            if chosen.lora != lora:
                chosen.lora = NOTHING_SET  # until it is set: a failure leaves it unknown
                self._set_adapter(chosen, pointer)
                chosen.lora = lora
        except BaseException:
            self.release(chosen, lora)
            raise
        return chosen

    def release(self, context: _Context | None, lora: Path | None) -> None:
        with self.lock:
            self.users[lora] -= 1
            if context is not None:
                self.idle.append(context)

    def _load(self, lora: Path) -> Any:
        """The adapter loaded on the model (call holding the lock); beyond the budget the
        least recently used adapters that no request is using are freed."""
        if lora in self.loras:
            self.loras.move_to_end(lora)
            return self.loras[lora]
        pointer = self.lib.llama_adapter_lora_init(self.model, str(lora).encode())
        if not pointer:
            raise AdapterRefused(f"llama.cpp could not load the adapter converted to "
                                 f"{lora}.")
        self.loras[lora] = pointer
        for old in [path for path in self.loras if path != lora and not self.users.get(path)]:
            if len(self.loras) <= self.max_loaded_adapters:
                break
            self._free(old)
        return pointer

    def _free(self, lora: Path) -> None:
        """Free an adapter no request uses; idle contexts that had it set drop it first."""
        pointer = self.loras.pop(lora)
        for idle in self.idle:
            if idle.lora == lora:
                self._set_adapter(idle, None)
                idle.lora = NOTHING_SET
        self.lib.llama_adapter_lora_free(pointer)

    def _set_adapter(self, context: _Context, pointer: Any) -> None:
        """Set the context's adapter (or none); its cache was computed with another."""
        chosen = [pointer] if pointer else []
        adapters = (self.lib.llama_adapter_lora_p_ctypes * len(chosen))(*chosen)
        scales = (ctypes.c_float * len(chosen))(*[1.0] * len(chosen))
        if self.lib.llama_set_adapters_lora(context.pointer, adapters, len(chosen), scales):
            raise RuntimeError("llama.cpp could not set the adapter on a context.")
        self.lib.llama_memory_clear(self.lib.llama_get_memory(context.pointer), True)
        context.tokens = []

    def decode(self, context: _Context, prompt: list[int], settings: GenerationSettings,
               top_k: int, budget: int, threads: Callable[[], int]) -> Iterator[int]:
        """The reply's tokens, one at a time, for as long as the caller reads them."""
        lib = self.lib
        keep = min(_shared(context.tokens, prompt), len(prompt) - 1)  # the last one is read
        lib.llama_memory_seq_rm(lib.llama_get_memory(context.pointer), 0, keep, -1)
        context.tokens = prompt[:keep]
        sampler = self._sampler(settings, top_k)
        try:
            lib.llama_set_n_threads(context.pointer, threads(), threads())
            self._read(context, prompt[keep:])
            for done in range(budget):
                if done and done % THREADS_CHECKED_EVERY == 0:
                    lib.llama_set_n_threads(context.pointer, threads(), threads())
                token = lib.llama_sampler_sample(sampler, context.pointer, -1)
                yield token
                self._read(context, [token])
        finally:
            lib.llama_sampler_free(sampler)

    def _read(self, context: _Context, tokens: list[int]) -> None:
        for start in range(0, len(tokens), 512):
            chunk = tokens[start:start + 512]
            array = (self.lib.llama_token * len(chunk))(*chunk)
            status = self.lib.llama_decode(context.pointer,
                                           self.lib.llama_batch_get_one(array, len(chunk)))
            if status != 0:
                context.tokens = []  # what the cache holds is no longer known
                self.lib.llama_memory_clear(self.lib.llama_get_memory(context.pointer), True)
                raise RuntimeError(f"llama.cpp could not read the prompt (llama_decode "
                                   f"returned {status}).")
            context.tokens += chunk

    def _sampler(self, settings: GenerationSettings, top_k: int) -> Any:
        """Greedy, or as transformers samples: temperature, its top-k (0: none), top-p."""
        lib = self.lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        if settings.temperature > 0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(settings.temperature))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(top_k))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(settings.top_p, 1))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(
                int.from_bytes(os.urandom(4), "little")))
        else:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
        return chain


def _shared(a: list[int], b: list[int]) -> int:
    """How many tokens two sequences share from their start."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class LlamaChatEngine(ChatEngine):
    """The chat engine with replies from llama.cpp once it is ready (see the module's
    docstring); until then, and for what it cannot serve, PyTorch's."""

    def __init__(self, *args, source_gguf: Path, busy: Callable[[], bool] = lambda: False,
                 **kwargs):
        """`busy()`: is a training run using the machine's cores? Replies then take one
        thread, so the two do not fight over the same cores."""
        super().__init__(*args, **kwargs)
        self.source_gguf = source_gguf
        self.busy = busy
        self._llama: _Llama | None = None
        self.llama_error: BaseException | None = None
        """Why llama.cpp could not start (the chat then stays on PyTorch), else None."""
        self._torch_only: dict[tuple[str, int], str] = {}
        """Adapters (name, version of the weights) llama.cpp cannot serve, and why:
        PyTorch serves them."""
        self._checked: set[tuple[str, int]] = set()
        """Adapters (name, version) found to fit the base (check_adapter_folder)."""
        self._replying = 0
        self._replying_lock = threading.Lock()
        self._ready = threading.Event()
        self.when_loaded(self._start)

    def _start(self, loaded: Future) -> None:
        """Once PyTorch's model is loaded (its folder, tokenizer and context are needed),
        start llama.cpp in a thread of its own."""
        if loaded.exception() is not None:
            self._ready.set()
            return
        threading.Thread(target=self._start_llama, name="llama-load", daemon=True).start()

    def _start_llama(self) -> None:
        try:
            base = f16_base(self.source_gguf, self.loaded.folder)
            self._llama = _Llama(base, min(self.context_window, CONTEXT_CAP),
                                 self.max_loaded_adapters)
        except Exception as error:  # the chat goes on with PyTorch; the edge says why
            self.llama_error = error
        finally:
            self._ready.set()

    def wait_for_llama(self, timeout: float | None = None) -> bool:
        """Wait until llama.cpp serves (True) or could not start (False)."""
        self.loaded  # noqa: B018  (a model that failed to load raises here)
        self._ready.wait(timeout)
        return self._llama is not None

    @property
    def serving(self) -> str:
        """Which engine answers the chat now: "llama.cpp" or "PyTorch"."""
        return "llama.cpp" if self._llama is not None else "PyTorch"

    def threads(self) -> int:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else os.cpu_count() or 1
        if self.busy():
            return 1
        return max(1, cores // max(1, self._replying))

    def stream(self, messages: list[dict], adapter: str = BASE,
               settings: GenerationSettings = GenerationSettings(),
               stop: Callable[[], bool] | None = None,
               cut: Callable[[str], None] | None = None) -> Generator[str, None, None]:
        llama = self._llama
        self.check_adapter(adapter)
        version, lora = self._route(adapter) if llama is not None else (None, None)
        prompt = self.encode(messages)["input_ids"][0].tolist()
        if llama is None or version is None or len(prompt) + MIN_REPLY_TOKENS > llama.n_ctx:
            yield from super().stream(messages, adapter, settings, stop, cut)
            return
        budget = min(settings.max_new_tokens, llama.n_ctx - len(prompt))
        why, context = "", None
        with self._slots:
            if stop is not None and stop():  # stopped while it waited its turn
                return
            try:
                context = llama.acquire(lora, prompt)
            except AdapterRefused as error:
                self._torch_only[version] = str(error)
            except Refused:
                pass
            if context is not None:
                try:
                    with self._counted():
                        why = yield from self._text(
                            llama.decode(context, prompt, settings, self._top_k, budget,
                                         self.threads), budget, settings, stop)
                finally:
                    llama.release(context, lora)
        if context is None:  # outside the slot, which PyTorch's stream takes itself
            yield from super().stream(messages, adapter, settings, stop, cut)
            return
        if why and cut is not None:
            cut(why)

    @cached_property
    def _top_k(self) -> int:
        """The top-k transformers samples with (the model's generation config, else its
        default, 50)."""
        found = getattr(self.loaded.model.generation_config, "top_k", None)
        return 50 if found is None else int(found)

    @contextmanager
    def _counted(self):
        """Count a reply in progress (the cores are shared among them)."""
        with self._replying_lock:
            self._replying += 1
        try:
            yield
        finally:
            with self._replying_lock:
                self._replying -= 1

    def _route(self, adapter: str) -> tuple[tuple[str, int] | None, Path | None]:
        """(the adapter's version, its GGUF LoRA: None for the base) when llama.cpp answers
        for it; (None, None) when PyTorch does: an adapter that cannot be converted (a
        rank per layer, DoRA, trained embeddings) or whose conversion failed. One that
        does not fit the base raises BadAdapter, as in the PyTorch engine."""
        if adapter == BASE:
            return (BASE, 0), None
        assert self.adapters_dir is not None
        folder = self.adapters_dir / adapter
        version = (adapter, weights_written(folder))  # 0: no weights, which the check refuses
        if version not in self._checked:
            with self._gate:  # the PyTorch engine changes its layers holding it
                check_adapter_folder(folder, self.model, self.name)
            self._checked.add(version)
        if version in self._torch_only:
            return None, None
        try:
            return version, lora_file(folder, self._base_config)
        except Exception as error:  # what llama.cpp cannot take, PyTorch answers
            self._torch_only[version] = str(error)
            return None, None

    @cached_property
    def _base_config(self) -> dict:
        return json.loads((self.loaded.folder / "config.json").read_text())

    def _text(self, tokens: Iterator[int], budget: int, settings: GenerationSettings,
              stop: Callable[[], bool] | None) -> Generator[str, None, str]:
        """The reply's new text as tokens arrive; returns why it was cut ("" if not)."""
        ends = set(self.stop_token_ids)
        reply = Detokenizer(self.tokenizer)
        for token in tokens:
            if token in ends or (stop is not None and stop()):
                return ""
            if piece := reply.add(token):
                yield piece
            if settings.stop_loops and repeats_at_end(reply.tokens[-LOOP_WINDOW:]):
                return "loop"
        return "length" if len(reply.tokens) >= budget else ""


class Detokenizer:
    """A reply's text as its tokens arrive, decoding only the last few again each time
    (decoding the whole reply for every token costs its length squared)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.tokens: list[int] = []
        self._before = 0
        """Where the text already shown is read from: one piece back, since a tokenizer
        may write a token differently at the very start of a text."""
        self._shown = 0
        """The tokens whose text has been shown."""

    def add(self, token: int) -> str:
        """The text `token` adds; "" while a character still misses some of its bytes."""
        self.tokens.append(token)
        said = self._decode(self.tokens[self._before:self._shown])
        text = self._decode(self.tokens[self._before:])
        if len(text) <= len(said) or text.endswith("\ufffd"):
            return ""
        self._before, self._shown = self._shown, len(self.tokens)
        return text[len(said):]

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)
