"""A new user's first visit, in headless Chromium: chat, restart the server, find the
conversation again. Screenshots land in the test's folder when something fails."""

import re

import pytest

from serving import Server

pytestmark = pytest.mark.browser


def send(page, text):
    box = page.get_by_placeholder("Type a message and press Enter")
    box.fill(text)
    box.press("Enter")


@pytest.mark.integration
def test_chat_restart_and_find_it_again(page, tmp_path, screenshot_on_failure):
    home = tmp_path / "home"
    with Server(home) as server:
        page.goto(server.url)
        page.get_by_label("System prompt").fill("Answer in one short sentence.")
        send(page, "What is the capital of France?")
        page.locator(".bot").filter(has_text="Paris").first.wait_for()
        page.locator("#earlier-conversations").get_by_text(
            "What is the capital of France?").wait_for()
        send(page, "")  # an empty message sends nothing
        assert page.locator(".user").count() == 1
    with Server(home) as server:  # a restart: new process, same data home
        page.goto(server.url)
        page.locator("#earlier-conversations").get_by_text(
            "What is the capital of France?").click()
        page.locator(".bot").filter(has_text="Paris").first.wait_for()
        assert page.locator(".user").filter(
            has_text="What is the capital of France?").count() == 1
        assert page.get_by_label("System prompt").input_value() == \
            "Answer in one short sentence."


def test_keep_correct_delete_and_undo_like_a_new_user(page, tmp_path, tiny_model_dir,
                                                      screenshot_on_failure):
    chat = page.locator("#chat")
    page.set_viewport_size({"width": 1366, "height": 800})  # a laptop's screen
    with Server(tmp_path / "home", model=str(tiny_model_dir)) as server:
        page.goto(server.url)
        send(page, "What is the capital of France?")
        page.locator(".bot").filter(has_text="Paris").wait_for()
        chat.get_by_label("Like").last.click()
        page.locator("#chat-note").get_by_text("Kept as example #1").wait_for()
        # the header's count follows at once, and the message box stays in view
        page.locator("#chat-intro").get_by_text("1 of 20 examples").wait_for()
        box = page.get_by_placeholder("Type a message and press Enter").bounding_box()
        assert box and box["y"] + box["height"] <= page.viewport_size["height"]

        send(page, "Name a fruit.")
        page.locator(".bot").filter(has_text="An apple is a fruit.").wait_for()
        page.locator(".bot").last.hover()
        chat.get_by_label("Edit").last.click()
        editing = chat.locator("textarea").last.bounding_box()
        assert editing and editing["width"] >= 400 and editing["height"] >= 100
        chat.locator("textarea").last.fill("A ripe mango is a fruit. 🥭")
        chat.get_by_label("Submit").click()
        page.locator("#chat-note").get_by_text("Correction saved as example #2").wait_for()

        page.get_by_role("button", name="+ New conversation").click()
        page.locator("#chat-note").get_by_text(  # a correction counts in the next answer
            "New conversation with The plain model + your examples, no tuned model is in "
            "use yet: it reads your examples").wait_for()
        send(page, "Name a fruit.")  # an answer drawing on examples: the notes grow
        page.locator("#answered-by").get_by_text("drawing on").wait_for()
        box = page.get_by_placeholder("Type a message and press Enter").bounding_box()
        assert box and box["y"] + box["height"] <= page.viewport_size["height"]

        page.get_by_role("tab", name="Examples").click()
        table = page.locator("#examples-table")
        table.get_by_text("A ripe mango is a fruit. 🥭").wait_for()
        page.locator("#readiness").get_by_text("1 kept, 1 corrected").wait_for()
        table.get_by_text("What is the capital of France?").last.click()
        page.get_by_text("Example #1 · kept").wait_for()
        page.get_by_role("button", name="Delete example").click()
        page.locator("#examples-note").get_by_text("Deleted example #1").wait_for()
        page.locator("#readiness").get_by_text("1 corrected").wait_for()
        page.get_by_role("button", name="Undo delete").click()
        page.locator("#examples-note").get_by_text("Example #1 is back").wait_for()
        page.locator("#readiness").get_by_text("1 kept, 1 corrected").wait_for()


