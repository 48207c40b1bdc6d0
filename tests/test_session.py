"""One server session, in headless Chromium, without restarts or reloads: from the
first chat to comparing adapters, as a new user would go (the coffee-shop owner of the
issue). The tests before this one restarted the server or reloaded the page between
steps, which hid lists that never refreshed."""

import re
import sqlite3
import time

import pytest
from gradio_client import Client
from playwright.sync_api import expect

from helpers import voice_examples
from serving import Server

pytestmark = pytest.mark.browser


def send(page, text):
    box = page.get_by_placeholder("Type a message and press Enter")
    box.fill(text)
    box.press("Enter")


def bot(page, text):
    page.locator("#chat .bot").filter(has_text=text).last.wait_for()


def last_reply(home) -> str:
    """The newest stored reply (the page may still be redrawing)."""
    with sqlite3.connect(home / "tunechat.db") as db:
        row = db.execute("SELECT content FROM turns WHERE role = 'assistant' "
                         "ORDER BY id DESC LIMIT 1").fetchone()
    return row[0] if row else ""


TUNED = re.compile(r"^Your assistant #\d+, tuned ")
"""How the lists and notes name run-1: the time it finished (services/names.py)."""


def start_new(page):
    """+ New conversation, then what a person sees before typing: an empty chat and the
    note naming its model (a message typed within milliseconds could still reach the old
    conversation's page state; tests/test_ui covers the server's side of that race)."""
    page.get_by_role("button", name="+ New conversation").click()
    expect(page.locator("#chat .bot")).to_have_count(0)
    page.locator("#chat-note").get_by_text("New conversation with").wait_for()


def chosen(page, elem_id):
    return page.locator(f"#{elem_id} input")


def test_one_session_from_first_chat_to_comparing_adapters(page, tmp_path, tiny_model_dir,
                                                           screenshot_on_failure):
    chat = page.locator("#chat")
    with Server(tmp_path / "home", model=str(tiny_model_dir)) as server:
        client = Client(server.url, verbose=False)
        for messages in voice_examples(17):  # what earlier chats collected
            client.predict(messages, "kept", api_name="/add_example")
        page.goto(server.url)
        page.locator("#chat-intro").get_by_text("17 of 20 examples for the first run").wait_for()
        page.get_by_role("tab", name="Train").click()  # open before any run exists
        page.locator("#train-status").get_by_text("No training runs yet").wait_for()
        page.get_by_role("tab", name="Chat").click()
        # New chats use the plain model with her examples (a correction counts in the
        # next answer); the tiny model answers single questions only: she picks it bare.
        expect(chosen(page, "chat-model")).to_have_value("The plain model + your examples")
        page.locator("#chat-model input").click()
        page.get_by_role("option", name="The plain model", exact=True).click()

        send(page, "Say hello.")
        bot(page, "Hello! How can I help you today?")
        chat.get_by_label("Like").last.click()
        page.locator("#chat-note").get_by_text("Kept as example #18").wait_for()
        page.locator("#chat-intro").get_by_text("18 of 20 examples for the first run").wait_for()

        start_new(page)  # the tiny model knows single questions only
        send(page, "Name a fruit.")
        bot(page, "An apple is a fruit.")
        page.locator("#chat .bot").last.hover()
        chat.get_by_label("Edit").last.click()
        chat.locator("textarea").last.fill("A ripe mango is a fruit.")
        chat.get_by_label("Submit").click()
        page.locator("#chat-note").get_by_text("Correction saved as example #19").wait_for()
        assert chat.locator(".message-buttons-right").get_by_label("Edit").count() == 0 or \
            not chat.locator(".message-buttons-right").get_by_label("Edit").first.is_visible()

        start_new(page)
        send(page, "What colour is the sky?")
        bot(page, "The sky is blue on a clear day.")
        chat.get_by_label("Dislike").last.click()
        page.locator("#chat-note").get_by_text("Marked as a bad answer").wait_for()
        page.locator("#correction-text textarea").fill("Blue, with a few clouds.")
        page.get_by_role("button", name="Save my correction").click()
        page.locator("#chat-note").get_by_text("Training run #1 started by itself").wait_for()

        # The Train tab, opened before the run: progress, then the curve with its lines.
        page.get_by_role("tab", name="Train").click()
        page.locator("#train-status").get_by_text("succeeded").wait_for(timeout=180_000)
        # Before: axes only, no lines and no legend, until a reload.
        expect(page.locator("#loss-curve")).to_contain_text("held out")
        expect(page.locator("#loss-curve")).to_contain_text("train")
        page.locator("#runs-table").get_by_test_id("cell-0-2").click()
        page.locator("#run-lineage").get_by_text("held out").wait_for()
        # The card's decision on the model in use moves the Chat list: wait for it, so
        # that what she picks next is not replaced while she sends.
        page.locator("#in-use-line").get_by_text(re.compile("New chats (use|keep)")).wait_for(
            timeout=180_000)

        # Every list knows run-1 now, in this same page, and points where it should.
        page.get_by_role("tab", name="Chat").click()
        start_new(page)
        page.locator("#chat-model input").click()
        page.get_by_role("option", name=re.compile(r"^Your assistant #\d+, tuned [^+]*$")).click()
        send(page, "Say hello number 3.")
        expected = client.predict("Say hello number 3.", "run-1", "", api_name="/chat")
        bot(page, expected[:20])

        page.get_by_role("tab", name="Compare").click()
        expect(chosen(page, "model-b")).to_have_value(TUNED)
        expect(chosen(page, "card-model")).to_have_value(TUNED)
        page.locator("#card-summary").get_by_text(
            re.compile(r"Was your assistant #\d+, tuned .* worth it\?")).wait_for(
            timeout=120_000)
        page.locator("#compare-prompt textarea").fill("Say hello number 7.")
        page.locator("#compare-button").click()
        expect(page.locator("#answer-a textarea")).not_to_have_value("")
        expect(page.locator("#answer-b textarea")).not_to_have_value("")
        time.sleep(1)  # the tiny model's answers are complete by then
        page.get_by_role("button", name="A is better").click()
        note = page.locator("#compare-note")
        note.get_by_text("Vote stored").wait_for()
        assert "Your assistant #" in note.inner_text()  # not the plain model twice
        assert "The plain model" in note.inner_text()
        expect(page.locator("#win-rates").get_by_test_id("cell-0-0")).to_contain_text(
            "Your assistant #")

        page.get_by_text("Chat default").click()
        expect(chosen(page, "promote-model")).to_have_value(TUNED)
        page.get_by_role("button", name="Make it the chat's default").click()
        note.get_by_text(re.compile("New chats start with Your assistant #")).wait_for()
        page.get_by_role("tab", name="Chat").click()
        start_new(page)
        expect(chosen(page, "chat-model")).to_have_value(TUNED)

        page.get_by_role("tab", name="Train").click()
        page.locator("#continue-from input").click()
        expect(page.get_by_role("option", name="Your assistant #")).to_be_visible()


