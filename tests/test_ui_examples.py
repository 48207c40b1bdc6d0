import json
from pathlib import Path

import gradio as gr
import pytest

from services import training
from services.context import Context
from storage import examples, runs
from storage.db import open_store
from web.chat import ChatHandlers
from web.common import shown_to_user
from web.examples import ExampleHandlers, export_folder, readiness_html, table_rows

from helpers import fill, finished_turn, voice_examples
from helpers import shown as messages_of


@pytest.fixture
def chat(ctx):
    return ChatHandlers(ctx)


@pytest.fixture
def tab(store):
    return ExampleHandlers(Context(store))


def like(index, liked):
    return gr.LikeData(None, {"index": index, "value": "", "liked": liked})


def edit(index, value, previous=""):
    return gr.EditData(None, {"index": index, "value": value, "previous_value": previous})


def test_thumbs_up_keeps_and_thumbs_down_records(chat, store):
    conversation_id = finished_turn(chat, "Name a fruit.", system="Be brief.")
    assert "Kept as example #1" in chat.judge(conversation_id, like(1, True))[0]
    assert "bad answer" in chat.judge(conversation_id, like(1, False))[0]
    [example] = examples.list_examples(store)
    assert example.source == "disliked" and example.messages[0]["content"] == "Be brief."


def test_editing_a_reply_saves_a_correction_and_shows_it(chat, store):
    conversation_id = finished_turn(chat, "Name a fruit.")
    shown, note = chat.correct_reply(conversation_id,
                                     edit(1, [{"type": "text", "text": "A pear."}]))
    assert "Correction saved" in note and messages_of(shown)[1]["content"] == "A pear."
    [example] = examples.list_examples(store)
    assert (example.answer, example.rejected) == ("A pear.", "An apple is a fruit.")


def test_editing_a_user_message_is_refused_and_undone(chat, store):
    conversation_id = finished_turn(chat, "Name a fruit.")
    shown, note = chat.correct_reply(conversation_id, edit(0, "Something else"))
    assert "only the assistant" in note and messages_of(shown)[0]["content"] == "Name a fruit."
    assert examples.list_examples(store) == []


def test_readiness_meter_counts_against_the_threshold():
    counts = {s: 0 for s in examples.SOURCES} | {"kept": 3, "disliked": 2, "trainable": 3}
    meter = readiness_html(counts, "3 of 20 examples for the first run",
                           training.AutoStart(True, 20, 3))
    assert "3 of 20 examples" in meter and 'value="3" max="20"' in meter
    assert "3 kept; besides them, 2 thumbs-down" in meter and "100 to 1,000" in meter
    off = readiness_html(counts, "3 training examples; auto-start is off",
                         training.AutoStart(False, 20, 3))
    assert "<progress" not in off  # no threshold to fill


def a_finished_run(store) -> int:
    """A run over every example stored so far (cancelled: nothing trains in a test)."""
    snapshot = [runs.RunExample(e.id, "train", e.source, e.messages, None)
                for e in examples.list_examples(store)]
    run_id = runs.create_run(store, {}, snapshot)
    runs.finish_run(store, run_id, "cancelled")
    return run_id


def test_the_readiness_bar_shows_the_count_its_line_says(tab, store):
    """Before: the bar was full at "2 of 20 new examples for the next run": it counted
    every example (22 of 20), the line those added since the last run."""
    fill(store, 20)
    a_finished_run(store)
    examples.add_many(store, voice_examples(22)[20:], "kept")
    meter = tab.overview()[0]
    assert "2 of 20 new examples for the next run" in meter
    assert 'value="2" max="20"' in meter


def test_table_select_edit_delete_undo(tab, store):
    first = examples.add_example(store, [{"role": "system", "content": "S"},
                                         {"role": "user", "content": "Q"},
                                         {"role": "assistant", "content": "A"}], "kept")
    examples.add_example(store, [{"role": "system", "content": "S"},
                                 {"role": "user", "content": "q!"},
                                 {"role": "assistant", "content": "b"}])
    meter, rows, *_ = tab.overview()
    assert [row[0] for row in rows] == [first + 1, first]
    assert rows[0][5].startswith(f"near-duplicate of #{first}: keep one")
    assert tab.overview("nothing matches")[1] == []

    event = gr.SelectData(None, {"index": [1, 2], "value": "Q", "row_value": rows[1]})
    example_id, title, messages, _, _, _ = tab.select(event)
    assert (example_id, messages[0]["content"]) == (first, "S") and "#1" in title
    texts = [m["content"] for m in messages[:-1]] + ["A, edited"]
    assert "Saved" in tab.save(example_id, [m["role"] for m in messages], *texts)
    assert tab.select(event)[0] == example_id
    assert examples.list_examples(store, source="kept")[0].answer == "A, edited"

    note, deleted, undo, _ = tab.delete(example_id)
    assert deleted == example_id and len(examples.list_examples(store)) == 1
    assert "is back" in tab.undo_delete(deleted)[0]
    assert len(examples.list_examples(store)) == 2


