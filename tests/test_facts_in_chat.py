"""What the chat does with the user's facts and examples, without a model: the model
names, the prompt each builds, what a reply drew on and the flags under it, and the
report card's choice of what new chats use."""

from core.adapters import split_name
from services import chat, contenders, facts, models, report
from services.context import Context
from storage import conversations, examples, runs
from web.chat import ChatHandlers

DOG = [{"role": "user", "content": "Can I bring my dog to class?"},
       {"role": "assistant", "content": "Dogs can't join class, sorry!"}]
MAT = [{"role": "user", "content": "Do you rent mats?"},
       {"role": "assistant", "content": "Yes, mats are $2."}]


def test_names_compose_and_new_chats_draw_on_what_she_has(store):
    ctx = Context(store)
    assert models.chat_default(ctx) == "base"  # nothing of hers yet
    examples.add_example(store, DOG, "corrected")
    assert models.chat_default(ctx) == "base+examples"  # a correction counts at once
    facts.add_text(ctx, "Private sessions cost $70 for one hour.")
    assert models.chat_default(ctx) == "base+facts+examples"
    assert "base+facts+examples" in models.model_names(ctx)
    assert split_name("run-2+facts+examples") == ("run-2", True, True)
    chosen = models.contender(ctx, "base+facts")
    assert (chosen.adapter, chosen.facts, chosen.shots) == ("base", facts.FACTS_K, 0)


def test_facts_go_right_before_the_question_and_only_close_examples_join_them(ctx, store):
    dog = examples.add_example(store, DOG, "corrected")
    examples.add_example(store, MAT, "kept")
    [fact] = facts.add_text(ctx, "Dogs are not allowed in the studio.")
    asked = [{"role": "user", "content": "Is it ok to bring my dog along?"}]
    built = contenders.build(ctx, models.contender(ctx, "base+facts+examples"), asked)
    assert built.facts == [fact] and built.examples == [dog]  # the mat example is not close
    assert built.prompt[-1]["content"] == (
        "Facts:\n- Dogs are not allowed in the studio.\n\nQuestion: "
        "Is it ok to bring my dog along?")
    assert built.prompt[:2] == DOG


def test_a_few_examples_join_only_a_question_they_answer(ctx, store):
    """Before: with one correction stored (cats), a question about staying during a
    dog's groom got it placed, and the small model answered with it word for word."""
    cats = examples.add_example(store, [
        {"role": "user", "content": "Do you groom cats?"},
        {"role": "assistant", "content": "No, we only groom dogs. Stay pawsome!"}],
        "corrected")
    plain_examples = models.contender(ctx, "base+examples")
    stay = [{"role": "user", "content": "Can I stay with my dog during grooming?"}]
    assert contenders.build(ctx, plain_examples, stay).examples == []
    kitty = [{"role": "user", "content": "Do you groom cats too?"}]
    assert contenders.build(ctx, plain_examples, kitty).examples == [cats]
    for i in range(4):  # from fewshot.K like it on, they show a way of answering
        examples.add_example(store, [
            {"role": "user", "content": f"Is grooming {i} ok for my dog?"},
            {"role": "assistant", "content": f"Yes, groom {i} is fine. Stay pawsome!"}])
    placed = contenders.build(ctx, plain_examples, stay).examples
    assert placed and cats not in placed  # as many as the tiny model's context holds


def test_a_reply_says_what_it_drew_on_and_flags_an_invented_price(store):
    ctx = Context(store)
    dog = examples.add_example(store, DOG, "corrected")
    [fact] = facts.add_text(ctx, "Private sessions cost $70 for one hour.")
    conversation = conversations.start_conversation(store, "How much is a private session?")
    conversations.add_exchange(store, conversation, "How much is a private session?",
                               "A private session is $200, and we do hot yoga.",
                               "base+facts+examples", "", None,
                               {"facts": [fact], "examples": [dog]})
    stored = chat.reopen(ctx, conversation)
    found = chat.sources(ctx, stored, 1)
    assert [f.id for f in found.facts] == [fact] and [i for i, _ in found.examples] == [dog]
    assert found.invented == ["$200"]  # the policy is not flagged: too often wrong
    said, *_ = ChatHandlers(ctx).reply_info(conversation)
    assert "drawing on 1 of your facts and 1 of your examples" in said
    assert "Not in your facts: **$200**" in said


def card(adapter: str, in_use: str, scores: dict, facts_scores: dict) -> dict:
    return {"adapter": adapter, "in_use": in_use, "n": 12, "helped": "+facts+examples",
            "contenders": [{"name": n, "score": s, "prompt_tokens": 40 * ("+" in n)}
                           for n, s in scores.items()],
            "facts_check": {"n": 6, "scores": facts_scores}}


def test_the_card_puts_the_best_form_of_the_run_in_use_ties_to_the_cheaper(store):
    scores = {"base+facts+examples": 20, "run-2": 90, "run-2+examples": 90,
              "run-2+facts+examples": 90}
    decided = report.decide_in_use(card("run-2", "base+facts+examples", scores, {
        "base+facts+examples": 50, "run-2": 0, "run-2+examples": 17,
        "run-2+facts+examples": 50}), {"id": 2})
    assert decided["adopted"] and decided["adapter"] == "run-2+facts+examples"
    tie = report.decide_in_use(card("run-2", "base+facts+examples", scores, {}), {"id": 2})
    assert tie["adapter"] == "run-2"  # as good without facts: fewer prompt tokens
    runs.settle_default(store, decided, "")
    assert runs.default_adapter(store) == "run-2+facts+examples"
