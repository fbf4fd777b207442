"""Turn natural instances (feature dicts, 8x8 arrays, raw text) into model input tensors.

The same code runs at build time (to make training arrays) and at serve time, so the two cannot drift.
Every check names the offending instance.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from functions.core.errors import InvalidInputError
from functions.core.manifest import (
    ImagePreprocessing,
    Preprocessing,
    TabularPreprocessing,
    TextVocabPreprocessing,
    TokenizerPreprocessing,
)

Tensors = dict[str, npt.NDArray[Any]]
Instances = Sequence[Any] | npt.NDArray[Any]
"""A list of natural instances, or an array of numeric rows (batch inputs)."""
_WORD = re.compile(r"[a-z0-9']+|[^\sa-z0-9']", re.IGNORECASE)


class Preprocessor(Protocol):
    """Encodes a list of instances into named input tensors."""

    input_name: str

    def encode(self, instances: Instances) -> Tensors:
        """Validate and encode; raise InvalidInputError naming the first bad instance."""


def _finite_array(value: Any, index: int, shape: tuple[int, ...]) -> npt.NDArray[np.float64]:
    if isinstance(value, str | bytes | Mapping) or value is None:
        raise InvalidInputError(f"expected numbers of shape {list(shape)}, got {type(value).__name__}", index)
    try:
        raw = np.asarray(value)
    except ValueError:  # ragged nesting
        raise InvalidInputError(f"expected numbers of shape {list(shape)}", index) from None
    if raw.dtype.kind == "b":
        raise InvalidInputError("expected numbers, got booleans", index)
    if raw.dtype.kind not in "iuf":  # strings, nulls, dicts, ragged lists
        raise InvalidInputError(f"expected numbers of shape {list(shape)}", index)
    array = raw.astype(np.float64)
    if array.size != math.prod(shape) or (array.shape != shape and array.ndim != 1):
        raise InvalidInputError(f"expected shape {list(shape)}, got {list(array.shape)}", index)
    if not np.isfinite(array).all():
        raise InvalidInputError("NaN or Inf values are not allowed", index)
    return array.reshape(shape)


class ImagePreprocessor:
    """Nested arrays (or flat arrays of the right size) -> float32 [N, 1, H, W] scaled to [0, 1]."""

    def __init__(self, spec: ImagePreprocessing, input_name: str) -> None:
        self.spec = spec
        self.input_name = input_name
        self.shape = tuple(spec.shape)

    def encode(self, instances: Instances) -> Tensors:
        fast = self._encode_whole_batch(instances)
        if fast is not None:
            return {self.input_name: fast}
        low, high = self.spec.value_range
        batch = np.empty((len(instances), 1, *self.shape), dtype=np.float32)
        for index, instance in enumerate(instances):
            image = _finite_array(instance, index, self.shape)
            if image.min() < low or image.max() > high:
                raise InvalidInputError(f"pixel values must lie in [{low:g}, {high:g}]", index)
            batch[index, 0] = image / self.spec.scale
        return {self.input_name: batch}

    def _encode_whole_batch(self, instances: Instances) -> npt.NDArray[np.float32] | None:
        """One vectorized conversion and check for a well-formed batch; None sends it down the per-instance
        path, which names the offending instance."""
        if len(instances) == 0:
            return None
        try:
            raw = np.asarray(instances)
        except ValueError:  # ragged
            return None
        count = len(instances)
        if raw.dtype.kind not in "iuf" or raw.shape not in ((count, *self.shape), (count, math.prod(self.shape))):
            return None
        batch = raw.astype(np.float32).reshape(count, 1, *self.shape)
        low, high = self.spec.value_range
        if not np.isfinite(batch).all() or batch.min() < low or batch.max() > high:
            return None
        batch /= np.float32(self.spec.scale)
        return batch


class TabularPreprocessor:
    """Feature dicts (exact names) or ordered arrays -> standardized float32 [N, F]."""

    def __init__(self, spec: TabularPreprocessing, input_name: str) -> None:
        self.spec = spec
        self.input_name = input_name
        self.features = spec.features
        self._position = {name: i for i, name in enumerate(spec.features)}
        self.mean = np.asarray(spec.mean, dtype=np.float64)
        self.std = np.asarray(spec.std, dtype=np.float64)

    def _row(self, instance: Any, index: int) -> npt.NDArray[np.float64]:
        if not isinstance(instance, Mapping):
            return _finite_array(instance, index, (len(self.features),))
        missing = [name for name in self.features if name not in instance]
        unknown = [str(name) for name in instance if name not in self._position]
        if missing or unknown:
            parts = [f"missing features {missing[:5]}" if missing else "",
                     f"unknown features {unknown[:5]}" if unknown else ""]
            raise InvalidInputError("; ".join(p for p in parts if p), index)
        values = [instance[name] for name in self.features]
        for name, value in zip(self.features, values, strict=True):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidInputError(f"feature {name!r} must be a number, got {type(value).__name__}", index)
        return _finite_array(values, index, (len(self.features),))

    def encode(self, instances: Instances) -> Tensors:
        fast = self._whole_batch(instances)
        if fast is not None:
            return {self.input_name: self.standardize(fast)}
        rows = np.stack([self._row(instance, i) for i, instance in enumerate(instances)]) if len(instances) else \
            np.empty((0, len(self.features)), dtype=np.float32)
        return {self.input_name: self.standardize(rows)}

    def _whole_batch(self, instances: Instances) -> npt.NDArray[np.float64] | None:
        """Arrays of rows (not dicts) converted and checked at once; None falls back to per-instance checks."""
        if len(instances) == 0 or isinstance(instances[0], Mapping):
            return None
        try:
            raw = np.asarray(instances)
        except ValueError:
            return None
        if raw.dtype.kind not in "iuf" or raw.shape != (len(instances), len(self.features)):
            return None
        rows = raw.astype(np.float64, copy=False)
        return rows if np.isfinite(rows).all() else None

    def standardize(self, rows: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """Apply the training statistics to raw rows (already validated)."""
        return ((rows - self.mean) / self.std).astype(np.float32)


class TextVocabPreprocessor:
    """Raw strings -> int64 token ids [N, max_tokens] through a word vocabulary, padded on the left so a
    recurrent model's last step is the last real token."""

    def __init__(self, spec: TextVocabPreprocessing, vocab: Mapping[str, int], input_name: str) -> None:
        self.spec = spec
        self.vocab = dict(vocab)
        self.input_name = input_name

    def tokenize(self, text: str) -> list[str]:
        """Split text into word tokens the way the vocabulary was built."""
        return _WORD.findall(text.lower() if self.spec.lowercase else text)

    def encode(self, instances: Instances) -> Tensors:
        limit, lookup, unknown = self.spec.max_tokens, self.vocab.get, self.spec.unk_id
        ids = np.full((len(instances), limit), self.spec.pad_id, dtype=np.int64)
        for index, text in enumerate(check_texts(instances, self.spec.max_chars)):
            # Only the first max_tokens tokens are kept: stop matching there (long texts cost no more).
            tokens = [m.group() for m in itertools.islice(_WORD.finditer(text.lower() if self.spec.lowercase
                                                                         else text), limit)]
            if tokens:
                ids[index, -len(tokens):] = [lookup(t, unknown) for t in tokens]
        return {self.input_name: ids}


