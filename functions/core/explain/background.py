"""The version's background sample: what masked players are replaced with. Numeric rows in ``background.npy``
(raw, unstandardized inputs; read with ``allow_pickle=False``) or, for text, ``background.json``. Loaded with the
model's other auxiliary files, checked against the manifest's sha256, never served by any route."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from functions.core.errors import InvalidInputError
from functions.core.manifest import Manifest

NUMERIC_FILE = "background.npy"
TEXT_FILE = "background.json"
FILES = (NUMERIC_FILE, TEXT_FILE)
MAX_ROWS = 100


class NoBackgroundError(InvalidInputError):
    """The version was built without a background sample, so it cannot be explained (422 ``no_background``)."""

    code = "no_background"


@dataclass(frozen=True)
class Background:
    """Raw numeric rows [B, ...] (tabular, image), or the text masking rule and reference texts."""

    rows: npt.NDArray[np.float64] | None = None
    texts: list[str] = field(default_factory=list)
    mask: str = "remove"


def background_files(manifest: Manifest) -> list[str]:
    """The background files the version lists (none for versions built before explanations)."""
    listed = {entry.path for entry in manifest.files}
    return [name for name in FILES if name in listed]


def load_background(manifest: Manifest, files: Mapping[str, bytes]) -> Background:
    """Decode the background from the verified auxiliary files; NoBackgroundError when there is none."""
    if NUMERIC_FILE in files:
        rows = np.load(io.BytesIO(files[NUMERIC_FILE]), allow_pickle=False)
        return Background(rows=np.asarray(rows, dtype=np.float64))
    if TEXT_FILE in files:
        import orjson

        body: dict[str, Any] = orjson.loads(files[TEXT_FILE])
        return Background(texts=[str(t) for t in body.get("texts", [])], mask=str(body.get("mask", "remove")))
    raise NoBackgroundError(f"model {manifest.name} version {manifest.version} has no background sample, so it "
                            "cannot be explained; rebuild it with this release of maas, or re-import it with --sample")


def numeric_bytes(rows: npt.NDArray[Any]) -> bytes:
    """``background.npy`` content (np.save, no pickle)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(rows, dtype=np.float64), allow_pickle=False)
    return buffer.getvalue()
