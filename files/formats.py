"""Read and write examples: OpenAI chat JSONL, alpaca and sharegpt (with their
preference and desirability variants), TRL's prompt-completion, preference and unpaired
forms (standard and conversational), and OpenAI's preference fine-tuning JSONL.

A row becomes an Item: a training example, a preference pair (stored as a correction:
the preferred answer is the example, the other its rejected side) or a thumbs-down.
Reading is all or nothing by default: the first bad row stops the import with its place
and field; with skip_bad the good rows are imported and each bad one is reported.
Duplicates, inside the file or of stored examples, are skipped and counted. Rows come
from any file files/sources.py reads (JSON, spreadsheets, Parquet, datasets folders).

Each format is one entry of FORMATS (see the end of this file): a name, how to tell a
record of it, a reader (record -> messages or Item) and a writer (example -> record). To
add a format, write its pair of functions and add its entry; the command line's --format
choices, the Examples tab's lists and auto-detection all read FORMATS. Records are
written as JSONL, or for "csv" as spreadsheet rows (question, answer, system, and history
when a conversation is longer), which any spreadsheet program opens and the import reads
back."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from core.errors import UserError
from core.paths import write_atomically
from files.sources import (
    FORMULA_STARTS,
    HISTORY_COLUMN,
    MAX_JSON_BYTES,
    SourceError,
    rows_of,
)
from storage.examples import (
    Example,
    InvalidExample,
    Item,
    check_text,
    validate_messages,
)

MAX_IMPORT_BYTES = MAX_JSON_BYTES
"""The web app's upload limit. `tunechat import` reads JSONL, spreadsheets, Parquet and
datasets folders of any size, in bounded memory."""
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant", "model": "assistant"}
SHAREGPT_NAMES = {"system": "system", "user": "human", "assistant": "gpt"}
MEDIA_FIELDS = ("images", "image", "audios", "audio", "videos", "video")
TOOL_FIELDS = ("tools", "functions", "tool_calls")


class FormatError(UserError):
    """The file cannot be imported; the message names the line (or item) and field."""


@dataclass(frozen=True)
class BadRow:
    where: str
    field: str
    """The field, or for a spreadsheet row the column as the file's header names it."""
    reason: str
    column: bool = False
    """Whether `field` is a spreadsheet's column."""

    def __str__(self) -> str:
        if not self.field:
            return f"{self.where}: {self.reason}"
        name = f"column '{self.field}'" if self.column else f"field {self.field}"
        return f"{self.where}, {name}: {self.reason}"


class BadRowError(FormatError):
    """One row cannot be imported; `row` says where, in which field and why."""

    def __init__(self, row: BadRow):
        super().__init__(f"{row}.")
        self.row = row


@dataclass
class Read:
    """What a file holds: the good rows (with their place) and the bad ones."""

    items: list[tuple[str, Item]] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)
    fmt: str = ""
    """The format read (detected from the first row when asked for auto)."""


class Rows:
    """A file's rows as Items, read lazily (one pass, bounded memory): iterate for
    (place, Item). A bad row raises FormatError naming it, unless `skip_bad`, where it
    is recorded in `bad` and the reading goes on; `fmt` is the format read (detected
    from the first row when asked for auto)."""

    def __init__(self, path: str | os.PathLike, fmt: str = "auto", mapping: dict | None = None,
                 skip_bad: bool = False, keep_first: int = 0):
        if fmt != "auto" and fmt not in import_formats():
            raise FormatError(f"Unknown format {fmt!r}; choose auto, "
                              f"{', '.join(import_formats())}.")
        self.path, self.asked, self.mapping, self.skip_bad = Path(path), fmt, mapping, skip_bad
        self.fmt = ""
        self.bad: list[BadRow] = []
        self.keep_first = keep_first
        self.first: list[tuple[str, Item]] = []
        """The first `keep_first` good rows, kept as they go by (for a preview)."""

    def __iter__(self) -> Iterator[tuple[str, Item]]:
        good = 0
        try:
            for where, record in rows_of(self.path, self.mapping):
                try:
                    row_format = (detect_format(record, where) if self.asked == "auto"
                                  else self.asked)
                    self.fmt = self.fmt or row_format
                    item = _convert(record, row_format, where)
                except BadRowError as error:
                    if not self.skip_bad:  # the file's name: the message may travel alone
                        raise FormatError(f"{self.path.name}, {error}") from None
                    self.bad.append(error.row)
                    continue
                good += 1
                if good <= self.keep_first:
                    self.first.append((where, item))
                yield where, item
        except SourceError as error:
            raise FormatError(str(error)) from None
        if not good and not self.bad:
            raise FormatError(f"{self.path.name} holds no rows: no examples to import.")


