"""What the adapter forgot: the general check. Short everyday questions (geography,
arithmetic, units, science, language, common sense) that the embedded base mostly gets
right, each with an answer pattern, plus the user's own "must not change" prompts. Every
report card asks the base and the adapter all of them, greedy, and shows what flipped;
a small fine-tune can erase what the base knew, and no task score shows it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from core.adapters import BASE
from core.errors import UserError
from core.paths import weights_written
from services import scoring
from services.context import Context
from storage import examples, placement, runs

ANSWER_TOKENS = 40
"""Enough for "The capital of France is Paris." and a clause more; the pattern is looked
for in the whole answer, and a rambling answer gains nothing from more."""


@dataclass(frozen=True)
class Question:
    id: str
    """"g12" for the shipped set, "#34" for the user's example 34."""
    messages: list[dict]
    pattern: str
    """A regular expression (case ignored) that a right answer contains."""

    @property
    def text(self) -> str:
        return self.messages[-1]["content"]

    def right(self, answer: str) -> bool:
        try:
            return re.search(self.pattern, answer, re.IGNORECASE) is not None
        except re.error:  # a pattern stored before patterns were checked: never right
            return False


def shipped() -> list[Question]:
    """The general check set written for tunechat (services/data/general_check.jsonl)."""
    text = resources.files("services").joinpath("data/general_check.jsonl").read_text()
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [Question(f"g{r['id']}", [{"role": "user", "content": r["question"]}],
                     r["pattern"]) for r in rows]


def pattern_of(reference: str) -> str:
    """A user's reference as a pattern: /regex/ as written, else its words in order,
    case, spacing and punctuation aside ("Paris" is right in "It is Paris.")."""
    text = reference.strip()
    if len(text) > 2 and text.startswith("/") and text.endswith("/"):
        return text[1:-1]
    words = re.findall(r"\w+", text)
    return r"\W+".join(re.escape(w) for w in words) if words else re.escape(text)


class BadPattern(UserError):
    pass


def check_pattern(reference: str) -> str:
    """The pattern of a must-not-change answer, or BadPattern saying what is wrong."""
    pattern = pattern_of(reference)
    try:
        re.compile(pattern)
    except re.error as error:
        raise BadPattern(f"{reference!r} is not a regular expression ({error}). Write the "
                         "answer's words as they are, or a valid /regex/.") from None
    return pattern


def users_checks(ctx: Context) -> list[Question]:
    """The user's "must not change" examples: the prompt, and the answer as a pattern
    (endorsed answers only: a thumbs-down is no answer to keep)."""
    return [Question(f"#{e.id}", e.messages[:-1], pattern_of(e.answer))
            for e in reversed(examples.list_examples(ctx.store, must_keep=True,
                                                     sources=placement.ENDORSED))]


def questions(ctx: Context) -> list[Question]:
    """What every card asks: the shipped set, then the user's own checks."""
    return shipped() + users_checks(ctx)


def check(ctx: Context, asked: list[Question], names: list[str],
          progress: Callable[[int, str], None] | None = None) -> dict:
    """Ask every question of `names` (base first, then adapters); the card's general
    block: per model how many are right, the flips against the base, and whether a model
    lost more than chance explains (an exact sign test over the flipped questions).
    `progress(answers, step)` after each batch."""
    answers: dict[str, list[str]] = {}
    for name in names:
        done = [0]

        def batch(k: int, name: str = name, done: list[int] = done) -> None:
            if progress:
                progress(k - done[0], f"general questions, {name}")
            done[0] = k

        answers[name] = _ask(ctx, asked, name, batch)
    right = {name: [q.right(a) for q, a in zip(asked, answers[name])] for name in names}
    return {"n": len(asked), "users": sum(q.id.startswith("#") for q in asked),
            "models": [_model(name, asked, answers, right) for name in names]}


def _ask(ctx: Context, asked: list[Question], name: str,
         progress: Callable[[int], None]) -> list[str]:
    """The answers of `name`; the base's are kept in the data home, since the same base
    gives the same greedy answer to the same question on every card."""
    if name != BASE:
        return ctx.engine.reply_many([q.messages for q in asked], name, ANSWER_TOKENS,
                                     progress=progress)
    key = f"general_base_answers:{_base_fingerprint(ctx)}:{ANSWER_TOKENS}"
    kept = json.loads(runs.get_setting(ctx.store, key, "{}"))
    missing = [q for q in asked if _said(q) not in kept]
    if missing:
        replies = ctx.engine.reply_many([q.messages for q in missing], BASE, ANSWER_TOKENS,
                                        progress=progress)
        kept.update({_said(q): reply for q, reply in zip(missing, replies)})
        runs.set_setting(ctx.store, key, json.dumps(kept, ensure_ascii=False))
    progress(len(asked))
    return [kept[_said(q)] for q in asked]


def _base_fingerprint(ctx: Context) -> str:
    """What the base's greedy answers depend on: its folder and when its weights were
    written, the dtype it runs in, and the transformers version."""
    import transformers

    folder = ctx.engine.loaded.folder
    return (f"{folder}:{weights_written(folder)}:{ctx.engine.model.dtype}:"
            f"{transformers.__version__}")


def _said(question: Question) -> str:
    return json.dumps(question.messages, ensure_ascii=False)


def _model(name: str, questions: list[Question], answers: dict[str, list[str]],
           right: dict[str, list[bool]]) -> dict:
    mine, base = right[name], right[BASE]
    lost = [i for i, (b, m) in enumerate(zip(base, mine)) if b and not m]
    gained = [i for i, (b, m) in enumerate(zip(base, mine)) if m and not b]
    p = scoring.sign_test(len(gained), len(lost))
    return {"name": name, "right": sum(mine), "lost": len(lost), "gained": len(gained),
            "p": p, "forgot": bool(name != BASE and len(lost) > len(gained)
                                   and p < scoring.ALPHA),
            "flips": [{"id": questions[i].id, "question": questions[i].text,
                       "base": answers[BASE][i], "answer": answers[name][i],
                       "now": "wrong" if i in lost else "right"}
                      for i in sorted(lost + gained)]}


def versus(mine: dict, theirs: dict) -> tuple[int, int, float]:
    """(worse, better, p) of one model against another, each a card's general entry
    (flips against the same base): the shipped questions `mine` gets wrong that `theirs`
    gets right, the other way round, and the sign test's p. Only the shipped set counts:
    the user's own checks may have changed between the two cards. A question flipped in
    both went the same way for both (a flip is always away from the base's answer)."""
    def flips(model: dict) -> dict[str, str]:
        return {f["id"]: f["now"] for f in model.get("flips", []) if not f["id"].startswith("#")}

    ours, others = flips(mine), flips(theirs)
    worse = sum(now == "wrong" for q, now in ours.items() if q not in others) + \
        sum(now == "right" for q, now in others.items() if q not in ours)
    better = sum(now == "right" for q, now in ours.items() if q not in others) + \
        sum(now == "wrong" for q, now in others.items() if q not in ours)
    return worse, better, scoring.sign_test(better, worse)


def line(general: dict, adapter: str) -> str:
    """"general knowledge: base 67/100, run-3 61/100 (forgot 7, learned 1)"."""
    models = {m["name"]: m for m in general["models"]}
    mine = models.get(adapter)
    text = f"General knowledge: base {models[BASE]['right']}/{general['n']}"
    if mine is not None:
        text += (f", {adapter} {mine['right']}/{general['n']} (lost {mine['lost']} the "
                 f"base got right, gained {mine['gained']})")
    if general["users"]:
        text += f"; {general['users']} of the questions are your own must-not-change checks"
    return text + "."
