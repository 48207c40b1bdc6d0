"""Importing what people already have: spreadsheets, Parquet, datasets folders, TRL's
and other tools' preference layouts; duplicates skipped, bad rows refused or skipped with
a report. Each test builds a small file and checks exactly what is stored."""

import json

import pytest

from files.formats import FormatError, export_file, import_file, read_file
from services import examples as example_service
from storage import examples
from storage.db import open_store

from helpers import SAMPLE_FILES, SAMPLES

Q, A = "When do you open?", "At seven. ☕"
PROMPT = [{"role": "user", "content": Q}]
ANSWER = {"role": "assistant", "content": A}
WORSE = "Whenever."


def stored(store) -> list[tuple]:
    """(messages, source, rejected) of every stored example, oldest first."""
    return [(e.messages, e.source, e.rejected)
            for e in reversed(examples.list_examples(store))]


def jsonl(path, *records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path


def coffee_shop() -> list[list[dict]]:
    return [json.loads(line)["messages"]
            for line in (SAMPLES / SAMPLE_FILES["openai"]).read_text().splitlines()]


def single_turn(messages: list[dict]) -> bool:
    return len([m for m in messages if m["role"] == "user"]) == 1


def as_columns(messages: list[dict]) -> dict:
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    return {"Question": messages[-2]["content"], "Answer": messages[-1]["content"],
            "System prompt": system}


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".xlsx", ".parquet"])
def test_spreadsheets_and_parquet_import_the_coffee_shop_examples(suffix, store, tmp_path):
    import pandas as pd

    wanted = [m for m in coffee_shop() if single_turn(m)]
    frame = pd.DataFrame([as_columns(m) for m in wanted])
    path = tmp_path / f"coffee{suffix}"
    if suffix == ".xlsx":
        frame.to_excel(path, index=False)
    elif suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    done = import_file(store, path)
    assert done.added == {"example": len(wanted)}
    assert [s[0] for s in stored(store)] == wanted  # the same examples as the JSONL file


def test_columns_mapped_by_hand(store, tmp_path):
    path = tmp_path / "faq.csv"
    path.write_text("Frage,Antwort\nWann?,Um sieben.\n", encoding="utf-8")
    with pytest.raises(FormatError, match=r"faq.csv: cannot tell which column holds the "
                                          r"questions.*Frage, Antwort.*\"Frage=user,Antwort="):
        import_file(store, path)
    done = import_file(store, path, mapping={"Frage": "user", "Antwort": "assistant"})
    assert done.added == {"example": 1}
    assert stored(store) == [([{"role": "user", "content": "Wann?"},
                               {"role": "assistant", "content": "Um sieben."}], "imported",
                              None)]
    with pytest.raises(FormatError, match="names column 'Question'.*Frage, Antwort"):
        import_file(store, path, mapping={"Question": "user", "Antwort": "assistant"})


def test_a_datasets_folder_on_disk(store, tmp_path):
    import datasets

    rows = [{"prompt": PROMPT, "completion": [ANSWER]},
            {"prompt": "Do you roast your own beans?", "completion": "Yes, every Monday."}]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:1]),
                          "test": datasets.Dataset.from_list(rows[:1])}).save_to_disk(
        str(tmp_path / "saved"))
    assert import_file(store, tmp_path / "saved").added == {"example": 1}
    folder = tmp_path / "files"
    folder.mkdir()
    jsonl(folder / "train.jsonl", rows[1])
    assert import_file(store, folder).added == {"example": 1}
    assert stored(store)[1][0][-1] == {"role": "assistant", "content": "Yes, every Monday."}


@pytest.mark.parametrize("record", [
    {"prompt": Q, "chosen": A, "rejected": WORSE},  # TRL standard, explicit prompt
    {"prompt": PROMPT, "chosen": [ANSWER],  # TRL conversational, explicit prompt
     "rejected": [{"role": "assistant", "content": WORSE}]},
    {"chosen": PROMPT + [ANSWER],  # TRL conversational, implicit prompt
     "rejected": PROMPT + [{"role": "assistant", "content": WORSE}]},
    {"instruction": Q, "input": "", "chosen": A, "rejected": WORSE},  # alpaca
    {"conversations": [{"from": "human", "value": Q}],  # sharegpt (LLaMA-Factory)
     "chosen": {"from": "gpt", "value": A}, "rejected": {"from": "gpt", "value": WORSE}},
    {"input": {"messages": PROMPT}, "preferred_output": [ANSWER],  # OpenAI preference
     "non_preferred_output": [{"role": "assistant", "content": WORSE}]},
], ids=["trl-standard", "trl-conversational", "trl-implicit", "alpaca", "sharegpt",
        "openai-preference"])
