"""Two models on one prompt, side by side; and the replay of held-out examples that
answers "did it learn my corrections?". No UI here: ui_compare.py and the CLI use it."""

from __future__ import annotations

import queue
import threading
from typing import Iterator

from assistant.engine import ChatEngine, GenerationSettings

_DONE = object()


def stream_pair(engine: ChatEngine, messages: list[dict], left: str, right: str,
                settings: GenerationSettings = GenerationSettings()) -> Iterator[tuple[str, str]]:
    """Yield (left text so far, right text so far) while both answers stream at once."""
    for name in (left, right):
        engine.check_adapter(name)
    engine.encode(messages)  # a bad prompt fails here, before any thread starts
    pieces: queue.Queue = queue.Queue()
    stop = threading.Event()

    def produce(side: int, adapter: str) -> None:
        stream = engine.stream(messages, adapter, settings)
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
               for i, name in enumerate((left, right))]
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


def chrf(candidate: str, reference: str) -> float:
    """chrF (sacrebleu), 0-100: character n-gram overlap, forgiving of small rewordings."""
    from sacrebleu.metrics import CHRF

    return round(CHRF().sentence_score(candidate, [reference]).score, 1)


def replay_held_out(engine: ChatEngine, held_out: list[dict], adapter: str,
                    progress=None) -> list[dict]:
    """Answer each held-out example with the base and the adapter; score both against
    what the user wrote. `held_out` items: {"id", "source", "messages"}."""
    greedy = GenerationSettings(max_new_tokens=200)
    rows = []
    for index, example in enumerate(held_out):
        if progress:
            progress(index, len(held_out))
        prompt, wanted = example["messages"][:-1], example["messages"][-1]["content"]
        base_reply = engine.reply(prompt, "base", greedy)
        tuned_reply = engine.reply(prompt, adapter, greedy)
        rows.append({"id": example["id"], "source": example["source"],
                     "prompt": prompt[-1]["content"], "wanted": wanted,
                     "base": base_reply, "adapter": tuned_reply,
                     "base_chrf": chrf(base_reply, wanted),
                     "adapter_chrf": chrf(tuned_reply, wanted)})
    return rows


def held_out_examples(store, adapter: str) -> list[dict]:
    """The examples the adapter's run held out (never trained on), corrections first."""
    from storage import examples as example_store
    from storage import runs
    from trainer.dataset import HELD_OUT_MIN_EXAMPLES, is_held_out

    run = next((r for r in runs.list_runs(store) if r["adapter"] == adapter), None)
    if run is None:
        return []
    used = set(run["example_ids"])
    chosen = [e for e in example_store.list_examples(store, sources=example_store.TRAINABLE)
              if e.id in used]
    if len(chosen) < HELD_OUT_MIN_EXAMPLES:
        return []
    share = run["config"].get("eval_share", 0.1)
    held = [e for e in chosen if is_held_out(e.messages, share)]
    held.sort(key=lambda e: (e.source != "corrected", e.id))
    return [{"id": e.id, "source": e.source, "messages": e.messages} for e in held]
