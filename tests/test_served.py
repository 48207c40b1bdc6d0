"""The real Gradio server in its own process, called with gradio_client as a user's
script would."""

import sqlite3
from pathlib import Path

import pytest
from gradio_client import Client

from serving import Server


@pytest.fixture(scope="module")
def served_tiny(tiny_model_dir, tmp_path_factory):
    home = tmp_path_factory.mktemp("served") / "home"
    with Server(home, model=str(tiny_model_dir)) as server:
        yield server


@pytest.fixture(scope="module")
def client(served_tiny):
    return Client(served_tiny.url, verbose=False)


def stored_turns(server):
    with sqlite3.connect(server.home / "tunechat.db") as db:
        return db.execute("SELECT role, content FROM turns ORDER BY id").fetchall()


def test_adapters_lists_base_first(client):
    assert client.predict(api_name="/adapters") == ["base"]


def test_chat_answers_and_stores_the_turns(client, served_tiny):
    reply = client.predict("Name a fruit.", "base", "", api_name="/chat")
    assert reply == "An apple is a fruit."
    assert stored_turns(served_tiny)[-2:] == [("user", "Name a fruit."),
                                              ("assistant", "An apple is a fruit.")]


def test_concurrent_clients_each_get_their_own_answer(served_tiny):
    from concurrent.futures import ThreadPoolExecutor

    from tiny import DIALOGUES

    def ask(question):
        return Client(served_tiny.url, verbose=False).predict(question, "base", "",
                                                              api_name="/chat")

    questions = [q for q, _ in DIALOGUES] * 2
    with ThreadPoolExecutor(max_workers=len(questions)) as pool:
        replies = list(pool.map(ask, questions))
    assert replies == [a for _, a in DIALOGUES] * 2


def test_bad_messages_are_clear_errors_and_store_nothing(client, served_tiny):
    before = stored_turns(served_tiny)
    with pytest.raises(Exception, match="empty"):
        client.predict("  ", "base", "", api_name="/chat")
    with pytest.raises(Exception, match="at most 256 tokens"):
        client.predict("y" * 100_000, "base", "", api_name="/chat")
    with pytest.raises(Exception, match="No model named"):
        client.predict("Say hello.", "someone-else", "", api_name="/chat")
    assert stored_turns(served_tiny) == before


def test_server_listens_on_loopback_only(served_tiny):
    """The listening socket's own address, read from the kernel's table."""
    table = Path("/proc/net/tcp")
    if not table.exists():
        pytest.skip("needs Linux's /proc/net/tcp")
    listening = [
        line.split()[1] for line in table.read_text().splitlines()[1:]
        if line.split()[3] == "0A" and int(line.split()[1].split(":")[1], 16) == served_tiny.port
    ]
    assert listening == [f"0100007F:{served_tiny.port:04X}"]  # 127.0.0.1, nothing else


@pytest.mark.integration
def test_served_embedded_model_answers(tmp_path):
    with Server(tmp_path / "home") as server:
        reply = Client(server.url, verbose=False).predict(
            "What is the capital of France?", "base", "", api_name="/chat")
    assert "Paris" in reply


def test_examples_api_add_correct_list_delete_restore(client):
    conversation = [{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Opening hours?"},
                    {"role": "assistant", "content": "9 to 5 ☕"}]
    added = client.predict(conversation, "added", api_name="/add_example")
    with pytest.raises(Exception, match=f"already stored, as example #{added}"):
        client.predict(conversation, "added", api_name="/add_example")
    with pytest.raises(Exception, match=r"messages\[1\]\.role"):
        client.predict([conversation[0], conversation[2]], "added", api_name="/add_example")
    fixed = client.predict(conversation, "8 to 6 ☕", api_name="/correct")
    listed = client.predict("hours", "all", api_name="/examples")
    assert [(e["id"], e["source"]) for e in listed] == [(fixed, "corrected"), (added, "added")]
    assert listed[0]["rejected"] == "9 to 5 ☕" and listed[0]["messages"][0] == conversation[0]
    client.predict(added, api_name="/delete_example")
    assert len(client.predict("hours", "all", api_name="/examples")) == 1
    client.predict(added, api_name="/restore_example")
    assert len(client.predict("hours", "all", api_name="/examples")) == 2


def test_import_and_export_api(client, tmp_path):
    from gradio_client import handle_file

    from helpers import SAMPLE_FILES, SAMPLES

    note = client.predict(handle_file(str(SAMPLES / SAMPLE_FILES["alpaca"])), "auto",
                          api_name="/import_examples")
    assert "Imported 6 examples" in note
    path, note = client.predict("openai", api_name="/export_examples")
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    assert len(lines) >= 6 and "Wrote" in note
