"""Read and write examples as OpenAI chat JSONL, alpaca and sharegpt (and preference
pairs for DPO). Reading is all or nothing: the first bad row stops the import with its
line (or index) and field; nothing is written until every row is good.

Each format is one entry of FORMATS (see the end of this file): a name, how to tell a
record of it, a reader (record -> messages) and a writer (example -> record). To add a
format, write its pair of functions and add its entry; the command line's --format
choices, the Examples tab's lists and auto-detection all read FORMATS."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError
from storage.examples import Example, InvalidExample, check_text, validate_messages

MAX_IMPORT_BYTES = 25 * 1024 * 1024
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant", "model": "assistant"}
SHAREGPT_NAMES = {"system": "system", "user": "human", "assistant": "gpt"}


class FormatError(UserError):
    """The file cannot be imported; the message names the line (or item) and field."""


def read_examples(path: str | os.PathLike, fmt: str = "auto") -> list[list[dict]]:
    """Parse a file into validated message lists, or raise FormatError for the first bad
    row in file order."""
    if fmt != "auto" and fmt not in import_formats():
        raise FormatError(f"Unknown format {fmt!r}; choose auto, {', '.join(import_formats())}.")
    items = []
    for where, record in _records(Path(path)):
        if fmt == "auto":
            fmt = detect_format(record, where)
        items.append(_convert(record, fmt, where))
    return items


def _records(path: Path):
    """Yield (place, parsed JSON) for each example: a JSON list, or one object a line."""
    try:
        size = path.stat().st_size
    except OSError as error:
        raise FormatError(f"Cannot read {path}: {error.strerror or error}.") from None
    if size > MAX_IMPORT_BYTES:
        raise FormatError(f"{path.name} is {size / 2**20:.1f} MB; imports are limited to "
                          f"{MAX_IMPORT_BYTES // 2**20} MB. Split the file and import the parts.")
    text = _decode(path.read_bytes(), path.name)
    if not text.strip():
        raise FormatError(f"{path.name} is empty: no examples to import.")
    if text.lstrip().startswith("["):
        items = _parse_json(text, "the file")
        if not isinstance(items, list):
            raise FormatError("The file is not a JSON list of examples.")
        yield from ((f"item {i + 1}", item) for i, item in enumerate(items))
        return
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            yield f"line {number}", _parse_json(line, f"line {number}")


def _decode(data: bytes, name: str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FormatError(f"{name} is UTF-16 text (it starts with a UTF-16 byte-order mark); "
                          "save it as UTF-8 and import again.")
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark carries no text
    if b"\x00" in data:
        line = data[:data.index(b"\x00")].count(b"\n") + 1
        raise FormatError(f"line {line}: contains a NUL byte; this is not a text file.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise FormatError(f"line {line}: not valid UTF-8 (byte {data[error.start]:#04x}); "
                          "save the file as UTF-8.") from None


def _parse_json(text: str, where: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        place = f"line {error.lineno}" if where == "the file" else where
        raise FormatError(f"{place}: not valid JSON ({error.msg} at column {error.colno}). "
                          "Is the file cut short?") from None
    except RecursionError:  # json recurses once per bracket
        raise FormatError(f"{where}: JSON nested too deeply to be an example.") from None


def detect_format(record, where: str = "line 1") -> str:
    if isinstance(record, dict):
        for fmt in FORMATS.values():
            if fmt.read is not None and fmt.detect(record):
                return fmt.name
    raise FormatError(f"{where}: cannot tell the format: expected an object with "
                      "'messages' (OpenAI), 'conversations' (sharegpt) or 'instruction' and "
                      "'output' (alpaca).")


def _convert(record, fmt: str, where: str) -> list[dict]:
    if not isinstance(record, dict):
        raise FormatError(f"{where}: expected a JSON object, got {type(record).__name__}.")
    format_ = FORMATS[fmt]
    assert format_.read is not None, f"{fmt} is not an import format"
    if format_.required not in record:
        actual = _guess(record)
        hint = f" It looks like {actual}; choose that format or auto." if actual else ""
        raise FormatError(f"{where}: missing field '{format_.required}' for the {fmt} "
                          f"format.{hint}")
    try:
        return format_.read(record)
    except InvalidExample as error:
        raise FormatError(f"{where}, field {error.field}: {error.problem}.") from None


def _guess(record) -> str | None:
    try:
        return detect_format(record)
    except FormatError:
        return None


def _from_openai(record: dict) -> list[dict]:
    messages = record["messages"]
    if isinstance(messages, list):
        messages = [_flatten_parts(m, i) for i, m in enumerate(messages)]
    return validate_messages(messages)


def _flatten_parts(message, index: int):
    """OpenAI content may be a list of parts; text parts are joined, others refused."""
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        return message
    parts = message["content"]
    if not all(isinstance(p, dict) and p.get("type") == "text" for p in parts):
        raise InvalidExample(f"messages[{index}].content", "only text parts can be imported")
    return {**message, "content": "".join(str(p.get("text", "")) for p in parts)}


def _from_sharegpt(record: dict) -> list[dict]:
    turns = record["conversations"]
    if not isinstance(turns, list):
        raise InvalidExample("conversations", "must be a list of {from, value} turns")
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or turn.get("from") not in SHAREGPT_ROLES:
            got = turn.get("from") if isinstance(turn, dict) else turn
            raise InvalidExample(f"conversations[{i}].from",
                                 f"must be system, human or gpt; got {got!r}")
        messages.append({"role": SHAREGPT_ROLES[turn["from"]], "content": turn.get("value")})
    if "system" in record and record["system"]:
        messages.insert(0, {"role": "system", "content": record["system"]})
    return validate_messages(messages, "conversations")


def _from_alpaca(record: dict) -> list[dict]:
    instruction = check_text(record.get("instruction"), "instruction")
    extra = record.get("input") or ""
    if not isinstance(extra, str):
        raise InvalidExample("input", "must be text")
    output = check_text(record.get("output"), "output")
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
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    return validate_messages(messages)


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
    only corrections have both sides."""
    if example.source != "corrected" or not example.rejected:
        return None
    return {"prompt": example.messages[:-1], "chosen": [example.messages[-1]],
            "rejected": [{"role": "assistant", "content": example.rejected}]}