def test_the_table_pages_and_searches_in_sqlite(tab, store):
    examples.add_many(store, [[{"role": "user", "content": f"Question {n}"},
                               {"role": "assistant", "content": f"Réponse À {n}"}]
                              for n in range(120)])
    _, rows, _, line, number = tab.overview()
    assert len(rows) == 50 and rows[0][2] == "Question 119" and number == 1
    assert line == "Examples 1–50 of 120, newest first · page 1 of 3"
    _, rows, _, line, number = tab.overview("", "all", 3)
    assert [row[2] for row in rows] == [f"Question {n}" for n in range(19, -1, -1)]
    assert tab.overview("", "all", 99)[4] == 3  # past the end: the last page
    _, rows, _, line, _ = tab.overview("réponse à 11", "all", 3)  # non-ASCII case folded
    assert [row[2] for row in rows] == [f"Question {n}" for n in (119, 118, 117, 116, 115,
                                                                    114, 113, 112, 111, 110,
                                                                    11)]
    assert line.startswith("Examples 1–11 of 11") and "page 1 of 1" in line
    assert tab.first_page("Question 7")[4] == 1


def test_clicking_a_row_deleted_in_another_tab_says_so(tab, store):
    """Before: StopIteration from deep inside, and every example was listed to find it."""

    example_id = examples.add_example(store, [{"role": "user", "content": "Q"},
                                              {"role": "assistant", "content": "A"}])
    [row] = tab.overview()[1]
    examples.delete_example(store, example_id)  # meanwhile, in another tab
    event = gr.SelectData(None, {"index": [0, 2], "value": "Q", "row_value": row})
    with pytest.raises(gr.Error, match=f"Example #{example_id} is gone"):
        shown_to_user(tab.select)(event)


def test_no_matches_suggests_only_what_would_find_more(tab, store):
    """Before: "try other words, or the source *all*" when the source was all."""
    examples.add_example(store, voice_examples(1)[0], "kept")
    assert tab.overview("yoga")[2] == "No matches: try other words."
    assert tab.overview("yoga", "kept")[2] == ("No matches: try other words, or the source "
                                               "*all*.")
    assert tab.overview("", "vote")[2] == ("No examples from the source *vote*: choose *all* "
                                           "to see every one.")


def test_import_and_export_from_the_tab(tab, store, tmp_path):
    upload = tmp_path / "upload.jsonl"
    upload.write_text(json.dumps({"messages": [{"role": "user", "content": "Q"},
                                               {"role": "assistant", "content": "A"}]}) + "\n")
    assert tab.import_upload(str(upload), "auto") == "✓ Imported 1 example from upload.jsonl."
    assert "already present" in tab.import_upload(str(upload), "auto")
    path, note = tab.export_download("sharegpt")
    assert json.loads(open(path).read())["conversations"][1] == {"from": "gpt", "value": "A"}
    assert "Wrote 1 example" in note
    again, _ = tab.export_download("sharegpt")
    # Before: every export left a temporary folder behind.
    assert again == path and Path(path).parent == export_folder()
    assert all(p.is_file() for p in export_folder().iterdir())


def test_counts_in_table_rows_skip_the_system_prompt(store):
    examples.add_example(store, [{"role": "system", "content": "S"},
                                 {"role": "user", "content": "Q " * 100},
                                 {"role": "assistant", "content": "A"}])
    [row] = table_rows(examples.list_examples(store))
    assert row[4] == 2 and row[2].endswith("…") and len(row[2]) == 80