@pytest.mark.integration
def test_stop_stops_within_a_second_and_a_message_sent_meanwhile_is_answered(
        page, tmp_path, screenshot_on_failure):
    """The embedded model writing a long story (hundreds of tokens)."""
    story = "Write a very long story about a bicycle that travels around the world."
    with Server(tmp_path / "home", extra=["--threshold", "0"]) as server:
        page.goto(server.url)
        send(page, story)
        reply = page.locator("#chat .bot").last
        expect(reply).to_have_text(re.compile(r"(\S+\s+){5}"), timeout=120_000)  # words in
        page.locator("#stop").click()
        time.sleep(1)
        expect(reply).not_to_have_text("")
        stopped = reply.inner_text()
        time.sleep(2)
        assert reply.inner_text() == stopped  # nothing more a second after Stop
        assert len(stopped.split()) < 100  # far from the hundreds of words it would write

        # Stop right after Enter: the reply ends at once (when Stop arrives before the
        # first word, nothing is stored and the message is back in the box).
        before = last_reply(server.home)
        send(page, "Tell me about wheels.")
        page.locator("#stop").click()
        box = page.get_by_placeholder("Type a message and press Enter")
        # The box still holds the message until the reply starts, so a message back in
        # the box counts only once the reply has had time to start.
        started = time.monotonic() + 5
        deadline = time.monotonic() + 30  # the first token waits for the prompt's forward
        while last_reply(server.home) == before and time.monotonic() < deadline:
            if time.monotonic() > started and box.input_value() == "Tell me about wheels.":
                break
            time.sleep(0.2)
        stub = last_reply(server.home)
        time.sleep(2)
        assert last_reply(server.home) == stub
        assert box.input_value() == "Tell me about wheels." or len(stub.split()) < 5

        # A message sent while a reply streams is answered after it, not dropped.
        replies = page.locator("#chat .bot")
        count = replies.count()
        send(page, story)
        expect(replies).to_have_count(count + 1, timeout=60_000)
        expect(replies.last).to_have_text(re.compile(r"(\S+\s+){3}"), timeout=120_000)
        send(page, "What is the capital of France?")
        page.locator("#stop").click()
        page.locator("#chat .bot").filter(has_text="Paris").wait_for(timeout=120_000)
