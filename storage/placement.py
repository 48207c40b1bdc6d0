"""Which example goes where: the one rule every place that picks examples follows.

- **trained on / held out** (`freeze_run`, `choose_held_out`): a run trains on every
  example its objective learns from; some of the answers SFT learns from are held out
  to test it. Examples that share a prompt (near-duplicates) fall on one side
  together. Never held out: a correction the user made (she wants it learned), and an
  example an adapter being continued has trained on (or one with the same prompt).
- **tested** (`test_set`): a run's report card tests it on its held-out examples and on
  the examples marked test only, leaving out any that the run or an adapter it continued
  from trained on (marked test only afterwards), any with the same prompt as one they
  trained on, and thumbs-down answers, which are no reference; it says which and why.
- **few-shot** (`fewshot_examples`): only answers the user endorsed (kept, corrected,
  added, imported, vote winners); for a run's card, those it trained on; for the chat,
  every such example not kept for testing and not held out by the newest run.
- **exported** (`exported`): `export --run N` writes what run N trained on that the
  format carries (SFT formats: the endorsed answers SFT trained on; preference formats:
  the pairs).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from core.adapters import split_name
from storage import examples, runs
from storage.db import Store
from storage.examples import TRAINABLE, near_keys
from storage.runs import RunExample

ENDORSED = TRAINABLE + ("vote",)
"""Answers the user stands behind: kept, corrected, added, imported, a vote's winner.
Only these are placed in prompts or used as a test's reference answer."""

HELD_OUT_SOURCES = tuple(s for s in TRAINABLE if s != "corrected")
"""What a run may hold out to test itself on: never a correction (always trained on)."""

HELD_OUT_FROM = 20
"""Below this many examples nothing is held out: every one is needed to learn from."""
HELD_OUT_MIN = 5
"""Fewer held-out examples than this make the eval loss and the reports meaningless."""
HELD_OUT_SHARE = 0.15
HELD_OUT_MAX = 30
"""The share applies up to 200 examples; beyond, 30 held out judge a run well enough."""


def held_out_count(examples: int) -> int:
    """How many of `examples` to hold out: none below 20, then about 15%, at least 5, at
    most 30."""
    if examples < HELD_OUT_FROM:
        return 0
    return max(HELD_OUT_MIN, min(HELD_OUT_MAX, round(HELD_OUT_SHARE * examples)))


def rank(messages: list[dict]) -> int:
    """A stable pseudo-random rank of an example, from its text: the same example ranks
    the same in every run, whatever else was added or deleted."""
    canonical = json.dumps(messages, ensure_ascii=False, separators=(",", ":"))
    return int(hashlib.sha256(canonical.encode()).hexdigest()[:12], 16)


def prompt_key(messages: list[dict]) -> str:
    """What makes two examples "the same prompt" (case, spacing and punctuation aside)."""
    return near_keys(messages)[1]


