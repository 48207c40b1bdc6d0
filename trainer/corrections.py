"""Corrections the user made by hand are learned, not just seen: after SFT's epochs, a
correction the adapter would still not answer in her words gets a few more steps of its
own, until greedy decoding says what she wrote or the steps run out.

Whether greedy decoding says her words is checked without generating: with her answer
fed in (teacher forcing), the most likely next token at every position of it is hers,
by a margin, up to the token that ends the turn. That is the answer greedy decoding
writes for the same conversation, and costs one forward pass per correction."""

from __future__ import annotations

from dataclasses import dataclass

from core.chatformat import stop_token_ids
from trainer.common import head_is_the_logits

MARGIN = 1.0
"""How much likelier (in logits: e to the margin times) her token must be than any other
at each position: a token that barely wins under training's arithmetic lost to another
in the chat's (batched, padded), and the reply went another way from its first word."""
ANCHORS_PER_CORRECTION = 2
"""Other examples learned beside each correction in a step (see `drill`)."""
AT_ONCE = 8
"""Corrections checked, or learned in a step, at once: memory stays bounded however many
she made."""


@dataclass(frozen=True)
class Encoded:
    """One correction as token ids: the conversation up to her answer, and her answer
    up to and with the token that ends the turn."""

    prompt: list[int]
    answer: list[int]


def encode(tokenizer, messages: list[dict]) -> Encoded | None:
    """Her correction as the model reads it; None where the template writes the
    conversation differently once the answer is added (nothing exact to check)."""
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True,
                                           tokenize=True, return_dict=False)
    full = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
    if full[:len(prompt)] != prompt or len(full) == len(prompt):
        return None
    answer = full[len(prompt):]
    stops = set(stop_token_ids(tokenizer))
    end = next((i for i, token in enumerate(answer) if token in stops), None)
    return Encoded(prompt, answer if end is None else answer[:end + 1])


def _batch(model, encoded: list[Encoded], pad_id: int):
    import torch

    rows = [e.prompt + e.answer for e in encoded]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (e, row) in enumerate(zip(encoded, rows)):
        ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
        labels[i, len(e.prompt):len(row)] = torch.tensor(e.answer)
    device = next(model.parameters()).device
    return ids.to(device), mask.to(device), labels.to(device)


def _anchors(held: list[Encoded], step: int, count: int) -> list[Encoded]:
    """The `count` anchors of a step: the next ones in turn, none when there are none."""
    if not held:
        return []
    return [held[(step * count + i) % len(held)] for i in range(count)]


def _answer_logits(model, batch: tuple):
    """The logits that predict each answer token, the tokens, and the row of each. The
    LM head runs on those positions only where the model allows it (as the CPU loss
    does, trainer/common.py): on a small model it is most of the cost."""
    ids, mask, labels = batch
    targets = labels[:, 1:]
    kept = targets != -100
    if head_is_the_logits(model):
        causal_lm = model.get_base_model()
        hidden = causal_lm.get_decoder()(input_ids=ids, attention_mask=mask,
                                         use_cache=False).last_hidden_state[:, :-1]
        logits = causal_lm.get_output_embeddings()(hidden[kept])
    else:
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1][kept]
    return logits.float(), targets[kept], kept.nonzero()[:, 0]


def said(model, encoded: list[Encoded], pad_id: int, margin: float = MARGIN) -> list[bool]:
    """For each correction: would greedy decoding answer with exactly her words, each of
    her tokens ahead of any other by `margin`?"""
    import torch

    found: list[bool] = []
    for start in range(0, len(encoded), AT_ONCE):  # bounded memory, however many
        chunk = encoded[start:start + AT_ONCE]
        with torch.no_grad():
            logits, targets, rows = _answer_logits(model, _batch(model, chunk, pad_id))
        hers = logits.gather(1, targets[:, None])[:, 0]
        logits.scatter_(1, targets[:, None], float("-inf"))
        unsure = (hers - logits.max(-1).values < margin).float()
        wrong = torch.zeros(len(chunk)).index_add_(0, rows.cpu(), unsure.cpu())
        found += [not bool(w) for w in wrong]
    return found


def drill(model, tokenizer, corrections: list[list[dict]], anchors: list[list[dict]],
          learning_rate: float, max_steps: int, cancelled=lambda: False,
          margin: float = MARGIN) -> dict:
    """Train `model` (a PEFT model, in place) on the corrections greedy decoding does
    not yet say, one optimizer step at a time, until it says all of them or `max_steps`
    ran. Each step also learns from as many `anchors` (the run's other examples and
    replay), taken in turn: without them the steps pulled the general answers along.
    Returns what happened, for the run's metrics."""
    import torch

    encoded = [e for e in (encode(tokenizer, m) for m in corrections) if e is not None]
    held = [e for e in (encode(tokenizer, m) for m in anchors) if e is not None]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    was_training = model.training
    before = said(model, encoded, pad_id, margin)
    now, steps = before, 0
    while steps < max_steps and not all(now) and not cancelled():
        model.train()
        missing = [e for e, ok in zip(encoded, now) if not ok]
        start = steps * AT_ONCE % len(missing)  # many missing: a step takes the next few
        missing = (missing[start:] + missing[:start])[:AT_ONCE]
        batch = missing + _anchors(held, steps, ANCHORS_PER_CORRECTION * len(missing))
        logits, targets, _ = _answer_logits(model, _batch(model, batch, pad_id))
        torch.nn.functional.cross_entropy(logits, targets).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        steps += 1
        model.eval()
        now = said(model, encoded, pad_id, margin)
    model.train(was_training)
    return {"corrections": len(corrections), "corrections_said_before": sum(before),
            "corrections_said": sum(now), "correction_steps": steps}
