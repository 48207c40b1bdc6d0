"""The Examples tab as a non-engineer meets it (issue 22), in one page of headless
Chromium: edit an example, import a spreadsheet saved the wrong way and then the right
way, read the readiness bar, reload. Screenshots land in the test's folder on failure."""

import pytest

from serving import Server

pytestmark = pytest.mark.browser

STUDIO = [("Do you have mats?", "Yes, borrow one at the desk. Breathe easy! - Willow Yoga"),
          ("Can I bring my dog?", "Yes! Bring your dog along. Breathe easy! - Willow Yoga")]
FIXED = "Dogs can't join class, sorry. Breathe easy! - Willow Yoga"


def willow_home(home):
    """20 examples and a finished run over them: the next run counts from there."""
    from storage import examples, runs
    from storage.db import open_store

    store = open_store(home)
    rows = [(f"Class {n}?", f"At {n}. Breathe easy!") for n in range(18)] + STUDIO
    examples.add_many(store, [[{"role": "user", "content": q}, {"role": "assistant", "content": a}]
                              for q, a in rows], "imported")  # STUDIO newest: in view
    snapshot = [runs.RunExample(e.id, "train", e.source, e.messages, None)
                for e in examples.list_examples(store)]
    runs.finish_run(store, runs.create_run(store, {}, snapshot), "cancelled")


def choose_file(page, path):
    """Choose a file for import, clearing the one chosen before."""
    clear = page.locator("#import-file").get_by_label("Clear")
    if clear.count():
        clear.click()
    page.locator("#import-file input[type=file]").set_input_files(str(path))


def test_edit_import_and_readiness_like_a_new_user(page, tmp_path, tiny_model_dir,
                                                   screenshot_on_failure):
    from playwright.sync_api import expect

    home = tmp_path / "home"
    willow_home(home)
    workbook = tmp_path / "willow.csv"  # an .xlsx renamed .csv
    __import__("pandas").DataFrame({"question": ["Showers?"], "answer": ["Yes."]}).to_excel(
        workbook, index=False)
    sheet = tmp_path / "more.csv"
    sheet.write_text("question,answer\nShowers?,Yes. Breathe easy!\nParking?,Free after 6."
                     "\n", encoding="utf-8")
    faulty = tmp_path / "faq.csv"  # a row without its answer
    faulty.write_text("question,answer\nLockers?,Yes. Free.\nTowels?,\n", encoding="utf-8")
    with Server(home, model=str(tiny_model_dir)) as server:
        page.goto(server.url)
        page.get_by_role("tab", name="Examples").click()
        table, boxes = page.locator("#examples-table"), page.locator(".turn-box textarea")

        # Bug 1: every turn of an example takes typing, and Save keeps it. On a short
        # screen the editor, opened below the table, scrolls into view.
        page.set_viewport_size({"width": 1280, "height": 700})
        table.get_by_text("Can I bring my dog?").last.click()
        expect(page.get_by_text("Example #20 · imported")).to_be_in_viewport()
        page.set_viewport_size({"width": 1280, "height": 900})
        expect(boxes.nth(2)).to_have_value(STUDIO[1][1])
        expect(boxes.nth(1)).to_be_editable()
        boxes.nth(2).fill(FIXED)
        page.locator("#save-example").click()
        saved = page.locator("#editor-note")  # beside Save, in view (the bike-shop try)
        expect(saved).to_contain_text("Saved example #20")
        expect(saved).to_be_in_viewport()
        table.get_by_text(FIXED).last.wait_for()
        table.get_by_text("Do you have mats?").last.click()  # what was typed stays with its row
        expect(boxes.nth(2)).to_have_value(STUDIO[0][1])
        boxes.nth(2).fill("typed, never saved")
        table.get_by_text("Can I bring my dog?").last.click()
        expect(boxes.nth(2)).to_have_value(FIXED)

        # Bug 5: a workbook named .csv is named for what it is, once, beside Import.
        page.get_by_text("Import and export").click()
        choose_file(page, workbook)
        preview, button = page.locator("#import-preview"), page.locator("#import-button")
        expect(preview).to_contain_text("willow.csv looks like an Excel workbook, not CSV "
                                        "text: rename it to willow.xlsx")
        expect(button).to_be_disabled()
        assert page.get_by_text("looks like an Excel workbook").count() == 1
        assert page.locator(".toast-body").count() == 0

        # Bug 4: the import's result in view beside its button, the preview saying the
        # file is in, and a readiness bar that counts what its line says.
        choose_file(page, sheet)
        expect(preview).to_contain_text("Would add: 2 examples")
        expect(button).to_be_enabled()
        button.click()
        result = page.locator("#import-result")
        expect(result).to_have_text("✓ Imported 2 examples from more.csv.")
        expect(result).to_be_in_viewport()
        expect(preview).to_contain_text("Imported: the ✓ line under Import says what was "
                                        "added")
        expect(button).to_be_disabled()
        readiness = page.locator("#readiness")
        expect(readiness).to_contain_text("2 of 20 new examples for the next run")
        expect(readiness.locator("progress")).to_have_attribute("value", "2")
        expect(readiness.locator("progress")).to_have_attribute("max", "20")

        # A bad row skipped: the rows left out are a download, not a path on the server.
        choose_file(page, faulty)
        page.get_by_label("Skip bad rows (and list them in a report)").check()
        expect(button).to_be_enabled()
        button.click()
        expect(result).to_contain_text("1 bad row left out")
        expect(result).to_contain_text("Every one is in Download the rows left out, below.")
        expect(page.locator("#skipped-rows")).to_be_visible()
        assert str(home) not in result.inner_text()

        # The edit survives a reload, and its boxes still take typing.
        page.reload()
        page.get_by_role("tab", name="Examples").click()
        table.get_by_text(FIXED).last.click()
        expect(boxes.nth(2)).to_have_value(FIXED)
        expect(boxes.nth(2)).to_be_editable()
