"""Contenders: the cheaper alternatives an adapter is measured against, as model names
that work wherever a model name does (chat, compare, the API, the command line).

- base: the base model as it is.
- base+prompt: the base with the data home's baseline system prompt, the best prompt
  a user would write instead of fine-tuning (set in the Train tab or with
  `tunechat eval --system TEXT`). A baseline like it is one entry of BASELINES.
- base+examples: the base with the endorsed examples most like the request placed
  before it as earlier turns (services/fewshot.py; storage/placement.py says which).
- run-N: an adapter; run-N+examples: the adapter with the same examples before it.
- +facts, before +examples (base+facts, run-N+facts+examples, ...): the passages of
  the user's facts most like the request (services/facts.py) placed right before it,
  so the model answers from them instead of inventing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from core.adapters import BASE, WITH_EXAMPLES, WITH_FACTS, UnknownAdapter, split_name
from core.chatformat import with_system
from services import facts, fewshot
from services.context import Context
from storage import examples, placement, runs

PROMPT = "base+prompt"
EXAMPLES = "base+examples"
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
    facts: int = 0
    """Passages of the user's facts placed before the request, at most."""

    @property
    def builds_prompt(self) -> bool:
        return bool(self.system or self.shots or self.facts)


@dataclass(frozen=True)
class Built:
    """The messages a contender's model reads, and what of the user's it drew on."""

    prompt: list[dict]
    facts: list[int] = field(default_factory=list)
    """The ids of the fact passages placed (services/facts.py)."""
    examples: list[int] = field(default_factory=list)
    """The ids of the examples placed as earlier turns."""

    def drew_on(self) -> dict | None:
        return {"facts": self.facts, "examples": self.examples} \
            if self.facts or self.examples else None


@dataclass(frozen=True)
class Baseline:
    """A way of answering without training that works as a model name (chat, compare,
    the API, the command line) and that every report card measures an adapter against.
    One entry of BASELINES each: the lineup, the verdict, the model lists and the
    card's colours all read it."""

    name: str
    answers: Callable[[Context], Contender]
    """How it answers: the base with what it places before each request."""
    missing: Callable[[Context], str]
    """Why it cannot answer now, as a clause that ends without a full stop ("no baseline
    system prompt is set: ..."), or "" when it can."""
    label: str
    """What the web app calls it."""
    details: str
    """What it is, in one line."""
    colour: str
    """Its bar on the report card."""


def baseline_prompt(ctx: Context) -> str:
    return runs.get_setting(ctx.store, BASELINE_KEY, "")


def _prompt_missing(ctx: Context) -> str:
    return "" if baseline_prompt(ctx) else (
        "no baseline system prompt is set: write the best prompt you would use instead of "
        "fine-tuning in the Train tab, or pass `tunechat eval --system TEXT`")


BASELINES: dict[str, Baseline] = {
    PROMPT: Baseline(
        PROMPT, lambda ctx: Contender(PROMPT, BASE, system=baseline_prompt(ctx)),
        _prompt_missing, label="The plain model + your instructions",
        details="the base model with your instructions (the baseline system prompt, in "
                "the Train tab) before every question",
        colour="#a78bfa"),
}
"""The named baselines. The base's forms with her examples and facts (base+examples,
base+facts+examples) are not entries: every model has them (see `forms`)."""


def set_baseline_prompt(ctx: Context, text: str) -> str:
    runs.set_setting(ctx.store, BASELINE_KEY, (text or "").strip())
    return baseline_prompt(ctx)


def helped(ctx: Context) -> str:
    """What a model can draw on now: "+facts+examples", "+facts", "+examples" or ""
    (the user has no facts and no examples yet)."""
    return (WITH_FACTS if facts.count(ctx) else "") + (
        WITH_EXAMPLES if examples.any_trainable(ctx.store) else "")