def test_a_spreadsheet_is_previewed_before_anything_is_stored(tab, store, tmp_path):
    upload = tmp_path / "faq.csv"
    upload.write_text("Question,Answer\nWhen?,At seven.\nWhere?,\nWhen?,At seven.\n",
                      encoding="utf-8")
    looked, first, button = tab.preview(str(upload), "auto")
    assert "**Columns:** Question → the question, Answer → the answer" in looked
    assert "1 example" in looked and "1 repeated inside the file" in looked
    assert "**Format:** CSV columns" in looked
    assert "**bad rows:** 1" in looked and "row 3, column 'Answer': is empty. Import" in looked
    assert first.value["data"][0] == ["row 2", "When?", "At seven."]
    assert first.value["headers"] == ["row", "question", "answer"]  # plain words
    assert button.interactive is False  # refused unless bad rows are skipped
    assert "Import refuses the file unless *Skip bad rows* is ticked." in looked
    skipping, _, button = tab.preview(str(upload), "auto", "", True)
    assert button.interactive is True  # and the line says so, not "refuses" still
    assert "Import leaves out the 1 bad row and lists them in a report." in skipping
    assert examples.list_examples(store) == []  # a preview stores nothing
    with pytest.raises(gr.Error, match="faq.csv, row 3, column 'Answer': is empty"):
        shown_to_user(tab.import_upload)(str(upload), "auto")
    note = tab.import_upload(str(upload), "auto", False, "", True)
    assert note.startswith("✓ Imported 1 example from faq.csv (1 repeated inside the file, "
                           "skipped). 1 bad row left out, the first: row 3, column 'Answer'")
    # the report is a download in the page, not a path on the server (the bike-shop try)
    report, said = tab.skipped_rows(str(upload), note)
    assert report.visible is True and "row 3" in Path(report.value["path"]).read_text()
    assert said.endswith("Every one is in *Download the rows left out*, below.")
    assert str(store.home) not in said  # no path on the server in the page
    assert tab.skipped_rows(str(tmp_path / "more.csv"),
                            "✓ Imported 2 examples from more.csv.")[0].visible is False
    upload.write_text(upload.read_text().replace(",\n", ",fixed\n"))  # the bad row mended
    tab.import_upload(str(upload), "auto")
    assert tab.skipped_rows(str(upload), "✓ ...")[0].visible is False  # no stale report


def test_a_file_that_cannot_be_imported_says_why_once_beside_the_button(tab, tmp_path):
    """Before: an .xlsx renamed .csv raised "'utf-8' codec can't decode byte ..." in a
    toast from the preview and again from Import. Now the preview says what the file is,
    in the import panel where it stays, and turns Import off."""
    import pandas as pd

    upload = tmp_path / "willow.csv"
    pd.DataFrame({"question": ["Mats?"], "answer": ["Yes!"]}).to_excel(upload, index=False)
    looked, first, button = shown_to_user(tab.preview)(str(upload), "auto")  # no toast
    assert looked.startswith("**Cannot import:** willow.csv looks like an Excel workbook, "
                             "not CSV text: rename it to willow.xlsx")
    assert looked.count("Excel workbook") == 1 and "codec" not in looked
    assert button.interactive is False and first.visible is False
    with pytest.raises(gr.Error) as error:  # the API (or a click before the preview)
        shown_to_user(tab.import_upload)(str(upload), "auto")
    assert str(error.value).count("Excel workbook") == 1


def test_after_an_import_the_preview_no_longer_offers_those_rows(tab, store, tmp_path):
    """Before: the preview beside the button still said "Would add: 2 examples"."""
    upload = tmp_path / "willow.csv"
    upload.write_text("question,answer\nMats?,Yes!\nDogs?,No, sorry.\n".replace(
        "No, sorry.", '"No, sorry."'), encoding="utf-8")
    assert "**Would add:** 2 examples" in tab.preview(str(upload), "auto")[0]
    assert tab.import_upload(str(upload), "auto") == "✓ Imported 2 examples from willow.csv."
    looked, _, button = tab.preview(str(upload), "auto")
    assert "**Would add:** nothing new" in looked and "2 already stored" in looked
    assert button.interactive is False


def test_a_csv_export_from_the_tab_imports_back(tab, store, tmp_path):
    examples.add_example(store, [{"role": "system", "content": "Breathe easy."},
                                 {"role": "user", "content": "Mats?"},
                                 {"role": "assistant", "content": "Yes! - Willow Yoga"}], "kept")
    path, note = tab.export_download("csv")
    assert Path(path).name == "tunechat-examples.csv" and note == (
        "✓ Wrote 1 example to tunechat-examples.csv.")
    fresh = ExampleHandlers(Context(open_store(tmp_path / "fresh")))
    assert fresh.import_upload(path, "auto") == ("✓ Imported 1 example from "
                                                 "tunechat-examples.csv.")
    assert [e.messages for e in examples.list_examples(fresh.ctx.store)] == [
        e.messages for e in examples.list_examples(store)]
