"""Facts and corrections in the very next answer, on a served app with the embedded
model (issue: "Your facts and your corrections in every answer"): what each reply drew
on is stored with it, so the tests read it beside the reply."""

import json
import sqlite3
from pathlib import Path

import pytest
from gradio_client import Client

from storage import examples
from storage.db import open_store

from serving import Server

pytestmark = pytest.mark.integration

VOICE = Path(__file__).resolve().parents[1] / "examples" / "willow-yoga.voice.jsonl"
QUESTION = "Can I bring my dog to class?"
PARAPHRASE = "Is it ok to bring my dog along to class?"
FIX = "Dogs can't join class, sorry! Our studio is pets-free. Breathe easy! - Willow Yoga"


def drew_on(home: Path) -> dict:
    """What the newest reply drew on ({} for nothing)."""
    with sqlite3.connect(home / "tunechat.db") as db:
        row = db.execute("SELECT drew_on FROM turns WHERE role = 'assistant' "
                         "ORDER BY id DESC LIMIT 1").fetchone()
    return json.loads(row[0]) if row and row[0] else {}


def test_corrections_and_facts_count_in_the_next_answer(tmp_path):
    home = tmp_path / "home"
    with Server(home) as server:
        client = Client(server.url, verbose=False)
        for line in VOICE.read_text().splitlines()[:8]:
            client.predict(json.loads(line)["messages"], "kept", api_name="/add_example")
        # what new chats use before any run: the plain model with her examples
        model = "base+examples"
        assert model in client.predict(api_name="/adapters")
        before = client.predict(PARAPHRASE, model, "", api_name="/chat")
        first = client.predict(QUESTION, model, "", api_name="/chat")
        fixed = client.predict([{"role": "user", "content": QUESTION},
                                {"role": "assistant", "content": first}], FIX,
                               api_name="/correct")

        after = client.predict(PARAPHRASE, model, "", api_name="/chat")
        assert fixed in drew_on(home)["examples"]
        assert after != before

        examples.set_test_only(open_store(home), fixed, True)  # e.g. in the Examples tab
        client.predict(PARAPHRASE, model, "", api_name="/chat")
        assert fixed not in drew_on(home).get("examples", [])

        added = client.predict("Dogs are not allowed in the studio.", "typed",
                               api_name="/facts_add")
        assert added == 1
        [fact] = client.predict(api_name="/facts_list")
        client.predict(PARAPHRASE, "base+facts+examples", "", api_name="/chat")
        assert drew_on(home)["facts"] == [fact["id"]]

        client.predict(fact["id"], api_name="/facts_delete")
        client.predict(PARAPHRASE, "base+facts+examples", "", api_name="/chat")
        assert not drew_on(home).get("facts")