def read_file(path: str | os.PathLike, fmt: str = "auto", mapping: dict | None = None,
              skip_bad: bool = False) -> Read:
    """Every row of a file as an Item, in memory (see Rows for big files)."""
    rows = Rows(path, fmt, mapping, skip_bad)
    items = list(rows)
    return Read(items, rows.bad, rows.fmt)


def read_examples(path: str | os.PathLike, fmt: str = "auto") -> list[list[dict]]:
    """The messages of every row (all or nothing), whatever kind of item each is."""
    return [item.messages for _, item in read_file(path, fmt).items]


def detect_format(record, where: str = "line 1") -> str:
    if isinstance(record, dict):
        for fmt in FORMATS.values():
            if fmt.read is not None and fmt.detect(record):
                return fmt.name
    raise BadRowError(BadRow(where, "", "cannot tell the format: expected an object with "
                             "'messages' (OpenAI), 'conversations' (sharegpt), 'instruction' "
                             "and 'output' (alpaca), 'prompt' and 'completion', 'chosen' and "
                             "'rejected', or 'preferred_output' (OpenAI preference)"))


def _convert(record, fmt: str, where: str) -> Item:
    if not isinstance(record, dict):
        raise BadRowError(BadRow(where, "", "expected a JSON object, got "
                                            f"{type(record).__name__}"))
    format_ = FORMATS[fmt]
    if not format_.detect(record):
        actual = _guess(record)
        hint = f". It looks like {actual}; choose that format or auto" if actual else ""
        raise BadRowError(BadRow(where, "", f"missing field '{format_.required}' for the "
                                            f"{fmt} format{hint}"))
    try:
        _refuse_what_is_not_text(record)
        return _read(format_, record)
    except InvalidExample as error:
        raise BadRowError(_bad_field(record, where, error)) from None


def _bad_field(record: dict, where: str, error: InvalidExample) -> BadRow:
    """The bad field, named as the file names it: a spreadsheet's column by its header."""
    columns = getattr(record, "columns", {})  # a SheetRow (files/sources.py)
    if error.field in columns:
        return BadRow(where, columns[error.field], error.problem, column=True)
    return BadRow(where, error.field, error.problem)


def _read(format_: Format, record: dict) -> Item:
    """A record as an Item, whether its reader gives messages (an example) or an Item."""
    assert format_.read is not None, f"{format_.name} is not an import format"
    read = format_.read(record)
    return read if isinstance(read, Item) else Item(read)


def _guess(record) -> str | None:
    try:
        return detect_format(record)
    except BadRowError:
        return None


def _refuse_what_is_not_text(record: dict) -> None:
    """Images, audio and tool calls cannot be trained on by a text chat model: such a row
    is refused whole, never imported without them."""
    for name in MEDIA_FIELDS:
        if record.get(name):
            raise InvalidExample(name, f"this row carries {name}; tunechat trains text-only "
                                       "chat models, so it is refused rather than imported "
                                       "without them")
    for name in TOOL_FIELDS:
        if record.get(name):
            raise InvalidExample(name, "this row defines tools or tool calls, which tunechat "
                                       "does not train; remove them or the row")


def _from_openai(record: dict) -> list[dict]:
    messages = record["messages"]
    if isinstance(messages, list):
        messages = [_flatten_parts(m, i) for i, m in enumerate(messages)]
    return validate_messages(messages)


def _flatten_parts(message, index: int, name: str = "messages"):
    """OpenAI content may be a list of parts; text parts are joined, others refused."""
    if not isinstance(message, dict):
        return message
    if message.get("tool_calls") or message.get("role") in ("tool", "function"):
        raise InvalidExample(f"{name}[{index}]", "tool calls and tool results are not "
                                                 "trained on; remove them or the row")
    if not isinstance(message.get("content"), list):
        return message
    parts = message["content"]
    if not all(isinstance(p, dict) and p.get("type") == "text" for p in parts):
        kinds = sorted({str(p.get("type")) for p in parts if isinstance(p, dict)} - {"text"})
        raise InvalidExample(f"{name}[{index}].content",
                             f"only text parts can be imported, not {', '.join(kinds) or 'those'}")
    return {**message, "content": "".join(str(p.get("text", "")) for p in parts)}


