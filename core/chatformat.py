"""Chat format rules shared by the engine (serving) and the trainer: which tokens end a
turn, how long a conversation may be, and whether a template closes an answer.

One place, so that what the trainer checks is what the engine relies on."""

from __future__ import annotations

from core.errors import UserError

# End-of-turn markers of common chat templates; whichever the vocabulary has also stops
# generation, so a model whose config names only </s> still stops at the end of its turn.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>")
# Tokenizers without a limit report a huge sentinel (about 1e30); such a limit is none.
NO_LIMIT = 10_000_000
FALLBACK_CONTEXT = 2048


class TemplateError(UserError):
    """The model's chat template cannot be used for training or chat."""


def with_system(system: str | None, messages: list[dict]) -> list[dict]:
    """The messages with the system prompt first, when there is one."""
    system = (system or "").strip()
    return ([{"role": "system", "content": system}] if system else []) + messages


def context_window(tokenizer, model_config=None) -> int:
    """Tokens the model reads at most, prompt and reply together."""
    limits = [getattr(model_config, "max_position_embeddings", None),
              getattr(tokenizer, "model_max_length", None)]
    known = [n for n in limits if n and n < NO_LIMIT]
    return min(known) if known else FALLBACK_CONTEXT


def stop_token_ids(tokenizer, generation_config=None) -> list[int]:
    """Every token id that ends a reply: the configured end(s), the tokenizer's, and the
    end-of-turn markers the vocabulary has."""
    configured = getattr(generation_config, "eos_token_id", None)
    ids = list(configured) if isinstance(configured, (list, tuple)) else [configured]
    ids.append(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    ids.extend(vocab[token] for token in END_OF_TURN_TOKENS if token in vocab)
    return list(dict.fromkeys(i for i in ids if i is not None))


def token_count(tokenizer, messages: list[dict]) -> int:
    # return_dict=False: transformers 5 otherwise returns a BatchEncoding, whose len() is 2.
    return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False))


def template_ends_turns(tokenizer, messages: list[dict]) -> bool:
    """Does the templated answer end with a token that stops generation?

    Some templates trim the content (Llama 3 strips whitespace), so the answer is looked
    for as the template wrote it; a template that changes the answer beyond that is
    refused with a message instead of an error from deep inside."""
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    answer = messages[-1]["content"].strip()
    at = full.rfind(answer)
    if not answer or at < 0:
        raise TemplateError(
            "This model's chat template rewrites the answers it is given (the answer text "
            "does not appear in the templated conversation), so tunechat cannot check "
            "that it closes each turn. Use a chat model whose template keeps the answer "
            "as written.")
    tail = full[at + len(answer):]
    stops = set(stop_token_ids(tokenizer))
    return bool(set(tokenizer(tail, add_special_tokens=False)["input_ids"]) & stops)
