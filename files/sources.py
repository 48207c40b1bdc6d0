"""Where imported rows come from: JSON and JSONL files, spreadsheets (CSV, TSV, XLSX),
Parquet, and Hugging Face datasets on disk. Each yields (place, record) pairs, the place
as a user finds it again ("line 3", "item 2", "row 5"), the record a dict of fields.

Spreadsheet and Parquet rows are read with pandas and pyarrow (installed with
`datasets`), datasets folders with `datasets`; JSON is parsed here, line by line, so a
bad line is named. Spreadsheet columns that do not name a format's fields are matched
to roles by common header names, or by an explicit mapping ("question=user,
answer=assistant"), and become alpaca-like records.

Whatever goes wrong is said in the terms of the person who made the file: its name, the
row as a spreadsheet program numbers it, the column as its header names it (SheetRow),
and what the file really is when its name says otherwise (an Excel workbook saved as
.csv)."""

from __future__ import annotations

import json
import math
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

from core.errors import UserError

MAX_JSON_BYTES = 25 * 1024 * 1024
"""A JSON list is read whole; a larger one is refused with how to convert it (JSONL,
Parquet and spreadsheets are read in parts at any size)."""
UTF8_BOM = b"\xef\xbb\xbf"
SPREADSHEETS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
EXCEL = (".xlsx", ".xlsm")
ROLE_HEADERS = {
    "system": ("system", "system_prompt"),
    "user": ("instruction", "prompt", "question", "input", "query", "user", "human"),
    "assistant": ("output", "completion", "answer", "response", "assistant", "gpt", "reply"),
}
"""Header names (case and spacing ignored) matched to each role, first match wins."""
ROLES = tuple(ROLE_HEADERS)
LABEL_COLUMNS = ("label", "kto_tag")
"""Columns of desirability tags, read as true or false."""
HISTORY_COLUMN = "history"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet read a cell as a formula (OWASP's list for CSV exports)."""
"""A spreadsheet column of the turns before the question, as JSON [[question, answer],
...]: how a CSV export carries a longer conversation, read back on import."""
ROLE_FIELDS = {"user": "instruction", "assistant": "output", "system": "system"}
"""The alpaca field each role's column becomes (see as_conversation)."""
FORMAT_LAYOUT = {"messages", "conversations", "chosen", "completion", "preferred_output",
                 "text", "label"}
"""Columns that a format reads as they are (with instruction and output together)."""
TEXT_KINDS = {".csv": "CSV text", ".tsv": "TSV text", ".tab": "TSV text"}


class SourceError(UserError):
    """The file cannot be read as rows; the message says where and how to fix it."""


class SheetRow(dict):
    """A spreadsheet (or Parquet, or datasets) row as a format's record, knowing which of
    the file's columns each field came from, so that a bad row names the column as the
    file's header does ("answer"), not the field it became ("output")."""

    def __init__(self, record: dict, columns: dict[str, str]):
        super().__init__(record)
        self.columns = columns
        """field -> the file's column"""


Rows = Iterator[tuple[str, object]]


def rows_of(path: Path, mapping: dict[str, str] | None = None) -> Rows:
    """(place, record) for every row of the file or datasets folder at `path`."""
    if path.is_dir():
        yield from _dataset_rows(path, mapping)
        return
    if not path.exists():
        raise SourceError(f"Cannot read {path}: no such file.")
    suffix = path.suffix.lower()
    if suffix not in EXCEL and suffix != ".parquet":
        _refuse_binary(path)
    if suffix in SPREADSHEETS or suffix in EXCEL:
        yield from _spreadsheet_rows(path, mapping)
    elif suffix == ".parquet":
        yield from _parquet_rows(path, mapping)
    else:
        if mapping:
            raise SourceError("--map applies to spreadsheets, Parquet and datasets folders; "
                              f"{path.name} is JSON, whose fields name the roles already.")
        yield from _json_rows(path)


def column_roles(path: Path, mapping: dict[str, str] | None = None) -> dict[str, str] | None:
    """For a spreadsheet or Parquet file: its columns and the role each is read as (None
    when its columns are read as a format's fields, or for other files)."""
    if not _tabular(path):
        return None
    return roles_of(_columns(path), mapping)


def _tabular(path: Path) -> bool:
    suffix = path.suffix.lower()
    return path.is_file() and (suffix in SPREADSHEETS or suffix in EXCEL or
                               suffix == ".parquet")


def _columns(path: Path) -> list[str]:
    import pandas as pd
    import pyarrow.parquet as pq

    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return list(pq.read_schema(path).names)
    if suffix in EXCEL:
        return [str(c) for c in pd.read_excel(path, nrows=0, engine="openpyxl").columns]
    return [str(c) for c in pd.read_csv(path, sep=SPREADSHEETS[suffix], nrows=0).columns]


def parse_mapping(text: str | None) -> dict[str, str] | None:
    """"question=user, answer=assistant" -> {"question": "user", "answer": "assistant"}."""
    if not text or not text.strip():
        return None
    mapping = {}
    for part in text.split(","):
        column, _, role = part.partition("=")
        column, role = column.strip(), role.strip().lower()
        if not column or role not in ROLES:
            raise SourceError(f"Cannot read the mapping {part.strip()!r}: write COLUMN=ROLE "
                              f"pairs separated by commas, each role one of "
                              f"{', '.join(ROLES)} (e.g. \"question=user,answer=assistant\").")
        mapping[column] = role
    if "user" not in mapping.values() or "assistant" not in mapping.values():
        raise SourceError("The mapping needs a user column and an assistant column.")
    return mapping


def roles_of(columns: list[str], mapping: dict[str, str] | None) -> dict[str, str] | None:
    """Which column is read as which role: the mapping (its columns checked against the
    file's), else matched by header; None when the rows are read as a format's fields."""
    roles = mapping or _roles_by_header(columns)
    missing = [column for column in roles or {} if column not in columns]
    if missing:
        raise SourceError(f"The mapping names column {missing[0]!r}, which the file does not "
                          f"have; its columns are: {', '.join(map(str, columns))}.")
    return roles


def as_conversation(record: dict, roles: dict[str, str] | None) -> SheetRow:
    """A spreadsheet-like row as an alpaca record ({"instruction", "output", "system",
    "history"}) when its columns are matched to roles (see roles_of); other rows as they
    are. Either way it remembers the column behind each field."""
    if roles is None:
        return SheetRow(record, {column: column for column in record})
    by_role = {role: _cell(record[column]) for column, role in roles.items()}
    converted = {"instruction": by_role.get("user") or "", "output": by_role.get("assistant")}
    if by_role.get("system"):
        converted["system"] = by_role["system"]
    columns = {ROLE_FIELDS[role]: column for column, role in roles.items()}
    history = next((c for c in record if _squash(c) == HISTORY_COLUMN), None)
    if history is not None and _cell(record[history]).strip():
        converted["history"] = _history(_cell(record[history]))
        columns["history"] = history
    return SheetRow(converted, columns)


def _history(text: str):
    """The history column's JSON; text that is not JSON is handed on as it is, for the
    format to refuse with the row and the column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _roles_by_header(columns: list[str]) -> dict[str, str] | None:
    """Columns matched to roles by their header; None when the row is in a layout the
    formats read as it is (messages, conversations, prompt/completion, chosen/rejected,
    instruction/output) or when no user and assistant columns are found."""
    names = {_squash(c): c for c in columns}
    if _format_layout(columns):
        return None
    roles: dict[str, str] = {}
    for role, headers in ROLE_HEADERS.items():
        found = next((names[h] for h in headers if h in names and names[h] not in roles), None)
        if found is not None:
            roles[found] = role
    return roles if {"user", "assistant"} <= set(roles.values()) else None


def _format_layout(columns: list[str]) -> bool:
    """Whether a format reads these columns as they are (see FORMAT_LAYOUT)."""
    names = {_squash(c) for c in columns}
    return bool(FORMAT_LAYOUT & names) or {"instruction", "output"} <= names


def _squash(name: object) -> str:
    """"System Prompt" -> "system_prompt"."""
    return "_".join(str(name).strip().lower().split())


def _cell(value):
    """A spreadsheet cell as text: empty cells (NaN, None) become ""; the apostrophe that
    marks a cell as text where a spreadsheet would see a formula (formats.guard_cell)
    comes off."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = value if isinstance(value, str) else str(value)
    return text[1:] if text[:1] == "'" and text[1:2] and text[1] in FORMULA_STARTS else text


def _spreadsheet_rows(path: Path, mapping: dict[str, str] | None) -> Rows:
    import pandas as pd

    try:
        if path.suffix.lower() in EXCEL:
            frames = [pd.read_excel(path, dtype=object, engine="openpyxl")]
        else:  # blank lines kept, so that rows are numbered as a spreadsheet shows them
            frames = pd.read_csv(path, sep=SPREADSHEETS[path.suffix.lower()], dtype=object,
                                 keep_default_na=False, chunksize=10_000, encoding="utf-8",
                                 skip_blank_lines=False)
        row = 2  # the header is row 1, as a spreadsheet program numbers them
        for frame in frames:
            columns = [str(c) for c in frame.columns]
            roles = _spreadsheet_roles(path, columns, mapping)
            for values in frame.itertuples(index=False, name=None):
                if any(_cell(value).strip() for value in values):  # blank rows are no data
                    record = {column: _clean(column, value)
                              for column, value in zip(columns, values)}
                    yield f"row {row}", as_conversation(record, roles)
                row += 1
    except UnicodeDecodeError:
        raise SourceError(_not_utf8(path)) from None
    except pd.errors.EmptyDataError:
        raise SourceError(f"{path.name} is empty: no rows to import.") from None
    except pd.errors.ParserError as error:
        raise SourceError(_cells_astray(path, str(error))) from None
    except (ValueError, OSError) as error:
        raise SourceError(f"Cannot read {path.name} as a spreadsheet: {error}. Save it as "
                          "“CSV UTF-8” (or XLSX) with a header row.") from None


def _spreadsheet_roles(path: Path, columns: list[str],
                       mapping: dict[str, str] | None) -> dict[str, str] | None:
    """roles_of, and when no column is found for the question or the answer, a message
    in the spreadsheet's terms instead of a format error on every row."""
    roles = roles_of(columns, mapping)
    if roles is None and not _format_layout(columns):
        example = ",".join(f"{c}={r}" for c, r in zip(columns, ("user", "assistant")))
        raise SourceError(
            f"{path.name}: cannot tell which column holds the questions and which the "
            f"answers (its columns are {', '.join(columns)}). Name them question and answer "
            f"in the first row, or say which is which, e.g. \"{example}\" (Spreadsheet "
            "columns in the Examples tab, --map on the command line).")
    return roles


def _not_utf8(path: Path) -> str:
    """Where a spreadsheet saved in an older encoding first goes wrong (only worked out
    once reading has failed)."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as error:
                return (f"{path.name} is not saved as UTF-8 text: line {number} has a byte "
                        f"({line[error.start]:#04x}) that UTF-8 does not allow, as in a "
                        "file saved as plain “CSV” by older spreadsheet programs. Save it "
                        "as “CSV UTF-8” (or as .xlsx) and import that.")
    return f"{path.name} is not saved as UTF-8 text: save it as “CSV UTF-8” and import that."


def _cells_astray(path: Path, problem: str) -> str:
    """pandas' "Expected 2 fields in line 5, saw 3" in the spreadsheet's words."""
    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", problem)
    if not found:
        return (f"Cannot read {path.name} as a spreadsheet ({problem}). Save it as “CSV "
                "UTF-8” (or XLSX) with a header row.")
    wanted, line, seen = found.groups()
    separator = "comma" if path.suffix.lower() == ".csv" else "tab"
    return (f"{path.name}, line {line}: {seen} cells where the first row names {wanted} "
            f"columns. A cell holding a {separator} or a line break must be in double "
            "quotes; a spreadsheet program adds them when it saves the file.")


def _refuse_binary(path: Path) -> None:
    """A workbook, Parquet file or archive under a text file's name (an .xlsx renamed
    .csv) is named for what it is, with the fix, instead of failing as bad text."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
            handle.seek(max(0, path.stat().st_size - 4))
            tail = handle.read(4)
    except OSError as error:
        raise SourceError(f"Cannot read {path}: {error.strerror or error}.") from None
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SourceError(f"{path.name} is UTF-16 text (it starts with a UTF-16 byte-order "
                          "mark); save it as UTF-8 and import again.")
    kind = TEXT_KINDS.get(path.suffix.lower(), "JSON text")
    what = _binary_kind(path, head, tail)
    if what is not None:
        name, fix = what
        raise SourceError(f"{path.name} looks like {name}, not {kind}: {fix}.")
    if kind != "JSON text" and b"\x00" in head:  # JSON names the line (see _decode)
        raise SourceError(f"{path.name} is not a text file (it holds NUL bytes): save it "
                          "as “CSV UTF-8” and import that.")


