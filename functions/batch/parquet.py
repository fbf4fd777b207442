"""Parquet in and out for batch work (pyarrow, imported only when a Parquet file is involved).

Inputs: tabular models read their feature columns by name, text models a ``text`` column, image models an
``image`` column (a list of H*W numbers, or of H lists of W); other columns are ignored. Rows are numbered from
1 in file order (the ``line`` of every output row). A null or ill-shaped cell makes that row an error row; a
file pyarrow cannot open (truncated, not Parquet), a missing column or a column of the wrong type (strings for
features, structs, maps) makes the input unreadable. Reading goes row group by row group, so memory stays
bounded by the chunk size and a row group; row groups are also the unit the fan-out splits by.

Outputs (``--output-format parquet``): ``line`` (int64), the id column as ``id`` when one is named, then
classifiers ``label`` (string) and ``probabilities`` (a struct of one float32 per label), regressors ``value``
(float32), embedding models ``embedding`` (fixed-size list of float32). Numbers are the model's float32
outputs, unrounded.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from functions.batch.formats import Chunk
from functions.core.errors import UnreadableInputError
from functions.core.inference import class_labels
from functions.core.manifest import ImagePreprocessing, Manifest, Preprocessing, TabularPreprocessing
from functions.core.model_cache import LoadedModel

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from functions.batch.ranges import ByteSource

Readable = Path | IO[bytes] | io.RawIOBase
"""A Parquet file: a path, or a seekable file object (functions/batch/ranges.py: SourceFile over S3)."""
IMAGE_COLUMN = "image"
TEXT_COLUMN = "text"
FLUSH_BYTES = 16 * 1024 * 1024
"""Predictions are buffered up to about this size, then written as one row group."""


def pyarrow_available() -> bool:
    """Whether this process can read and write Parquet (the Lambda bundle leaves pyarrow out)."""
    import importlib.util

    return importlib.util.find_spec("pyarrow") is not None


def _arrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UnreadableInputError("Parquet needs pyarrow, which is not installed here: "
                                   "pip install 'maas[local]' (the AWS Batch image has it)") from None
    return pa, pq


def open_parquet(source: Readable) -> pq.ParquetFile:
    """The file's reader; UnreadableInputError when pyarrow cannot open it (truncated, not Parquet)."""
    pa, pq = _arrow()
    try:
        return pq.ParquetFile(source)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise UnreadableInputError(f"not a readable Parquet file: {_first_line(exc)}") from None


