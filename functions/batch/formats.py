"""Streaming readers for batch inputs (.csv, .jsonl, .npy; .parquet: functions/batch/parquet.py) that yield
chunks of rows with their line numbers.

Memory stays bounded by the chunk size and the line-length cap, whatever the file size. Rows that cannot be
read (bad UTF-8, ragged CSV rows, non-numeric cells, malformed JSON, over-long lines) are yielded as bad rows
with a reason, never raised. A file that cannot be read at all (unknown extension, missing CSV columns,
corrupt or non-numeric .npy) raises UnreadableInputError.

Line numbers are 1-based physical lines for .csv (the header is line 1; a record with quoted newlines has
the number of the line it starts on) and .jsonl; for .npy they are 1-based row numbers. CSV is read by
Python's csv parser on the stream (RFC 4180 quoting: commas, quotes and newlines inside quoted fields).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from functions.core.errors import UnreadableInputError as UnreadableInputError
from functions.core.manifest import ImagePreprocessing, Preprocessing, TabularPreprocessing

FORMATS = (".csv", ".jsonl", ".npy", ".parquet")


@dataclass
class Chunk:
    """Rows that could be read (``lines`` and ``instances`` align) and rows that could not."""

    lines: list[int] = field(default_factory=list)
    instances: list[Any] | np.ndarray = field(default_factory=list)
    bad: list[tuple[int, str]] = field(default_factory=list)
    ids: dict[int, Any] = field(default_factory=dict)
    offset: int = 0  # bytes of the input read once this chunk was complete (for progress)

    def __len__(self) -> int:
        return len(self.lines) + len(self.bad)


def input_format(key: str) -> str:
    """The format of an input by its extension, or UnreadableInputError."""
    suffix = Path(key).suffix.lower()
    if suffix not in FORMATS:
        raise UnreadableInputError(f"unsupported input format {suffix or '(none)'!r}: "
                                   "use .csv, .jsonl, .npy or .parquet")
    return suffix


def read_chunks(path: Path, fmt: str, spec: Preprocessing, chunk_rows: int, max_line_bytes: int,
                id_column: str | None = None) -> Iterator[Chunk]:
    """Chunks of at most ``chunk_rows`` rows (good and bad together).

    With ``id_column``, each row's value of that CSV column (or JSON-lines field, removed from the instance)
    is kept in ``Chunk.ids`` by line number; .npy inputs have no columns to take it from.
    """
    if fmt == ".parquet":
        from functions.batch.parquet import parquet_chunks

        yield from parquet_chunks(path, spec, chunk_rows, id_column)
        return
    if fmt == ".npy":
        if id_column:
            raise UnreadableInputError("an id column needs .csv or .jsonl input; .npy rows have no columns")
        yield from _npy_chunks(path, spec, chunk_rows)
        return
    with path.open("rb") as f:
        if fmt == ".csv":
            rows = _csv_rows(_csv_records(_PhysicalLines(f, max_line_bytes)), spec, id_column)
        else:
            rows = _jsonl_rows(_lines(f, max_line_bytes), id_column)
        chunk = Chunk()
        for line, value, ok, row_id in rows:
            if ok:
                chunk.lines.append(line)
                chunk.instances.append(value)  # type: ignore[union-attr]
            else:
                chunk.bad.append((line, value))
            if row_id is not None:
                chunk.ids[line] = row_id
            if len(chunk) >= chunk_rows:
                chunk.offset = f.tell()
                yield chunk
                chunk = Chunk()
        if len(chunk):
            chunk.offset = f.tell()
            yield chunk


def _lines(f: IO[bytes], max_line_bytes: int) -> Iterator[tuple[int, str | None, str]]:
    """(line number, decoded text or None, reason) for each non-empty line, reading at most the cap at once."""
    number = 0
    while True:
        raw = f.readline(max_line_bytes + 1)
        if not raw:
            return
        number += 1
        if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # skip the rest of the over-long line in bounded reads
                raw = f.readline(max_line_bytes + 1)
            yield number, None, f"line longer than {max_line_bytes} bytes"
            continue
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        raw = raw.rstrip(b"\r\n")
        if not raw.strip():
            continue
        try:
            yield number, raw.decode("utf-8"), ""
        except UnicodeDecodeError as exc:
            yield number, None, f"not valid UTF-8 at byte {exc.start}"


Row = tuple[int, Any, bool, Any]


def _jsonl_rows(lines: Iterator[tuple[int, str | None, str]], id_column: str | None) -> Iterator[Row]:
    for number, text, reason in lines:
        if text is None:
            yield number, reason, False, None
            continue
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            yield number, f"not valid JSON: {exc}", False, None
            continue
        if id_column is None:
            yield number, value, True, None
        elif not isinstance(value, dict) or id_column not in value:
            yield number, f"no {id_column!r} field for the id column (instances must be objects)", False, None
        else:
            row_id = value.pop(id_column)
            yield number, value, True, row_id


class _RecordTooLongError(Exception):
    """A CSV record (quoted newlines included) grew past the size cap."""


class _PhysicalLines:
    """Decoded physical lines of a byte stream for ``csv.reader``, counting them and the current record's bytes.

    A line that is over-long or not UTF-8 is replaced by an empty line and remembered as the record's problem;
    a record longer than the cap in total raises ``_RecordTooLongError`` (a stray quote cannot swallow the file).
    """

    def __init__(self, f: IO[bytes], max_bytes: int) -> None:
        self.f = f
        self.max_bytes = max_bytes
        self.number = 0
        self.record_bytes = 0
        self.problem = ""

    def __iter__(self) -> _PhysicalLines:
        return self

    def start_record(self) -> int:
        """Reset the per-record state; the number of the line the next record starts on."""
        self.record_bytes = 0
        self.problem = ""
        return self.number + 1

    def __next__(self) -> str:
        raw = self.f.readline(self.max_bytes + 1)
        if not raw:
            raise StopIteration
        self.number += 1
        if self.number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if len(raw) > self.max_bytes and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # skip the rest of the over-long line in bounded reads
                raw = self.f.readline(self.max_bytes + 1)
            self.problem = self.problem or f"line longer than {self.max_bytes} bytes"
            return "\n"
        self.record_bytes += len(raw)
        if self.record_bytes > self.max_bytes:
            raise _RecordTooLongError
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.problem = self.problem or f"not valid UTF-8 at byte {exc.start}"
            return "\n"


def _csv_records(source: _PhysicalLines) -> Iterator[tuple[int, list[str] | None, str]]:
    """(line the record starts on, cells or None, reason) for each non-blank CSV record.

    ``csv.reader`` parses quoted fields with commas, quotes and newlines; after a malformed or over-long
    record, reading goes on with a fresh reader at the next physical line.
    """
    csv.field_size_limit(max(csv.field_size_limit(), source.max_bytes))  # a cell may be as long as a record
    while True:
        reader = csv.reader(source)
        while True:
            start = source.start_record()
            try:
                cells = next(reader)
            except StopIteration:
                return
            except _RecordTooLongError:
                yield start, None, f"record longer than {source.max_bytes} bytes (an unclosed quote?)"
                break
            except csv.Error as exc:
                yield start, None, f"malformed CSV: {exc}"
                break
            if source.problem:
                yield start, None, source.problem
            elif cells and any(cell.strip() for cell in cells):
                yield start, cells, ""


def _csv_rows(records: Iterator[tuple[int, list[str] | None, str]], spec: Preprocessing,
              id_column: str | None) -> Iterator[Row]:
    header: list[str] | None = None
    id_index = -1
    for number, cells, reason in records:
        if cells is None:
            if header is None:
                raise UnreadableInputError(f"CSV header (line {number}) is unreadable: {reason}")
            yield number, reason, False, None
            continue
        if header is None:
            header = [c.strip() for c in cells]
            columns = _columns(header, spec)
            if id_column is not None:
                if id_column not in header:
                    raise UnreadableInputError(f"CSV header lacks the id column {id_column[:64]!r}")
                id_index = header.index(id_column)
            continue
        if len(cells) != len(header):
            yield number, f"expected {len(header)} cells, got {len(cells)}", False, \
                cells[id_index] if 0 <= id_index < len(cells) else None
            continue
        line, value, ok = _csv_value(number, cells, header, columns, spec)
        yield line, value, ok, cells[id_index] if id_index >= 0 else None


def _columns(header: list[str], spec: Preprocessing) -> list[int]:
    """Indices of the cells the model reads, in the order it reads them."""
    if isinstance(spec, TabularPreprocessing):
        missing = [name for name in spec.features if name not in header]
        if missing:
            raise UnreadableInputError(f"CSV header lacks feature column(s) {missing[:5]}")
        return [header.index(name) for name in spec.features]
    if isinstance(spec, ImagePreprocessing):
        if len(header) != math.prod(spec.shape):
            raise UnreadableInputError(f"CSV for images needs {math.prod(spec.shape)} pixel columns, got {len(header)}")
        return list(range(len(header)))
    if "text" not in header:
        raise UnreadableInputError("CSV for text models needs a 'text' column")
    return [header.index("text")]


def _csv_value(number: int, cells: list[str], header: list[str], columns: list[int],
               spec: Preprocessing) -> tuple[int, Any, bool]:
    if not isinstance(spec, TabularPreprocessing | ImagePreprocessing):
        return number, cells[columns[0]], True
    values = []
    for index in columns:
        try:
            values.append(float(cells[index]))
        except ValueError:
            return number, f"non-numeric cell {cells[index][:40]!r} in column {header[index]!r}", False
    return number, values, True


def _npy_chunks(path: Path, spec: Preprocessing, chunk_rows: int) -> Iterator[Chunk]:
    if not isinstance(spec, TabularPreprocessing | ImagePreprocessing):
        raise UnreadableInputError(".npy input is for numeric models; send text as .jsonl or .csv")
    width = len(spec.features) if isinstance(spec, TabularPreprocessing) else math.prod(spec.shape)
    with path.open("rb") as f:
        shape, dtype = _npy_header(f, path.stat().st_size)
        if len(shape) < 1 or math.prod(shape[1:]) != width:
            raise UnreadableInputError(f".npy shape {list(shape)} does not hold rows of {width} values")
        # Plain reads, not a memory map: mapped pages would count towards the process's memory.
        for start in range(0, shape[0], chunk_rows):
            rows = min(chunk_rows, shape[0] - start)
            block = np.fromfile(f, dtype=dtype, count=rows * width).astype(np.float64).reshape(rows, width)
            yield Chunk(lines=list(range(start + 1, start + 1 + rows)), instances=block, offset=f.tell())


def _npy_header(f: IO[bytes], size: int) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype from a .npy header, refusing pickles, Fortran order, non-numeric and truncated data."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise UnreadableInputError(f"not a readable .npy file: {exc}") from None
    if dtype.kind not in "iuf" or dtype.hasobject:
        raise UnreadableInputError(f".npy dtype {dtype} is not numeric")
    if fortran and len(shape) > 1:
        raise UnreadableInputError(".npy in Fortran order is not supported; save it C-ordered")
    if size - f.tell() < math.prod(shape) * dtype.itemsize:
        raise UnreadableInputError(f".npy data is truncated: {size - f.tell()} bytes for shape {list(shape)}")
    return tuple(shape), dtype