def _binary_kind(path: Path, head: bytes, tail: bytes) -> tuple[str, str] | None:
    """(what the file is, how to import it) from its first and last bytes; None for
    text."""
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(path)
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return ("an Excel 97-2003 workbook (.xls)", "open it in your spreadsheet program "
                "and save it as .xlsx or as “CSV UTF-8”, then import that")
    if head.startswith(b"PAR1") and tail == b"PAR1":
        return "a Parquet file", f"rename it to {path.stem}.parquet and import that"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip-compressed file", "unpack it and import the file inside"
    return None


def _zip_kind(path: Path) -> tuple[str, str]:
    """An .xlsx, .ods or .docx is a zip archive: its contents tell which."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        names = set()
    if "xl/workbook.xml" in names:
        return ("an Excel workbook", f"rename it to {path.stem}.xlsx and import that, or "
                "save it from your spreadsheet program as “CSV UTF-8”")
    if "content.xml" in names:
        return ("an OpenDocument file (.ods)", "save it from your spreadsheet program as "
                ".xlsx or as “CSV UTF-8”, then import that")
    return ("a zip archive", "unpack it and import the file inside (CSV, TSV, XLSX, "
            "JSONL, JSON or Parquet)")


def _clean(column: str, value):
    """A spreadsheet cell as the formats read it: empty -> None, numbers -> text (an
    answer "42" is text), and "true"/"false" -> a boolean in a label column only."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if _squash(column) in LABEL_COLUMNS:
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
            return value.strip().lower() in ("true", "1")
        return bool(value) if isinstance(value, (int, float)) else value
    return value if isinstance(value, str) else str(value)


