"""Model names in plain words: what each technical name reads as, that a run's label is
fixed once the run exists, and that the technical name stays at hand."""

import os
import time

import pytest

from services import names
from services.context import Context
from storage import runs


@pytest.fixture
def clock():
    """This machine's clock two hours ahead of UTC (a POSIX TZ needs no zone files)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "XXX-2"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


def finished_run(store, adapter: str, finished_at: str) -> int:
    run_id = runs.create_run(store, {}, [])
    runs.update_run(store, run_id, status="succeeded", adapter=adapter, finished_at=finished_at)
    return run_id


def adapter_folder(ctx: Context, name: str) -> None:
    folder = ctx.adapters_dir / name
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")


def test_every_model_name_reads_in_plain_words(store, clock):
    ctx = Context(store)
    finished_run(store, "run-1", "2025-12-01T08:32:00+00:00")
    adapter_folder(ctx, "run-1")
    adapter_folder(ctx, "lumen")
    assert names.labels(ctx, ["base", "base+prompt", "base+examples", "run-1",
                              "run-1+examples", "lumen", "lumen+examples", "latest",
                              "(a new adapter)"]) == {
        "base": "The plain model",
        "base+prompt": "The plain model + your instructions",
        "base+examples": "The plain model + your examples",
        "run-1": "Your assistant #1, tuned Dec 1 10:32",  # the time on this machine's clock
        "run-1+examples": "Your assistant #1, tuned Dec 1 10:32 + your examples",
        "lumen": "The assistant “lumen”",  # a folder no run of this home trained
        "lumen+examples": "The assistant “lumen” + your examples",
        "latest": "Your newest assistant",
        "(a new adapter)": "(a new adapter)"}  # no model: as it is


def test_a_run_label_is_fixed_once_the_run_exists(store, clock):
    ctx = Context(store)
    finished_run(store, "run-1", "2025-12-01T08:32:05+00:00")
    before = names.label(ctx, "run-1")
    finished_run(store, "run-2", "2025-12-01T08:32:50+00:00")  # the same minute
    finished_run(store, "run-3", "2025-12-02T09:00:00+00:00")
    assert names.labels(ctx, ["run-1", "run-2", "run-3"]) == {
        "run-1": before, "run-2": "Your assistant #2, tuned Dec 1 10:32",
        "run-3": "Your assistant #3, tuned Dec 2 11:00"}


def test_a_list_shows_the_label_and_hands_over_the_technical_name(store, clock):
    ctx = Context(store)
    finished_run(store, "run-1", "2025-12-01T08:32:00+00:00")
    assert names.choices(ctx, ["base", "run-1"]) == [
        ("The plain model", "base"), ("Your assistant #1, tuned Dec 1 10:32", "run-1")]


def test_the_details_say_what_each_technical_name_is(ctx, store):
    finished_run(store, "run-1", "2025-12-01T08:32:00+00:00")
    assert names.details(ctx, "base").startswith(f"{ctx.engine.name} as it is, untrained")
    assert "run #1" in names.details(ctx, "run-1")
    assert "4 of your examples most like each question" in names.details(ctx, "base+examples")
    assert "Train tab" in names.details(ctx, "base+prompt")
    assert names.details(ctx, "(a new adapter)") == ""
    assert names.details(Context(store), "base").startswith("the base model as it is")


def test_sentences_name_models_in_plain_words_or_as_they_are(store, clock):
    finished_run(store, "run-1", "2025-12-01T08:32:00+00:00")
    say = names.plain(Context(store), ["base", "run-1", "gone"])
    assert say("run-1") == "your assistant #1, tuned Dec 1 10:32"
    assert say.first("run-1") == "Your assistant #1, tuned Dec 1 10:32"
    assert say("base") == "the plain model" and say("gone") == say.first("gone") == "gone"
    assert names.AS_IS("run-1") == "run-1" and names.AS_IS("base") == "the base"
    assert names.AS_IS.first("base") == "The base"
