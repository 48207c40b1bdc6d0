"""Facts: what is true about the user's business (prices, opening hours, policies), typed
or read from a file, stored in passages of about a paragraph, and the few most like a
request found with BM25 (the tokenizer of services/fewshot.py), for the chat to read
before it answers.

Passages: a paragraph or a list item each, under its Markdown heading ("Prices: Latte
£3.20"), long ones cut at sentence ends to at most MAX_PASSAGE characters; a
spreadsheet row each ("question — answer" where the columns say which is which); a PDF's
text is split like typed text."""

from __future__ import annotations

import io
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError
from files import sources
from services import fewshot
from services.context import Context
from storage import facts as store_facts

FACTS_K = 2
"""Passages placed before a request, at most."""
MAX_PASSAGE = 400
"""Characters in a passage, about; a longer paragraph is cut at its sentence ends."""
TYPED = "typed"
"""The source of facts typed or pasted (a file's facts have the file's name)."""
TEXT_FILES = (".txt", ".text", ".md", ".markdown")
SHEETS = {".csv": ",", ".tsv": "\t"}
PDF = ".pdf"
KINDS = TEXT_FILES + tuple(SHEETS) + (PDF,)
KINDS_LINE = ("text (.txt), Markdown (.md), a spreadsheet saved as CSV (.csv or .tsv) "
              "or a PDF (.pdf)")

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)[\s#]*$")
_UNDERLINE = re.compile(r"^(=+|-+)$")
_RULE = re.compile(r"^([-*_])(\s*\1){2,}$")
_ITEM = re.compile(r"^([-*+•‣◦]|\d{1,3}[.)])\s+(.*)$")
_TABLE_RULE = re.compile(r"^\|?[\s:|-]+\|?$")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


@dataclass(frozen=True)
class Fact:
    id: int
    source: str
    """"typed", or the name of the file it came from."""
    text: str


class NoFacts(UserError):
    """No facts could be taken from the text or file; the message says why and what to
    do."""


class UnknownFact(UserError):
    """No fact has that id."""


# Splitting

def split_passages(text: str, name: str = "") -> list[str]:
    """`text` as passages: spreadsheet rows when `name` ends in .csv or .tsv, else
    paragraphs and list items of plain text or Markdown, each with its heading."""
    suffix = Path(name).suffix.lower()
    if suffix in SHEETS:
        return _sheet_passages(text, name, SHEETS[suffix])
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    reader = _MarkdownReader(_title_level(lines))
    for line in lines:
        reader.read(line)
    reader.close()
    return [piece for context, body in reader.blocks for piece in _with_context(context, body)]


def _title_level(lines: list[str]) -> int:
    """The level of the document's title (its one heading above all the others), which
    would only repeat itself before every passage; 0 when it has none."""
    levels = [len(found.group(1)) for found in map(_HEADING.match, map(str.strip, lines))
              if found]
    top = min(levels, default=0)
    return top if levels.count(top) == 1 and len(levels) > 1 else 0


class _MarkdownReader:
    """Reads lines into (context, body) blocks: a paragraph, a list item, or a table row
    (as "column: cell; ..."), the context being the headings above it (but the
    document's title) and a line ending in ":" that leads a list."""

    def __init__(self, title_level: int = 0):
        self.title_level = title_level
        self.blocks: list[tuple[str, str]] = []
        self.headings: list[tuple[int, str]] = []
        self.lead = ""
        self.lines: list[str] = []
        self.table: list[str] | None = None

    def context(self) -> str:
        return " / ".join([text for level, text in self.headings if level != self.title_level]
                          + [self.lead] * bool(self.lead))

    def close(self) -> None:
        if self.lines:
            self.blocks.append((self.context(), "\n".join(self.lines)))
            self.lines = []

    def read(self, raw: str) -> None:
        line = raw.strip()
        if not line:
            self.close()
            self.table = None
        elif heading := _HEADING.match(line):
            self.heading(len(heading.group(1)), heading.group(2))
        elif _UNDERLINE.match(line) and len(self.lines) == 1:  # "Prices\n======"
            title, self.lines = self.lines[0], []
            self.heading(1 if line[0] == "=" else 2, title)
        elif _RULE.match(line):
            self.close()
        elif line.startswith("|"):
            self.table_row(line)
        elif item := _ITEM.match(line):
            if len(self.lines) == 1 and self.lines[0].endswith(":"):  # "Our policies:"
                self.lead, self.lines = self.lines[0].rstrip(":").strip(), []
            self.close()
            self.lines = [item.group(2)]
        else:
            if not self.lines:  # a new paragraph: a list's lead no longer applies
                self.lead = ""
            self.lines.append(line)

    def heading(self, level: int, text: str) -> None:
        self.close()
        self.headings = [(lv, t) for lv, t in self.headings if lv < level] + [(level, text)]
        self.lead = ""

    def table_row(self, line: str) -> None:
        self.close()
        if _TABLE_RULE.match(line):
            return
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if self.table is None:
            self.table = cells
            return
        body = "; ".join(f"{column}: {cell}" if column else cell
                         for column, cell in zip(self.table, cells) if cell)
        if body:
            self.blocks.append((self.context(), body))


def _with_context(context: str, body: str, joiner: str = ": ") -> list[str]:
    """The body cut to fit MAX_PASSAGE, each piece after its context."""
    body = body.strip()
    if not body:
        return []
    if not context:
        return _pieces(body, MAX_PASSAGE)
    room = max(MAX_PASSAGE - len(context) - len(joiner), MAX_PASSAGE // 2)
    return [f"{context}{joiner}{piece}" for piece in _pieces(body, room)]


def _pieces(body: str, limit: int) -> list[str]:
    """`body` in pieces of at most `limit` characters, cut after a sentence or a line
    where it can, else between words; lines stay lines."""
    if len(body) <= limit:
        return [body]
    pieces: list[str] = []
    piece = ""
    for line in body.split("\n"):
        for i, unit in enumerate(_units(line, limit)):
            sep = " " if i else "\n"
            if piece and len(piece) + len(sep) + len(unit) > limit:
                pieces.append(piece)
                piece = unit
            else:
                piece = f"{piece}{sep}{unit}" if piece else unit
    return pieces + [piece] * bool(piece)


def _units(line: str, limit: int) -> list[str]:
    """A line's sentences; a sentence longer than `limit` in runs of words (a word longer
    than that, e.g. a long link, cut where it must)."""
    units = []
    for sentence in _SENTENCE_END.split(line.strip()):
        if len(sentence) <= limit:
            units.append(sentence)
            continue
        run = ""
        for word in sentence.split():
            while len(word) > limit:
                units, run, word = units + [run] * bool(run) + [word[:limit]], "", word[limit:]
            if run and len(run) + 1 + len(word) > limit:
                units, run = units + [run], word
            else:
                run = f"{run} {word}" if run else word
        units += [run] * bool(run)
    return [unit for unit in units if unit]


def _sheet_passages(text: str, name: str, sep: str) -> list[str]:
    """One passage a row: "question — answer" when the headers say which columns those
    are (as imports read them, files/sources.py), else "column: cell; ..."."""
    import pandas as pd

    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        return []
    except (pd.errors.ParserError, ValueError) as error:
        raise NoFacts(f"Cannot read {name} as a spreadsheet: {error}. Save it again as "
                      "“CSV UTF-8” with a header row, or paste its text instead.") from None
    columns = [str(c) for c in frame.columns]
    roles = {role: column for column, role in (sources.roles_of(columns, None) or {}).items()}
    question, answer = roles.get("user"), roles.get("assistant")
    passages = []
    for values in frame.itertuples(index=False, name=None):
        cells = {column: str(value).strip() for column, value in zip(columns, values)}
        if question and answer and cells[question] and cells[answer]:
            passages += _with_context(cells[question], cells[answer], " — ")
            continue
        filled = [(column, cell) for column, cell in cells.items() if cell]
        body = "; ".join(cell if len(columns) == 1 or column.startswith("Unnamed:")
                         else f"{column}: {cell}" for column, cell in filled)
        passages += _with_context("", body)
    return passages


# Reading files

def _read_text(path: Path) -> str:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        text = "\x00"
    if "\x00" in text:
        raise NoFacts(f"{path.name} is not plain text (or not in UTF-8). Save it as plain "
                      "text, UTF-8 (Word and most editors offer it under Save As), or copy "
                      "its text into the box.")
    return text


def _pdf_text(path: Path) -> str:
    """The text of every page, its lines unwrapped into paragraphs."""
    try:
        from pypdf import PdfReader

        reader = PdfReader(path)
        if reader.is_encrypted:
            reader.decrypt("")
        pages = [page.extract_text() or "" for page in reader.pages]
    # A damaged PDF breaks pypdf in many ways (its own errors, KeyError, ValueError, ...);
    # each one means the same to the user: this file cannot be read.
    except Exception as error:
        raise NoFacts(f"Cannot read {path.name} as a PDF ({type(error).__name__}: {error}). "
                      "If it opens in a PDF viewer, copy its text into the box instead, or "
                      "save it again as a PDF.") from None
    text = "\n\n".join(pages)
    if not text.strip():
        raise NoFacts(f"{path.name} has no text that can be read: its pages are probably "
                      "pictures (a scan). Copy the facts into the box instead, or upload "
                      "the document as text.")
    # A PDF breaks lines where the page ends them: join a line to the next unless it
    # ends a sentence, leads a list, or the next one is a list item.
    return re.sub(r"(?<![.!?:…\n])\n(?!\n|[ \t]*(?:[-*+•‣◦]|\d{1,3}[.)])\s)", " ", text)


# Actions

def add_text(ctx: Context, text: str, source: str = TYPED) -> list[int]:
    """Store typed or pasted facts (plain text or Markdown) after the ones there are;
    the new passages' ids. Passages stored already are not stored again, so pasting the
    same text twice adds nothing."""
    if not (text or "").strip():
        raise NoFacts("There is no text to add: type or paste what is true about your "
                      "business, e.g. prices, opening hours or policies.")
    passages = split_passages(text)
    if not passages:
        raise NoFacts("There is no fact in that text, only headings or lines. Write what "
                      "is true in sentences or a list, e.g. “Latte: £3.20”.")
    stored = store_facts.texts(ctx.store)
    return store_facts.add(ctx.store, (source or "").strip() or TYPED,
                           [p for p in _unique(passages) if p not in stored])


def add_file(ctx: Context, path: str | Path) -> tuple[str, int]:
    """Store the facts of a text, Markdown, CSV/TSV or PDF file, replacing those of an
    earlier file of the same name: (its name, the source, and passages added)."""
    path = Path(path)
    if not path.is_file():
        raise NoFacts(f"There is no file {path}.")
    kind = path.suffix.lower()
    if kind not in KINDS:
        raise NoFacts(f"{path.name}: tunechat takes facts from {KINDS_LINE}. Save it as "
                      "one of those, or paste its text into the box.")
    text = _pdf_text(path) if kind == PDF else _read_text(path)
    passages = _unique(split_passages(text, path.name))
    if not passages:
        what = "rows" if kind in SHEETS else "text"
        raise NoFacts(f"{path.name} has no {what} to take facts from: it is empty.")
    return path.name, len(store_facts.add(ctx.store, path.name, passages, replace=True))


def _unique(passages: list[str]) -> list[str]:
    return list(dict.fromkeys(passages))


def list_facts(ctx: Context) -> list[Fact]:
    """Every fact, in the order they were added."""
    return [Fact(row["id"], row["source"], row["text"])
            for row in store_facts.all_facts(ctx.store)]


def delete(ctx: Context, fact_id: int) -> None:
    if not store_facts.delete(ctx.store, int(fact_id)):
        raise UnknownFact(f"There is no fact #{fact_id}: it was deleted already, or never "
                          "added.")


def delete_source(ctx: Context, source: str) -> int:
    """Delete every fact from `source` (a file's name, or "typed"); how many (0 when
    there were none)."""
    return store_facts.delete_source(ctx.store, source)


def n_facts(n: int) -> str:
    """"1 fact", "12 facts": as every edge says it."""
    return f"{n} fact" if n == 1 else f"{n} facts"


def count(ctx: Context) -> int:
    return store_facts.count(ctx.store)


# Retrieval

def relevant(ctx: Context, messages: list[dict], k: int = FACTS_K) -> list[Fact]:
    """Up to k facts most like the request's last user message, most alike first; none
    that shares no word with it."""
    query = fewshot.query_of(messages)
    if k <= 0 or not query.strip():
        return []
    return _live_index(ctx).search(query, k)


class _Index:
    """The facts as they were at one facts_version, indexed for BM25."""

    def __init__(self, version: int, facts: list[Fact]):
        self.version, self.facts = version, facts
        self._texts = fewshot.TextIndex([fact.text for fact in facts])

    def search(self, query: str, k: int) -> list[Fact]:
        return [self.facts[i] for i in self._texts.search(query, k)]


_indexes: dict[Path, _Index] = {}
_indexes_lock = threading.Lock()


def _live_index(ctx: Context) -> _Index:
    """The index of the data home's facts, built again whenever they changed. The
    version is read before the facts: a write in between only costs a rebuild."""
    version = store_facts.facts_version(ctx.store)
    with _indexes_lock:
        cached = _indexes.get(ctx.store.home)
        if cached is None or cached.version != version:
            cached = _indexes[ctx.store.home] = _Index(version, list_facts(ctx))
        return cached
