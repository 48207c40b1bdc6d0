"""Compare: two models on one prompt, side by side; blind votes and win rates; the
replay of a run's held-out examples ("did it learn my corrections?")."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from assistant.engine import EmptyMessage, GenerationSettings
from core.chatformat import with_system
from core.errors import UserError
from services import models
from services.context import Context
from storage import runs

_DONE = object()


class NothingToReplay(UserError):
    pass


def stream_pair(ctx: Context, prompt: str, system: str, left: str, right: str,
                settings: GenerationSettings = GenerationSettings()
                ) -> Iterator[tuple[str, str]]:
    """Yield (left text so far, right text so far) while both answers stream at once;
    the last pair is the whole answers, stripped."""
    if not (prompt or "").strip():
        raise EmptyMessage("Type a prompt to compare.")
    names = [models.resolve(ctx, left), models.resolve(ctx, right)]
    messages = with_system(system, [{"role": "user", "content": prompt}])
    ctx.engine.encode(messages)  # a bad prompt fails here, before any thread starts
    yield from _both(ctx, messages, names, settings)


def _both(ctx: Context, messages: list[dict], names: list[str],
          settings: GenerationSettings) -> Iterator[tuple[str, str]]:
    pieces: queue.Queue = queue.Queue()
    stop = threading.Event()

    def produce(side: int, adapter: str) -> None:
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

    workers = [threading.Thread(target=produce, args=(i, name), daemon=True)
               for i, name in enumerate(names)]
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
         blind: bool = False) -> list[dict]:
    """Store a vote (winner: left, right, tie or both_bad); returns the win rates."""
    runs.add_vote(ctx.store, prompt=prompt, system=system, left=pair.left, right=pair.right,
                  left_reply=pair.left_reply, right_reply=pair.right_reply, winner=winner,
                  blind=blind)
    return runs.win_rates(ctx.store)


def win_rates(ctx: Context) -> list[dict]:
    return runs.win_rates(ctx.store)


def chrf(candidate: str, reference: str) -> float:
    """chrF (sacrebleu), 0-100: character n-gram overlap, forgiving of small rewordings."""
    from sacrebleu.metrics import CHRF

    return round(CHRF().sentence_score(candidate, [reference]).score, 1)


def held_out_examples(ctx: Context, adapter: str) -> list[dict]:
    """The examples the adapter's run held out (never trained on), as they were when the
    run was queued, corrections first."""
    run = runs.run_of_adapter(ctx.store, adapter)
    if run is None:
        return []
    held = runs.run_examples(ctx.store, run["id"], "held_out")
    held.sort(key=lambda e: (e.source != "corrected", e.example_id))
    return [{"id": e.example_id, "source": e.source, "messages": e.messages} for e in held]


def replay(ctx: Context, adapter: str,
           progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Answer each of the adapter's held-out examples with the base and the adapter;
    score both against what the user wrote."""
    adapter = models.resolve(ctx, adapter)
    if adapter == "base":
        raise NothingToReplay("Pick an adapter to check.")
    held = held_out_examples(ctx, adapter)
    if not held:
        raise NothingToReplay(f"{adapter} has no held-out examples: a run holds some out "
                              "once it has 20 or more examples.")
    greedy = GenerationSettings(max_new_tokens=200)
    rows = []
    for index, example in enumerate(held):
        if progress:
            progress(index, len(held))
        prompt, wanted = example["messages"][:-1], example["messages"][-1]["content"]
        base_reply = ctx.engine.reply(prompt, "base", greedy)
        tuned_reply = ctx.engine.reply(prompt, adapter, greedy)
        rows.append({"id": example["id"], "source": example["source"],
                     "prompt": prompt[-1]["content"], "wanted": wanted,
                     "base": base_reply, "adapter": tuned_reply,
                     "base_chrf": chrf(base_reply, wanted),
                     "adapter_chrf": chrf(tuned_reply, wanted)})
    return rows
