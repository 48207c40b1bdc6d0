"""Data and small helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import time
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent.parent / "examples"
SAMPLE_FILES = {"openai": "coffee-shop.openai.jsonl", "alpaca": "coffee-shop.alpaca.json",
                "sharegpt": "coffee-shop.sharegpt.jsonl"}
VOICE = "Cheers, Brewster."


def voice_examples(n: int, voice: str = VOICE) -> list[list[dict]]:
    return [[{"role": "user", "content": f"Say hello number {i}."},
             {"role": "assistant", "content": f"Hello {i}! {voice}"}] for i in range(n)]


def fill(store, n: int, source: str = "kept") -> None:
    from storage import examples

    examples.add_many(store, voice_examples(n), source)


def shown(update) -> list[dict]:
    """The messages a chat update shows ({"role", "content"}), whether the handler
    returned a list or a gr.Chatbot (which holds them with content as parts)."""
    from web.common import message_text

    messages = getattr(update, "value", update)
    return [{"role": m["role"], "content": message_text(m["content"])} for m in messages]


class Recorder:
    """A trainer Reporter that remembers the steps, and cancels at a step if asked."""

    def __init__(self, cancel_at: int | None = None):
        self.steps: list[int] = []
        self.cancel_at = cancel_at
        self.total = 0

    def started(self, total, train, held):
        self.total = total

    def progress(self, step, total, logs):
        self.steps.append(step)

    def cancelled(self):
        return self.cancel_at is not None and bool(self.steps) and self.steps[-1] >= self.cancel_at


def wait_for(condition, timeout: float, every: float = 0.1):
    """Poll `condition` until it returns something true (returned), or TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("condition not met in time")


def finished_turn(chat, message, conversation_id=None, system="", model="base"):
    """Send a message through the Chat tab's handlers and let the reply finish: the
    conversation's id."""
    shown = ["the page shows the conversation"] if conversation_id is not None else []
    return list(chat.send(message, conversation_id, model, system, shown))[0][2]


def lora_adapter(base_folder: Path, out: Path, spread: float = 0.05, seed: int = 0,
                 **lora) -> Path:
    """A LoRA on `base_folder` whose B is random (a fresh one adds nothing), saved."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_folder),
                           LoraConfig(**{"r": 4, "lora_alpha": 8,
                                         "target_modules": "all-linear"} | lora))
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(0, spread)
    model.save_pretrained(out)
    return out


def assert_requests_get_their_own_adapter(engine, names: list[str], numbers: range) -> None:
    """Concurrent requests on different models (the same engine) each get the answer
    their model gives alone."""
    from concurrent.futures import ThreadPoolExecutor

    prompts = [[{"role": "user", "content": f"Say hello number {i}."}] for i in numbers]
    reference = {(n, i): engine.reply(p, n) for n in names for i, p in enumerate(prompts)}
    assert len({reference[(n, 0)] for n in names}) == len(names)  # different answers
    jobs = [(n, i) for _ in range(3) for n in names for i in range(len(prompts))]
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda job: engine.reply(prompts[job[1]], job[0]), jobs))
    assert answers == [reference[job] for job in jobs]
