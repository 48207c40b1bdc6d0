import json

import pytest

from files.formats import (
    FORMATS,
    MAX_IMPORT_BYTES,
    FormatError,
    export_file,
    import_file,
    import_formats,
    read_examples,
)
from storage import examples
from storage.db import open_store

from helpers import SAMPLE_FILES, SAMPLES

EXAMPLE_FORMATS = [f for f in import_formats() if FORMATS[f].unit == "example"]
TRICKY = [
    {"role": "system", "content": "Réponds en français. 🎉\nDeux lignes."},
    {"role": "user", "content": "שלום! مرحبا بالعالم — mixed ‏RTL‎ text\r\n\ttabs"},
    {"role": "assistant", "content": "👩🏽‍💻 Zero‑width joiners, \"quotes\", \\backslash\\, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"},  # noqa: E501
    {"role": "user", "content": "  leading and trailing spaces  "},
    {"role": "assistant", "content": "\u00a0non-breaking\u00a0space and a lone % sign"},
]


def stored(store):
    return [e.messages for e in reversed(examples.list_examples(store))]


@pytest.mark.parametrize("fmt", list(SAMPLE_FILES))
def test_each_sample_format_gives_the_same_examples(fmt, store):
    done = import_file(store, SAMPLES / SAMPLE_FILES[fmt])
    assert (done.added, done.present) == ({"example": 6}, 0)
    expected = [json.loads(line)["messages"]
                for line in (SAMPLES / SAMPLE_FILES["openai"]).read_text().splitlines()]
    assert stored(store) == expected
    assert any(m["role"] == "system" for m in expected[0])
    assert max(len(m) for m in expected) == 7  # multi-turn samples included


@pytest.mark.parametrize("fmt", EXAMPLE_FORMATS)
def test_round_trip_is_byte_identical(fmt, store, tmp_path):
    examples.add_example(store, TRICKY, "kept")
    examples.add_example(store, [{"role": "user", "content": "a"},
                                 {"role": "assistant", "content": "b"}], "corrected",
                         rejected="c")
    first = tmp_path / f"first.{fmt}"
    assert export_file(store, first, fmt) == 2
    fresh = open_store(tmp_path / "fresh-home")
    assert import_file(fresh, first, fmt).added == {"example": 2}
    assert stored(fresh) == stored(store)
    second = tmp_path / f"second.{fmt}"
    export_file(fresh, second, fmt)
    assert second.read_bytes() == first.read_bytes()


def test_a_csv_export_opens_in_a_spreadsheet_and_imports_back(store, tmp_path):
    """What a spreadsheet user takes back: question, answer and system columns (the earlier
    turns of a longer conversation in a history column), read back by the CSV import."""
    import pandas as pd

    examples.add_example(store, TRICKY, "kept")
    examples.add_example(store, [{"role": "user", "content": "a"},
                                 {"role": "assistant", "content": "b"}], "corrected",
                         rejected="c")
    first = tmp_path / "first.csv"
    assert export_file(store, first, "csv") == 2
    assert first.read_bytes().startswith(b"\xef\xbb\xbfquestion,answer,system,history\r\n")
    sheet = pd.read_csv(first, dtype=object, keep_default_na=False)  # as a spreadsheet has it
    assert sheet.values.tolist()[1] == ["a", "b", "", ""]
    assert sheet.values.tolist()[0][:3] == [TRICKY[3]["content"], TRICKY[4]["content"],
                                            TRICKY[0]["content"]]
    fresh = open_store(tmp_path / "fresh-home")
    assert import_file(fresh, first).added == {"example": 2}
    assert stored(fresh) == stored(store)
    second = tmp_path / "second.csv"
    export_file(fresh, second, "csv")
    assert second.read_bytes() == first.read_bytes()


def test_a_csv_export_has_no_cell_a_spreadsheet_would_run_as_a_formula(store, tmp_path):
    answers = ["=HYPERLINK(\"http://x\")", "+1 555 0100", "- Mats free", "@home"]
    for i, answer in enumerate(answers):
        examples.add_example(store, [{"role": "user", "content": f"q{i}"},
                                     {"role": "assistant", "content": answer}])
    path = tmp_path / "out.csv"
    export_file(store, path, "csv")
    cells = [line.split(",", 1)[1] for line in path.read_text("utf-8-sig").splitlines()[1:]]
    assert all(cell.startswith(("'", "\"'")) for cell in cells), cells
    fresh = open_store(tmp_path / "fresh-home")
    import_file(fresh, path)
    assert stored(fresh) == stored(store)  # the apostrophes come off again


def test_preference_pairs_export_corrections_only(store, tmp_path):
    examples.add_example(store, TRICKY[:3], "kept")
    examples.correct_messages(store, TRICKY[:3], "Better answer ✓")
    out = tmp_path / "pairs.jsonl"
    assert export_file(store, out, "preference") == 1
    [pair] = [json.loads(line) for line in out.read_text().splitlines()]
    assert pair == {"prompt": TRICKY[:2],
                    "chosen": [{"role": "assistant", "content": "Better answer ✓"}],
                    "rejected": [TRICKY[2]]}


def test_alpaca_jsonl_with_input_and_history(tmp_path):
    path = tmp_path / "alpaca.jsonl"
    path.write_text(json.dumps({
        "instruction": "Summarise", "input": "Long text here.", "output": "Short.",
        "system": "Be terse.", "history": [["Hi", "Hello!"]]}) + "\n")
    assert read_examples(path) == [[
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Summarise\n\nLong text here."},
        {"role": "assistant", "content": "Short."}]]