def check_texts(instances: Instances, max_chars: int) -> list[str]:
    """Every instance a non-empty string of at most ``max_chars`` characters."""
    texts: list[str] = []
    for index, text in enumerate(instances):
        if not isinstance(text, str):
            raise InvalidInputError(f"expected a string, got {type(text).__name__}", index)
        if not text.strip():
            raise InvalidInputError("empty text", index)
        if len(text) > max_chars:
            raise InvalidInputError(f"text longer than {max_chars} characters", index)
        texts.append(text)
    return texts


ENCODING_FIELDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
"""Model input name -> attribute of a ``tokenizers`` Encoding."""


class TokenizerPreprocessor:
    """Raw strings -> input_ids / attention_mask / token_type_ids with the version's own tokenizer (the
    ``tokenizers`` library: no torch, no transformers), truncated and padded to the longest text."""

    def __init__(self, spec: TokenizerPreprocessing, tokenizer_json: bytes, input_name: str) -> None:
        from tokenizers import Tokenizer

        self.spec = spec
        self.input_name = input_name
        self.tokenizer = Tokenizer.from_str(tokenizer_json.decode("utf-8"))
        self.tokenizer.enable_truncation(spec.max_length)
        self.tokenizer.enable_padding()
        self._unpadded: Any = None  # a copy without padding, made on first use by ``tokenize``
        self._type_id: int | None = None  # see ``_single_type_id``
        self._type_id_known = False

    def encode(self, instances: Instances) -> Tensors:
        encodings = self.tokenizer.encode_batch(check_texts(instances, self.spec.max_chars))
        return {name: np.array([getattr(e, ENCODING_FIELDS[name]) for e in encodings], dtype=np.int64)
                for name in self.spec.inputs}

    def tokenize(self, texts: Sequence[str]) -> list[Any]:
        """Truncated, unpadded encodings of texts already checked (``check_texts``): one tokenizer pass whose
        lengths a batch can be bucketed by; ``pad`` makes tensors of them. (``encode_batch_fast`` where the
        library has it: the same ids, without the character offsets nothing here reads.)"""
        if self._unpadded is None:
            from tokenizers import Tokenizer

            unpadded = Tokenizer.from_str(self.tokenizer.to_str())
            unpadded.no_padding()
            self._unpadded = unpadded
        encode = getattr(self._unpadded, "encode_batch_fast", self._unpadded.encode_batch)
        return list(encode(list(texts)))

    def pad(self, encodings: Sequence[Any], length: int) -> Tensors:
        """Tensors of ``length`` tokens from unpadded encodings (``tokenize``; none longer than ``length``),
        padded as ``encode`` pads (its pad id, pad type id and side): at the batch's longest length they equal
        ``encode``'s tensors.

        Built for the whole batch at once: each row's ids are read once and placed through a mask of the real
        positions, the attention mask is that mask (an unpadded encoding attends to every token), and the type
        ids are read only when the tokenizer's template does not give one type id to every token of a single
        text (``_single_type_id``)."""
        padding = self.tokenizer.padding or {}
        fill = {"input_ids": int(padding.get("pad_id", 0)), "attention_mask": 0,
                "token_type_ids": int(padding.get("pad_type_id", 0))}
        ids = [encoding.ids for encoding in encodings]
        lengths = np.fromiter(map(len, ids), dtype=np.intp, count=len(ids))
        positions = np.arange(length)
        if padding.get("direction") == "left":
            real = positions >= (length - lengths)[:, None]
        else:
            real = positions < lengths[:, None]
        tensors: Tensors = {}
        for name in self.spec.inputs:
            if name == "attention_mask":
                tensors[name] = real.astype(np.int64)
                continue
            array = np.full((len(encodings), length), fill[name], dtype=np.int64)
            if name == "token_type_ids" and (type_id := self._single_type_id()) is not None:
                array[real] = type_id
            else:
                values = ids if name == "input_ids" else [getattr(e, ENCODING_FIELDS[name]) for e in encodings]
                array[real] = np.fromiter(itertools.chain.from_iterable(values), dtype=np.int64,
                                          count=int(lengths.sum()))
            tensors[name] = array
        return tensors

    def _single_type_id(self) -> int | None:
        """The type id of every token of one text when the post-processor fixes it (a template whose single-text
        pieces all have one type id; BERT and RoBERTa processors: 0; none: 0), else None (read per encoding)."""
        if not self._type_id_known:
            self._type_id, self._type_id_known = _template_type_id(self.tokenizer.post_processor), True
        return self._type_id


