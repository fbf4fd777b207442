"""A Parquet file's row groups from its footer, without pyarrow (the batch Lambda leaves pyarrow out).

The footer is ``FileMetaData`` in Thrift's compact protocol, followed by its length (4 bytes, little endian)
and ``PAR1``. Only what splitting needs is decoded: each row group's row count and its first byte (the
dictionary page of its first column chunk where there is one, else the first data page: the offset pyarrow's
metadata gives); every other field is skipped by its type. Two ranged reads at most (the tail, then the rest of
the footer if it is larger). Anything that does not decode as a footer is an UnreadableInputError, never a
crash: the reader is bounded in nesting, lengths, numbers (64 bits) and size. So is a footer that decodes but
cannot be split safely: row groups whose rows do not add up to the file's ``num_rows``, or that do not start in
file order within the data before the footer (a split by first byte would lose or repeat their rows).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from functions.batch.ranges import ByteSource
from functions.core.errors import UnreadableInputError

MAGIC = b"PAR1"
ENCRYPTED_MAGIC = b"PARE"
TAIL_BYTES = 64 * 1024
MAX_FOOTER_BYTES = 16 * 1024 * 1024
"""Larger footers are not decoded (the input then runs unsplit): decoding takes about 1 µs a byte at worst."""
MAX_DEPTH = 32

# Thrift compact protocol types
_TRUE, _FALSE, _I8, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT, _UUID = range(1, 14)


_WIDTHS = {_TRUE: 1, _FALSE: 1, _I8: 1, _DOUBLE: 8, _UUID: 16}
"""The bytes one element of these types takes in a list or set."""


class _MalformedError(Exception):
    """The footer does not decode."""


class _Reader:
    """Thrift compact protocol over one buffer."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0
        self.depth = 0

    def byte(self) -> int:
        if self.position >= len(self.data):
            raise _MalformedError("ends early")
        value = self.data[self.position]
        self.position += 1
        return value

    def take(self, count: int) -> None:
        if count < 0 or self.position + count > len(self.data):
            raise _MalformedError("a length runs past its end")
        self.position += count

    def varint(self) -> int:
        value = shift = 0
        while True:
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if value >> 64:
                raise _MalformedError("a number is over 64 bits")
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise _MalformedError("a number is too long")

    def integer(self) -> int:
        """A zigzag varint (i16, i32, i64)."""
        value = self.varint()
        return (value >> 1) ^ -(value & 1)

    def fields(self) -> Iterator[tuple[int, int]]:
        """(field id, type) of a struct's fields up to its stop byte; the caller reads or skips each value."""
        last = 0
        while True:
            header = self.byte()
            if header == 0:
                return
            kind, delta = header & 0x0F, header >> 4
            last = last + delta if delta else self.integer()
            yield last, kind

    def collection(self) -> tuple[int, int]:
        """(size, element type) of a list or set."""
        header = self.byte()
        size = header >> 4
        if size == 15:
            size = self.varint()
        if size > len(self.data) - self.position:  # every element takes at least one byte
            raise _MalformedError("a list is longer than the footer")
        return size, header & 0x0F

    def skip(self, kind: int) -> None:
        if kind in (_TRUE, _FALSE):  # a struct field's boolean is in its type
            return
        if kind == _I8:
            self.take(1)
        elif kind in (_I16, _I32, _I64):
            self.varint()
        elif kind == _DOUBLE:
            self.take(8)
        elif kind == _UUID:
            self.take(16)
        elif kind == _BINARY:
            self.take(self.varint())
        elif kind in (_LIST, _SET, _MAP, _STRUCT):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise _MalformedError("nested too deep")
            if kind == _STRUCT:
                for _, inner in self.fields():
                    self.skip(inner)
            elif kind == _MAP:
                size = self.varint()
                if size > len(self.data) - self.position:
                    raise _MalformedError("a map is longer than the footer")
                if size:
                    types = self.byte()
                    for _ in range(size):
                        self.element(types >> 4)
                        self.element(types & 0x0F)
            else:
                size, inner = self.collection()
                if inner in _WIDTHS:  # fixed-width elements: skipped at once
                    self.take(size * _WIDTHS[inner])
                else:
                    for _ in range(size):
                        self.element(inner)
            self.depth -= 1
        else:
            raise _MalformedError(f"unknown type {kind}")

    def element(self, kind: int) -> None:
        """An element of a list, set or map: booleans take a byte each there."""
        if kind in (_TRUE, _FALSE):
            self.take(1)
        else:
            self.skip(kind)

    def structs(self, kind: int) -> int:
        """The size of a list of structs (after checking it is one)."""
        if kind != _LIST:
            raise _MalformedError("expected a list")
        size, inner = self.collection()
        if inner != _STRUCT:
            raise _MalformedError("expected a list of structs")
        return size