def test_preference_layouts_become_corrections(record, store, tmp_path):
    done = import_file(store, jsonl(tmp_path / "pairs.jsonl", record))
    assert done.added == {"pair": 1}
    assert stored(store) == [(PROMPT + [ANSWER], "corrected", WORSE)]


@pytest.mark.parametrize("records", [
    [{"prompt": Q, "completion": A, "label": True},
     {"prompt": Q, "completion": WORSE, "label": False}],
    [{"instruction": Q, "output": A, "kto_tag": True},
     {"instruction": Q, "output": WORSE, "kto_tag": False}],
], ids=["trl-unpaired", "alpaca-kto-tag"])
def test_unpaired_labels_become_examples_and_thumbs_down(records, store, tmp_path):
    done = import_file(store, jsonl(tmp_path / "unpaired.jsonl", *records))
    assert done.added == {"example": 1, "thumbs-down": 1}
    bad = PROMPT + [{"role": "assistant", "content": WORSE}]
    assert stored(store) == [(PROMPT + [ANSWER], "imported", None), (bad, "disliked", WORSE)]
    assert examples.counts(store)["trainable"] == 1  # the thumbs-down is never imitated


@pytest.mark.parametrize("fmt", ["preference", "openai-preference", "unpaired"])
def test_every_preference_export_imports_back(fmt, store, tmp_path):
    examples.add_example(store, PROMPT + [ANSWER], "corrected", rejected=WORSE)
    examples.add_example(store, [{"role": "user", "content": "Tea?"},
                                 {"role": "assistant", "content": "Yes."}], "vote",
                         rejected="No.")
    examples.add_example(store, [{"role": "user", "content": "Cake?"},
                                 {"role": "assistant", "content": "Go away."}], "disliked",
                         rejected="Go away.")
    path = tmp_path / f"out.{fmt}.jsonl"
    export_file(store, path, fmt)
    fresh = open_store(tmp_path / "fresh")
    import_file(fresh, path)
    if fmt == "unpaired":  # examples and thumbs-down; pairs travel as their chosen side
        assert [s[1] for s in stored(fresh)] == ["imported", "disliked"]
        assert stored(fresh)[1] == stored(store)[2]
    else:  # a vote comes back as a correction: both are pairs
        assert [(m, r) for m, _, r in stored(fresh)] == [(m, r) for m, _, r in stored(store)[:2]]


def test_duplicates_are_skipped_and_counted(store, tmp_path):
    row = {"messages": PROMPT + [ANSWER]}
    examples.add_example(store, [{"role": "user", "content": "Tea?"},
                                 {"role": "assistant", "content": "Yes."}])
    other = {"messages": [{"role": "user", "content": "Tea?"},
                          {"role": "assistant", "content": "Yes."}]}
    done = import_file(store, jsonl(tmp_path / "dups.jsonl", row, row, other))
    assert (done.added, done.repeated, done.present) == ({"example": 1}, 1, 1)


@pytest.mark.parametrize("record, field, reason", [
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]},
                   ANSWER]}, r"messages\[0\]\.content", "not image_url"),
    ({"instruction": Q, "output": A, "images": ["cat.png"]}, "images", "carries images"),
    ({"messages": PROMPT + [{"role": "assistant", "content": "", "tool_calls": [{}]}]},
     r"messages\[1\]", "tool calls"),
    ({"conversations": [{"from": "human", "value": Q}, {"from": "function_call", "value": "f"}]},
     r"conversations\[1\]\.from", "tool calls"),
    ({"text": "Once upon a time."}, "text", "tunechat trains on conversations"),
    ({"prompt": Q, "chosen": A, "rejected": A}, "rejected", "same as chosen"),
    ({"prompt": Q, "completion": A, "label": "maybe"}, "label", "true or false"),
])
def test_rows_that_are_not_plain_conversations_are_refused(record, field, reason, store,
                                                           tmp_path):
    path = jsonl(tmp_path / "odd.jsonl", {"messages": PROMPT + [ANSWER]}, record)
    with pytest.raises(FormatError, match=f"line 2, field {field}: .*{reason}"):
        import_file(store, path)
    assert stored(store) == []