def test_sharegpt_system_turn_and_openai_text_parts(tmp_path):
    share = tmp_path / "s.jsonl"
    share.write_text(json.dumps({"conversations": [
        {"from": "system", "value": "Sys"}, {"from": "human", "value": "Q"},
        {"from": "gpt", "value": "A"}]}) + "\n")
    openai = tmp_path / "o.jsonl"
    openai.write_text(json.dumps({"messages": [
        {"role": "system", "content": [{"type": "text", "text": "Sys"}]},
        {"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}) + "\n")
    assert read_examples(share) == read_examples(openai)


def test_a_utf8_byte_order_mark_is_harmless(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (SAMPLES / SAMPLE_FILES["openai"]).read_bytes())
    assert len(read_examples(path)) == 6


def test_repeats_already_stored_are_skipped_not_doubled(store):
    import_file(store, SAMPLES / SAMPLE_FILES["openai"])
    done = import_file(store, SAMPLES / SAMPLE_FILES["sharegpt"])
    assert (done.added, done.present) == ({}, 6)
    assert len(examples.list_examples(store)) == 6


GOOD = json.dumps({"messages": [{"role": "user", "content": "Q"},
                                {"role": "assistant", "content": "A"}]})
GOOD2 = GOOD.replace('"A"', '"B"')


@pytest.mark.parametrize("name, content, fmt, expected", [
    ("truncated", (GOOD + "\n" + GOOD2[:30]).encode(), "auto", r"line 2: not valid JSON"),
    ("truncated list", b'[{"instruction": "a", "output": "b"},', "auto", "not valid JSON"),
    ("wrong role", (GOOD + "\n" + GOOD2.replace('"user"', '"assistant"')).encode(), "auto",
     r"line 2, field messages\[0\]\.role"),
    ("unknown role", GOOD.replace('"user"', '"robot"').encode(), "openai",
     r"line 1, field messages\[0\]\.role: must be one of"),
    ("missing output", b'{"instruction": "Q"}', "alpaca", r"line 1, field output: is missing"),
    ("missing content", b'{"messages": [{"role": "user"}, {"role": "assistant", "content": "A"}]}',
     "auto", r"field messages\[0\]\.content: is missing"),
    ("sharegpt bad from", b'{"conversations": [{"from": "bot", "value": "x"}]}', "auto",
     r"conversations\[0\]\.from"),
    ("utf-16 bom", "\ufeff".encode("utf-16-le") + GOOD.encode("utf-16-le"), "auto", "UTF-16"),
    ("nul byte", GOOD.encode() + b"\n" + GOOD2.encode()[:10] + b"\x00", "auto",
     "line 2: contains a NUL byte"),
    ("escaped nul", GOOD.replace('"Q"', '"Q\\u0000"').encode(), "auto", "NUL character"),
    ("lone surrogate", GOOD.replace('"Q"', '"\\ud800"').encode(), "auto",
     r"field messages\[0\]\.content: contains an unpaired surrogate"),
    ("invalid utf-8", GOOD.encode() + b"\n\xff\xfe\xfd", "auto", "line 2: not valid UTF-8"),
    ("empty", b"", "auto", "empty"),
    ("only blank lines", b"\n  \n\n", "auto", "empty"),
    ("other format than asked", GOOD.encode(), "alpaca",
     "missing field 'instruction' for the alpaca format. It looks like openai"),
    ("not an object", b"[1, 2]", "auto", "item 1: cannot tell the format"),
    ("bad row at the end", (GOOD + "\n" + GOOD2 + "\n" + '{"messages": []}').encode(), "auto",
     "line 3, field messages: must be a non-empty list"),
    ("a sharegpt turn that is no object", b'{"conversations": [[]]}', "auto",
     r"conversations\[0\]: must be a \{from, value\} turn"),
])
def test_bad_files_are_clear_errors_and_change_nothing(name, content, fmt, expected, store,
                                                       tmp_path):
    examples.add_example(store, TRICKY[:3])
    before = stored(store)
    path = tmp_path / f"{name}.jsonl"
    path.write_bytes(content)
    with pytest.raises(FormatError, match=expected):
        import_file(store, path, fmt)
    assert stored(store) == before


def test_a_json_list_over_the_limit_is_refused_before_reading(store, tmp_path):
    path = tmp_path / "huge.json"
    with path.open("wb") as out:  # one list of about 26 MB
        out.write(b'[{"instruction": "Q", "output": "' + b"x" * (26 * 2**20) + b'"}]')
    assert path.stat().st_size > MAX_IMPORT_BYTES
    with pytest.raises(FormatError, match=r"JSON list of 26\.0 MB.*limited to 25 MB.*JSONL"):
        import_file(store, path)
    assert stored(store) == []


def test_a_jsonl_file_over_the_web_cap_is_read_line_by_line(store, tmp_path):
    path = tmp_path / "big.jsonl"
    answer = "x" * 2**20
    with path.open("w") as out:  # 30 rows of 1 MB, each row twice
        for n in range(60):
            out.write(json.dumps({"messages": [
                {"role": "user", "content": f"Q{n % 30}"},
                {"role": "assistant", "content": answer}]}) + "\n")
    assert path.stat().st_size > MAX_IMPORT_BYTES
    done = import_file(store, path)
    assert (done.added, done.repeated) == ({"example": 30}, 30)
    assert [m[0]["content"] for m in stored(store)] == [f"Q{n}" for n in range(30)]


def test_export_to_a_missing_folder_is_a_clear_error(store, tmp_path):
    with pytest.raises(FormatError, match="Cannot write"):
        export_file(store, tmp_path / "no" / "such" / "file.jsonl")
