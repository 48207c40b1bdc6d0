"""A newer run never replaces the model new chats use unless it does at least as well on
its report card; otherwise the Train tab says so and offers to use it anyway. And a run
says when a correction it trained on is still answered the old way."""

import shutil

from services import chat, models, names, report
from services.context import Context
from storage import conversations, examples, runs
from trainer.config import TrainConfig
from web import train
from web.chat import ChatHandlers

from helpers import fill


def card_of(adapter: str, in_use: str, ours: float | None, theirs: float | None) -> dict:
    scored = [{"name": name, "score": score} for name, score in
              ((in_use, theirs), (adapter, ours)) if score is not None]
    return {"adapter": adapter, "in_use": in_use, "contenders": scored,
            "measure": {"name": "style"}}


def with_two_adapters(ctx, store, two_adapters) -> Context:
    shutil.copytree(two_adapters, store.home / "adapters", dirs_exist_ok=True)
    return Context(store, ctx.engine)


def decide(ctx, card: dict, run_id: int):
    """Record a card's decision as evaluate() does (the model in use as it expects)."""
    return runs.settle_default(ctx.store, report.decide_in_use(card, {"id": run_id}),
                               card["in_use"])


def test_a_worse_run_does_not_take_over_and_the_train_tab_says_so(ctx, store, two_adapters):
    ctx = with_two_adapters(ctx, store, two_adapters)
    models.promote(ctx, "brewster")
    decision = decide(ctx, card_of("lumen", "brewster", 23, 32), 2)
    assert decision and not decision["adopted"]
    assert models.chat_default(ctx) == "brewster" == models.adapter_to_show(ctx)
    line, offer = train.in_use_line(ctx, {})
    assert line.startswith("New chats keep **the assistant “brewster”**: the assistant "
                           "“lumen” is not used") and "23 against 32" in line
    assert offer == "lumen"
    assert train.kept_out({"decision": decision}) == \
        "not used: it did worse than brewster (23 against 32 on its report card)"
    # A run decided already, or an older one, decides nothing more.
    assert decide(ctx, card_of("lumen", "brewster", 40, 32), 2) is None
    assert decide(ctx, card_of("lumen", "brewster", 40, 32), 1) is None

    note, *_ = train.TrainHandlers(ctx).use_anyway("lumen")  # the user's own choice
    assert models.chat_default(ctx) == "lumen" and "New chats use **The assistant" in note
    line, offer = train.in_use_line(ctx, {})
    assert "as you chose" in line and offer is None


def test_a_run_at_least_as_good_takes_over_and_roll_back_undoes_it(ctx, store, two_adapters,
                                                                   monkeypatch):
    ctx = with_two_adapters(ctx, store, two_adapters)
    models.promote(ctx, "brewster")
    talk = conversations.start_conversation(store, "Hi", adapter="brewster")
    conversations.add_exchange(store, talk, "Hi", "Hello!", "brewster", "")
    assert chat.resumed_model(ctx) == "brewster"
    monkeypatch.setattr(report, "now", lambda: "2999-01-01T00:00:00+00:00")  # decided later
    decide(ctx, card_of("lumen", "brewster", 32, 32), 2)
    assert models.chat_default(ctx) == "lumen"
    # the open page's list moved to lumen ("it answers your next message"): a reload too,
    # and its note says why the list is not on the model that wrote the last answer
    assert chat.resumed_model(ctx) == "lumen"
    note = ChatHandlers(ctx).resume()[3]
    assert "Its last answer came from **the assistant “brewster”**; your next message " \
        "goes to **the assistant “lumen”**" in note
    line = train.in_use_line(ctx, {})[0]  # its card has no test rows: too few to be sure
    assert line.startswith("New chats use **the assistant “lumen”**") and "✓" not in line
    # the chat's note passes the card's doubt on, instead of "it did best"
    assert chat.why_default(ctx, "lumen") == (
        ": run #2's report card chose it, though it is not sure of it yet (the Train tab "
        "says why)")
    assert models.roll_back(ctx) == "brewster"
    assert train.in_use_line(ctx, {})[0] == \
        "New chats use **the assistant “brewster”**, as you chose."