def test_skip_bad_imports_the_good_rows_and_reports_each_bad_one(ctx, store, tmp_path):
    path = jsonl(tmp_path / "mixed.jsonl", {"messages": PROMPT + [ANSWER]},
                 {"instruction": Q}, {"text": "plain"},
                 {"messages": [{"role": "user", "content": "Tea?"},
                               {"role": "assistant", "content": "Yes."}]})
    with pytest.raises(FormatError, match="line 2, field output: is missing"):
        import_file(store, path)
    done = example_service.import_file(ctx, path, skip_bad=True)
    assert done.done.added == {"example": 2}
    assert "2 bad rows left out, the first: line 2, field output: is missing" in done.message()
    report = done.report.read_text().splitlines()
    assert report[0] == "where,field,reason" and report[1].startswith("line 2,output,")
    assert report[2].startswith("line 3,text,")


def test_read_file_tells_the_format_and_keeps_the_places(tmp_path):
    read = read_file(jsonl(tmp_path / "pc.jsonl", {"prompt": Q, "completion": A}))
    assert read.fmt == "prompt-completion" and read.items[0][0] == "line 1"


def test_a_pair_whose_answer_is_stored_gives_that_example_its_rejected_side(store, tmp_path):
    examples.add_example(store, PROMPT + [ANSWER], "kept")
    done = import_file(store, jsonl(tmp_path / "pairs.jsonl",
                                    {"prompt": Q, "chosen": A, "rejected": WORSE}))
    assert (done.added, done.present) == ({"pair": 1}, 0)
    assert stored(store) == [(PROMPT + [ANSWER], "corrected", WORSE)]
    again = import_file(store, tmp_path / "pairs.jsonl")
    assert (again.added, again.present) == ({}, 1)


def test_spreadsheet_cells_keep_their_text(store, tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("prompt,completion,label\nIs it open?,true,true\nHow many?,42,false\n")
    import_file(store, path)
    assert [(s[0][-1]["content"], s[1]) for s in stored(store)] == [("true", "imported"),
                                                                    ("42", "disliked")]


def test_a_refused_file_leaves_nothing_behind(store, tmp_path, monkeypatch):
    """The rows are staged in a scratch file in parts; a bad row late in the file stores
    nothing, and the scratch file goes."""
    monkeypatch.setattr(examples, "STAGE_BATCH", 3)
    rows = [{"messages": PROMPT + [{"role": "assistant", "content": f"{A} {n}"}]}
            for n in range(10)]
    path = jsonl(tmp_path / "late.jsonl", *rows, {"messages": PROMPT})
    read: list[int] = []
    with pytest.raises(FormatError, match="line 11"):
        import_file(store, path, progress=read.append)
    assert read == [3, 6, 9]  # the progress of a big import, in parts
    assert stored(store) == []
    assert not list(store.home.glob(".import-*"))
    assert import_file(store, jsonl(path, *rows)).added == {"example": 10}
    assert not list(store.home.glob(".import-*"))


# Errors in the words of the person who made the spreadsheet: her file, her row as her
# spreadsheet program numbers it, her column as her header names it, what the file
# really is; said once.

def workbook(path, rows: list[list]):
    """An .xlsx written under `path` (whatever its name says)."""
    import openpyxl

    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    book.save(path)
    return path


def zipped(path, inside: str):
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(inside, "Hello")


@pytest.mark.parametrize("name, make, said", [
    ("faq.csv", lambda p: workbook(p, [["question", "answer"], ["When?", "At 7."]]),
     "faq.csv looks like an Excel workbook, not CSV text: rename it to faq.xlsx and import "
     "that, or save it from your spreadsheet program as “CSV UTF-8”."),
    ("faq.tsv", lambda p: p.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600),
     "faq.tsv looks like an Excel 97-2003 workbook (.xls), not TSV text: open it in your "
     "spreadsheet program and save it as .xlsx or as “CSV UTF-8”, then import that."),
    ("faq.jsonl", lambda p: __import__("pandas").DataFrame(
        {"question": ["When?"], "answer": ["At 7."]}).to_parquet(p),
     "faq.jsonl looks like a Parquet file, not JSON text: rename it to faq.parquet and "
     "import that."),
    ("faq.csv", lambda p: zipped(p, "faq.txt"),
     "faq.csv looks like a zip archive, not CSV text: unpack it and import the file inside"),
    ("faq.csv", lambda p: p.write_bytes(b"question,answer\nWhen?,At 7\x00\n"),
     "faq.csv is not a text file (it holds NUL bytes): save it as “CSV UTF-8”"),
])
def test_a_file_that_is_not_what_its_name_says_is_named_for_what_it_is(name, make, said,
                                                                        ctx, tmp_path):
    """Before: "Cannot read faq.csv as a spreadsheet: 'utf-8' codec can't decode byte 0x81
    in position 12: invalid start byte" for an .xlsx renamed .csv."""
    path = tmp_path / name
    make(path)
    for attempt in (lambda: example_service.preview(ctx, path),
                    lambda: example_service.import_file(ctx, path)):
        with pytest.raises(FormatError) as error:
            attempt()
        assert str(error.value).startswith(said) and "codec" not in str(error.value)
        assert str(error.value).count("looks like") <= 1  # said once
    assert stored(ctx.store) == []


