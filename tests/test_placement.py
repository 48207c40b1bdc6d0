"""Which example goes where (storage/placement.py): each leak the report card had, shown
closed. A card tests a run only on what neither it nor its ancestors trained on; only
answers the user endorsed become few-shot examples, references or SFT exports; a
prompt's examples fall on one side of the held-out split; the chat's few-shot pool never
goes stale."""

import json

from services import contenders, training
from storage import examples, placement, runs
from trainer.config import TrainConfig

from helpers import fill, voice_examples


def trained_run(ctx, store, config=TrainConfig()) -> dict:
    """A run queued as the app queues one, recorded as succeeded (nothing trains)."""
    run_id = ctx.jobs.prepare(config)
    runs.finish_run(store, run_id, "succeeded", adapter=f"run-{run_id}")
    return runs.get_run(store, run_id)


def test_an_example_marked_test_only_after_training_is_no_test_of_that_run(ctx, store):
    fill(store, 24)
    first = trained_run(ctx, store)
    trained = runs.run_examples(store, first["id"], "train")[0].example_id
    examples.set_test_only(store, trained, True)
    tests = placement.test_set(store, first)
    assert trained not in {case.id for case in tests.cases}
    assert tests.left_out == [{"id": trained, "why": "run-1 (or an adapter it continued) "
                                                     "trained on it before it was marked",
                               "reason": "trained"}]

    # Nor of a run that continued run-1's adapter, though that run never saw it.
    for messages in voice_examples(30)[24:]:
        examples.add_example(store, messages)
    second = trained_run(ctx, store, TrainConfig(continue_from="run-1"))
    assert trained not in {e.example_id for e in runs.run_examples(store, second["id"])}
    assert trained not in {case.id for case in placement.test_set(store, second).cases}


def test_a_test_example_with_the_prompt_of_a_trained_one_is_left_out(ctx, store):
    fill(store, 24)
    run = trained_run(ctx, store)
    prompt = runs.run_examples(store, run["id"], "train")[0].messages[:-1]
    twin = examples.add_example(store, prompt + [{"role": "assistant", "content": "Other."}])
    examples.set_test_only(store, twin, True)
    tests = placement.test_set(store, run)
    assert {"id": twin, "why": "run-1 (or an adapter it continued) trained on the same "
                               "prompt", "reason": "same_prompt"} in tests.left_out


def test_only_endorsed_answers_are_few_shot_examples_references_or_sft_exports(
        ctx, store, tmp_path):
    fill(store, 24)
    bad = [examples.add_example(store, [{"role": "user", "content": f"Say hello number {i}."},
                                        {"role": "assistant", "content": f"Go away {i}."}],
                                "disliked") for i in range(4)]
    run = trained_run(ctx, store, TrainConfig(objective="sft+kto"))
    assert {e.source for e in runs.run_examples(store, run["id"])} == {"kept", "disliked"}

    request = [{"role": "user", "content": "Say hello number 2."}]
    chosen = contenders.contender(ctx, contenders.EXAMPLES, [])
    for pool in (contenders.run_pool(ctx, run), contenders.live_pool(ctx)):
        assert not set(bad) & set(pool.ids)
        prompt = contenders.build_prompt(ctx, chosen, request, pool)
        assert not any(m["content"].startswith("Go away") for m in prompt)

    out = tmp_path / "run.jsonl"
    for fmt in ("openai", "alpaca", "sharegpt", "prompt-completion"):
        training.export_training_set(ctx, run["id"], out, fmt)
        assert "Go away" not in out.read_text()
    training.export_training_set(ctx, run["id"], out, "unpaired")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sum(row["label"] is False for row in rows) == 4  # carried as what to avoid

    examples.set_test_only(store, bad[0], True)
    left_out = placement.test_set(store, run).left_out
    assert {"id": bad[0], "why": "a disliked answer is not one to imitate, so it is no "
                                 "reference", "reason": "not_endorsed"} in left_out


def test_examples_with_the_same_prompt_fall_on_one_side_of_the_split(ctx, store):
    pairs = voice_examples(30)
    for messages in pairs:
        examples.add_example(store, messages)
        examples.add_example(store, messages[:-1] + [
            {"role": "assistant", "content": messages[-1]["content"].upper()}])
    run_id = ctx.jobs.prepare(TrainConfig())
    sides: dict[str, set[str]] = {}
    for row in runs.run_examples(store, run_id):
        sides.setdefault(row.messages[0]["content"], set()).add(row.split)
    assert all(len(found) == 1 for found in sides.values())
    assert sum(found == {"held_out"} for found in sides.values()) >= 4


def test_the_chats_few_shot_pool_follows_marks_deletes_and_restores(ctx, store):
    fill(store, 10)
    ids = sorted(contenders.live_pool(ctx).ids)
    a, b, c, d = ids[:4]
    examples.set_test_only(store, b, True)
    examples.delete_example(store, d)
    assert {b, d}.isdisjoint(contenders.live_pool(ctx).ids)

    # Counts that stay the same: one marked and one unmarked, one deleted and one restored.
    examples.set_test_only(store, a, True)
    examples.set_test_only(store, b, False)
    examples.delete_example(store, c)
    examples.restore_example(store, d)
    pool = set(contenders.live_pool(ctx).ids)
    assert a not in pool and c not in pool and {b, d} <= pool


