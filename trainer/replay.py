"""Replay: a share of the base model's own answers to everyday prompts, mixed into the
training examples, so the adapter keeps answering like the base where the user's data
says nothing (docs/training.md, the table of levers: without it, an adapter trained to answer
with a label answered almost every general question with a label). The base writes them
once per base model, greedy, kept in the model cache; nothing is downloaded. The prompts
are none of the general check's questions (services/data/general_check.jsonl), which
would then test nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from core.paths import weights_written, write_atomically

PROMPTS = [
    "Give me a tip for sleeping better.", "What is a healthy breakfast?",
    "How do I boil an egg?", "Why do leaves change color in autumn?",
    "What is a good name for a cat?", "How can I save money on groceries?",
    "Tell me a fun fact about octopuses.", "How do I make a cup of tea?",
    "What should I pack for a beach trip?", "Why is exercise good for you?",
    "How do rainbows form?", "What is the best way to learn a new language?",
    "How do I water a cactus?", "What is a haiku?", "Why do we need sleep?",
    "How do I write a thank-you note?", "What is photosynthesis?",
    "How can I stay focused while studying?", "What is a balanced diet?",
    "How do airplanes stay in the air?", "What does a librarian do?",
    "How do I clean a wooden table?", "What is the water cycle?",
    "Why do cats purr?",
]
ANSWER_TOKENS = 48
"""Long enough for the base's way of answering; longer answers only cost training time
(a run on one-word labels spends most of its steps on the replayed answers)."""


def count_for(share: float, train_examples: int) -> int:
    """How many replay examples go beside `train_examples` of the user's."""
    return min(len(PROMPTS), round(share * train_examples))


def examples(model, tokenizer, count: int, cache: Path) -> list[list[dict]]:
    """`count` replay examples (prompt, the base's greedy answer); the answers are kept
    in `cache` (a JSON file per base model) and written only once."""
    if count <= 0:
        return []
    kept: dict[str, str] = json.loads(cache.read_text()) if cache.exists() else {}
    missing = [p for p in PROMPTS[:count] if p not in kept]
    if missing:
        kept.update(zip(missing, _base_answers(model, tokenizer, missing)))
        text = json.dumps(kept, ensure_ascii=False, indent=1)
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(cache, lambda scratch: scratch.write_text(text))
    return [[{"role": "user", "content": p}, {"role": "assistant", "content": kept[p]}]
            for p in PROMPTS[:count] if kept[p]]


def cache_file(folder: Path, base_folder: Path) -> Path:
    """Where the answers of the base in `base_folder` are kept, inside `folder` (the
    model cache): by the folder, the time its weights were written and the length."""
    key = f"{Path(base_folder).resolve()}:{weights_written(base_folder)}:{ANSWER_TOKENS}"
    return folder / "replay" / f"{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"


def _base_answers(model, tokenizer, prompts: list[str]) -> list[str]:
    """Greedy answers of the base (a LoRA model's adapters switched off)."""
    import contextlib

    import torch

    from core.chatformat import stop_token_ids

    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}],
                                           add_generation_prompt=True, tokenize=False)
             for p in prompts]
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    inputs = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left",
                       add_special_tokens=False).to(model.device)
    base_only = model.disable_adapter() if hasattr(model, "disable_adapter") else \
        contextlib.nullcontext()
    with torch.inference_mode(), base_only:
        out = model.generate(**inputs, do_sample=False, max_new_tokens=ANSWER_TOKENS,
                             eos_token_id=stop_token_ids(tokenizer, model.generation_config),
                             pad_token_id=tokenizer.pad_token_id)
    new = out[:, inputs["input_ids"].shape[1]:]
    return [tokenizer.decode(tokens, skip_special_tokens=True).strip() for tokens in new]