def _sharegpt_turns(turns, name: str = "conversations") -> list[dict]:
    if not isinstance(turns, list):
        raise InvalidExample(name, "must be a list of {from, value} turns")
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):  # e.g. [[]]: a bad row, told as one
            raise InvalidExample(f"{name}[{i}]", "must be a {from, value} turn")
        sender = turn.get("from")
        if sender in ("function_call", "observation", "tool"):
            raise InvalidExample(f"{name}[{i}].from", "tool calls and tool results are not "
                                                      "trained on; remove them or the row")
        if sender not in SHAREGPT_ROLES:
            raise InvalidExample(f"{name}[{i}].from",
                                 f"must be system, human or gpt; got {sender!r}")
        messages.append({"role": SHAREGPT_ROLES[sender], "content": turn.get("value")})
    return messages


def _from_sharegpt(record: dict) -> list[dict]:
    messages = _sharegpt_turns(record["conversations"])
    if "system" in record and record["system"]:
        messages.insert(0, {"role": "system", "content": record["system"]})
    return validate_messages(messages, "conversations")


def _alpaca_prompt(record: dict) -> list[dict]:
    """An alpaca record's conversation up to its answer: system, history, instruction."""
    instruction = check_text(record.get("instruction"), "instruction")
    extra = record.get("input") or ""
    if not isinstance(extra, str):
        raise InvalidExample("input", "must be text")
    messages = []
    if record.get("system"):
        messages.append({"role": "system", "content": check_text(record["system"], "system")})
    history = record.get("history") or []
    if not isinstance(history, list):
        raise InvalidExample("history", "must be a list of [question, answer] pairs")
    for i, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise InvalidExample(f"history[{i}]", "must be a [question, answer] pair")
        messages += [{"role": "user", "content": check_text(pair[0], f"history[{i}][0]")},
                     {"role": "assistant", "content": check_text(pair[1], f"history[{i}][1]")}]
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    return messages + [{"role": "user", "content": prompt}]


def _from_alpaca(record: dict) -> list[dict]:
    output = check_text(record.get("output"), "output")
    return validate_messages(_alpaca_prompt(record) + [{"role": "assistant",
                                                        "content": output}])


def _prompt_of(record: dict, name: str = "prompt") -> list[dict]:
    """TRL's prompt: text (standard) or a list of messages (conversational)."""
    prompt = record.get(name)
    if isinstance(prompt, str):
        return [{"role": "user", "content": check_text(prompt, name)}]
    if isinstance(prompt, list):
        return [_flatten_parts(m, i, name) for i, m in enumerate(prompt)]
    raise InvalidExample(name, "is missing" if prompt is None else
                         "must be text or a list of messages")


def _answer_of(record: dict, name: str) -> str:
    """An answer: text, one assistant message, or a list ending with one."""
    value = record.get(name)
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list):
        if not value or not isinstance(value[-1], dict):
            raise InvalidExample(name, "must be text or a list of messages")
        last = _flatten_parts(value[-1], len(value) - 1, name)
        if last.get("role", "assistant") != "assistant" and "from" not in last:
            raise InvalidExample(name, "must end with the assistant's message")
        value = last.get("content", last.get("value"))
    return check_text(value, name)


def _from_prompt_completion(record: dict) -> list[dict]:
    return validate_messages(_with_system(record, _prompt_of(record)) + [
        {"role": "assistant", "content": _answer_of(record, "completion")}])


def _with_system(record: dict, messages: list[dict]) -> list[dict]:
    system = record.get("system")
    if system and messages and messages[0].get("role") != "system":
        return [{"role": "system", "content": check_text(system, "system")}] + messages
    return messages


def _from_preference(record: dict) -> Item:
    """A pair in TRL's layouts (explicit or implicit prompt, standard or
    conversational), or sharegpt/alpaca with chosen and rejected."""
    if "conversations" in record:
        prompt = _sharegpt_turns(record["conversations"])
        if record.get("system"):
            prompt.insert(0, {"role": "system", "content": record["system"]})
    elif "instruction" in record:
        prompt = _alpaca_prompt(record)
    elif "prompt" in record:
        prompt = _with_system(record, _prompt_of(record))
    else:
        prompt = _implicit_prompt(record)
    chosen, rejected = _answer_of(record, "chosen"), _answer_of(record, "rejected")
    if chosen == rejected:
        raise InvalidExample("rejected", "is the same as chosen: no preference to learn")
    messages = validate_messages(prompt + [{"role": "assistant", "content": chosen}])
    return Item(messages, "corrected", rejected)


