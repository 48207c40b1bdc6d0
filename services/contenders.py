"""Contenders: the cheaper alternatives an adapter is measured against, as model names
that work wherever a model name does (chat, compare, the API, the command line).

- base: the base model as it is.
- base+prompt: the base with the data home's baseline system prompt, the best prompt
  a user would write instead of fine-tuning (set in the Train tab or with
  `tunechat eval --system TEXT`).
- base+examples: the base with the endorsed examples most like the request placed
  before it as earlier turns (services/fewshot.py; storage/placement.py says which).
- run-N: an adapter; run-N+examples: the adapter with the same examples before it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from core.adapters import BASE, UnknownAdapter
from core.chatformat import with_system
from services import fewshot
from services.context import Context
from storage import examples, placement, runs

PROMPT = "base+prompt"
EXAMPLES = "base+examples"
WITH_EXAMPLES = "+examples"
BASELINE_KEY = "baseline_system_prompt"
REPLY_ROOM = 256
"""Tokens kept free for the answer when examples are placed before a request (a quarter
of the context at most, for models with a short one)."""


@dataclass(frozen=True)
class Contender:
    name: str
    adapter: str
    """What the engine serves: base or an adapter."""
    system: str = ""
    """A system prompt placed before the request's own."""
    shots: int = 0
    """Training examples placed before the request."""

    @property
    def builds_prompt(self) -> bool:
        return bool(self.system or self.shots)


def baseline_prompt(ctx: Context) -> str:
    return runs.get_setting(ctx.store, BASELINE_KEY, "")


def set_baseline_prompt(ctx: Context, text: str) -> str:
    runs.set_setting(ctx.store, BASELINE_KEY, (text or "").strip())
    return baseline_prompt(ctx)


def baseline_names(ctx: Context) -> list[str]:
    """The prompting baselines that can answer now: base+prompt once a baseline prompt
    is set, base+examples once there are training examples."""
    names = [PROMPT] if baseline_prompt(ctx) else []
    return names + ([EXAMPLES] if examples.counts(ctx.store)["trainable"] else [])


def contender(ctx: Context, name: str, adapters: list[str]) -> Contender:
    """The contender behind a model name; UnknownAdapter if there is none."""
    if name == PROMPT:
        if not baseline_prompt(ctx):
            raise UnknownAdapter(
                "base+prompt needs a baseline system prompt, the best prompt you would "
                "write instead of fine-tuning: set it in the Train tab, or with "
                "`tunechat eval --system TEXT`.")
        return Contender(PROMPT, BASE, system=baseline_prompt(ctx))
    if name == EXAMPLES:
        return Contender(EXAMPLES, BASE, shots=fewshot.K)
    if name.endswith(WITH_EXAMPLES) and name[:-len(WITH_EXAMPLES)] in adapters:
        return Contender(name, name[:-len(WITH_EXAMPLES)], shots=fewshot.K)
    if name == BASE or name in adapters:
        return Contender(name, name)
    raise UnknownAdapter(f"No model named {name!r}. Choose one of: "
                         f"{', '.join([BASE] + baseline_names(ctx) + adapters)}.")


def live_pool(ctx: Context) -> fewshot.ExamplePool:
    """The examples the chat may place in a prompt (storage/placement.py says which),
    indexed once and again whenever they may have changed."""
    version = placement.fewshot_version(ctx.store)
    cached = _pools.get(ctx.store.home)
    if cached is not None and cached[0] == version:
        return cached[1]
    pool = _pool(placement.fewshot_examples(ctx.store))
    _pools[ctx.store.home] = (version, pool)
    return pool


def run_pool(ctx: Context, run: dict) -> fewshot.ExamplePool:
    """What a run trained on, as it was, that its report may place in prompts."""
    return _pool(placement.fewshot_examples(ctx.store, run))


def _pool(found: list[tuple[int, list[dict]]]) -> fewshot.ExamplePool:
    return fewshot.ExamplePool([messages for _, messages in found], [id_ for id_, _ in found])


_pools: dict = {}


def build_prompt(ctx: Context, chosen: Contender, messages: list[dict],
                 pool: fewshot.ExamplePool | None = None) -> list[dict]:
    """The messages the model reads for `messages` as `chosen` answers them. Examples
    that do not fit the context (leaving room for the answer) are left out, the least
    alike first."""
    if not chosen.builds_prompt:
        return messages
    own_system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    turns = messages[1:] if own_system else messages
    system = "\n\n".join(part for part in (chosen.system, own_system) if part)
    shots = (pool or live_pool(ctx)).nearest(messages, chosen.shots) if chosen.shots else []
    while True:
        earlier = [m for _, example in shots for m in fewshot.as_turns(example)]
        prompt = with_system(system, earlier + turns)
        if not shots or _fits(ctx, prompt):
            return prompt
        shots = shots[:-1]


def _fits(ctx: Context, prompt: list[dict]) -> bool:
    from core.chatformat import token_count

    window = ctx.engine.context_window
    return token_count(ctx.engine.tokenizer, prompt) + min(REPLY_ROOM, window // 4) <= window


def describe(prompt: list[dict]) -> str:
    """A built prompt as text a user can read and copy."""
    return json.dumps(prompt, ensure_ascii=False, indent=1)