def _first_byte(reader: _Reader) -> int | None:
    """ColumnMetaData: the dictionary page's offset (field 11) when set and non-zero, else the first data
    page's (field 9)."""
    data = dictionary = None
    for field, kind in reader.fields():
        if field == 9 and kind == _I64:
            data = reader.integer()
        elif field == 11 and kind == _I64:
            dictionary = reader.integer()
        else:
            reader.skip(kind)
    return dictionary or data


def _row_group(reader: _Reader) -> tuple[int, int]:
    rows: int | None = None
    starts: list[int] = []
    for field, kind in reader.fields():
        if field == 1:  # columns: list<ColumnChunk>
            for _ in range(reader.structs(kind)):
                start = None
                for inner, inner_kind in reader.fields():
                    if inner == 3 and inner_kind == _STRUCT:  # meta_data
                        start = _first_byte(reader)
                    else:
                        reader.skip(inner_kind)
                if start is None:
                    raise _MalformedError("a column chunk has no metadata in the footer (columns in other files)")
                starts.append(start)
        elif field == 3 and kind == _I64:
            rows = reader.integer()
        else:
            reader.skip(kind)
    if rows is None or rows < 0 or any(s < 0 for s in starts):
        raise _MalformedError("a row group has no valid row count or offsets")
    return rows, min(starts) if starts else 0


def decode(footer: bytes) -> list[tuple[int, int]]:
    """(rows, first byte) of each row group of a ``FileMetaData``, in order."""
    reader = _Reader(footer)
    groups: list[tuple[int, int]] = []
    rows: int | None = None
    try:
        for field, kind in reader.fields():
            if field == 3 and kind == _I64:  # num_rows
                rows = reader.integer()
            elif field == 4:  # row_groups: list<RowGroup>
                groups = [_row_group(reader) for _ in range(reader.structs(kind))]
            else:
                reader.skip(kind)
        if rows is None or sum(count for count, _ in groups) != rows:
            raise _MalformedError(f"its row groups' rows do not add up to the file's {rows} rows")
        if any(later < earlier for (_, earlier), (_, later) in itertools.pairwise(groups)):
            raise _MalformedError("its row groups are not in file order")
    except _MalformedError as exc:
        raise UnreadableInputError(f"not a readable Parquet footer: {exc}") from None
    return groups


def row_groups(source: ByteSource) -> list[tuple[int, int]]:
    """(rows, first byte) of each row group of a Parquet object, from its footer (ranged reads)."""
    if source.size < 12:
        raise UnreadableInputError("not a readable Parquet file: too short")
    tail = source.read(max(0, source.size - TAIL_BYTES), source.size)
    magic = tail[-4:]
    if magic == ENCRYPTED_MAGIC:
        raise UnreadableInputError("not a readable Parquet file: its footer is encrypted")
    if magic != MAGIC:
        raise UnreadableInputError("not a readable Parquet file: it does not end in PAR1 (truncated?)")
    length = int.from_bytes(tail[-8:-4], "little")
    if length > MAX_FOOTER_BYTES or length + 12 > source.size:
        raise UnreadableInputError(f"not a readable Parquet file: a footer of {length} bytes does not fit")
    end = source.size - 8
    footer = tail[-8 - length:-8] if length + 8 <= len(tail) else source.read(end - length, end)
    groups = decode(footer)
    if any(start >= end - length for _, start in groups):
        raise UnreadableInputError("not a readable Parquet file: a row group starts past its data")
    return groups