def test_a_blank_answer_names_her_file_row_and_column(store, tmp_path):
    """Before: "row 3, field output: is empty" for her column "Answer" (and a blank line
    above it made the row number one too small)."""
    path = tmp_path / "willow.csv"
    path.write_text("Question,Answer\nDo you have mats?,Yes!\n\nCan I bring my dog?,\n",
                    encoding="utf-8")
    with pytest.raises(FormatError) as error:
        import_file(store, path)
    assert str(error.value) == "willow.csv, row 4, column 'Answer': is empty."
    workbook(tmp_path / "willow.xlsx", [["Frage", "Antwort"], ["Matten?", "Ja!"], [None, None],
                                         ["Hund?", None]])
    with pytest.raises(FormatError) as error:
        import_file(store, tmp_path / "willow.xlsx",
                    mapping={"Frage": "user", "Antwort": "assistant"})
    assert str(error.value) == "willow.xlsx, row 4, column 'Antwort': is empty."
    assert stored(store) == []


def test_skipped_rows_are_reported_by_column_and_blank_rows_are_no_data(ctx, tmp_path):
    path = tmp_path / "willow.csv"  # the trailing ",," rows: what a spreadsheet leaves
    path.write_text("question,answer,system\nMats?,Yes!,\n,Of course.,\n,,\n,,\n",
                    encoding="utf-8")
    done = example_service.import_file(ctx, path, skip_bad=True)
    assert done.done.added == {"example": 1} and len(done.done.bad) == 1
    assert "the first: row 3, column 'question': is empty." in done.message()
    assert done.report.read_text().splitlines()[1] == "row 3,question,is empty"


@pytest.mark.parametrize("content, said", [
    ("question,answer\nMats?,Yes!\nCafé?,Non\n".encode("cp1252"),
     "willow.csv is not saved as UTF-8 text: line 3 has a byte (0xe9) that UTF-8 does not "
     "allow"),
    (b"question,answer\nMats?,Yes!\nDogs?,No, sorry\n",
     "willow.csv, line 3: 3 cells where the first row names 2 columns. A cell holding a "
     "comma or a line break must be in double quotes"),
    (b"", "willow.csv is empty: no rows to import."),
    ("\ufeffquestion,answer\n".encode("utf-16-le"), "willow.csv is UTF-16 text"),
])
def test_a_spreadsheet_saved_the_wrong_way_says_how_to_save_it(content, said, store,
                                                               tmp_path):
    path = tmp_path / "willow.csv"
    path.write_bytes(content)
    with pytest.raises(FormatError) as error:
        import_file(store, path)
    assert str(error.value).startswith(said) and "codec" not in str(error.value)
