import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from assistant.engine import (
    BadSetting,
    ContextTooLong,
    EmptyMessage,
    GenerationSettings,
    UnknownAdapter,
)

from tiny import DIALOGUES

HELLO = [{"role": "user", "content": "Say hello."}]


def ask(question, system=None):
    return ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": question}]


def test_greedy_reply_stops_at_end_of_turn(tiny_engine):
    for question, answer in DIALOGUES:
        assert tiny_engine.reply(ask(question)) == answer


def test_stream_yields_only_new_text_in_pieces(tiny_engine):
    pieces = list(tiny_engine.stream(ask("Say hello.")))
    assert len(pieces) > 3
    assert "".join(pieces).strip() == "Hello! How can I help you today?"
    assert not any("user" in piece or "<|im" in piece for piece in pieces)


def test_stream_matches_plain_generate(tiny_engine):
    inputs = tiny_engine.encode(ask("What colour is the sky?"))
    output = tiny_engine.model.generate(**inputs, do_sample=False, max_new_tokens=40,
                                        eos_token_id=tiny_engine.stop_token_ids)
    new_tokens = output[0, inputs["input_ids"].shape[1]:]
    expected = tiny_engine.tokenizer.decode(new_tokens, skip_special_tokens=True)
    assert tiny_engine.reply(ask("What colour is the sky?")) == expected.strip()


def test_system_prompt_goes_through_the_chat_template(tiny_engine):
    inputs = tiny_engine.encode(ask("Say hello.", system="Answer like a pirate."))
    text = tiny_engine.tokenizer.decode(inputs["input_ids"][0])
    assert text.startswith("<|im_start|>system\nAnswer like a pirate.<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n")


def test_concurrent_requests_never_mix(tiny_engine):
    questions = [q for q, _ in DIALOGUES] * 3
    with ThreadPoolExecutor(max_workers=6) as pool:
        replies = list(pool.map(lambda q: tiny_engine.reply(ask(q)), questions))
    assert replies == [a for _, a in DIALOGUES] * 3


def test_closing_the_stream_stops_generation(tiny_engine):
    before = threading.active_count()
    stream = tiny_engine.stream(ask("Something it never learned, so it rambles"),
                                settings=GenerationSettings(max_new_tokens=200))
    next(stream)
    stream.close()
    assert threading.active_count() == before  # the generate thread has ended