def with_general(card: dict, lost: int, in_use_lost: int) -> dict:
    """The card's general check: the new run and the model in use each got the first
    `lost` / `in_use_lost` shipped questions wrong that the base got right."""
    def wrong(count: int) -> list[dict]:
        return [{"id": f"g{i}", "now": "wrong"} for i in range(count)]

    card["general"] = {"n": 100, "models": [
        {"name": "base", "right": 95, "lost": 0, "flips": []},
        {"name": card["adapter"], "right": 95 - lost, "lost": lost, "forgot": True,
         "flips": wrong(lost)}]}
    card["in_use_general"] = {"name": card["in_use"], "lost": in_use_lost,
                              "flips": wrong(in_use_lost)}
    return card


def test_a_run_as_good_that_forgot_more_does_not_take_over(ctx, store, two_adapters):
    ctx = with_two_adapters(ctx, store, two_adapters)
    models.promote(ctx, "brewster")
    decision = decide(ctx, with_general(card_of("lumen", "brewster", 100, 100), 28, 23), 2)
    assert not decision["adopted"] and decision["why"] == "forgot_more"
    assert models.chat_default(ctx) == "brewster"
    line, offer = train.in_use_line(ctx, {})
    assert "is not used, as it forgot more than the assistant “brewster”" in line
    assert "it gets 5 wrong that the assistant “brewster” gets right, and only 0" in line
    assert offer == "lumen"


def test_a_clearly_better_run_that_forgot_a_little_more_takes_over(ctx, store, two_adapters):
    ctx = with_two_adapters(ctx, store, two_adapters)
    models.promote(ctx, "brewster")
    # 5 questions against 0 is within chance (sign test p = 0.06); 100 against 80 is not
    decision = decide(ctx, with_general(card_of("lumen", "brewster", 100, 80), 28, 23), 2)
    assert decision["adopted"] and models.chat_default(ctx) == "lumen"


def test_forgetting_clearly_more_keeps_the_model_in_use(ctx, store, two_adapters):
    ctx = with_two_adapters(ctx, store, two_adapters)
    models.promote(ctx, "brewster")
    decision = decide(ctx, with_general(card_of("lumen", "brewster", 100, 80), 30, 20), 2)
    assert not decision["adopted"] and decision["versus"] == {"worse": 10, "better": 0}


def test_a_run_that_answers_most_corrections_the_old_way_does_not_take_over(
        ctx, store, two_adapters):
    """The plant-nursery try: run #2 took over while it still answered both of her
    corrections ("We don't deliver") the old way."""
    ctx = with_two_adapters(ctx, store, two_adapters)
    card = card_of("lumen", "base+examples", 100, 80)
    card["corrections"] = {"n": 2, "old_way": [{"id": 4}, {"id": 5}]}
    decision = decide(ctx, card, 2)
    assert not decision["adopted"] and decision["why"] == "old_way"
    assert models.chat_default(ctx) != "lumen"
    assert "it still answers 2 of your 2 corrections the old way" in \
        train.in_use_line(ctx, {})[0]
    card["corrections"] = {"n": 2, "old_way": [{"id": 4}]}  # half: still not
    assert not report.decide_in_use(card, {"id": 3})["adopted"]
    card["corrections"] = {"n": 3, "old_way": [{"id": 4}]}
    assert report.decide_in_use(card, {"id": 3})["adopted"]


def test_a_choice_made_while_the_card_was_measured_stays(ctx, store, two_adapters):
    ctx = with_two_adapters(ctx, store, two_adapters)
    card = card_of("lumen", "base", 90, 10)  # measured while base was in use ...
    models.promote(ctx, "brewster")  # ... and meanwhile she chose brewster
    decided = decide(ctx, card, 2)
    assert not decided["adopted"] and models.chat_default(ctx) == "brewster"
    assert "you chose the assistant “brewster” while its report card was measured" in \
        train.in_use_line(ctx, {})[0]