def test_the_examples_table_pages_searches_and_opens_a_row(page, tmp_path, tiny_model_dir,
                                                            screenshot_on_failure):
    from playwright.sync_api import expect

    from storage import examples
    from storage.db import open_store

    home = tmp_path / "home"
    examples.add_many(open_store(home), [[{"role": "user", "content": f"Question {n}"},
                                          {"role": "assistant", "content": f"Answer {n}"}]
                                         for n in range(120)])
    with Server(home, model=str(tiny_model_dir)) as server:
        page.goto(server.url)
        page.get_by_role("tab", name="Examples").click()
        line, table = page.locator("#page-line"), page.locator("#examples-table")
        expect(line).to_have_text("Examples 1–50 of 120, newest first · page 1 of 3")
        page.locator("#older-page").click()
        expect(line).to_contain_text("Examples 51–100 of 120")
        table.get_by_text("Question 69").last.wait_for()
        number = page.locator("#page-number input")
        number.fill("3")
        number.press("Enter")
        expect(line).to_contain_text("Examples 101–120 of 120")
        table.get_by_text("Question 0", exact=True).last.click()
        page.get_by_text("Example #1 · imported").wait_for()
        page.locator("#must-keep input").check()  # a must-not-change check is test only
        page.get_by_text("Example #1 is a must-not-change check").wait_for()
        expect(page.locator("#test-only input")).to_be_checked()
        search = page.get_by_label("Search")
        search.fill("ANSWER 11")  # any case; a new search starts at its first page
        search.press("Enter")
        expect(line).to_have_text("Examples 1–11 of 11, newest first · page 1 of 1")
        expect(number).to_have_value("1")


def test_train_chat_compare_blind_and_vote(page, tmp_path, tiny_model_dir,
                                                           screenshot_on_failure):
    from playwright.sync_api import expect

    from storage import examples
    from storage.db import open_store

    home = tmp_path / "home"
    examples.add_many(open_store(home), [
        [{"role": "user", "content": f"Say hello number {i}."},
         {"role": "assistant", "content": f"Hello {i}! Cheers, Brewster."}] for i in range(24)])
    with Server(home, model=str(tiny_model_dir)) as server:
        page.goto(server.url)
        page.get_by_role("tab", name="Train").click()
        page.get_by_text("Advanced settings").click()
        page.get_by_label("Epochs").fill("40")
        page.get_by_label("Learning rate").fill("0.01")
        page.locator("#start-training").click()
        page.locator("#train-note").get_by_text("Started run #1").wait_for()
        page.locator("#train-status").get_by_text("running · step").wait_for()
        expect(page.locator("#start-training")).to_be_disabled()  # one run at a time
        page.locator("#loss-curve").locator("canvas, svg").first.wait_for()  # plot drawn
        page.locator("#train-status").get_by_text("succeeded").wait_for(timeout=300_000)
        from gradio_client import Client

        run = Client(server.url, verbose=False).predict(0, api_name="/run_status")
        assert run["status"] == "succeeded" and len(run["losses"]) == run["total_steps"]
        expect(page.locator("#runs-table").get_by_test_id("cell-0-2")).to_contain_text(
            "Your assistant #")
        page.get_by_role("tab", name="Chat").click()
        page.get_by_label("Model").click()
        page.get_by_role("option", name=re.compile(r"^Your assistant #\d+, tuned [^+]*$")).click()
        send(page, "Say hello number 5.")
        page.locator(".bot").filter(has_text="Cheers").wait_for()  # the tuned voice
        page.get_by_role("tab", name="Train").click()
        page.locator("#loss-curve").screenshot(path=str(tmp_path / "loss-curve.png"))

        # Compare blind, vote, and see the names and the win rate.
        page.get_by_role("tab", name="Compare").click()
        page.locator("#compare-prompt textarea").fill("Say hello number 7.")
        page.get_by_label("The other model").click()
        page.get_by_role("option", name=re.compile(r"^Your assistant #\d+, tuned [^+]*$")).click()
        page.locator("#compare-button").click()
        expect(page.locator("#label-a")).to_have_text("Model A")  # names hidden
        expect(page.locator("#answer-a textarea")).not_to_have_value("")
        expect(page.locator("#answer-b textarea")).not_to_have_value("")
        page.wait_for_timeout(1000)  # the tiny model's answers are complete by then
        tuned_is_a = "Cheers" in page.locator("#answer-a textarea").input_value()
        page.get_by_role("button", name="A is better" if tuned_is_a else "B is better").click()
        page.locator("#compare-note").get_by_text("Vote stored").wait_for()
        expect(page.locator("#label-a")).to_have_text(
            re.compile("A: Your assistant #") if tuned_is_a else "A: The plain model")
        expect(page.locator("#win-rates").get_by_test_id("cell-0-6")).to_have_text("100%")

        # The report card, computed by itself after the run, with the general check.
        page.locator("#card-summary").get_by_text(
            "General knowledge: the plain model").wait_for(
            timeout=180_000)
        expect(page.locator("#card-summary")).to_contain_text("What decided:")
        # Its card decided whether new chats use it, and the Train tab says which.
        page.get_by_role("tab", name="Train").click()
        expect(page.locator("#in-use-line")).to_contain_text("New chats")
        expect(page.locator("#start-training")).to_be_enabled()
