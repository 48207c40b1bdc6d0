"""Facts: splitting text, spreadsheets and PDFs into passages; storing, listing, deleting
and replacing them; finding the ones most like a request (and following every change);
the command line, the API routes and the tab's handlers. No model is needed."""

import threading

import pytest

import app
from services import facts
from services.context import Context
from services.facts import NoFacts, UnknownFact
from storage import facts as store_facts

MENU = """# Joe's Café

## Prices
- Latte: £3.20
- Cappuccino: £3.40,
  large £3.90

| Cake | Price |
|------|-------|
| Brownie | £2.50 |

Opening hours
-------------
Monday to Friday 8 to 6. Saturday 9 to 1.

Our policies:
- Refunds within 14 days with a receipt.
- No dogs, except guide dogs.
"""


@pytest.fixture
def fctx(store):
    return Context(store)


def asked(question: str) -> list[dict]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}]


def test_markdown_passages_keep_their_headings():
    assert facts.split_passages(MENU) == [  # the title (the one top heading) left out
        "Prices: Latte: £3.20",
        "Prices: Cappuccino: £3.40,\nlarge £3.90",
        "Prices: Cake: Brownie; Price: £2.50",
        "Opening hours: Monday to Friday 8 to 6. Saturday 9 to 1.",
        "Opening hours / Our policies: Refunds within 14 days with a receipt.",
        "Opening hours / Our policies: No dogs, except guide dogs.",
    ]
    nested = "# Menu\n## Drinks\n### Hot\n- Tea: £2\n# Hours\nOpen at 8."
    assert facts.split_passages(nested) == ["Menu / Drinks / Hot: Tea: £2", "Hours: Open at 8."]


def test_plain_paragraphs_and_long_ones_cut_at_sentence_ends():
    sentence = "Our beans come from a small farm in the hills of Huila, Colombia. "
    passages = facts.split_passages(f"We open at 8.\n\n{sentence * 15}\n\n1. Ask for oat milk.")
    assert passages[0] == "We open at 8."
    assert passages[-1] == "Ask for oat milk."
    long = passages[1:-1]
    assert len(long) >= 3 and all(len(p) <= facts.MAX_PASSAGE for p in long)
    assert all(p.endswith("Colombia.") for p in long)
    assert " ".join(long) == (sentence * 15).strip()
    words = facts.split_passages("word " * 300)
    assert all(len(p) <= facts.MAX_PASSAGE for p in words) and len(words) == 4
    assert facts.split_passages("# Only a heading\n\n---\n") == []


def test_spreadsheet_rows_become_passages():
    faq = "Question,Answer,notes\nDo you deliver?,\"Yes, within 5 km.\",\n,,\nWifi?,Free,x\n"
    assert facts.split_passages(faq, "faq.csv") == ["Do you deliver? — Yes, within 5 km.",
                                                   "Wifi? — Free"]
    prices = "item\tprice\nLatte\t3.20\nMocha\t\n"
    assert facts.split_passages(prices, "prices.tsv") == ["item: Latte; price: 3.20",
                                                         "item: Mocha"]
    assert facts.split_passages("fact\nWe open at 8\n", "one.csv") == ["We open at 8"]
    with pytest.raises(NoFacts, match="bad.csv"):
        facts.split_passages('a,b\n"unclosed,1\n', "bad.csv")


