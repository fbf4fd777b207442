"""Split one input object into line-aligned byte ranges, and rebuild a range as a file the runner can read.

A range is ``[start, stop)`` of the object's bytes. For ``.csv`` and ``.jsonl`` every range starts at the
beginning of a line and ends just after a newline (or at the end of the object); ``.csv`` ranges start after
the header, which each part gets prepended (``header`` is its length). For ``.npy`` ranges hold whole rows
after the header (``header`` is the data offset); the part gets a fresh header for its rows.
``first_line`` is the physical line number (``.npy``: row number) of the range's first row in the whole
object, so a part's predictions carry the same line numbers as a single run over the whole file.

Line numbers need the newlines before each range: they are counted once, range by range in parallel
(reads at the speed of the source; for S3 many concurrent range GETs).
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from functions.batch.formats import Chunk, UnreadableInputError, _npy_header

BLOCK = 1 << 20
HEAD_BYTES = 256 * 1024
COUNT_THREADS = 16
QUOTE_SCAN_BYTES = 1 << 20


class ByteSource(Protocol):
    """Reads byte ranges of one object (a local file, or one version of an S3 object)."""

    size: int

    def read(self, start: int, stop: int) -> bytes:
        """Bytes ``[start, stop)``."""

    def stream(self, start: int, stop: int) -> Iterator[bytes]:
        """Bytes ``[start, stop)`` in blocks."""


class FileSource:
    """A local file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size

    def read(self, start: int, stop: int) -> bytes:
        return b"".join(self.stream(start, stop))

    def stream(self, start: int, stop: int) -> Iterator[bytes]:
        with self.path.open("rb") as f:
            f.seek(start)
            left = max(0, min(stop, self.size) - start)
            while left:
                block = f.read(min(BLOCK, left))
                if not block:
                    return
                left -= len(block)
                yield block


class S3Source:
    """One version (``etag``) of an S3 object, read by ranged GETs with ``If-Match``: a replaced object fails
    the read (412) instead of mixing two versions."""

    def __init__(self, client: Any, bucket: str, key: str, etag: str, size: int) -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self.etag = etag
        self.size = size

    def read(self, start: int, stop: int) -> bytes:
        return b"".join(self.stream(start, stop))

    def stream(self, start: int, stop: int) -> Iterator[bytes]:
        stop = min(stop, self.size)
        if stop <= start:
            return
        response = self.client.get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={start}-{stop - 1}",
                                          IfMatch=f'"{self.etag}"')
        yield from response["Body"].iter_chunks(BLOCK)


@dataclass(frozen=True)
class ByteRange:
    """One part of an input: bytes ``[start, stop)``, its first line number and the header to prepend."""

    start: int
    stop: int
    first_line: int
    header: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: Any) -> ByteRange:
        """From an event's ``range`` object; ValueError if it is not one."""
        if not isinstance(value, dict):
            raise ValueError("range must be an object with start, stop, first_line and header")
        try:
            found = cls(**{name: int(value[name]) for name in ("start", "stop", "first_line", "header")})
        except (KeyError, TypeError, ValueError):
            raise ValueError("range must hold integers start, stop, first_line and header") from None
        if not 0 <= found.start <= found.stop or found.first_line < 1 or found.header < 0:
            raise ValueError(f"range {value} is not a valid byte range")
        return found


class SourceFile(io.RawIOBase):
    """A ByteSource as a seekable, read-only file (pyarrow reads a Parquet footer and row groups from it)."""

    def __init__(self, source: ByteSource) -> None:
        super().__init__()
        self.source = source
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.source.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        data = self.source.read(self.position, min(self.source.size, self.position + len(buffer)))
        buffer[:len(data)] = data
        self.position += len(data)
        return len(data)

    def readall(self) -> bytes:
        data = self.source.read(self.position, self.source.size)
        self.position += len(data)
        return data


def split(source: ByteSource, fmt: str, part_bytes: int) -> list[ByteRange]:
    """Line-aligned (``.npy``: row-aligned, ``.parquet``: row-group-aligned) ranges of about ``part_bytes``
    each; always at least one."""
    part_bytes = max(1, part_bytes)
    if fmt == ".npy":
        return _split_npy(source, part_bytes)
    if fmt == ".parquet":
        return _split_parquet(source, part_bytes)
    head = source.read(0, min(source.size, HEAD_BYTES))
    header = 0
    if fmt == ".csv":
        header = _line_end(source, 0, head)
    cuts = [header]
    nominal = header + part_bytes
    while nominal < source.size:
        boundary = _line_end(source, nominal - 1)
        if boundary > cuts[-1]:
            cuts.append(boundary)
        nominal = max(boundary, nominal) + part_bytes
    if cuts[-1] < source.size or len(cuts) == 1:
        cuts.append(source.size)
    spans = list(itertools.pairwise(cuts))
    with ThreadPoolExecutor(min(COUNT_THREADS, len(spans))) as pool:
        counts = list(pool.map(lambda span: _count(source, *span), spans))
    if fmt == ".csv":
        cuts, counts = _outside_quotes(source, cuts, counts)
    first = 2 if fmt == ".csv" else 1
    ranges = []
    for (start, stop), (newlines, _) in zip(itertools.pairwise(cuts), counts, strict=True):
        ranges.append(ByteRange(start, stop, first, header))
        first += newlines
    return ranges