def _implicit_prompt(record: dict) -> list[dict]:
    """TRL's implicit prompt: chosen and rejected are whole conversations that share
    everything but the last answer."""
    chosen, rejected = record.get("chosen"), record.get("rejected")
    if not (isinstance(chosen, list) and isinstance(rejected, list)):
        raise InvalidExample("prompt", "is missing: with plain-text chosen and rejected the "
                                       "prompt cannot be told from the answer")
    if chosen[:-1] != rejected[:-1] or len(chosen) < 2:
        raise InvalidExample("chosen", "and rejected must share every message but the last "
                                       "(the implicit prompt)")
    return [_flatten_parts(m, i, "chosen") for i, m in enumerate(chosen[:-1])]


def _from_openai_preference(record: dict) -> Item:
    given = record.get("input")
    if not isinstance(given, dict) or not isinstance(given.get("messages"), list):
        raise InvalidExample("input.messages", "must be a list of messages")
    _refuse_what_is_not_text(given)
    prompt = [_flatten_parts(m, i, "input.messages") for i, m in enumerate(given["messages"])]
    chosen = _answer_of(record, "preferred_output")
    rejected = _answer_of(record, "non_preferred_output")
    messages = validate_messages(prompt + [{"role": "assistant", "content": chosen}],
                                 "input.messages")
    return Item(messages, "corrected", rejected)


def _from_unpaired(record: dict) -> Item:
    """TRL's unpaired preference (prompt, completion, label) or alpaca/sharegpt with a
    desirability tag (kto_tag): desirable rows are examples, the others thumbs-down."""
    tag = "label" if "label" in record else "kto_tag"
    desirable = record.get(tag)
    if not isinstance(desirable, bool):
        raise InvalidExample(tag, f"must be true or false, not {desirable!r}")
    base = {k: v for k, v in record.items() if k not in ("label", "kto_tag")}
    fmt = _guess(base)
    if fmt is None:
        raise InvalidExample("completion", "is missing: a labelled row needs prompt and "
                                           "completion (or an alpaca or sharegpt row)")
    messages = _read(FORMATS[fmt], base).messages
    return Item(messages) if desirable else \
        Item(messages, "disliked", messages[-1]["content"])


def _refuse_plain_text(record: dict) -> list[dict]:
    raise InvalidExample("text", "is plain text for language modelling; tunechat trains on "
                                 "conversations (a prompt and its answer). Convert the rows "
                                 "to prompt and completion columns")


def _to_openai(example: Example) -> dict:
    return {"messages": example.messages}


def _to_sharegpt(example: Example) -> dict:
    return {"conversations": [{"from": SHAREGPT_NAMES[m["role"]], "value": m["content"]}
                              for m in example.messages]}


def _to_alpaca(example: Example) -> dict:
    messages = example.messages
    system = messages[0]["content"] if messages[0]["role"] == "system" else None
    turns = messages[1:] if system is not None else messages
    record = {"instruction": turns[-2]["content"], "input": "", "output": turns[-1]["content"]}
    if system is not None:
        record["system"] = system
    if len(turns) > 2:
        record["history"] = [[turns[i]["content"], turns[i + 1]["content"]]
                             for i in range(0, len(turns) - 2, 2)]
    return record


def _to_preference(example: Example) -> dict | None:
    """TRL's conversational preference form: shared prompt, chosen and rejected answers;
    only corrections and votes have both sides."""
    if not _is_pair(example):
        return None
    return {"prompt": example.messages[:-1], "chosen": [example.messages[-1]],
            "rejected": [{"role": "assistant", "content": example.rejected}]}


def _to_openai_preference(example: Example) -> dict | None:
    if not _is_pair(example):
        return None
    return {"input": {"messages": example.messages[:-1]},
            "preferred_output": [example.messages[-1]],
            "non_preferred_output": [{"role": "assistant", "content": example.rejected}]}


def _to_unpaired(example: Example) -> dict:
    """TRL's conversational unpaired form: examples desirable, thumbs-down undesirable."""
    return {"prompt": example.messages[:-1], "completion": [example.messages[-1]],
            "label": example.source != "disliked"}


def _to_prompt_completion(example: Example) -> dict:
    return {"prompt": example.messages[:-1], "completion": [example.messages[-1]]}