def parquet_chunks(path: Path, spec: Preprocessing, chunk_rows: int, id_column: str | None = None,
                   groups: Sequence[int] | None = None, first_row: int = 1) -> Iterator[Chunk]:
    """Chunks of at most ``chunk_rows`` rows from the row groups ``groups`` (default: all); rows are numbered
    from ``first_row``."""
    pa, _ = _arrow()
    reader = open_parquet(path)
    schema = reader.schema_arrow
    columns = _input_columns(schema, spec)
    if id_column is not None and id_column not in schema.names:
        raise UnreadableInputError(f"Parquet file lacks the id column {id_column[:64]!r}")
    wanted = list(dict.fromkeys([*columns, *([id_column] if id_column else [])]))
    size = max(1, path.stat().st_size)
    total = max(1, reader.metadata.num_rows)
    number = first_row
    done = 0
    try:
        for batch in reader.iter_batches(batch_size=chunk_rows, row_groups=groups, columns=wanted):
            chunk = _chunk(batch, spec, columns, id_column, number)
            number += batch.num_rows
            done += batch.num_rows
            chunk.offset = min(size, size * done // total)
            yield chunk
    except (pa.ArrowException, OSError) as exc:  # corrupt pages raise OSError (pyarrow's ArrowIOError)
        raise UnreadableInputError(f"Parquet data could not be read: {_first_line(exc)}") from None


def _input_columns(schema: pa.Schema, spec: Preprocessing) -> list[str]:
    """The columns the model reads, after checking they exist with types it can use."""
    import pyarrow.types as types

    def numeric(kind: Any) -> bool:  # a column of nulls only (type null) is read as such: every row an error
        return bool(types.is_integer(kind) or types.is_floating(kind) or types.is_decimal(kind)
                    or types.is_null(kind))

    names = schema.names
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise UnreadableInputError(f"Parquet file has more than one column named {duplicated[:5]}")
    if isinstance(spec, TabularPreprocessing):
        missing = [name for name in spec.features if name not in names]
        if missing:
            raise UnreadableInputError(f"Parquet file lacks feature column(s) {missing[:5]}")
        for name in spec.features:
            kind = schema.field(name).type
            if not numeric(kind):
                raise UnreadableInputError(f"Parquet column {name!r} is {kind}, not numbers")
        return list(spec.features)
    if isinstance(spec, ImagePreprocessing):
        if IMAGE_COLUMN not in names:
            raise UnreadableInputError(f"Parquet for images needs an {IMAGE_COLUMN!r} column (a list of pixels)")
        kind = schema.field(IMAGE_COLUMN).type
        if types.is_null(kind):
            return [IMAGE_COLUMN]
        inner = kind
        while types.is_list(inner) or types.is_large_list(inner) or types.is_fixed_size_list(inner):
            inner = inner.value_type
        if inner is kind or not numeric(inner):
            raise UnreadableInputError(f"Parquet column {IMAGE_COLUMN!r} is {kind}, not a list of numbers")
        return [IMAGE_COLUMN]
    if TEXT_COLUMN not in names:
        raise UnreadableInputError(f"Parquet for text models needs a {TEXT_COLUMN!r} column")
    kind = schema.field(TEXT_COLUMN).type
    if types.is_dictionary(kind):  # pandas categories, stored Arrow dictionaries: read as their values
        kind = kind.value_type
    if not (types.is_string(kind) or types.is_large_string(kind) or types.is_string_view(kind)
            or types.is_null(kind)):
        raise UnreadableInputError(f"Parquet column {TEXT_COLUMN!r} is {kind}, not strings")
    return [TEXT_COLUMN]


def _chunk(batch: pa.RecordBatch, spec: Preprocessing, columns: list[str], id_column: str | None,
           first: int) -> Chunk:
    numbers = list(range(first, first + batch.num_rows))
    chunk = Chunk()
    if id_column is not None:
        chunk.ids = dict(zip(numbers, _plain_ids(batch.column(id_column)), strict=True))
    valid = np.ones(batch.num_rows, dtype=bool)
    reasons: dict[int, str] = {}
    for name in columns:
        nulls = batch.column(name).is_null().to_numpy(zero_copy_only=False)
        for row in np.flatnonzero(nulls & valid).tolist():
            reasons[row] = f"null in column {name!r}"
        valid &= ~nulls
    if isinstance(spec, TabularPreprocessing):
        import pyarrow as pa

        matrix = np.column_stack([batch.column(name).cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False)
                                  for name in columns]) if batch.num_rows else np.empty((0, len(columns)))
        chunk.instances = matrix[valid]
    elif isinstance(spec, ImagePreprocessing):
        width = math.prod(spec.shape)
        kept = []
        for row, value in enumerate(batch.column(IMAGE_COLUMN).to_pylist()):
            if not valid[row]:
                continue
            flat = _flatten(value, spec.shape)
            if flat is None or len(flat) != width:
                reasons[row] = ("null pixel value or ragged rows" if flat is None
                                else f"expected {width} pixel values, got {len(flat)}")
                valid[row] = False
                continue
            kept.append(flat)
        chunk.instances = np.asarray(kept, dtype=np.float64).reshape(len(kept), width)
    else:
        texts = batch.column(TEXT_COLUMN).to_pylist()
        chunk.instances = [text for text, ok in zip(texts, valid.tolist(), strict=True) if ok]
    chunk.lines = [n for n, ok in zip(numbers, valid.tolist(), strict=True) if ok]
    chunk.bad = [(numbers[row], reason) for row, reason in sorted(reasons.items())]
    return chunk


def _plain_ids(column: Any) -> list[Any]:
    """An id column's values as JSON can write them: strings, whole numbers, floats and booleans as they are,
    anything else (decimals, bytes, dates) as its text."""
    values = column.to_pylist()
    return [v if v is None or isinstance(v, str | int | float | bool) else
            (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)) for v in values]


def _flatten(value: Any, shape: Sequence[int] = ()) -> list[float] | None:
    """A list of numbers, or a list of lists of numbers (each as long as a row of ``shape``), flattened; None
    when any element is null or the rows are ragged."""
    flat: list[float] = []
    row_width = shape[-1] if len(shape) >= 2 else None
    for item in value:
        if isinstance(item, list):
            if any(v is None for v in item) or (row_width is not None and len(item) != row_width):
                return None
            flat.extend(item)
        elif item is None:
            return None
        else:
            flat.append(item)
    return flat