@dataclass(frozen=True)
class Format:
    """One file format: how to recognise, read and write a record."""

    name: str
    label: str
    """How the Examples tab names it."""
    required: str
    """The field every record of this format has."""
    read: Callable[[dict], list[dict]] | None
    """record -> validated messages; None for a format tunechat only writes."""
    write: Callable[[Example], dict | None]
    """example -> record, or None when the example has no record in this format."""
    unit: str = "example"
    """What one written record is, for messages ("3 pairs")."""
    signature: tuple[str, ...] = ()
    """Fields any of which tells this format in auto-detection (default: `required`)."""

    def detect(self, record: dict) -> bool:
        return any(field in record for field in self.signature or (self.required,))


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("openai", "OpenAI chat JSONL", "messages", _from_openai, _to_openai),
    Format("sharegpt", "sharegpt", "conversations", _from_sharegpt, _to_sharegpt),
    Format("alpaca", "alpaca", "instruction", _from_alpaca, _to_alpaca,
           signature=("instruction", "output")),
    Format("preference", "preference pairs (DPO)", "chosen", None, _to_preference, "pair"),
)}


def import_formats() -> list[str]:
    return [name for name, fmt in FORMATS.items() if fmt.read is not None]


def export_formats() -> list[str]:
    return list(FORMATS)


def write_jsonl(path: str | os.PathLike, records: list[dict]) -> None:
    """Write atomically: a crash leaves the old file or the new one, never half of one."""
    path = Path(path)
    handle, scratch = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


def import_file(store, path: str | os.PathLike, fmt: str = "auto",
                test_only: bool = False) -> tuple[int, int]:
    """Import every example of a file or none: (added, already present)."""
    from storage.examples import add_many

    items = read_examples(path, fmt)
    try:
        return add_many(store, items, test_only=test_only)
    except InvalidExample as error:  # an exact repeat inside the file
        raise FormatError(f"{error.field}: {error.problem}.") from None


def export_examples(examples: list[Example], path: str | os.PathLike, fmt: str = "openai") -> int:
    """Write `examples` in format `fmt` (atomically); returns the records written."""
    if fmt not in FORMATS:
        raise FormatError(f"Unknown format {fmt!r}; choose {', '.join(export_formats())}.")
    records = [r for r in (FORMATS[fmt].write(e) for e in examples) if r is not None]
    try:
        write_jsonl(path, records)
    except OSError as error:
        raise FormatError(f"Cannot write {path}: {error.strerror or error}. Check that the "
                          "folder exists and is writable.") from None
    return len(records)


def export_file(store, path: str | os.PathLike, fmt: str = "openai") -> int:
    """Write the trainable examples (or, for "preference", the corrections as pairs)."""
    from storage.examples import TRAINABLE, list_examples

    examples = list(reversed(list_examples(store, sources=TRAINABLE)))  # oldest first
    return export_examples(examples, path, fmt)
