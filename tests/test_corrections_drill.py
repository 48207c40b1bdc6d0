"""A correction the user made is learned: after the epochs, the corrections greedy
decoding would not answer in her words get steps of their own (trainer/corrections.py)."""

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from trainer import corrections

ASKED = [{"role": "user", "content": "Can I bring my dog?"}]


def lora_model(folder):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(folder)
    return get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))


def greedy(model, tokenizer, messages) -> list[int]:
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                           tokenize=True, return_dict=False)
    out = model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                         eos_token_id=corrections.stop_token_ids(tokenizer),
                         pad_token_id=tokenizer.pad_token_id)
    return out[0, len(prompt):].tolist()


def test_said_is_what_greedy_decoding_writes(tiny_model_dir):
    """The check without generating agrees with generating: the model's own greedy
    answer is said; any other answer is not."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = lora_model(tiny_model_dir).eval()
    own = corrections.Encoded(tokenizer.apply_chat_template(
        ASKED, add_generation_prompt=True, tokenize=True, return_dict=False),
        greedy(model, tokenizer, ASKED))
    other = corrections.encode(tokenizer, ASKED + [{"role": "assistant",
                                                    "content": "Sorry, dogs can't join."}])
    pad = tokenizer.pad_token_id or 0
    assert corrections.said(model, [own, other], pad, margin=0.0) == [True, False]
    many = [own] * corrections.AT_ONCE + [other]  # checked a few at a time, in order
    assert corrections.said(model, many, pad, margin=0.0) == [True] * corrections.AT_ONCE + \
        [False]
    # by a margin: a token that barely wins is not said for sure
    assert corrections.said(model, [own], pad, margin=100.0) == [False]


def test_the_drill_teaches_her_words_and_says_how_many(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = lora_model(tiny_model_dir)
    fix = ASKED + [{"role": "assistant", "content": "No."}]  # what a 2-layer model learns
    other = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    base_weights = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    # (a 2-layer model never gets sure of a token; the margin is left to the real model)
    done = corrections.drill(model, tokenizer, [fix], [other], learning_rate=1e-2,
                             max_steps=100, margin=0.0)
    assert done["corrections"] == 1 and done["corrections_said_before"] == 0
    assert done["corrections_said"] == 1 and 0 < done["correction_steps"] < 100
    encoded = corrections.encode(tokenizer, fix)
    assert greedy(model.eval(), tokenizer, ASKED) == encoded.answer  # her words, to the end
    assert all(torch.equal(p, base_weights[n]) for n, p in model.named_parameters()
               if not p.requires_grad)  # only the adapter moved
    again = corrections.drill(model, tokenizer, [fix], [other], 1e-2, 100, margin=0.0)
    assert again["correction_steps"] == 0  # said already: nothing more to do


def test_a_drill_stops_when_the_run_is_cancelled(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    fix = ASKED + [{"role": "assistant", "content": "Sorry, dogs can't join."}]
    done = corrections.drill(lora_model(tiny_model_dir), tokenizer, [fix], [], 1e-2, 60,
                             cancelled=lambda: True)
    assert done["correction_steps"] == 0 and done["corrections_said"] == 0