def _outside_quotes(source: ByteSource, cuts: list[int], counts: list[tuple[int, int]]
                    ) -> tuple[list[int], list[tuple[int, int]]]:
    """Move every cut that falls inside a quoted CSV field (an odd number of quotes before it: RFC 4180 doubles
    quotes inside quoted fields) to the next newline outside one, so a quoted newline never splits a record.
    A cut with no such newline within ``QUOTE_SCAN_BYTES`` (stray quotes in unquoted fields) stays put."""
    cuts, counts = list(cuts), list(counts)
    index, before = 1, counts[0][1]  # before: the quotes in [cuts[0], cuts[index])
    while index < len(cuts) - 1:
        if before % 2:
            moved = _record_end(source, cuts[index], min(cuts[index] + QUOTE_SCAN_BYTES, source.size))
            if moved is not None and moved >= cuts[index + 1]:  # the record runs past the next cut: one part
                before += counts[index][1]
                counts[index - 1] = _add(counts[index - 1], counts.pop(index))
                del cuts[index]
                continue
            if moved is not None:
                segment = _count(source, cuts[index], moved)
                counts[index - 1] = _add(counts[index - 1], segment)
                counts[index] = _add(counts[index], (-segment[0], -segment[1]))
                cuts[index] = moved
                before += segment[1]
        index += 1
        before += counts[index - 1][1]
    return cuts, counts


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return a[0] + b[0], a[1] + b[1]


def _record_end(source: ByteSource, start: int, stop: int) -> int | None:
    """Just after the first newline in ``[start, stop)`` preceded by an odd number of quotes since ``start``
    (``start`` being inside a quoted field), or None."""
    window = source.read(start, stop)
    quotes = 0
    position = 0
    while (newline := window.find(b"\n", position)) >= 0:
        quotes += window.count(b'"', position, newline)
        if quotes % 2:
            return start + newline + 1
        position = newline + 1
    return None


def _line_end(source: ByteSource, at: int, head: bytes | None = None) -> int:
    """The offset just after the first newline at or after ``at`` (the object's size if there is none)."""
    position = at
    while position < source.size:
        window = head if head is not None and position == 0 else source.read(position, position + 64 * 1024)
        head = None
        if not window:
            break
        found = window.find(b"\n")
        if found >= 0:
            return position + found + 1
        position += len(window)
    return source.size


def _count(source: ByteSource, start: int, stop: int) -> tuple[int, int]:
    """(newlines, double quotes) in ``[start, stop)``."""
    newlines = quotes = 0
    for block in source.stream(start, stop):
        newlines += block.count(b"\n")
        quotes += block.count(b'"')
    return newlines, quotes


def npy_layout(source: ByteSource) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """(shape, dtype, data offset) from the header of a ``.npy`` object; UnreadableInputError if unusable."""
    head = source.read(0, min(source.size, HEAD_BYTES))
    f = io.BytesIO(head)
    shape, dtype = _npy_header(f, source.size)
    if not shape:
        raise UnreadableInputError(".npy holds a scalar, not rows")
    return shape, dtype, f.tell()


def _split_npy(source: ByteSource, part_bytes: int) -> list[ByteRange]:
    shape, dtype, offset = npy_layout(source)
    row_bytes = max(1, dtype.itemsize * math.prod(shape[1:]))
    rows_per_part = max(1, part_bytes // row_bytes)
    starts = range(0, shape[0], rows_per_part) if shape[0] else range(1)
    return [ByteRange(offset + row * row_bytes, offset + min(shape[0], row + rows_per_part) * row_bytes, row + 1,
                      offset) for row in starts]


def _split_parquet(source: ByteSource, part_bytes: int) -> list[ByteRange]:
    """Ranges of whole row groups: a row group belongs to the range holding its first byte. The footer is
    decoded without pyarrow (functions/batch/footer.py), so the batch Lambda splits Parquet for AWS Batch."""
    from functions.batch.footer import row_groups

    groups = row_groups(source)
    if not groups:
        return [ByteRange(0, source.size, 1)]
    ranges: list[ByteRange] = []
    start, first, rows = groups[0][1], 1, 0
    for index, (count, offset) in enumerate(groups):
        if index and offset - start >= part_bytes:
            ranges.append(ByteRange(start, offset, first))
            start, first, rows = offset, first + rows, 0
        rows += count
    ranges.append(ByteRange(start, source.size, first))
    return ranges


def materialize(source: ByteSource, fmt: str, part: ByteRange, dest: IO[bytes]) -> int:
    """Write the range as a file the runner reads (header first; ``.parquet``: its row groups as a new file);
    returns the line-number offset to add to the runner's line numbers to get the whole object's."""
    if fmt == ".parquet":
        from functions.batch.parquet import copy_row_groups

        copy_row_groups(source, part.start, part.stop, dest)
        return part.first_line - 1
    if fmt == ".npy":
        shape, dtype, _ = npy_layout(source)
        row_bytes = max(1, dtype.itemsize * math.prod(shape[1:]))
        rows = (part.stop - part.start) // row_bytes
        np.lib.format.write_array_header_2_0(dest, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                    "fortran_order": False, "shape": (rows, *shape[1:])})
    elif part.header:
        dest.write(source.read(0, part.header))
    for block in source.stream(part.start, part.stop):
        dest.write(block)
    return part.first_line - (2 if fmt == ".csv" else 1)


def renumber(chunks: Iterator[Chunk], offset: int) -> Iterator[Chunk]:
    """Shift the line numbers of every row (good and bad, and the keys of the ids) by ``offset``."""
    for chunk in chunks:
        if offset:
            chunk.lines = [line + offset for line in chunk.lines]
            chunk.bad = [(line + offset, reason) for line, reason in chunk.bad]
            chunk.ids = {line + offset: value for line, value in chunk.ids.items()}
        yield chunk