def forms(served: str, help_now: str) -> list[str]:
    """The names a model is offered and measured under, given what the user has
    (`helped`): itself, with her examples, and with her facts and examples."""
    found = [served] + [served + WITH_EXAMPLES] * (WITH_EXAMPLES in help_now)
    return found + [served + help_now] * (WITH_FACTS in help_now)


def baseline_names(ctx: Context, help_now: str | None = None) -> list[str]:
    """The prompting baselines that can answer now: base+prompt once a baseline prompt
    is set, then the base's forms with the user's examples and facts (base+examples
    once there are training examples, base+facts+examples once there are facts)."""
    help_now = helped(ctx) if help_now is None else help_now
    return [name for name, baseline in BASELINES.items() if not baseline.missing(ctx)] + \
        forms(BASE, help_now)[1:]


def contender(ctx: Context, name: str, adapters: list[str]) -> Contender:
    """The contender behind a model name; UnknownAdapter if there is none."""
    if name in BASELINES:
        why = BASELINES[name].missing(ctx)
        if why:
            raise UnknownAdapter(f"{name} cannot answer yet, because {why}.")
        return BASELINES[name].answers(ctx)
    served, with_facts, with_examples = split_name(name)
    if served == BASE or served in adapters:
        return Contender(name, served, shots=fewshot.K * with_examples,
                         facts=facts.FACTS_K * with_facts)
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
    """The messages the model reads for `messages` as `chosen` answers them."""
    return build(ctx, chosen, messages, pool).prompt


def build(ctx: Context, chosen: Contender, messages: list[dict],
          pool: fewshot.ExamplePool | None = None) -> Built:
    """The messages the model reads for `messages` as `chosen` answers them, and the
    facts and examples placed. Facts go right before the question (facts_prompt); where
    they are placed, only the examples close to the question are (a correction of it),
    as the wording of the others drowned the facts (examples/facts_prompt_forms.py).
    So too while fewer than fewshot.K examples are like the question: one or two others
    alone were copied word for word (a correction about cats answered a question about
    staying during a dog's groom); from K on, they show a way of answering.
    What does not fit the context (leaving room for the answer) is left out: examples
    first, the least alike first, then facts."""
    if not chosen.builds_prompt:
        return Built(messages)
    own_system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    turns = messages[1:] if own_system else messages
    system = "\n\n".join(part for part in (chosen.system, own_system) if part)
    shots = (pool or live_pool(ctx)).nearest(messages, chosen.shots) if chosen.shots else []
    passages = facts.relevant(ctx, messages, chosen.facts) if chosen.facts else []
    if passages or len(shots) < fewshot.K:
        shots = [(id_, e) for id_, e in shots if fewshot.close(messages, e)]
    while True:
        earlier = [m for _, example in shots for m in fewshot.as_turns(example)]
        asked = facts_prompt(passages, turns[-1])
        prompt = with_system(system, earlier + turns[:-1] + [asked])
        if not (shots or passages) or _fits(ctx, prompt):
            return Built(prompt, [p.id for p in passages], [id_ for id_, _ in shots])
        if shots:
            shots = shots[:-1]
        else:
            passages = passages[:-1]


def facts_prompt(passages: list[facts.Fact], message: dict) -> dict:
    """The request's message with the user's facts placed right before it: of the forms
    measured, the one the small models here followed best."""
    if not passages:
        return message
    listed = "\n".join(f"- {p.text}" for p in passages)
    return {**message, "content": f"Facts:\n{listed}\n\nQuestion: {message['content']}"}


def _fits(ctx: Context, prompt: list[dict]) -> bool:
    from core.chatformat import token_count

    window = ctx.engine.context_window
    return token_count(ctx.engine.tokenizer, prompt) + min(REPLY_ROOM, window // 4) <= window


ROLE_WORDS = {"system": "Instructions", "user": "You", "assistant": "Assistant"}


def describe(prompt: list[dict]) -> str:
    """A built prompt as text a user can read and copy: who says what, in order."""
    return "\n\n".join(f"{ROLE_WORDS.get(m['role'], m['role'])}:\n{m['content']}"
                         for m in prompt)
