"""Contenders: the cheaper alternatives an adapter is measured against, as model names
that work wherever a model name does (chat, compare, the API, the command line).

- base: the base model as it is.
- base+prompt: the base with the data home's baseline system prompt, the best prompt
  a user would write instead of fine-tuning (set in the Train tab or with
  `tunechat eval --system TEXT`).
- base+examples: the base with the training examples most like the request placed
  before it as earlier turns (services/fewshot.py); never test examples.
- run-N: an adapter; run-N+examples: the adapter with the same examples before it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from core.adapters import BASE, UnknownAdapter
from core.chatformat import with_system
from services import fewshot
from services.context import Context
from storage import examples, runs

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
    """The examples the chat may place in a prompt: training examples, never one kept for
    testing or held out by the newest run."""
    signature = _pool_signature(ctx)
    cached = _pools.get(ctx.store.home)
    if cached is not None and cached[0] == signature:
        return cached[1]
    held = _held_out_by_newest_run(ctx)
    chosen = [e for e in reversed(examples.list_examples(ctx.store, sources=examples.TRAINABLE,
                                                         test_only=False))
              if e.id not in held]
    pool = fewshot.ExamplePool([e.messages for e in chosen], [e.id for e in chosen])
    _pools[ctx.store.home] = (signature, pool)
    return pool


def run_pool(ctx: Context, run_id: int) -> fewshot.ExamplePool:
    """What a run trained on, as it was: the examples its report may place in prompts."""
    trained = runs.run_examples(ctx.store, run_id, "train")
    return fewshot.ExamplePool([e.messages for e in trained], [e.example_id for e in trained])


_pools: dict = {}


def _pool_signature(ctx: Context) -> tuple:
    with ctx.store.read() as db:
        state = db.execute("SELECT SUM(deleted_at IS NULL), MAX(id), MAX(updated_at), "
                           "SUM(test_only) FROM examples").fetchone()
    newest = runs.list_runs(ctx.store, 1)
    return tuple(state) + ((newest[0]["id"],) if newest else ())


def _held_out_by_newest_run(ctx: Context) -> set[int]:
    newest = runs.list_runs(ctx.store, 1)
    if not newest:
        return set()
    return {e.example_id for e in runs.run_examples(ctx.store, newest[0]["id"], "held_out")}


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