def test_a_card_that_cannot_score_replaces_only_the_plain_model(ctx, store, two_adapters):
    ctx = with_two_adapters(ctx, store, two_adapters)
    decide(ctx, card_of("brewster", "base", None, None), 1)
    assert models.chat_default(ctx) == "brewster"
    decide(ctx, card_of("lumen", "brewster", None, None), 2)
    assert models.chat_default(ctx) == "brewster"
    assert "too few test examples" in train.in_use_line(ctx, {})[0]


def test_the_card_of_a_new_run_measures_the_model_in_use_beside_it(ctx, store):
    fill(store, 24)
    first = ctx.jobs.wait(ctx.jobs.start(TrainConfig(epochs=1, batch_size=8)))
    first_general = report.evaluate(ctx, first["adapter"])["general"]["models"][1]
    models.promote(ctx, first["adapter"])
    for i in range(6):
        examples.add_example(store, [{"role": "user", "content": f"Say goodbye {i}."},
                                     {"role": "assistant", "content": f"Bye {i}!"}])
    second = ctx.jobs.wait(ctx.jobs.start(TrainConfig(epochs=1, batch_size=8)))
    card = report.evaluate(ctx, second["adapter"])
    names = [c["name"] for c in card["contenders"]]
    assert first["adapter"] in names and card["in_use"] == first["adapter"]
    trained_by_first = {e.example_id for e in runs.run_examples(store, first["id"])} - {
        e.example_id for e in runs.run_examples(store, first["id"], "held_out")}
    assert not trained_by_first & {row["id"] for row in card["rows"]}
    decided = card["decision"]
    assert decided["run"] == second["id"] and decided["in_use"] == first["adapter"]
    score = {c["name"]: c["score"] for c in card["contenders"]}
    assert decided["adopted"] == (score[second["adapter"]] >= score[first["adapter"]]
                                  and decided["why"] != "forgot_more")
    assert card["in_use_general"] == first_general
    assert models.chat_default(ctx) == \
        (second["adapter"] if decided["adopted"] else first["adapter"])
    again = report.evaluate(ctx, second["adapter"])  # measured again: nothing more decided
    assert again["decision"] == decided and report.last_decision(ctx) == decided


def test_a_card_done_after_a_newer_run_finished_says_it_decided_nothing(ctx, store):
    fill(store, 24)
    first = ctx.jobs.wait(ctx.jobs.start(TrainConfig(epochs=1, batch_size=8)))
    for i in range(6):
        examples.add_example(store, [{"role": "user", "content": f"Say goodbye {i}."},
                                     {"role": "assistant", "content": f"Bye {i}!"}])
    second = ctx.jobs.wait(ctx.jobs.start(TrainConfig(epochs=1, batch_size=8)))
    card = report.evaluate(ctx, first["adapter"])  # run #2 finished before this card
    decided = card["decision"]
    assert decided["why"] == "newer" and not decided["adopted"]
    assert report.last_decision(ctx) is None  # the model in use stays as it was
    say = names.Names(names.labels(ctx, [first["adapter"], second["adapter"]]))
    assert train.kept_out(card, say) == (
        f"not used: {say(second['adapter'])} finished before its report card did, so the "
        "newer run's card decides")
    line, _ = train.in_use_line(ctx)  # run #2's card is still to come
    assert line.startswith(f"Run #{second['id']} is done. Its report card is being measured")
    assert f"Run #{first['id']}'s card decided nothing: " in line


