"""Compare: two models on one prompt, side by side; blind votes and win rates. (Whether an
adapter was worth it, measured on its test examples, is services/report.py.)"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from assistant.engine import EmptyMessage, GenerationSettings
from core.chatformat import with_system
from services import contenders, models
from services.context import Context
from storage import examples, runs

_DONE = object()


def stream_pair(ctx: Context, prompt: str, system: str, left: str, right: str,
                settings: GenerationSettings = GenerationSettings()
                ) -> Iterator[tuple[str, str]]:
    """Yield (left text so far, right text so far) while both answers stream at once;
    the last pair is the whole answers, stripped."""
    if not (prompt or "").strip():
        raise EmptyMessage("Type a prompt to compare.")
    messages = with_system(system, [{"role": "user", "content": prompt}])
    sides = []
    for name in (left, right):
        chosen = models.contender(ctx, name)
        built = contenders.build_prompt(ctx, chosen, messages)
        ctx.engine.encode(built)  # a bad prompt fails here, before any thread starts
        sides.append((chosen.adapter, built))
    yield from _both(ctx, sides, settings)


def _both(ctx: Context, sides: list[tuple[str, list[dict]]],
          settings: GenerationSettings) -> Iterator[tuple[str, str]]:
    """Both (adapter, prompt) answered at once, each in its own thread."""
    pieces: queue.Queue = queue.Queue()
    stop = threading.Event()

    def produce(side: int, adapter: str, messages: list[dict]) -> None:
        stream = ctx.engine.stream(messages, adapter, settings)
        try:
            for piece in stream:
                if stop.is_set():
                    break
                pieces.put((side, piece))
        except Exception as error:  # noqa: BLE001 - handed to the consumer below
            pieces.put((side, error))
        finally:
            stream.close()
            pieces.put((side, _DONE))

    workers = [threading.Thread(target=produce, args=(i, *side), daemon=True)
               for i, side in enumerate(sides)]
    for worker in workers:
        worker.start()
    texts, finished = ["", ""], 0
    try:
        while finished < 2:
            side, piece = pieces.get()
            if piece is _DONE:
                finished += 1
            elif isinstance(piece, Exception):
                raise piece
            else:
                texts[side] += piece
                yield texts[0], texts[1]
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    yield texts[0].strip(), texts[1].strip()


@dataclass(frozen=True)
class Pair:
    left: str
    right: str
    left_reply: str
    right_reply: str


def compare(ctx: Context, prompt: str, left: str = "base", right: str = models.LATEST,
            system: str = "") -> Pair:
    """Both models' greedy answers to one prompt ("latest" is the newest adapter)."""
    names = models.resolve(ctx, left), models.resolve(ctx, right)
    *_, replies = stream_pair(ctx, prompt, system, *names)
    return Pair(names[0], names[1], *replies)


def vote(ctx: Context, pair: Pair, winner: str, prompt: str, system: str = "",
         blind: bool = False) -> tuple[list[dict], int | None]:
    """Store a vote (winner: left, right, tie or both_bad); returns the win rates and
    the preference pair it made, if any: a winner makes one (winner over loser, same
    prompt) for the preference stages, stored as an example of source "vote"."""
    runs.add_vote(ctx.store, prompt=prompt, system=system, left=pair.left, right=pair.right,
                  left_reply=pair.left_reply, right_reply=pair.right_reply, winner=winner,
                  blind=blind)
    made = None
    if winner in ("left", "right"):
        won, lost = ((pair.left_reply, pair.right_reply) if winner == "left"
                     else (pair.right_reply, pair.left_reply))
        made = examples.add_vote_pair(ctx.store, system, prompt, won, lost)
    return runs.win_rates(ctx.store), made


def win_rates(ctx: Context) -> list[dict]:
    return runs.win_rates(ctx.store)