def test_an_error_inside_generation_reaches_the_caller(tiny_engine, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(tiny_engine.model, "generate", broken)
    with pytest.raises(RuntimeError, match="kernel exploded"):
        tiny_engine.reply(ask("Say hello."))


def test_empty_message_is_refused(tiny_engine):
    with pytest.raises(EmptyMessage):
        tiny_engine.encode(ask("   \n"))


def test_message_longer_than_the_context_is_a_clear_error(tiny_engine):
    with pytest.raises(ContextTooLong, match="at most 256 tokens") as error:
        tiny_engine.reply(ask("x" * 100_000))
    assert "new conversation" in str(error.value)


def test_unknown_adapter_lists_the_choices(tiny_engine):
    assert tiny_engine.adapters() == ["base"]
    with pytest.raises(UnknownAdapter, match="base"):
        tiny_engine.reply(ask("Say hello."), adapter="nope")


def test_generation_settings_are_validated():
    with pytest.raises(BadSetting, match="temperature"):
        GenerationSettings(temperature=5)
    with pytest.raises(BadSetting, match="max_new_tokens"):
        GenerationSettings(max_new_tokens=0)


@pytest.mark.integration
def test_real_model_answers_and_stops(real_engine):
    reply = real_engine.reply(ask("What is the capital of France?"))
    assert "Paris" in reply
    assert "<|im_end|>" not in reply and "\nuser" not in reply


@pytest.mark.integration
def test_real_model_refuses_a_100k_character_message(real_engine):
    with pytest.raises(ContextTooLong, match="8,192"):
        real_engine.reply(ask("word " * 20_000))


def test_requests_wait_for_a_model_loading_in_background(tiny_model_dir, tiny_engine):
    from assistant.bases import load_model
    from assistant.engine import ChatEngine

    release = threading.Event()

    def slow_load():
        release.wait(30)
        return load_model(str(tiny_model_dir))

    engine = ChatEngine.load_in_background(slow_load, "tiny")
    assert (engine.name, engine.adapters()) == ("tiny", ["base"])  # no model needed yet
    answers = []
    asking = threading.Thread(target=lambda: answers.append(engine.reply(HELLO)))
    asking.start()
    asking.join(0.5)
    assert answers == []
    release.set()
    asking.join(30)
    assert answers == [tiny_engine.reply(HELLO)]


def test_a_model_that_failed_to_load_fails_each_request_with_why():
    from assistant.bases import ModelNotFound
    from assistant.engine import ChatEngine

    def broken():
        raise ModelNotFound("weights are damaged")

    engine = ChatEngine.load_in_background(broken, "broken")
    for _ in range(2):
        with pytest.raises(ModelNotFound, match="damaged"):
            engine.reply(HELLO)


# Defects found in review: the slot map after a failed refill, and loads starved by traffic.

LOAD_HELLO = [{"role": "user", "content": "Say hello number 3."}]


def test_a_failed_refill_leaves_no_entry_for_a_deleted_slot(make_engine, two_adapters,
                                                             monkeypatch):
    """Before: when the hotswap did not fit and building a new slot then raised, the
    slot map still sent the evicted adapter to the deleted slot."""
    from assistant import engine as engine_module

    engine = make_engine(two_adapters, max_loaded_adapters=1)
    brewster = engine.reply(LOAD_HELLO, "brewster")
    with monkeypatch.context() as patch:
        patch.setattr(engine_module, "_swap_into", lambda *args: False)
        patch.setattr(engine, "_new_slot", lambda folder: (_ for _ in ()).throw(
            RuntimeError("disk full")))
        with pytest.raises(RuntimeError, match="disk full"):
            engine.reply(LOAD_HELLO, "lumen")
    assert engine.loaded_adapters() == []
    assert engine.reply(LOAD_HELLO, "brewster") == brewster  # loaded again, same answer
    assert engine.reply(LOAD_HELLO, "lumen") != brewster


def test_a_new_adapter_loads_under_steady_traffic(make_engine, two_adapters):
    """Before: a load waited for no generation to be running, so overlapping requests on
    loaded models kept it waiting for as long as they came."""
    expected = make_engine(two_adapters).reply(LOAD_HELLO, "lumen")
    engine = make_engine(two_adapters)
    engine.reply(LOAD_HELLO, "brewster")
    stop = threading.Event()

    def traffic(name):
        while not stop.is_set():
            engine.reply(LOAD_HELLO, name)

    with ThreadPoolExecutor(max_workers=4) as pool:
        for name in ("base", "brewster", "base"):
            pool.submit(traffic, name)
        try:
            answer = pool.submit(engine.reply, LOAD_HELLO, "lumen").result(timeout=60)
        finally:
            stop.set()
    assert answer == expected


@pytest.mark.parametrize("style", ["byte-level", "sentencepiece"])
def test_a_reply_read_a_token_at_a_time_is_its_whole_text(style):
    """The llama.cpp engine shows a reply's text as its tokens arrive, decoding only the
    last few: the pieces make the whole text, a character split over several tokens
    included, and a word's leading space too (dropped at a text's start by sentencepiece)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from assistant.llama_engine import Detokenizer

    core = Tokenizer(models.BPE())
    if style == "byte-level":
        core.pre_tokenizer, core.decoder = pre_tokenizers.ByteLevel(), decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        core.pre_tokenizer, core.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
        alphabet = []
    reply = "Café au lait, naïve ☕ 日本語 — thé? Oui, merci!\n  Two spaces."
    core.train_from_iterator(["the cafe serves tea and coffee"] * 5 + [reply],
                             trainers.BpeTrainer(vocab_size=60, initial_alphabet=alphabet))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core)
    tokens = tokenizer(reply, add_special_tokens=False)["input_ids"]
    whole = tokenizer.decode(tokens)
    assert len(tokens) > 20

    reader = Detokenizer(tokenizer)
    pieces = [reader.add(token) for token in tokens]
    assert "".join(pieces) == whole
    assert not any("\ufffd" in piece for piece in pieces)