def test_a_continued_run_keeps_half_of_its_new_examples_to_learn_from(ctx, store):
    fill(store, 18)  # under 20: run-1 trains on all
    trained_run(ctx, store)
    for messages in voice_examples(23)[18:]:
        examples.add_example(store, messages)
    second = trained_run(ctx, store, TrainConfig(continue_from="run-1"))
    held = runs.run_examples(store, second["id"], "held_out")
    assert len(held) == 2  # 2 of the 5 new ones, not all 5: the run learns from 3


def test_no_prompt_of_a_thumbs_down_is_held_out(ctx, store):
    fill(store, 24)
    for i in range(24):
        examples.add_example(store, [{"role": "user", "content": f"Say hello number {i}."},
                                     {"role": "assistant", "content": f"Go away {i}."}],
                             "disliked")
    run_id = ctx.jobs.prepare(TrainConfig(objective="sft+kto"))
    assert not runs.run_examples(store, run_id, "held_out")  # every prompt has one


def test_must_not_change_checks_are_endorsed_answers_with_valid_patterns(ctx, store):
    import pytest

    from services import examples as actions
    from services.general import BadPattern

    with pytest.raises(BadPattern, match="not a regular expression"):
        actions.add_check(ctx, "Capital of France?", "/Par(is/")
    check = actions.add_check(ctx, "Capital of France?", "/Par(is|ee)/")
    assert examples.get_example(store, check).must_keep
    bad = examples.add_example(store, [{"role": "user", "content": "Hi"},
                                       {"role": "assistant", "content": "Go away."}],
                               "disliked")
    with pytest.raises(actions.NotACheck, match="is a disliked answer"):
        actions.set_must_keep(ctx, bad, True)


def test_a_correction_the_user_made_is_never_held_out(ctx, store):
    """She corrected it so that it is learned: a run trains on it (and on its prompt),
    unless she marks it test only."""
    fill(store, 30)
    corrected = [examples.add_example(
        store, [{"role": "user", "content": f"Can I bring my dog, number {i}?"},
                {"role": "assistant", "content": "Dogs can't join class, sorry."}],
        "corrected", rejected="Yes! Bring your dog.") for i in range(10)]
    run = trained_run(ctx, store)
    held = {e.example_id for e in runs.run_examples(store, run["id"], "held_out")}
    assert held and not held & set(corrected)
    examples.set_test_only(store, corrected[0], True)  # for the next run: a test
    second = trained_run(ctx, store)
    assert corrected[0] not in {e.example_id for e in runs.run_examples(store, second["id"])}
    assert corrected[0] in {case.id for case in placement.test_set(store, second).cases}


def test_the_held_out_prompts_chosen_in_sql_follow_choose_held_out(ctx, store):
    """freeze_run picks the held-out prompts in SQLite (bounded memory); on a mix of
    repeated prompts, corrections, thumbs-down, an earlier run's held-out examples and a
    continued adapter it holds out exactly what choose_held_out would."""
    import random

    from storage.placement import HELD_OUT_SOURCES, choose_held_out, trained_by_lineage
    from storage.runs import RunExample

    def python_choice(continue_from=None) -> set[int]:
        everything = list(reversed(examples.list_examples(
            store, sources=examples.TRAINABLE, test_only=False)))
        rows = [RunExample(e.id, "train", e.source, e.messages, e.rejected)
                for e in everything]
        parent = runs.run_of_adapter(store, continue_from) if continue_from else None
        held_before = set(placement.held_out_by_newest_run(store))
        return choose_held_out([r for r in rows if r.source in HELD_OUT_SOURCES],
                               trained_by_lineage(store, parent) +
                               [r for r in rows if r.source not in HELD_OUT_SOURCES],
                               held_before, len(rows))

    def sql_choice(run: dict) -> set[int]:
        return {e.example_id for e in runs.run_examples(store, run["id"], "held_out")}

    chance = random.Random(7)
    for i in range(60):
        prompt = f"Question {chance.randrange(40)}?"
        source = chance.choice(["kept", "kept", "imported", "added", "corrected"])
        examples.add_example(store, [{"role": "user", "content": prompt},
                                     {"role": "assistant", "content": f"Answer {i}."}],
                             source, rejected="Old answer." if source == "corrected" else None)
    expected = python_choice()
    first = trained_run(ctx, store)
    assert sql_choice(first) == expected and len(expected) >= 5
    for i in range(30):
        examples.add_example(store, [{"role": "user", "content": f"New thing {i}?"},
                                     {"role": "assistant", "content": f"New answer {i}."}])
    expected = python_choice("run-1")
    second = trained_run(ctx, store, TrainConfig(continue_from="run-1"))
    assert sql_choice(second) == expected and expected


def test_a_new_run_holds_out_first_what_the_run_before_it_held_out(ctx, store):
    """Before: the run being queued was itself "the newest run" (with no examples yet),
    so what the run before held out was not preferred."""
    fill(store, 40)
    first = trained_run(ctx, store)
    held = {e.example_id for e in runs.run_examples(store, first["id"], "held_out")}
    runs.promote(store, "base")  # the model in use is not run-1: only "newest" says it
    for messages in voice_examples(44)[40:]:
        examples.add_example(store, messages)
    second = trained_run(ctx, store)
    assert held <= {e.example_id for e in runs.run_examples(store, second["id"], "held_out")}