def _template_type_id(processor: Any) -> int | None:
    if processor is None:
        return 0
    try:
        import orjson

        state = orjson.loads(processor.__getstate__())
    except (AttributeError, TypeError, ValueError):
        return None
    kind = state.get("type")
    if kind in ("BertProcessing", "RobertaProcessing"):
        return 0
    if kind != "TemplateProcessing":
        return None
    found = {next(iter(piece.values())).get("type_id") for piece in state.get("single", [])}
    return found.pop() if len(found) == 1 and isinstance(next(iter(found)), int) else None


def make_preprocessor(spec: Preprocessing, input_name: str, files: Mapping[str, bytes]) -> Preprocessor:
    """Build the preprocessor a manifest describes; ``files`` holds the version's auxiliary files."""
    if isinstance(spec, ImagePreprocessing):
        return ImagePreprocessor(spec, input_name)
    if isinstance(spec, TabularPreprocessing):
        return TabularPreprocessor(spec, input_name)
    if isinstance(spec, TokenizerPreprocessing):
        return TokenizerPreprocessor(spec, files[spec.tokenizer_file], input_name)
    import orjson

    vocab = orjson.loads(files[spec.vocab_file])
    return TextVocabPreprocessor(spec, vocab, input_name)


def auxiliary_files(spec: Preprocessing) -> list[str]:
    """Files of the version that the preprocessor needs."""
    if isinstance(spec, TextVocabPreprocessing):
        return [spec.vocab_file]
    return [spec.tokenizer_file] if isinstance(spec, TokenizerPreprocessing) else []