def _to_columns(example: Example) -> dict:
    """A spreadsheet row: the question, its answer and the system prompt, and the turns
    before them (if any) as JSON in a history column, alpaca's [[question, answer], ...]
    that the import reads back (files/sources.py reads "question" as the user's
    column)."""
    record = _to_alpaca(example)
    row = {"question": record["instruction"], "answer": record["output"],
           "system": record.get("system", "")}
    if "history" in record:
        row[HISTORY_COLUMN] = json.dumps(record["history"], ensure_ascii=False)
    return row


def _is_pair(example: Example) -> bool:
    return example.source in ("corrected", "vote") and bool(example.rejected)


@dataclass(frozen=True)
class Format:
    """One file format: how to recognise, read and write a record."""

    name: str
    label: str
    """How the Examples tab names it."""
    required: str
    """The field every record of this format has."""
    read: Callable[[dict], list[dict] | Item] | None
    """record -> validated messages (an example) or an Item; None for a format tunechat
    only writes."""
    write: Callable[[Example], dict | None] | None
    """example -> record, or None when the example has no record in this format; None
    for a format tunechat only reads."""
    unit: str = "example"
    """What one written record is, for messages ("3 pairs")."""
    signature: tuple[str, ...] = ()
    """Fields any of which tells this format in auto-detection (default: `required`)."""
    exports: tuple[str, ...] = ("kept", "corrected", "imported", "added")
    """The sources of the examples an export writes."""
    suffix: str = "jsonl"
    """How its records are written: jsonl (one JSON object a line) or csv (spreadsheet
    rows, read back as any spreadsheet is: files/sources.py)."""

    def detect(self, record: dict) -> bool:
        return any(field in record for field in self.signature or (self.required,))


PAIRS = ("kept", "corrected", "imported", "added", "vote")

# In the order auto-detection tries them: the more specific layouts first.
FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("openai-preference", "OpenAI preference fine-tuning JSONL", "preferred_output",
           _from_openai_preference, _to_openai_preference, "pair", exports=PAIRS),
    Format("unpaired", "unpaired preference (KTO: prompt, completion, label)", "label",
           _from_unpaired, _to_unpaired, "row", signature=("label", "kto_tag"),
           exports=("kept", "corrected", "imported", "added", "disliked")),
    Format("preference", "preference pairs (DPO: prompt, chosen, rejected)", "chosen",
           _from_preference, _to_preference, "pair", exports=PAIRS),
    Format("openai", "OpenAI chat JSONL", "messages", _from_openai, _to_openai),
    Format("sharegpt", "sharegpt", "conversations", _from_sharegpt, _to_sharegpt),
    Format("alpaca", "alpaca", "instruction", _from_alpaca, _to_alpaca,
           signature=("instruction", "output")),
    Format("prompt-completion", "prompt-completion (TRL)", "completion",
           _from_prompt_completion, _to_prompt_completion),
    Format("text", "plain text (refused)", "text", _refuse_plain_text, None),
    Format("csv", "spreadsheet (CSV: question, answer, system)", "question", None,
           _to_columns, suffix="csv"),
)}


def import_formats() -> list[str]:
    return [name for name, fmt in FORMATS.items() if fmt.read is not None and fmt.write]


def export_formats() -> list[str]:
    return [name for name, fmt in FORMATS.items() if fmt.write is not None]


def write_jsonl(path: str | os.PathLike, records: list[dict]) -> None:
    """One JSON record a line, written atomically."""
    def write(out: TextIO) -> None:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")

    _write_atomically(path, write)


CSV_COLUMNS = ("question", "answer", "system")
"""A CSV export's headers, in words a spreadsheet user reads (then history, if any)."""


def write_csv(path: str | os.PathLike, records: list[dict]) -> None:
    """Spreadsheet rows under a header; a history column only when a row has one. With a
    UTF-8 byte-order mark: without it Excel reads UTF-8 as an older encoding and garbles
    every accent and emoji (the import ignores the mark)."""
    columns = list(CSV_COLUMNS) + [HISTORY_COLUMN] * any(HISTORY_COLUMN in r for r in records)

    def write(out: TextIO) -> None:
        writer = csv.DictWriter(out, columns, restval="")
        writer.writeheader()
        writer.writerows({key: guard_cell(value) for key, value in record.items()}
                         for record in records)

    _write_atomically(path, write, encoding="utf-8-sig", newline="")


def guard_cell(text: str) -> str:
    """A cell a spreadsheet would run as a formula ("=...", "+1 555...", "- Mats free")
    starts with an apostrophe instead, as spreadsheets mark text; the import takes it
    off again (files/sources.py)."""
    return "'" + text if text[:1] and text[0] in FORMULA_STARTS else text


