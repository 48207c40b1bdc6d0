"""Scores for the report card, chosen from the reference answers themselves.

- exact: every reference is a short label from a small set (a ticket's category):
  an answer scores 1 when it is that label (case and surrounding punctuation aside).
- json: every reference is a JSON object: 0 for an answer that is not one, else the
  share of the reference's fields it has with exactly the same value.
- chrf: free text: chrF (sacrebleu), how much of the reference's character sequences
  the answer shares, 0 to 1 here (0-100 in sacrebleu).

Besides, a style check that needs no configuration: phrases that recur across most
references (a greeting, a sign-off) and how often each answer carries them.
Uncertainty, two ways. Whether one model is better than another is decided by a paired
test whose error rate holds at any number of test examples: an exact sign test for
right/wrong scores, a paired permutation test for closeness scores, with Holm's
adjustment when an adapter is held against several baselines. A 95% bootstrap interval
shows how big a difference may be; it never decides.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

LABEL_MAX_WORDS = 3
LABEL_MAX_DISTINCT = 12
STYLE_SHARE = 0.6
"""A phrase is part of the style when at least this share of the references has it."""
BOOTSTRAP = 2000
SEED = 1234
ALPHA = 0.05
"""A difference is claimed when a chance this small or smaller could have made it."""
PERMUTATIONS = 9999
"""Random sign patterns of a permutation test with too many to try them all."""


@dataclass(frozen=True)
class Measure:
    name: str
    why: str
    """Why this measure was chosen, for the report."""
    score: Callable[[str, str], float]
    binary: bool
    """Scores are 0 or 1 (right or wrong), not a closeness."""

    def right(self, value: float) -> bool:
        """What counts as a right answer, for the flips against the base."""
        return value >= (1.0 if self.binary else 0.5)


def choose_measure(references: list[str]) -> Measure:
    if references and all(_json_object(r) is not None for r in references):
        return Measure("json", "every reference answer is a JSON object: an answer must be "
                       "valid JSON, scored by the share of fields it gets exactly right",
                       json_fields, binary=False)
    labels = {_label(r) for r in references}
    if references and all(len(r.split()) <= LABEL_MAX_WORDS for r in references) and \
            len(labels) <= min(LABEL_MAX_DISTINCT, max(2, len(references) // 2 + 1)):
        return Measure("exact", f"every reference is a short label from a small set "
                       f"({len(labels)} different): an answer is right when it is the label",
                       exact_label, binary=True)
    return Measure("chrf", "the references are free text: chrF scores how much of each "
                   "reference an answer shares (how close to your wording, 0 to 100)",
                   chrf, binary=False)


def measures_for(references: list[str], phrases: list[str]) -> list[Measure]:
    """Every measure these references support: the one their form calls for first,
    then the style when they share phrases (a greeting, a sign-off)."""
    found = [choose_measure(references)]
    if phrases:
        shown = ", ".join(f'"{p}"' for p in phrases)
        found.append(Measure(
            "style", f"most of your answers share {shown}: an answer scores by how many of "
            "these it carries", lambda answer, _reference: mean(
                [float(carries(answer, p)) for p in phrases]), binary=len(phrases) == 1))
    return found


def _label(text: str) -> str:
    return re.sub(r"^[\W_]+|[\W_]+$", "", text.strip().casefold())


def exact_label(answer: str, reference: str) -> float:
    return float(_label(answer) == _label(reference))


def _json_object(text: str) -> dict | None:
    try:
        value = json.loads(text.strip())
    except (json.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def json_fields(answer: str, reference: str) -> float:
    wanted, got = _json_object(reference), _json_object(answer)
    if wanted is None or got is None:
        return 0.0
    if not wanted:
        return float(got == wanted)
    return sum(got.get(key) == value and key in got for key, value in wanted.items()) \
        / len(wanted)


def chrf(answer: str, reference: str) -> float:
    from sacrebleu.metrics import CHRF

    return CHRF().sentence_score(answer, [reference]).score / 100


# The style check.

def style_phrases(references: list[str], max_words: int = 6) -> list[str]:
    """Phrases of 2 to `max_words` words at the start or the end of most references (a
    greeting, a sign-off), longest first, none inside another."""
    if len(references) < 3:
        return []
    found: Counter = Counter()
    for reference in references:
        words = reference.split()
        seen = set()
        for n in range(2, max_words + 1):
            if len(words) >= n:
                seen.add(" ".join(words[:n]))
                seen.add(" ".join(words[-n:]))
        found.update(seen)
    common = [p for p, count in found.items() if count >= STYLE_SHARE * len(references)]
    common.sort(key=lambda p: (-len(p.split()), p))
    chosen: list[str] = []
    for phrase in common:
        if not any(phrase in longer for longer in chosen):
            chosen.append(phrase)
    return chosen


def carries(answer: str, phrase: str) -> bool:
    return _squash(phrase) in _squash(answer)


def _squash(text: str) -> str:
    return " ".join(text.casefold().split())


# Uncertainty.

def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def interval(values: list[float], level: float = 0.95,
             scores: bool = True) -> tuple[float, float]:
    """A bootstrap percentile interval for the mean of `values`. For `scores` (each
    between 0 and 1) it is widened to the Wilson interval of the mean as a rate: alone, the
    bootstrap collapses when every score is the same (5 answers of 5 right gave "likely
    100 to 100"), and the Wilson interval stays honest at small n."""
    if not values:
        return 0.0, 0.0
    rng = random.Random(SEED)
    n = len(values)
    means = sorted(mean([values[rng.randrange(n)] for _ in range(n)])
                   for _ in range(BOOTSTRAP))
    tail = (1 - level) / 2
    low, high = means[int(tail * BOOTSTRAP)], means[min(BOOTSTRAP - 1,
                                                         int((1 - tail) * BOOTSTRAP))]
    if scores and all(0.0 <= v <= 1.0 for v in values):
        from storage.runs import wilson_interval

        rate_low, rate_high = wilson_interval(mean(values), n)
        low, high = min(low, rate_low), max(high, rate_high)
    return low, high


def difference_interval(a: list[float], b: list[float]) -> tuple[float, float]:
    """95% interval of mean(a - b) over the same examples (a paired bootstrap)."""
    return interval([x - y for x, y in zip(a, b)], scores=False)


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test: how likely `wins` against `losses` (ties left out) or a
    split as uneven would be if neither side were better."""
    from scipy.stats import binomtest

    return float(binomtest(wins, wins + losses, 0.5).pvalue) if wins + losses else 1.0


def permutation_test(differences: list[float]) -> float:
    """Two-sided paired permutation test of the mean difference: each example's
    difference may have come out either way round if the models were alike. Exact (every
    sign pattern) up to 2^13 patterns, else PERMUTATIONS random ones."""
    import numpy as np
    from scipy.stats import permutation_test as scipy_permutation_test

    nonzero = np.array([d for d in differences if d != 0.0])
    if len(nonzero) < 2:  # one difference either way round is as extreme: p = 1
        return 1.0
    result = scipy_permutation_test((nonzero,), np.mean, vectorized=True,
                                    permutation_type="samples", alternative="two-sided",
                                    n_resamples=PERMUTATIONS, rng=SEED)
    return float(min(1.0, result.pvalue))


def paired_p(mine: list[float], other: list[float], binary: bool) -> float:
    """The p-value of "these two differ", paired over the same examples."""
    if binary:
        wins = sum(a > b for a, b in zip(mine, other))
        return sign_test(wins, sum(a < b for a, b in zip(mine, other)))
    return permutation_test([a - b for a, b in zip(mine, other)])


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment: each p-value as if alone, though several were made."""
    ordered = sorted(p_values, key=p_values.get)  # type: ignore[arg-type]
    adjusted, running = {}, 0.0
    for i, name in enumerate(ordered):
        running = max(running, min(1.0, (len(ordered) - i) * p_values[name]))
        adjusted[name] = running
    return adjusted


def fewest_for_a_clear_result(comparisons: int) -> int:
    """The fewest test examples at which winning every one could be told from chance,
    against `comparisons` baselines at once (two-sided, Holm)."""
    n = 1
    while 2 * 0.5 ** n > ALPHA / max(1, comparisons):
        n += 1
    return n
