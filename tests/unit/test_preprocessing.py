"""Natural instances become model tensors; bad instances are named."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from functions.core.errors import InvalidInputError
from functions.core.manifest import ImagePreprocessing, TabularPreprocessing, TextVocabPreprocessing
from functions.core.preprocessing import make_preprocessor

TABULAR = TabularPreprocessing(features=["a", "b"], mean=[1.0, 10.0], std=[2.0, 5.0])
IMAGE = ImagePreprocessing(shape=[2, 2], value_range=(0.0, 16.0), scale=16.0)
TEXT = TextVocabPreprocessing(vocab_file="vocab.json", max_tokens=4, max_chars=50)
VOCAB = {"vocab.json": orjson.dumps({"<pad>": 0, "<unk>": 1, "hello": 2, "world": 3})}


def test_tabular_dicts_and_arrays_standardize_alike() -> None:
    pre = make_preprocessor(TABULAR, "features", {})
    from_dicts = pre.encode([{"a": 3, "b": 0}, {"b": 15.0, "a": 1}])["features"]
    from_arrays = pre.encode([[3, 0], [1, 15.0]])["features"]
    np.testing.assert_allclose(from_dicts, [[1.0, -2.0], [0.0, 1.0]])
    np.testing.assert_array_equal(from_dicts, from_arrays)
    assert from_dicts.dtype == np.float32


@pytest.mark.parametrize(("instance", "message"), [
    ({"a": 1}, "missing features \\['b'\\]"),
    ({"a": 1, "b": 2, "c": 3}, "unknown features \\['c'\\]"),
    ({"a": "1", "b": 2}, "feature 'a' must be a number"),
    ({"a": True, "b": 2}, "feature 'a' must be a number"),
    ([1, math.nan], "NaN or Inf"),
    ([1, math.inf], "NaN or Inf"),
    ([1, 2, 3], "expected shape \\[2\\]"),
    ("1,2", "expected numbers"),
    (None, "expected numbers"),
    ([[1], ["x"]], "expected numbers"),
])
def test_tabular_errors_name_the_instance(instance: object, message: str) -> None:
    pre = make_preprocessor(TABULAR, "features", {})
    with pytest.raises(InvalidInputError, match=f"instance 1: {message}") as info:
        pre.encode([[0, 0], instance])
    assert info.value.index == 1


def test_image_nested_or_flat_and_range_checked() -> None:
    pre = make_preprocessor(IMAGE, "image", {})
    out = pre.encode([[[0, 16], [8, 4]], [0, 16, 8, 4]])["image"]
    assert out.shape == (2, 1, 2, 2)
    np.testing.assert_allclose(out[0, 0], [[0, 1], [0.5, 0.25]])
    np.testing.assert_array_equal(out[0], out[1])
    with pytest.raises(InvalidInputError, match="instance 0: pixel values must lie in \\[0, 16\\]"):
        pre.encode([[[0, 17], [0, 0]]])
    with pytest.raises(InvalidInputError, match="expected shape \\[2, 2\\]"):
        pre.encode([[[0, 1, 2], [0, 0, 0]]])


def test_text_is_left_padded_with_unknown_words_mapped() -> None:
    pre = make_preprocessor(TEXT, "tokens", VOCAB)
    out = pre.encode(["Hello, world", "hello there hello world again"])["tokens"]
    np.testing.assert_array_equal(out, [[0, 2, 1, 3], [2, 1, 2, 3]])
    assert out.dtype == np.int64


@pytest.mark.parametrize(("text", "message"), [("", "empty text"), ("   ", "empty text"), (5, "expected a string"),
                                               (["a"], "expected a string"), ("x" * 51, "longer than 50")])
def test_text_errors(text: object, message: str) -> None:
    pre = make_preprocessor(TEXT, "tokens", VOCAB)
    with pytest.raises(InvalidInputError, match=message):
        pre.encode([text])


def test_image_whole_batch_path_matches_per_instance_path() -> None:
    pre = make_preprocessor(IMAGE, "image", {})
    images = [[[0, 16], [8, 4]], [[1, 2], [3, 4]], [[16, 0], [0, 16]]]
    whole = pre.encode(images)["image"]
    one_by_one = np.concatenate([pre.encode([image])["image"] for image in images])
    ragged = pre.encode([*images, [0, 16, 8, 4]])["image"]  # mixed nesting takes the per-instance path
    np.testing.assert_array_equal(whole, one_by_one)
    np.testing.assert_array_equal(whole, ragged[:3])
    assert whole.dtype == np.float32 and whole.shape == (3, 1, 2, 2)
    with pytest.raises(InvalidInputError, match="instance 2: pixel values"):
        pre.encode([images[0], images[1], [[0, 0], [0, 99]]])


def test_text_stops_matching_at_max_tokens_and_keeps_the_same_ids() -> None:
    spec = TextVocabPreprocessing(vocab_file="vocab.json", max_tokens=4, max_chars=10_000)
    pre = make_preprocessor(spec, "tokens", VOCAB)
    texts = ["Hello world, " * 500, "hello", "WORLD hello it's x " * 2]
    full = [pre.tokenize(text)[:TEXT.max_tokens] for text in texts]  # type: ignore[attr-defined]
    ids = pre.encode(texts)["tokens"]
    vocab = orjson.loads(VOCAB["vocab.json"])
    for row, tokens in zip(ids.tolist(), full, strict=True):
        assert row[TEXT.max_tokens - len(tokens):] == [vocab.get(t, 1) for t in tokens]
        assert row[:TEXT.max_tokens - len(tokens)] == [0] * (TEXT.max_tokens - len(tokens))
