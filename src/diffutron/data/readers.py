"""Read local corpus files (.txt, .jsonl, .json, .parquet) as records, streaming, with errors that say where.

Every reader yields `(location, record)` pairs: `location` is "file:line" (or "file row N") so that a
bad row can be reported precisely by whoever consumes it. `.txt` files give records `{"text": ...}`:
one document per blank-line-separated paragraph (the default, which keeps multi-line paragraphs
and articles whole) or one per line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from diffutron.errors import DiffutronError
from diffutron.model.tokens import check_unicode

TxtSplit = Literal["paragraph", "line"]
TXT_FIELD = "text"
SUFFIXES = (".txt", ".jsonl", ".json", ".parquet")

Record = dict[str, Any]


def iter_local_records(
    path: str | Path, *, txt_split: TxtSplit = "paragraph", columns: Sequence[str] | None = None
) -> Iterator[tuple[str, Record]]:
    """Records of a local file, chosen by suffix; `columns` are required to exist (parquet: read alone)."""
    path = Path(path)
    if not path.is_file():
        raise DiffutronError(f"{path} does not exist or is not a file")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        if columns:
            require_columns([TXT_FIELD], columns, f"{path} (a .txt file gives one {TXT_FIELD!r} column)")
        return ((location, {TXT_FIELD: text}) for location, text in iter_txt_documents(path, txt_split))
    if suffix == ".jsonl":
        return check_first(iter_jsonl(path), columns)
    if suffix == ".json":
        return check_first(iter_json_array(path), columns)
    if suffix == ".parquet":
        return iter_parquet(path, columns)
    raise DiffutronError(f"{path}: unsupported file type {suffix or '(none)'}; use one of {', '.join(SUFFIXES)}")


def iter_local_texts(
    path: str | Path, text_field: str = TXT_FIELD, *, txt_split: TxtSplit = "paragraph"
) -> Iterator[tuple[str, str]]:
    """`(location, text)` of every document; a missing field is an error listing the columns found."""
    for location, record in iter_local_records(path, txt_split=txt_split, columns=[text_field]):
        yield location, text_value(record, text_field, location)


def text_value(record: Record, field: str, location: str) -> str:
    """The text in `record[field]` ("" for null); a missing field, a non-text value or text that is
    not valid Unicode (a JSON `\\ud800` escape) names the row."""
    require_columns(record, [field], location)
    value = record[field]
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DiffutronError(f"{location}: field {field!r} must be text, got {type(value).__name__}")
    return check_unicode(value, f"{location}: field {field!r}")


def require_columns(found: Iterable[str], needed: Iterable[str], where: str) -> None:
    """Raise if a needed column is absent, listing the columns that are there."""
    found = list(found)
    missing = [name for name in needed if name not in found]
    if missing:
        raise DiffutronError(
            f"{where}: no column {', '.join(map(repr, missing))}; columns found: "
            f"{', '.join(map(repr, found)) or 'none'} (set the field name in the recipe)"
        )


def iter_txt_documents(path: Path, split: TxtSplit = "paragraph") -> Iterator[tuple[str, str]]:
    """Documents of a UTF-8 text file: paragraphs (separated by blank lines) or single lines."""
    if split not in ("paragraph", "line"):
        raise DiffutronError(f"txt_split must be 'paragraph' or 'line', got {split!r}")
    paragraph: list[str] = []
    start = 0
    for number, line in _utf8_lines(path):
        if split == "line":
            if line.strip():
                yield f"{path}:{number}", line.strip()
            continue
        if line.strip():
            if not paragraph:
                start = number
            paragraph.append(line.rstrip())
        elif paragraph:
            yield f"{path}:{start}", "\n".join(paragraph).strip()
            paragraph = []
    if paragraph:
        yield f"{path}:{start}", "\n".join(paragraph).strip()


def iter_jsonl(path: Path) -> Iterator[tuple[str, Record]]:
    """One JSON object per line (blank lines skipped); bad UTF-8 or JSON is an error with the line."""
    for number, line in _utf8_lines(path):
        if not line.strip():
            continue
        location = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DiffutronError(f"{location}: not valid JSON ({error.msg} at column {error.colno})") from None
        yield location, _object(record, location, "a JSON object per line")


def iter_json_array(path: Path) -> Iterator[tuple[str, Record]]:
    """A .json file holding one list of objects (the layout of e.g. LlamaTurk's instruction set)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raise DiffutronError(f"{path}:{line}: not valid UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise DiffutronError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(data, list):
        raise DiffutronError(f"{path}: expected a JSON list of objects (or use .jsonl, one object per line)")
    for index, record in enumerate(data):
        location = f"{path} item {index}"
        yield location, _object(record, location, "an object")


def _object(record: Any, location: str, expected: str) -> Record:
    if not isinstance(record, dict):
        raise DiffutronError(f"{location}: expected {expected}, got {type(record).__name__}")
    return record


def iter_parquet(path: Path, columns: Sequence[str] | None = None) -> Iterator[tuple[str, Record]]:
    """Rows of a parquet file, batch by batch; only `columns` are read when given."""
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises its own error types for corrupt files
        raise DiffutronError(f"{path}: not a readable parquet file ({error})") from None
    if columns:
        require_columns(handle.schema_arrow.names, columns, str(path))
    row = 0
    for batch in handle.iter_batches(columns=list(columns) if columns else None):
        for record in batch.to_pylist():
            yield f"{path} row {row}", record
            row += 1


MAX_LINE_BYTES = 64 * 2**20  # reading stops here, so an endless line (/dev/zero) cannot exhaust memory


def _utf8_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered lines, decoded strictly so that a non-UTF-8 byte is reported with its line."""
    try:
        handle = path.open("rb")
    except OSError as error:
        raise DiffutronError(f"cannot read {path}: {error.strerror or error}") from None
    with handle:
        for number, raw in enumerate(iter(lambda: handle.readline(MAX_LINE_BYTES + 1), b""), start=1):
            if len(raw) > MAX_LINE_BYTES:
                raise DiffutronError(
                    f"{path}:{number}: a line longer than {MAX_LINE_BYTES // 2**20} MiB; "
                    "is this a text file with one record per line?"
                )
            try:
                yield number, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise DiffutronError(
                    f"{path}:{number}: not valid UTF-8 text (convert the file, e.g. `iconv -t UTF-8`)"
                ) from None


def check_first(records: Iterator[tuple[str, Record]], columns: Sequence[str] | None) -> Iterator[tuple[str, Record]]:
    """Check `columns` on the first record (JSON rows and some streams have no schema), then pass all on."""
    first = True
    for location, record in records:
        if first and columns:
            require_columns(record, columns, location)
        first = False
        yield location, record
