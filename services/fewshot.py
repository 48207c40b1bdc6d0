"""Few-shot examples for a request: the training examples most like it, found with BM25
(bm25s, with a Snowball stemmer so "open" finds "opening"), placed before it as
earlier turns."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

K = 4
"""Examples placed before a request, fewer when they do not fit the context."""


def _tokenize(texts: list[str]):
    import bm25s
    import Stemmer

    return bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer.Stemmer("english"),
                          show_progress=False)


def query_of(messages: list[dict]) -> str:
    """What a request or an example is about: its last user message."""
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")


class TextIndex:
    """BM25 over a list of texts, built on the first search; safe across threads."""

    def __init__(self, texts: list[str]):
        self.texts = texts
        self._bm25 = None
        self._built = False
        self._lock = threading.Lock()

    def search(self, query: str, k: int) -> list[int]:
        """The indices of up to k texts most like `query`, most alike first; none that
        shares no word with it."""
        if not self.texts or k <= 0:
            return []
        with self._lock:
            if not self._built:
                import bm25s

                tokens = _tokenize(self.texts)
                if tokens.vocab:  # bm25s refuses a corpus of no words (stopwords only)
                    index = bm25s.BM25()
                    index.index(tokens, show_progress=False)
                    self._bm25 = index
                self._built = True
            if self._bm25 is None:
                return []
            found, scores = self._bm25.retrieve(_tokenize([query]),
                                                k=min(k, len(self.texts)),
                                                show_progress=False)
        return [int(i) for i, score in zip(found[0], scores[0]) if score > 0]


@dataclass
class ExamplePool:
    """Examples that may be placed in a prompt, indexed once."""

    examples: list[list[dict]]
    ids: list[int]

    def __post_init__(self):
        self._index = TextIndex([query_of(e) for e in self.examples])

    def nearest(self, messages: list[dict], k: int = K) -> list[tuple[int, list[dict]]]:
        """Up to k (id, example) most like the request, most alike first; none when
        nothing in the pool shares a word with it."""
        return [(self.ids[i], self.examples[i])
                for i in self._index.search(query_of(messages), k)]


CLOSE = 0.5
"""An example is close to a request when its question has at least this share of the
request's words (stemmed, without stopwords)."""


def words(text: str) -> set[str]:
    """The words that say what a text is about: stemmed, without stopwords."""
    import Stemmer
    from bm25s.stopwords import STOPWORDS_EN_PLUS

    stem = Stemmer.Stemmer("english")
    return {stem.stemWord(w) for w in re.findall(r"[a-z0-9]+", text.lower())
            if w not in STOPWORDS_EN_PLUS}


def close(messages: list[dict], example: list[dict]) -> bool:
    """Does `example` ask what the request asks (a correction of the same or a similar
    question), rather than only share a word with it?"""
    wanted = words(query_of(messages))
    return bool(wanted) and len(wanted & words(query_of(example))) >= CLOSE * len(wanted)


def as_turns(example: list[dict]) -> list[dict]:
    """An example as earlier turns of a conversation (its own system prompt left out:
    the request's system prompt is the one that applies)."""
    return [m for m in example if m["role"] != "system"]
