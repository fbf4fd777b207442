"""Feeding a drift tracker from capture records (JSON lines) and from batch-style input files."""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from functions.core.manifest import Preprocessing
from functions.core.profile import DriftTracker, input_matrix, record_predictions
from functions.core.records import marked_lines

CHUNK_RECORDS = 4096
MARKER = b'"maas_capture"'
SHADOW_FOLDER = "_shadow"
"""A capture folder's comparison records (``functions.core.shadow``): never capture records."""


def is_capture_file(path: Path) -> bool:
    """Capture files are JSON lines whose records carry ``"maas_capture"`` (plain or gzipped); a file of
    comparison records (``"maas_shadow"``) is not one, even where its inputs mention the capture marker."""
    try:
        with _open(path) as f:
            line = f.readline(65536)
    except (OSError, EOFError):
        return False
    if MARKER not in line:
        return False
    try:
        return is_capture_record(orjson.loads(line))
    except orjson.JSONDecodeError:  # a record longer than what was read: its head says what it is
        return bool(line.lstrip().startswith(b"{" + MARKER))


def is_capture_record(record: Any) -> bool:
    """A capture record: a JSON object carrying ``"maas_capture": 1`` (comparison records carry
    ``"maas_shadow": 1`` instead)."""
    return isinstance(record, dict) and record.get("maas_capture") == 1


def _open(path: Path) -> Any:
    with path.open("rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else path.open("rb")


def capture_files(root: Path) -> list[Path]:
    """Every capture file under a folder (``NAME/VERSION/DAY.jsonl`` locally, Firehose objects from S3); the
    comparison records under ``_shadow/`` are left out."""
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")
                  and SHADOW_FOLDER not in p.relative_to(root).parts and is_capture_file(p))


def file_lines(paths: Iterable[Path]) -> Iterator[bytes]:
    for path in paths:
        with _open(path) as f:
            yield from f


class RecordFeeder:
    """Adds the records of one model version to a tracker, a chunk at a time (memory stays flat)."""

    def __init__(self, tracker: DriftTracker, spec: Preprocessing, name: str, version: str) -> None:
        self.tracker = tracker
        self.spec = spec
        self.name = name
        self.version = version
        self.records = 0
        self.skipped = 0
        self._inputs: list[Any] = []
        self._outputs: list[Any] = []

    def add_lines(self, lines: Iterable[bytes]) -> None:
        for record in marked_lines(lines, MARKER, self._skip):
            if is_capture_record(record):  # a comparison record (maas_shadow) is not one
                self.add_record(record)
        self.flush()

    def _skip(self) -> None:
        self.skipped += 1

    def add_record(self, record: Any) -> None:
        if not isinstance(record, dict) or record.get("model") != self.name or \
                str(record.get("version")) != self.version:
            return
        inputs, outputs = record.get("inputs"), record.get("outputs")
        if not isinstance(inputs, list) or not isinstance(outputs, list):
            self.skipped += 1
            return
        self.records += 1
        self._inputs += [i for i in inputs if i is not None]
        self._outputs += [o for o in outputs if isinstance(o, dict)]
        if len(self._inputs) >= CHUNK_RECORDS:
            self.flush()

    def flush(self) -> None:
        if self._inputs:
            self.tracker.add_inputs(input_matrix(self.spec, self._inputs))
        if self._outputs:
            self.tracker.add_predictions(record_predictions(self._outputs, self.tracker.profile.prediction))
        self._inputs, self._outputs = [], []