@dataclass(frozen=True)
class ParquetFormatter:
    """A chunk's outputs as one record batch of the predictions file's columns (picklable, for host processes)."""

    manifest: Manifest
    with_ids: bool = False

    def __call__(self, output: npt.NDArray[Any], lines: Sequence[int], ids: dict[int, Any] | None) -> pa.RecordBatch:
        pa, _ = _arrow()
        manifest = self.manifest
        arrays: dict[str, Any] = {"line": pa.array(lines, type=pa.int64())}
        if self.with_ids:
            values = [(ids or {}).get(line) for line in lines]
            arrays["id"] = pa.array([None if v is None else str(v) for v in values], type=pa.string())
        if manifest.task == "classification" and output.ndim == 2:
            labels = class_labels(manifest, output.shape[1])
            probabilities = output.astype(np.float32, copy=False)
            arrays["label"] = pa.array([labels[i] for i in probabilities.argmax(axis=1).tolist()], type=pa.string())
            arrays["probabilities"] = pa.StructArray.from_arrays(
                [pa.array(probabilities[:, i]) for i in range(len(labels))], names=labels)
        elif manifest.task == "regression":
            arrays["value"] = pa.array(output.reshape(len(output), -1)[:, 0].astype(np.float32, copy=False))
        else:
            flat = output.reshape(len(output), -1).astype(np.float32, copy=False)
            arrays["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])
        return pa.RecordBatch.from_pydict(arrays)


class ParquetPredictions:
    """Predictions written as a Parquet file with typed columns (a ``PredictionSink`` for the runner)."""

    def __init__(self, path: Path, model: LoadedModel, with_ids: bool = False) -> None:
        self.path = path
        self.model = model
        self.with_ids = with_ids
        self._pending: list[pa.RecordBatch] = []
        self._pending_bytes = 0
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None

    def formatter(self) -> ParquetFormatter:
        return ParquetFormatter(self.model.manifest, self.with_ids)

    def add(self, model: LoadedModel, output: npt.NDArray[Any], lines: Sequence[int],
            ids: dict[int, Any] | None) -> None:
        self.add_formatted(self.formatter()(output, lines, ids))

    def add_formatted(self, piece: Any) -> None:
        """Buffer one chunk's record batch; write a row group once about FLUSH_BYTES are buffered."""
        if self._schema is None:
            self._schema = piece.schema
        self._pending.append(piece)
        self._pending_bytes += piece.nbytes
        if self._pending_bytes >= FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        pa, pq = _arrow()
        if self._writer is None:
            assert self._schema is not None
            self._writer = pq.ParquetWriter(self.path, self._schema)
        self._writer.write_table(pa.Table.from_batches(self._pending))
        self._pending, self._pending_bytes = [], 0

    def close(self) -> None:
        """Write what is buffered and the footer (a file with no rows has the ``line`` column only)."""
        pa, pq = _arrow()
        self._flush()
        if self._writer is None:
            fields = [pa.field("line", pa.int64())] + ([pa.field("id", pa.string())] if self.with_ids else [])
            self._writer = pq.ParquetWriter(self.path, pa.schema(fields))
        self._writer.close()


def copy_row_groups(source: ByteSource, start: int, stop: int, dest: IO[bytes]) -> None:
    """The row groups whose first byte lies in ``[start, stop)`` as a new Parquet file (a fan-out part). The
    groups are chosen by the same footer decoding the split used (functions/batch/footer.py), checked against
    pyarrow's reading of the footer (a disagreement would lose or repeat rows: the part fails instead)."""
    from functions.batch.footer import row_groups as footer_groups
    from functions.batch.ranges import SourceFile

    pa, pq = _arrow()
    groups = footer_groups(source)
    reader = open_parquet(SourceFile(source))
    metadata = reader.metadata
    if [rows for rows, _ in groups] != [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]:
        raise UnreadableInputError("Parquet footer read two ways disagrees on its row groups")
    chosen = [i for i, (_, offset) in enumerate(groups) if start <= offset < stop]
    try:
        with pq.ParquetWriter(dest, reader.schema_arrow) as writer:
            for index in chosen:
                writer.write_table(reader.read_row_group(index))
    except (pa.ArrowException, OSError) as exc:
        raise UnreadableInputError(f"Parquet data could not be read: {_first_line(exc)}") from None


def concatenate(parts: Sequence[Path], dest: Path) -> None:
    """The parts' rows in order as one Parquet file (their row groups copied batch by batch)."""
    _, pq = _arrow()
    writer = None
    try:
        for part in parts:
            reader = pq.ParquetFile(part)
            for batch in reader.iter_batches():
                if writer is None:
                    writer = pq.ParquetWriter(dest, reader.schema_arrow)
                writer.write_batch(batch)
        if writer is None and parts:
            writer = pq.ParquetWriter(dest, pq.ParquetFile(parts[0]).schema_arrow)
    finally:
        if writer is not None:
            writer.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