WRITERS = {"jsonl": write_jsonl, "csv": write_csv}
"""How each kind of file (Format.suffix) is written."""


def _write_atomically(path: str | os.PathLike, write: Callable[[TextIO], None],
                      encoding: str = "utf-8", newline: str = "\n") -> None:
    """`write` the text file at `path`: a crash leaves the old file or the new one."""
    def write_text(scratch: Path) -> None:
        with scratch.open("w", encoding=encoding, newline=newline) as out:
            write(out)

    write_atomically(Path(path), write_text)


@dataclass(frozen=True)
class Imported:
    """What an import stored and what it skipped."""

    added: dict[str, int]
    """Rows stored, by kind: example, pair, thumbs-down."""
    repeated: int
    """Rows that repeat an earlier row of the file exactly (skipped)."""
    present: int
    """Rows already stored (skipped)."""
    bad: list[BadRow]
    fmt: str

    @property
    def total_added(self) -> int:
        return sum(self.added.values())


def import_file(store, path: str | os.PathLike, fmt: str = "auto", test_only: bool = False,
                mapping: dict | None = None, skip_bad: bool = False,
                dry_run: bool = False, progress: Callable[[int], None] | None = None
                ) -> Imported:
    """Import a file's rows: every one, or with `skip_bad` the good ones (the bad are
    listed in the result). Duplicates are skipped and counted. The file is read once, in
    bounded memory, whatever its size; `dry_run` stores nothing; `progress(rows read)`
    is called now and then."""
    return _import(store, Rows(path, fmt, mapping, skip_bad), test_only, dry_run, progress)


def _import(store, rows: Rows, test_only: bool = False, dry_run: bool = False,
            progress: Callable[[int], None] | None = None) -> Imported:
    from storage.examples import add_items

    try:
        added, repeated, present = add_items(store, rows, test_only=test_only,
                                             dry_run=dry_run, progress=progress)
    except InvalidExample as error:
        raise FormatError(f"{error.field}: {error.problem}.") from None
    return Imported(added, repeated, present, rows.bad, rows.fmt)


@dataclass(frozen=True)
class Preview:
    """What importing a file would do, before anything is stored."""

    would: Imported
    first: list[tuple[str, Item]]
    """The first rows as they would be stored."""
    columns: dict[str, str] | None
    """Spreadsheet columns and the role each is read as; None for other files."""


def preview(store, path: str | os.PathLike, fmt: str = "auto", mapping: dict | None = None,
            rows: int = 5) -> Preview:
    from files.sources import column_roles

    read = Rows(path, fmt, mapping, skip_bad=True, keep_first=rows)  # one pass: counts
    would = _import(store, read, dry_run=True)                       # and the first rows
    try:
        columns = column_roles(Path(path), mapping)
    except SourceError as error:
        raise FormatError(str(error)) from None
    return Preview(would, read.first, columns)


def write_bad_rows(bad: list[BadRow], path: Path) -> Path:
    """The skipped rows as CSV (where, field, reason), for the user to fix and import."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["where", "field", "reason"])
        writer.writerows([row.where, row.field, row.reason] for row in bad)
    return path


def exported_sources(fmt: str) -> tuple[str, ...]:
    """The sources of the examples an export in `fmt` writes; FormatError if unknown."""
    if fmt not in FORMATS or fmt not in export_formats():
        raise FormatError(f"Unknown format {fmt!r}; choose {', '.join(export_formats())}.")
    return FORMATS[fmt].exports


def export_examples(examples: list[Example], path: str | os.PathLike, fmt: str = "openai") -> int:
    """Write `examples` in format `fmt` (atomically); returns the records written."""
    write = FORMATS[fmt].write if fmt in FORMATS else None
    if write is None:
        raise FormatError(f"Unknown format {fmt!r}; choose {', '.join(export_formats())}.")
    records = [r for r in (write(e) for e in examples) if r is not None]
    try:
        WRITERS[FORMATS[fmt].suffix](path, records)
    except OSError as error:
        raise FormatError(f"Cannot write {path}: {error.strerror or error}. Check that the "
                          "folder exists and is writable.") from None
    return len(records)


def export_file(store, path: str | os.PathLike, fmt: str = "openai") -> int:
    """Write the examples the format holds: training examples, the corrections and votes
    as pairs for the preference formats, and thumbs-down too for "unpaired"."""
    from storage.examples import list_examples

    examples = list(reversed(list_examples(store, sources=exported_sources(fmt))))
    return export_examples(examples, path, fmt)