def test_a_correction_still_answered_the_old_way_is_named(ctx, store, monkeypatch):
    fill(store, 24)
    fixed = examples.add_example(
        store, [{"role": "user", "content": "Can I bring my dog?"},
                {"role": "assistant", "content": "Sorry, dogs can't join class."}],
        "corrected", rejected="Yes! You can bring your dog to every class.")
    run = ctx.jobs.wait(ctx.jobs.start(TrainConfig(epochs=1, batch_size=8)))
    monkeypatch.setattr(ctx.engine, "reply_many", lambda prompts, *args: [
        "Yes! You can bring your dog to class." for _ in prompts])
    learned = report._corrections_learned(ctx, run["adapter"],
                                          report._trained_corrections(ctx, run),
                                          report._Steps(None, 1), [])
    assert learned["n"] == 1 and [c["id"] for c in learned["old_way"]] == [fixed]
    monkeypatch.setattr(ctx.engine, "reply_many", lambda prompts, *args: [
        "Sorry, dogs can't join our classes." for _ in prompts])
    learned = report._corrections_learned(ctx, run["adapter"],
                                          report._trained_corrections(ctx, run),
                                          report._Steps(None, 1), [])
    assert learned["old_way"] == []
    # the voice's sign-off alone does not make an answer her correction
    monkeypatch.setattr(ctx.engine, "reply_many", lambda prompts, *args: [
        "Yes, we do. Cheers, Brewster." for _ in prompts])
    fix = report._trained_corrections(ctx, run)
    fix[0].messages[-1]["content"] = "Sorry, dogs can't join class. Cheers, Brewster."
    learned = report._corrections_learned(ctx, run["adapter"], fix, report._Steps(None, 1),
                                          ["Cheers, Brewster."])
    assert [c["id"] for c in learned["old_way"]] == [fixed]


def test_the_train_tab_names_the_corrections_answered_the_old_way():
    card = {"corrections": {"n": 3, "old_way": [{"id": 31, "prompt": "Can I bring my dog?",
                                                 "answer": "Yes!", "correction": "No."}]}}
    assert train.corrections_line(card).startswith(
        "It still answers 1 of the 3 corrections it trained on the old way: "
        "“Can I bring my dog?” (#31)")
    assert "all 3" in train.corrections_line({"corrections": {"n": 3, "old_way": []}})
    assert train.corrections_line({}) == ""


def test_sft_sees_each_correction_several_times():
    from storage.runs import RunExample
    from trainer.dataset import RunData
    from trainer.sft import _with_corrections_repeated

    kept = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello!"}]
    fixed = [{"role": "user", "content": "Dog?"}, {"role": "assistant", "content": "No."}]
    data = RunData.from_run([RunExample(1, "train", "kept", kept),
                             RunExample(2, "train", "corrected", fixed, "Yes!")])
    assert data.train == [kept, fixed] and data.corrected == [fixed]  # KTO sees it once
    config = TrainConfig()
    assert config.correction_repeats > 1
    assert _with_corrections_repeated(config, data) == \
        [kept, fixed] + [fixed] * (config.correction_repeats - 1)


def test_a_first_run_that_clearly_forgot_does_not_replace_the_plain_model(ctx, store,
                                                                       two_adapters):
    """Before: with too few tests to score it, a first run replaced the plain model
    whatever it forgot (18 general questions in a new user's try), and the card said
    "too early to say" beside it."""
    ctx = with_two_adapters(ctx, store, two_adapters)
    card = with_general(card_of("lumen", "base", None, None), 18, 0)
    card["in_use_general"] = None  # the plain model has no card of its own
    decision = decide(ctx, card, 1)
    assert not decision["adopted"] and decision["why"] == "forgot_more"
    assert models.chat_default(ctx) == "base"
    line, offer = train.in_use_line(ctx, {})
    assert "it gets 18 wrong that the plain model gets right, and only 0 the other way " \
        "round." in line and offer == "lumen"
    # forgetting within chance: it replaces the plain model, as before
    decide(ctx, with_general(card_of("brewster", "base", None, None), 3, 0), 2)
    assert models.chat_default(ctx).startswith("brewster")