def choose_held_out(candidates: list[RunExample], trained_before: Iterable[RunExample] = (),
                    held_before: set[int] | None = None, examples: int | None = None
                    ) -> set[int]:
    """Ids to hold out from `candidates`, a prompt's examples all or none: prompts held
    out last time first, then by rank; as many as `examples` in all call for (default:
    the candidates). Never an example (or a prompt) that an adapter being continued has
    trained on (`trained_before`): a held-out example must be one the adapter has never
    seen."""
    held_before = held_before or set()
    trained = list(trained_before)
    seen_ids = {r.example_id for r in trained}
    seen_prompts = {prompt_key(r.messages) for r in trained}
    groups: dict[str, list[RunExample]] = {}
    for candidate in candidates:
        groups.setdefault(prompt_key(candidate.messages), []).append(candidate)
    eligible = [group for key, group in groups.items() if key not in seen_prompts
                and not any(c.example_id in seen_ids for c in group)]
    eligible.sort(key=lambda group: (not any(c.example_id in held_before for c in group),
                                     min(rank(c.messages) for c in group)))
    # Continuing an adapter on a few new examples: at most half of them are held out, so
    # the run has something new to learn.
    count = min(held_out_count(examples or len(candidates)), sum(map(len, eligible)) // 2)
    held: set[int] = set()
    for group in eligible:
        if len(held) >= count:
            break
        held |= {c.example_id for c in group}
    return held


def held_out_by_newest_run(store: Store) -> dict[int, int]:
    """Examples the newest run holds out (never trained on) -> that run's id; a run
    whose examples are still being copied (not frozen) is not yet one."""
    newest = runs.newest_frozen_run(store)
    if newest is None:
        return {}
    return {e.example_id: newest for e in runs.run_examples(store, newest, "held_out")}


def trained_by_lineage(store: Store, run: dict | None) -> list[RunExample]:
    """What `run` trained on, and every adapter it continued from, as each froze it."""
    found: list[RunExample] = []
    seen_runs: set[int] = set()
    while run is not None and run["id"] not in seen_runs:
        seen_runs.add(run["id"])
        found += runs.run_examples(store, run["id"], "train")
        parent = run["config"].get("continue_from")
        run = runs.run_of_adapter(store, parent) if parent else None
    return found


FREEZE_BATCH = 2_000
"""Examples copied into a run per transaction (a short hold of the write lock)."""


def freeze_run(store: Store, config: dict, with_preferences: bool,
               continue_from: str | None = None, code_version: str = "",
               check: Callable[[int], None] | None = None) -> int:
    """Queue a run on every example its objective learns from, frozen as they are now,
    each marked train or held_out (see the module's rule); returns its id. A run whose
    objective has a preference stage also takes thumbs-down and votes (always trained).

    In bounded memory whatever the number of examples: SQLite picks the held-out
    prompts and copies the rows, FREEZE_BATCH at a time; the run is sealed once all are
    in, and a copy cut short (an error here, or this process's death) is discarded.
    `check(run_id)` may refuse the copy (raise) before it is sealed: nothing is left."""
    sources: tuple[str, ...] = TRAINABLE
    if with_preferences:
        sources += examples.PREFERENCE_ONLY
    run_id = runs.reserve_run(store, config, code_version)
    try:
        held = held_out_prompts(store, sources, continue_from)
        copied, last = _copy_examples(store, run_id, sources, held)
        if check is not None:
            check(run_id)
        runs.seal_run(store, run_id, copied, last)
    except BaseException:
        runs.discard_run(store, run_id)
        raise
    return run_id


def _live(sources: tuple[str, ...]) -> tuple[str, list]:
    """Examples of these sources a run may learn from: live, not kept for testing."""
    return (f"deleted_at IS NULL AND test_only = 0 AND source IN "
            f"({', '.join('?' * len(sources))})", list(sources))


def held_out_prompts(store: Store, sources: tuple[str, ...],
                     continue_from: str | None = None) -> list[str]:
    """The prompts (prompt keys) a new run holds out: choose_held_out's rule, in SQL.
    Candidates are the examples it may hold out (HELD_OUT_SOURCES), grouped by prompt;
    a prompt is not eligible if an adapter being continued trained on it (or on one of
    its examples), or if an example that is always trained on (a correction, a
    thumbs-down, a vote) has it. Prompts held out by the newest run and by the model in
    use come first (so the new run and the model it may replace are tested alike), then
    by the stable rank of their examples (the digest is the same hash as `rank`)."""
    parent = runs.run_of_adapter(store, continue_from) if continue_from else None
    lineage = trained_by_lineage(store, parent)  # what an adapter continued trained on
    in_use = runs.run_of_adapter(store, split_name(runs.default_adapter(store))[0])
    held_before = set(held_out_by_newest_run(store)) | {
        e.example_id for e in (runs.run_examples(store, in_use["id"], "held_out")
                               if in_use else [])}
    candidates = tuple(s for s in sources if s in HELD_OUT_SOURCES)
    always = tuple(s for s in sources if s not in HELD_OUT_SOURCES)
    where, params = _live(candidates)
    always_where, always_params = _live(always)
    trainable_where, trainable_params = _live(tuple(s for s in sources if s in TRAINABLE))
    groups = (f"SELECT prompt_key, COUNT(*) AS n, MAX(id IN (SELECT value FROM json_each(?)))"
              f" AS first, MIN(substr(digest, 1, 12)) AS rank FROM examples WHERE {where} "
              f"AND prompt_key NOT IN (SELECT value FROM json_each(?)) AND prompt_key NOT IN "
              f"(SELECT prompt_key FROM examples WHERE {always_where} AND prompt_key IS NOT "
              f"NULL) GROUP BY prompt_key "
              f"HAVING SUM(id IN (SELECT value FROM json_each(?))) = 0")
    group_params = [json.dumps(sorted(held_before)), *params,
                    json.dumps(sorted({prompt_key(r.messages) for r in lineage})),
                    *always_params, json.dumps(sorted({r.example_id for r in lineage}))]
    with store.read() as db:
        eligible = db.execute(f"SELECT COALESCE(SUM(n), 0) FROM ({groups})",
                              group_params).fetchone()[0]
        trainable = db.execute(f"SELECT COUNT(*) FROM examples WHERE {trainable_where}",
                               trainable_params).fetchone()[0]
        count = min(held_out_count(trainable), eligible // 2)
        held, taken = [], 0
        for key, n in db.execute(f"SELECT prompt_key, n FROM ({groups}) ORDER BY first DESC,"
                                 " rank", group_params):
            if taken >= count:
                break
            held.append(key)
            taken += n
    return held


def _copy_examples(store: Store, run_id: int, sources: tuple[str, ...],
                   held: list[str]) -> tuple[int, int]:
    """Copy the examples into the run, oldest first, FREEZE_BATCH ids at a time: (how
    many, the largest id)."""
    where, params = _live(sources)
    with store.read() as db:
        last = db.execute(f"SELECT COALESCE(MAX(id), 0) FROM examples WHERE {where}",
                          params).fetchone()[0]
    candidates = ", ".join(repr(s) for s in HELD_OUT_SOURCES)
    copied = 0
    for low in range(0, last, FREEZE_BATCH):
        with store.connect() as db:
            copied += db.execute(
                f"INSERT INTO run_examples (run_id, example_id, split, source, messages, "
                f"rejected, ord) SELECT ?, id, CASE WHEN source IN ({candidates}) AND "
                f"prompt_key IN (SELECT value FROM json_each(?)) THEN 'held_out' ELSE "
                f"'train' END, source, messages, rejected, id FROM examples WHERE {where} "
                f"AND id > ? AND id <= ? ORDER BY id",
                [run_id, json.dumps(held), *params, low, min(low + FREEZE_BATCH, last)]
            ).rowcount
    return copied, last


@dataclass(frozen=True)
class TestCase:
    id: int
    source: str
    split: str
    """held_out (by the run) or test_only (marked by the user)."""
    messages: list[dict]

    @property
    def reference(self) -> str:
        return self.messages[-1]["content"]

    @property
    def prompt(self) -> list[dict]:
        return self.messages[:-1]


@dataclass(frozen=True)
class TestSet:
    cases: list[TestCase]
    left_out: list[dict]
    """{"id", "why", "reason"} for each test-only or held-out example it may not be tested
    on; `reason` lets the web app say it in plain words (web/cards.py)."""


def test_set(store: Store, run: dict | None, beside: dict | None = None) -> TestSet:
    """What a run may be tested on: its held-out examples as it froze them, then every
    example marked test only; corrections first (did it learn my corrections?). Left
    out: what the run or its ancestors trained on, or shares a prompt with it, and
    answers the user did not endorse. With `beside` (another run on the same card, the
    one in use), also what that one trained on, so the two are tested alike."""
    trained = trained_by_lineage(store, run) + trained_by_lineage(store, beside)
    trained_ids = {r.example_id for r in trained}
    trained_prompts = {prompt_key(r.messages) for r in trained}
    name = (run or {}).get("adapter") or "its run"
    if beside is not None:
        name += f" or {beside['adapter']}"
    held = runs.run_examples(store, run["id"], "held_out") if run else []
    offered = [TestCase(e.example_id, e.source, "held_out", e.messages) for e in held]
    held_ids = {case.id for case in offered}
    offered += [TestCase(e.id, e.source, "test_only", e.messages)
                for e in reversed(examples.list_examples(store, test_only=True, must_keep=False))
                if e.id not in held_ids]
    cases, left_out = [], []
    for case in offered:
        if case.source not in ENDORSED:
            reason, why = "not_endorsed", (f"a {case.source} answer is not one to imitate, so "
                                           "it is no reference")
        elif case.id in trained_ids:
            reason, why = "trained", (f"{name} (or an adapter it continued) trained on it "
                                      "before it was marked")
        elif prompt_key(case.messages) in trained_prompts:
            reason, why = "same_prompt", (f"{name} (or an adapter it continued) trained on "
                                          "the same prompt")
        else:
            cases.append(case)
            continue
        left_out.append({"id": case.id, "why": why, "reason": reason})
    cases.sort(key=lambda c: c.source != "corrected")
    return TestSet(cases, left_out)


def fewshot_examples(store: Store, run: dict | None = None) -> list[tuple[int, list[dict]]]:
    """(id, messages) the few-shot contenders may place in a prompt. For a run: the
    endorsed answers it trained on, as it froze them (its card retrieves from exactly
    those). Without one (the chat): every endorsed example now, except those kept for
    testing or held out by the newest run."""
    if run is not None:
        return [(e.example_id, e.messages) for e in runs.run_examples(store, run["id"], "train")
                if e.source in ENDORSED]
    held = held_out_by_newest_run(store)
    return [(e.id, e.messages) for e in reversed(examples.list_examples(
        store, sources=ENDORSED, test_only=False)) if e.id not in held]


def fewshot_version(store: Store) -> tuple:
    """Changes whenever fewshot_examples(store) may: an example added, edited, deleted,
    restored or marked, or a new run (which holds out others)."""
    with store.read() as db:
        state = db.execute("SELECT (SELECT version FROM data_versions WHERE name = "
                           "'examples'), (SELECT MAX(id) FROM examples), "
                           "(SELECT MAX(id) FROM runs)").fetchone()
    return tuple(state)


def exported(store: Store, run_id: int, carried: tuple[str, ...]) -> list[examples.Example]:
    """What `export --run` writes: the examples run `run_id` trained on, as it froze
    them, of the sources the format carries (files/formats.py `Format.exports`: never a
    thumbs-down as a good answer)."""
    return [examples.Example(e.example_id, e.messages, e.source, e.rejected, None, "")
            for e in runs.run_examples(store, run_id, "train") if e.source in carried]
