"""Where a training step's time goes, and what the levers on it give: one LoRA step
(forward, backward, AdamW) of 8 brand-voice examples on the embedded model, set up as
tunechat's trainer sets it up on this machine, in each variant:

plain      the model's own loss (the LM head on every token)
answers    the LM head on the answer tokens only (what the trainer does on a CPU)
compiled   answers, with each decoder layer under torch.compile (dynamic shapes)
packed     the batch as one row without padding, attention kept inside each example

`python -m bench.profile_step [VARIANT ...] [--profile]` prints, per variant, the first
step (compiling included), the median of the next steps and the losses (equal losses:
the same computation), and with --profile the operators of an `answers` step and the
share of matrix products."""

from __future__ import annotations

import argparse
import statistics
import time

VARIANTS = ("plain", "answers", "compiled", "packed")


def batch(tokenizer, examples: list[list[dict]]) -> dict:
    """The padded batch, its labels on the answers only, and the same as one packed row."""
    import torch

    full = [tokenizer.apply_chat_template(m, tokenize=True, return_dict=False)
            for m in examples]
    prompts = [len(tokenizer.apply_chat_template(m[:-1], tokenize=True, return_dict=False,
                                                 add_generation_prompt=True))
               for m in examples]
    width = max(map(len, full))
    ids = torch.tensor([row + [tokenizer.pad_token_id] * (width - len(row)) for row in full])
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in full])
    labels = ids.masked_fill(mask == 0, -100)
    for index, prompt in enumerate(prompts):
        labels[index, :prompt] = -100
    # Packed: one row, positions restarting at each example (transformers then keeps
    # attention inside each example); no token predicts the next example's first one.
    packed_labels = [labels[i, :len(row)].tolist() for i, row in enumerate(full)]
    return {"padded": {"input_ids": ids, "attention_mask": mask, "labels": labels},
            "packed": {"input_ids": torch.tensor([sum(full, [])]),
                       "position_ids": torch.tensor([[p for row in full
                                                      for p in range(len(row))]]),
                       "labels": torch.tensor([sum(packed_labels, [])])},
            "tokens": int(mask.sum()), "answer_tokens": int((labels != -100).sum()),
            "width": width}


def lora_model(base):
    import torch
    from peft import get_peft_model

    from trainer.common import load_for_training
    from trainer.config import TrainConfig

    torch.manual_seed(0)
    model, lora = load_for_training(TrainConfig(method="lora"), base, None, longest=128)
    model = get_peft_model(model, lora)
    model.train()
    return model


def step_function(variant: str, model, data: dict):
    import torch

    from trainer.common import answer_tokens_loss

    if variant == "compiled":
        for layer in model.get_base_model().get_decoder().layers:
            layer.compile(dynamic=True)
    inputs = {**data["packed" if variant == "packed" else "padded"], "use_cache": False}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def step() -> float:
        if variant in ("answers", "compiled"):
            loss = answer_tokens_loss(model.get_base_model(), inputs)
        else:
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return round(loss.item(), 3)

    return step


def measure(variant: str, base, data: dict, steps: int = 4) -> dict:
    step = step_function(variant, lora_model(base), data)
    started = time.perf_counter()
    losses = [step()]
    first = time.perf_counter() - started
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
    return {"first_step_s": round(first, 1), "step_s": round(seconds, 2),
            "tokens_per_s": round(data["tokens"] / seconds, 1), "losses": losses}


def profile(base, data: dict) -> None:
    import torch.profiler as tp

    step = step_function("answers", lora_model(base), data)
    step(), step()
    with tp.profile(activities=[tp.ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    events = prof.key_averages(group_by_input_shape=True)
    total = sum(e.self_cpu_time_total for e in events)
    products = [e for e in events if e.key == "aten::mm"]
    lora = sum(e.self_cpu_time_total for e in products
               if any(16 in shape for shape in e.input_shapes if shape))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    print(f"matrix products: {sum(e.self_cpu_time_total for e in products) / total:.0%} of "
          f"the step, of which LoRA's rank-16 products {lora / total:.0%}")


def main(argv: list[str] | None = None) -> None:
    from transformers import AutoTokenizer

    from assistant.bases import resolve_model
    from bench.common import DEFAULT_DATA
    from files.formats import read_examples

    parser = argparse.ArgumentParser(prog="python -m bench.profile_step",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="*", choices=VARIANTS, default=["plain", "answers"])
    parser.add_argument("--profile", action="store_true", help="profile an answers step")
    args = parser.parse_args(argv)
    base = resolve_model(None)[1]
    data = batch(AutoTokenizer.from_pretrained(base), read_examples(DEFAULT_DATA)[:8])
    print(f"8 examples: {data['tokens']} tokens ({data['answer_tokens']} in answers), "
          f"padded to {data['width']}")
    for variant in args.variants:
        print(f"{variant:9} {measure(variant, base, data)}", flush=True)
    if args.profile:
        profile(base, data)


if __name__ == "__main__":
    main()
