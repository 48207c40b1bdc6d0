"""Hot-swapped adapters compared: votes, win rates, side-by-side streams,
and the served app routing each request to the model it named."""

import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest
from gradio_client import Client

import app
from core.errors import UserError
from services import compare
from services.context import Context
from storage import runs

from serving import Server

HELLO = [{"role": "user", "content": "Say hello number 3."}]


def vote(store, left, right, winner):
    runs.add_vote(store, prompt="p", system="", left=left, right=right, left_reply="l",
                  right_reply="r", winner=winner, blind=True)


def test_win_rate_arithmetic(store):
    for left, right, winner in [("base", "a", "right"), ("a", "base", "left"),
                                ("base", "a", "left"), ("base", "a", "tie"),
                                ("a", "base", "both_bad"), ("a", "b", "left"),
                                ("b", "base", "right")]:
        vote(store, left, right, winner)
    rows = {r["adapter"]: r for r in runs.win_rates(store)}
    a = rows["a"]
    assert (a["wins"], a["losses"], a["ties"], a["both_bad"], a["votes"]) == (2, 1, 1, 1, 4)
    assert a["win_rate"] == pytest.approx(2.5 / 4)
    assert 0 < a["ci_low"] < 0.625 < a["ci_high"] < 1
    assert rows["b"]["win_rate"] == 0 and rows["b"]["ci_low"] == 0
    with pytest.raises(UserError, match="winner"):
        vote(store, "base", "a", "left-ish")


def test_wilson_interval_matches_the_textbook_value():
    low, high = runs.wilson_interval(0.5, 10)
    assert (round(low, 3), round(high, 3)) == (0.237, 0.763)


def test_promote_and_roll_back(store):
    assert runs.default_adapter(store) == ""  # none chosen: models.chat_default decides
    runs.promote(store, "run-1")
    runs.promote(store, "run-2")
    assert runs.default_adapter(store) == "run-2"
    assert runs.roll_back(store) == "run-1" and runs.default_adapter(store) == "run-1"


@pytest.fixture
def adapters_ctx(store, make_engine, two_adapters):
    shutil.copytree(two_adapters, store.home / "adapters")
    return Context(store, make_engine(store.home / "adapters"))


def test_pair_streams_both_answers_at_once(adapters_ctx):
    engine = adapters_ctx.engine
    updates = list(compare.stream_pair(adapters_ctx, HELLO[0]["content"], "", "base", "lumen"))
    left, right = updates[-1]
    assert left == engine.reply(HELLO, "base") and right == engine.reply(HELLO, "lumen")
    for (l1, r1), (l2, r2) in zip(updates, updates[1:-1]):  # each update extends a side
        assert l2.startswith(l1) and r2.startswith(r1) and (l2, r2) != (l1, r1)


@pytest.fixture(scope="module")
def served_with_adapters(tiny_model_dir, two_adapters, tmp_path_factory):
    home = tmp_path_factory.mktemp("served-adapters") / "home"
    shutil.copytree(two_adapters, home / "adapters")
    with Server(home, model=str(tiny_model_dir)) as server:
        yield server


def test_served_requests_each_get_the_model_they_named(served_with_adapters, make_engine,
                                                       two_adapters):
    engine = make_engine(two_adapters)
    prompts = [f"Say hello number {i}." for i in range(3, 7)]
    names = ["base", "brewster", "lumen"]
    expected = {(n, p): engine.reply([{"role": "user", "content": p}], n)
                for n in names for p in prompts}
    client = Client(served_with_adapters.url, verbose=False)
    assert client.predict(api_name="/adapters") == ["base", "brewster", "lumen"]
    jobs = [(names[i % 3], prompts[i % 4]) for i in range(24)]

    def ask(job):
        name, prompt = job
        return Client(served_with_adapters.url, verbose=False).predict(
            prompt, name, "", api_name="/chat")

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(ask, jobs))
    assert answers == [expected[job] for job in jobs]


def test_compare_and_vote_api(served_with_adapters):
    client = Client(served_with_adapters.url, verbose=False)
    result = client.predict("Say hello number 4.", "base", "brewster", "", api_name="/compare")
    assert (result["left"], result["right"]) == ("base", "brewster")
    assert result["left_reply"] != result["right_reply"]
    rates = client.predict("Say hello number 4.", "base", "brewster", "right",
                           api_name="/vote")
    assert [(r["adapter"], r["wins"]) for r in rates] == [("brewster", 1)]


def test_compare_on_the_command_line(tiny_model_dir, two_adapters, isolated_home, capsys):
    shutil.copytree(two_adapters, isolated_home / "adapters")
    code = app.main(["compare", "Say hello number 3.", "--right", "lumen", "--model",
                     str(tiny_model_dir)])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("[base]\n") and "\n[lumen]\n" in out