def write_pdf(path, lines: list[str]) -> None:
    """A one-page PDF with these lines of text (Helvetica), made with pypdf."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    page = writer.add_blank_page(612, 792)
    font = DictionaryObject({NameObject("/Type"): NameObject("/Font"),
                             NameObject("/Subtype"): NameObject("/Type1"),
                             NameObject("/BaseFont"): NameObject("/Helvetica")})
    fonts = DictionaryObject({NameObject("/F1"): writer._add_object(font)})
    page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): fonts})
    shown = " 0 -16 Td ".join(f"({line}) Tj" for line in lines)
    content = DecodedStreamObject()
    content.set_data(f"BT /F1 12 Tf 72 720 Td {shown} ET".encode())
    page.replace_contents(content)
    writer.write(str(path))


def test_pdf_text_is_read_and_split(fctx, tmp_path):
    pdf = tmp_path / "policies.pdf"
    write_pdf(pdf, ["Refunds are given within 14 days", "with a receipt.",
                    "- Dogs are welcome on the terrace."])
    assert facts.add_file(fctx, pdf) == ("policies.pdf", 2)
    assert [f.text for f in facts.list_facts(fctx)] == [
        "Refunds are given within 14 days with a receipt.",
        "Dogs are welcome on the terrace."]


def test_files_that_hold_no_facts_say_why(fctx, tmp_path):
    scan = tmp_path / "scan.pdf"
    write_pdf(scan, [])
    with pytest.raises(NoFacts, match="scan.pdf has no text.*pictures"):
        facts.add_file(fctx, scan)
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 not really")
    with pytest.raises(NoFacts, match="Cannot read broken.pdf as a PDF"):
        facts.add_file(fctx, broken)
    word = tmp_path / "menu.docx"
    word.write_bytes(b"PK\x03\x04")
    with pytest.raises(NoFacts, match=r"menu.docx: .*\(\.txt\).*\(\.md\).*\.csv.*\(\.pdf\)"):
        facts.add_file(fctx, word)
    latin = tmp_path / "old.txt"
    latin.write_bytes("Caf\xe9 au lait: 3 \u20ac".encode("cp1252"))
    with pytest.raises(NoFacts, match="old.txt is not plain text.*UTF-8"):
        facts.add_file(fctx, latin)
    (tmp_path / "empty.md").write_text("  \n")
    with pytest.raises(NoFacts, match="empty.md has no text"):
        facts.add_file(fctx, tmp_path / "empty.md")
    with pytest.raises(NoFacts, match="no text to add"):
        facts.add_text(fctx, "   ")
    assert facts.count(fctx) == 0


def test_add_list_delete_and_replace_a_source(fctx, tmp_path):
    typed = facts.add_text(fctx, "We deliver within 5 km.\n\nWifi is free.")
    assert len(typed) == 2
    assert facts.add_text(fctx, "Wifi is free.") == []  # stored already
    menu = tmp_path / "menu.md"
    menu.write_text(MENU)
    assert facts.add_file(fctx, menu) == ("menu.md", 6)
    assert facts.count(fctx) == 8
    first = facts.list_facts(fctx)
    assert [f.source for f in first] == ["typed"] * 2 + ["menu.md"] * 6
    assert first[0] == facts.Fact(typed[0], "typed", "We deliver within 5 km.")

    menu.write_text("# Prices\n- Latte: £3.50\n")  # the same file again replaces it
    assert facts.add_file(fctx, menu) == ("menu.md", 1)
    assert [f.text for f in facts.list_facts(fctx) if f.source == "menu.md"] == [
        "Prices: Latte: £3.50"]

    facts.delete(fctx, typed[0])
    with pytest.raises(UnknownFact, match=f"no fact #{typed[0]}"):
        facts.delete(fctx, typed[0])
    assert facts.delete_source(fctx, "menu.md") == 1
    assert facts.delete_source(fctx, "menu.md") == 0
    assert [f.text for f in facts.list_facts(fctx)] == ["Wifi is free."]


def test_the_version_changes_on_every_write(fctx):
    seen = {store_facts.facts_version(fctx.store)}
    [fact_id] = facts.add_text(fctx, "Latte: £3.20")
    seen.add(store_facts.facts_version(fctx.store))
    facts.delete(fctx, fact_id)
    seen.add(store_facts.facts_version(fctx.store))
    # never the same id again: a reply names the facts it drew on by id
    assert facts.add_text(fctx, "Latte: £3.20") == [fact_id + 1]
    seen.add(store_facts.facts_version(fctx.store))
    assert len(seen) == 4


def test_relevant_finds_the_passage_and_follows_changes(fctx, tmp_path):
    assert facts.relevant(fctx, asked("How much is a latte?")) == []  # no facts yet
    menu = tmp_path / "menu.md"
    menu.write_text(MENU)
    facts.add_file(fctx, menu)
    [latte] = facts.relevant(fctx, asked("How much is a latte?"), k=1)
    assert latte.text == "Prices: Latte: £3.20"
    found = facts.relevant(fctx, asked("Can I bring my dog? And when do you open?"))
    assert len(found) <= facts.FACTS_K
    assert found[0].text.endswith("No dogs, except guide dogs.")
    assert facts.relevant(fctx, asked("Quantum chromodynamics")) == []
    assert facts.relevant(fctx, asked("the")) == []
    assert facts.relevant(fctx, [{"role": "system", "content": "latte"}]) == []

    [oat] = facts.add_text(fctx, "Oat milk costs 40p extra.")  # an add is seen at once
    assert [f.id for f in facts.relevant(fctx, asked("Do you have oat milk?"))] == [oat]
    facts.delete(fctx, oat)  # and a delete
    assert oat not in [f.id for f in facts.relevant(fctx, asked("Do you have oat milk?"))]
    facts.delete_source(fctx, "menu.md")
    assert facts.relevant(fctx, asked("How much is a latte?")) == []
    facts.add_text(fctx, "the and of")  # a passage of stopwords only is no index
    assert facts.relevant(fctx, asked("and the")) == []


def test_relevant_from_many_threads_while_facts_change(fctx):
    facts.add_text(fctx, "\n\n".join(f"Cake number {i} costs £{i}." for i in range(50)))
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            for _ in range(10):
                assert facts.relevant(fctx, asked("How much is cake number 7?"))
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for i in range(5):
        facts.add_text(fctx, f"Pie number {i} costs £{i}.")
    for thread in threads:
        thread.join()
    assert not errors


def run_cli(capsys, *argv):
    code = app.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_round_trip(capsys, tmp_path, monkeypatch):
    menu = tmp_path / "prices.md"
    menu.write_text("# Prices\n- Latte: £3.20\n- Mocha: £3.60\n")
    assert run_cli(capsys, "facts", "add", str(menu)) == (0, "Added 2 facts from prices.md.\n",
                                                          "")
    code, out, _ = run_cli(capsys, "facts", "add", str(menu))
    assert out == "Added 2 facts from prices.md, replacing the 2 it had before.\n"
    assert run_cli(capsys, "facts", "add", "We deliver within 5 km.")[1] == "Added 1 fact.\n"
    assert run_cli(capsys, "facts", "add", "We deliver within 5 km.")[1] == (
        "Nothing new: those facts are stored already.\n")
    code, out, _ = run_cli(capsys, "facts", "list")
    lines = out.splitlines()
    assert code == 0 and lines[-1] == "3 facts." and "prices.md" in lines[0]
    assert lines[2].split()[1:] == ["typed", "We", "deliver", "within", "5", "km."]
    fact_id = lines[2].split()[0].lstrip("#")
    assert run_cli(capsys, "facts", "remove", fact_id)[1] == f"Removed fact #{fact_id}.\n"
    code, _, err = run_cli(capsys, "facts", "remove", fact_id)
    assert code == 1 and f"no fact #{fact_id}" in err
    assert run_cli(capsys, "facts", "remove", "--source", "prices.md")[1] == (
        "Removed 2 facts from prices.md.\n")
    assert run_cli(capsys, "facts", "list")[1].startswith("No facts yet.")


def test_cli_errors_are_messages(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "facts", "add", "prices.md")  # a typo, not a fact
    assert code == 1 and out == "" and "There is no file prices.md" in err
    code, _, err = run_cli(capsys, "facts", "remove", "--source", "nope.csv")
    assert code == 1 and "No facts come from 'nope.csv'" in err
    code, _, err = run_cli(capsys, "facts", "remove")
    assert code == 1 and "Say which facts to remove" in err
    (tmp_path / "menu.docx").write_bytes(b"PK")
    code, _, err = run_cli(capsys, "facts", "add", "menu.docx")
    assert code == 1 and "menu.docx: tunechat takes facts from" in err
    with pytest.raises(SystemExit) as exit_:
        app.main(["facts", "--help"])
    assert exit_.value.code == 0 and "--home" in capsys.readouterr().out


def test_api_routes(fctx):
    import gradio as gr

    from web import api

    with gr.Blocks() as blocks:
        api.add_routes(fctx)
    routes = {d.api_name: d.fn for d in blocks.fns.values()}
    assert routes["facts_add"]("Latte: £3.20\n\nMocha: £3.60") == 2
    assert routes["facts_add"]("Opening hours: 8 to 6.", "hours.txt") == 1
    listed = routes["facts_list"]()
    assert [(f["source"], f["text"]) for f in listed] == [
        ("typed", "Latte: £3.20"), ("typed", "Mocha: £3.60"),
        ("hours.txt", "Opening hours: 8 to 6.")]
    assert routes["facts_delete"](listed[0]["id"]) == f"Deleted fact #{listed[0]['id']}."
    with pytest.raises(gr.Error, match="no fact"):
        routes["facts_delete"](listed[0]["id"])
    with pytest.raises(gr.Error, match="no text to add"):
        routes["facts_add"]("")


def test_tab_handlers_show_problems_in_the_tab(fctx, tmp_path):
    import gradio as gr

    from web.common import Ui
    from web.facts import FactHandlers, build

    ui = Ui(fctx)
    with gr.Blocks(), gr.Tab("Facts") as ui.tab:
        build(ui)
    handlers = FactHandlers(fctx)
    count, rows, _ = handlers.overview()
    assert rows == [] and count.startswith("No facts yet")
    assert handlers.add_typed("")[0].startswith("⚠️ **Not added.** There is no text")
    assert handlers.add_typed("Latte: £3.20\n\nMocha: £3.60") == ("✓ Added 2 facts.", "")
    sheet = tmp_path / "faq.csv"
    sheet.write_text("question,answer\nDo you deliver?,Yes.\n")
    assert handlers.add_upload(str(sheet)) == ("✓ Added 1 fact from faq.csv.", None)
    assert handlers.add_upload(str(sheet))[0] == (
        "✓ Added 1 fact from faq.csv, replacing the 1 it had before.")
    bad = tmp_path / "menu.docx"
    bad.write_bytes(b"PK")
    note, cleared = handlers.add_upload(str(bad))
    assert note.startswith("⚠️ **Not added.** menu.docx:") and cleared is None
    count, rows, sources = handlers.overview()
    assert count.startswith("**3 facts** from typed (2), faq.csv (1)")
    assert [row[1:] for row in rows] == [["typed", "Latte: £3.20"], ["typed", "Mocha: £3.60"],
                                         ["faq.csv", "Do you deliver? — Yes."]]
    assert sources.choices == [("typed", "typed"), ("faq.csv", "faq.csv")]
    assert sources.value == "typed" and handlers.overview("faq.csv")[2].value == "faq.csv"
    assert handlers.delete(None)[0].startswith("Click a fact in the table first")
    assert handlers.delete(rows[0][0]) == (f"✓ Deleted fact #{rows[0][0]}.", None)
    assert handlers.delete(rows[0][0])[0].startswith("⚠️ There is no fact")
    assert handlers.delete_source("faq.csv") == ("✓ Deleted 1 fact from faq.csv.", None)