def _parquet_rows(path: Path, mapping: dict[str, str] | None) -> Rows:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
        roles = roles_of(table.schema_arrow.names, mapping)
        row = 1
        for batch in table.iter_batches(batch_size=10_000):
            for record in batch.to_pylist():
                yield f"row {row}", as_conversation(record, roles)
                row += 1
    except (pa.ArrowException, OSError) as error:
        raise SourceError(f"Cannot read {path.name} as Parquet: {error}.") from None


def _dataset_rows(folder: Path, mapping: dict[str, str] | None) -> Rows:
    """A `save_to_disk` folder, or a folder of parquet/json/jsonl/csv files (with splits
    as file or folder names): the train split, else the only one."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a folder on disk needs no network
    import datasets

    try:
        if (folder / "dataset_info.json").is_file() or (folder / "dataset_dict.json").is_file():
            loaded = datasets.load_from_disk(str(folder))
        else:
            loaded = datasets.load_dataset(str(folder))
    except (FileNotFoundError, ValueError, datasets.exceptions.DatasetNotFoundError,
            datasets.exceptions.DatasetGenerationError) as error:
        raise SourceError(f"Cannot read the folder {folder.name} as a dataset: {error}. Give a "
                          "folder written by save_to_disk, or one of parquet/json/csv files."
                          ) from None
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        split = "train" if "train" in splits else splits[0] if len(splits) == 1 else None
        if split is None:
            raise SourceError(f"The dataset has the splits {', '.join(splits)} and no train "
                              "split; import one split's files.")
        loaded = loaded[split]
    roles = roles_of(list(loaded.column_names), mapping)
    for index, record in enumerate(loaded, start=1):
        yield f"row {index}", as_conversation(dict(record), roles)


def _json_rows(path: Path) -> Rows:
    """One record a line (JSONL), read line by line whatever the file's size; or a JSON
    list of records, read whole and so limited in size."""
    try:
        handle = path.open("rb")
    except OSError as error:
        raise SourceError(f"Cannot read {path}: {error.strerror or error}.") from None
    with handle:
        head = handle.read(4096)
        bom = len(UTF8_BOM) if head.startswith(UTF8_BOM) else 0
        if head[bom:].lstrip().startswith(b"["):
            yield from _json_list(path, handle)
            return
        handle.seek(bom)
        empty = True
        for number, raw in enumerate(handle, start=1):
            line = _decode(raw, number)
            if line.strip():
                empty = False
                yield f"line {number}", _parse_json(line, f"line {number}")
        if empty:
            raise SourceError(f"{path.name} is empty: no examples to import.")


def _json_list(path: Path, handle) -> Rows:
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise SourceError(f"{path.name} is a JSON list of {size / 2**20:.1f} MB; a list is read "
                          f"whole, so lists are limited to {MAX_JSON_BYTES // 2**20} MB. Write "
                          "it as JSONL (one example a line), which is read line by line at "
                          "any size, or as Parquet.")
    handle.seek(0)
    data = handle.read().removeprefix(UTF8_BOM)
    items = _parse_json(_decode(data, 1), "the file")
    if not isinstance(items, list):
        raise SourceError("The file is not a JSON list of examples.")
    yield from ((f"item {i + 1}", item) for i, item in enumerate(items))


def _decode(data: bytes, first_line: int) -> str:
    """UTF-8 bytes (a line, or a whole file starting at `first_line`) as text."""
    if b"\x00" in data:
        line = first_line + data[:data.index(b"\x00")].count(b"\n")
        raise SourceError(f"line {line}: contains a NUL byte; this is not a text file.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = first_line + data[:error.start].count(b"\n")
        raise SourceError(f"line {line}: not valid UTF-8 (byte {data[error.start]:#04x}); "
                          "save the file as UTF-8.") from None


def _parse_json(text: str, where: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        place = f"line {error.lineno}" if where == "the file" else where
        raise SourceError(f"{place}: not valid JSON ({error.msg} at column {error.colno}). "
                          "Is the file cut short?") from None
    except RecursionError:  # json recurses once per bracket
        raise SourceError(f"{where}: JSON nested too deeply to be an example.") from None
