"""Players per input kind, and model inputs for a block of coalitions.

- tabular: one player per named feature; a masked feature takes each background row's value;
- image: 2x2 superpixels (16 players on an 8x8 image); masked pixels take each background image's pixels;
- text: one player per word of the text as written (``[a-z0-9']+`` runs and single other characters, the
  split text-lstm's vocabulary uses); a masked word is removed from the text and the model's own tokenizer
  encodes what is left.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from functions.core.preprocessing import (
    ENCODING_FIELDS,
    ImagePreprocessor,
    Preprocessor,
    Tensors,
    TextVocabPreprocessor,
    TokenizerPreprocessor,
)

WORDS = re.compile(r"[a-z0-9']+|[^\sa-z0-9']", re.IGNORECASE)
SUPERPIXEL = 2


class Masker(Protocol):
    """Turns coalitions of one instance's players into model input rows."""

    @property
    def players(self) -> int:
        """Number of players."""

    @property
    def background_rows(self) -> int:
        """Model rows per coalition (each coalition is averaged over the background)."""

    def inputs(self, masks: npt.NDArray[np.bool_]) -> Tensors:
        """Model inputs for ``masks`` [K, players]: K * background_rows rows, coalition-major."""


@dataclass
class NumericMasker:
    """Numeric columns grouped into players; masked columns come from the background rows.

    The instance and the background are encoded once: tabular standardization and image scaling act on each
    value alone, so picking encoded values per column gives exactly the encoding of the composed raw row."""

    input_name: str
    instance: npt.NDArray[np.float32]  # [F] encoded values
    background: npt.NDArray[np.float32]  # [B, F] encoded values
    groups: npt.NDArray[np.int64]  # [F] player of each column
    shape: tuple[int, ...]  # one instance's natural shape, e.g. (8, 8) or (F,)
    row_shape: tuple[int, ...]  # one model input row, e.g. (1, 8, 8) or (F,)

    @property
    def players(self) -> int:
        return int(self.groups.max()) + 1

    @property
    def background_rows(self) -> int:
        return len(self.background)

    def inputs(self, masks: npt.NDArray[np.bool_]) -> Tensors:
        columns = masks[:, self.groups][:, None, :]
        rows = np.where(columns, self.instance, self.background[None, :, :])
        return {self.input_name: rows.reshape(-1, *self.row_shape)}


def superpixel_groups(shape: Sequence[int], size: int = SUPERPIXEL) -> npt.NDArray[np.int64]:
    """Player index of each pixel of a ``shape`` image split into ``size`` x ``size`` blocks."""
    height, width = shape
    rows, cols = np.divmod(np.arange(height * width), width)
    groups: npt.NDArray[np.int64] = ((rows // size) * -(-width // size) + cols // size).astype(np.int64)
    return groups


def numeric_masker(preprocessor: Preprocessor, instance: Any, background: npt.NDArray[np.float64],
                   feature_names: Sequence[str] | None) -> NumericMasker:
    """A masker for one validated tabular instance (dict or array) or image."""
    if isinstance(preprocessor, ImagePreprocessor):
        shape = tuple(preprocessor.shape)
        raw = np.asarray(instance, dtype=np.float64).reshape(-1)
        groups = superpixel_groups(shape)
    else:
        names = list(feature_names or [])
        values = [instance[n] for n in names] if isinstance(instance, dict) else instance
        raw = np.asarray(values, dtype=np.float64).reshape(-1)
        shape = (len(raw),)
        groups = np.arange(len(raw), dtype=np.int64)
    encoded = preprocessor.encode(np.concatenate([raw[None, :], background.reshape(len(background), -1)])
                                  .reshape(-1, *shape))[preprocessor.input_name]
    flat = encoded.reshape(len(encoded), -1)
    return NumericMasker(preprocessor.input_name, flat[0], flat[1:], groups, shape, tuple(encoded.shape[1:]))


@dataclass(frozen=True)
class Word:
    """A word of the input as written, with its character offsets."""

    text: str
    start: int
    end: int


def split_words(text: str) -> list[Word]:
    """The text's words and punctuation marks with their offsets."""
    return [Word(m.group(), m.start(), m.end()) for m in WORDS.finditer(text)]


@dataclass
class TextMasker:
    """Words of one text; a masked word is cut out of the original string, the rest kept as written."""

    preprocessor: TextVocabPreprocessor | TokenizerPreprocessor
    text: str
    words: list[Word]
    background_rows: int = 1

    @property
    def players(self) -> int:
        return len(self.words)

    def masked_text(self, keep: npt.NDArray[np.bool_]) -> str:
        """The text with the words not in ``keep`` removed."""
        parts, position = [], 0
        for word, kept in zip(self.words, keep, strict=True):
            if not kept:
                parts.append(self.text[position:word.start])
                position = word.end
        parts.append(self.text[position:])
        return "".join(parts)

    def inputs(self, masks: npt.NDArray[np.bool_]) -> Tensors:
        return encode_texts(self.preprocessor, [self.masked_text(m) for m in masks])


def encode_texts(preprocessor: TextVocabPreprocessor | TokenizerPreprocessor, texts: list[str]) -> Tensors:
    """Encode texts that passed validation once already, masked ones included (they may be empty)."""
    if isinstance(preprocessor, TextVocabPreprocessor):
        spec = preprocessor.spec
        ids = np.full((len(texts), spec.max_tokens), spec.pad_id, dtype=np.int64)
        for index, text in enumerate(texts):
            tokens = preprocessor.tokenize(text)[: spec.max_tokens]
            if tokens:
                ids[index, -len(tokens):] = [preprocessor.vocab.get(t, spec.unk_id) for t in tokens]
        return {preprocessor.input_name: ids}
    encodings = preprocessor.tokenizer.encode_batch(texts)
    return {name: np.array([getattr(e, ENCODING_FIELDS[name]) for e in encodings], dtype=np.int64)
            for name in preprocessor.spec.inputs}
