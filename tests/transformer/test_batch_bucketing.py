"""Length bucketing of minilm-embed's batch runs: order, ids and line numbers restored exactly, less padding,
and against no bucketing the same rows with numbers equal to float32 rounding (fp32); fixed-length text models
are left as they are (equal bytes)."""

from __future__ import annotations

import dataclasses
import multiprocessing
from pathlib import Path

import numpy as np
import orjson
import pytest

from functions.batch.bucketing import GRID, bucket, bucketable, padded_length
from functions.batch.local import for_batch, run_local
from functions.core.manifest import Manifest
from functions.core.model_cache import ModelCache
from functions.core.preprocessing import TokenizerPreprocessor
from functions.core.profile import text_stats
from functions.core.settings import Settings
from functions.core.store import LocalStore
from tests.pinned import pinned_copy
from tests.texts import keyed_texts

WORDS = ["the", "home", "team", "won", "a", "rainy", "match", "while", "chefs", "baked", "bread", "and", "servers",
         "answered", "quickly"]


@pytest.fixture(scope="module")
def fp32_minilm(minilm_store: tuple[LocalStore, Manifest], tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    return pinned_copy(minilm_store[0], tmp_path_factory.mktemp("minilm-fp32") / "store", "fp32", ["minilm-embed"])


def _texts(tmp_path: Path, rows: int = 90) -> Path:
    """A CSV (key, text) of texts of 1 to 60 words in random order; a few rows are bad."""
    return keyed_texts(tmp_path / "texts.csv", rows, WORDS, 61, 29, 7, seed=3)


def _run(store: LocalStore, tmp_path: Path, name: str, source: Path, chunk_rows: int, bucketing: bool,
         host_processes: int = 0) -> Path:
    settings = for_batch(Settings(store=store.uri, cache_dir=str(tmp_path / "cache"), batch_chunk_rows=chunk_rows,
                                  batch_threads=2, batch_bucketing=bucketing, batch_host_processes=host_processes))
    run_local(ModelCache(store, settings), "minilm-embed", source, tmp_path / name, id_column="key")
    assert (tmp_path / name / "report.json").exists()
    return tmp_path / name


def _rows(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_padded_lengths_follow_the_grid() -> None:
    assert [padded_length(n) for n in (0, 1, GRID, GRID + 1, 3 * GRID)] == [GRID, GRID, GRID, 2 * GRID, 3 * GRID]


def test_padding_unpadded_encodings_to_the_longest_equals_the_tokenizers_own(
        minilm_store: tuple[LocalStore, Manifest], tmp_path: Path) -> None:
    store, _ = minilm_store
    model = ModelCache(store, Settings(store=store.uri, cache_dir=str(tmp_path / "c"))).get("minilm-embed")
    preprocessor = model.preprocessor
    assert isinstance(preprocessor, TokenizerPreprocessor)
    texts = ["short", "a somewhat longer text with more words in it", "東京 🍕", "[UNK] zqxjv " * 3,
             " ".join(WORDS * 12)]  # the last one is truncated to max_length
    encodings = preprocessor.tokenize(texts)
    own = preprocessor.encode(texts)
    padded = preprocessor.pad(encodings, max(len(e.ids) for e in encodings))
    preprocessor._type_id, preprocessor._type_id_known = None, True  # type ids read per encoding instead
    read = preprocessor.pad(encodings, max(len(e.ids) for e in encodings))
    assert padded.keys() == own.keys() == read.keys()
    for name in own:
        np.testing.assert_array_equal(padded[name], own[name])
        np.testing.assert_array_equal(read[name], own[name])
        assert padded[name].dtype == own[name].dtype == np.int64
    # Drift statistics, counted for the whole batch, are the per-token count of a padded pass; from a batch
    # run's unpadded encodings they are the same.
    unknown = preprocessor.tokenizer.token_to_id("[UNK]")
    per_token = []
    for text, encoding in zip(texts, preprocessor.tokenizer.encode_batch(texts), strict=True):
        kept = [i for i, special, real in zip(encoding.ids, encoding.special_tokens_mask, encoding.attention_mask,
                                              strict=True) if real and not special]
        per_token.append({"tokens": float(len(kept)), "unknown_rate": round(kept.count(unknown) / len(kept), 4),
                          "pieces_per_word": round(len(kept) / len(text.split()), 4)})
    assert per_token[3]["unknown_rate"] > 0
    assert text_stats(preprocessor, texts) == text_stats(preprocessor, texts, encodings) == per_token
    buckets = bucket(preprocessor, texts)
    assert sorted(np.concatenate(buckets.rows).tolist()) == list(range(len(texts)))
    assert all(b["input_ids"].shape[1] % GRID == 0 for b in buckets.batches)


def test_bucketing_restores_input_order_ids_and_lines(fp32_minilm: LocalStore, tmp_path: Path) -> None:
    source = _texts(tmp_path)
    on = _run(fp32_minilm, tmp_path, "on", source, 32, True)
    off = _run(fp32_minilm, tmp_path, "off", source, 32, False)
    rows_on, rows_off = _rows(on / "predictions.jsonl"), _rows(off / "predictions.jsonl")
    expected = [i + 2 for i in range(90) if i % 29 != 7]  # the header is line 1
    assert [r["line"] for r in rows_on] == [r["line"] for r in rows_off] == expected
    assert [r["id"] for r in rows_on] == [f"k{line - 2}" for line in expected]
    assert (on / "errors.jsonl").read_bytes() == (off / "errors.jsonl").read_bytes()
    assert [(r["line"], r["id"]) for r in _rows(on / "errors.jsonl")] == [(9, "k7"), (38, "k36"), (67, "k65")]
    vectors_on = np.array([r["embedding"] for r in rows_on])
    vectors_off = np.array([r["embedding"] for r in rows_off])
    np.testing.assert_allclose(vectors_on, vectors_off, rtol=0, atol=1e-6)  # float32 rounding, not other rows


def test_host_processes_write_the_bytes_of_threads_with_and_without_bucketing(fp32_minilm: LocalStore,
                                                                             tmp_path: Path) -> None:
    source = _texts(tmp_path)
    for bucketing in (True, False):  # the CPU's length buckets, and the GPU worker's file-order chunks
        threads = _run(fp32_minilm, tmp_path, f"threads-{bucketing}", source, 32, bucketing)
        processes = _run(fp32_minilm, tmp_path, f"processes-{bucketing}", source, 32, bucketing, host_processes=2)
        for name in ("predictions.jsonl", "errors.jsonl"):
            assert (processes / name).read_bytes() == (threads / name).read_bytes()
        reports = [orjson.loads((folder / "report.json").read_bytes()) for folder in (threads, processes)]
        assert reports[0]["rows"] == reports[1]["rows"] == {"in": 90, "ok": 87, "failed": 3}
        assert reports[0]["drift"] == reports[1]["drift"] and reports[0]["drift"]["status"] != "no_reference"
    assert not multiprocessing.active_children()


def test_buckets_pad_less_than_the_chunks_longest_text(minilm_store: tuple[LocalStore, Manifest],
                                                        tmp_path: Path) -> None:
    store, _ = minilm_store
    model = ModelCache(store, Settings(store=store.uri, cache_dir=str(tmp_path / "c"))).get("minilm-embed")
    preprocessor = model.preprocessor
    assert isinstance(preprocessor, TokenizerPreprocessor)
    rng = np.random.default_rng(5)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 80))).tolist()) for _ in range(200)]
    lengths = [len(e.ids) for e in preprocessor.tokenize(texts)]
    buckets = bucket(preprocessor, texts)
    padded = sum(b["input_ids"].size for b in buckets.batches)
    assert padded < 0.75 * len(texts) * max(lengths)
    for batch, rows in zip(buckets.batches, buckets.rows, strict=True):
        width = batch["input_ids"].shape[1]
        assert all(width - GRID < lengths[row] <= width for row in rows.tolist())
        np.testing.assert_array_equal(batch["attention_mask"].sum(axis=1), [lengths[row] for row in rows.tolist()])


def test_bucketing_changes_nothing_for_fixed_length_text_models(built_store: LocalStore, tmp_path: Path) -> None:
    texts = ["The striker scored twice in the final minutes of a long and tiring match.", "Rain.",
             "Bake the bread slowly", "Chips"] * 20
    source = tmp_path / "texts.jsonl"
    source.write_bytes(b"\n".join(orjson.dumps(t) for t in texts) + b"\n")
    outputs = []
    for bucketing in (True, False):
        settings = for_batch(Settings(store=built_store.uri, cache_dir=str(tmp_path / "c"), batch_chunk_rows=16,
                                      batch_threads=2, batch_bucketing=bucketing))
        cache = ModelCache(built_store, settings)
        assert not bucketable(cache.get("text-lstm"))  # padded to max_tokens whatever the batch
        run_local(cache, "text-lstm", source, tmp_path / str(bucketing))
        outputs.append((tmp_path / str(bucketing) / "predictions.jsonl").read_bytes())
    assert outputs[0] == outputs[1] and outputs[0].count(b"\n") == 80


def test_bucketing_off_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAAS_BATCH_BUCKETING", "off")
    assert Settings.from_env().batch_bucketing is False
    assert dataclasses.replace(Settings(), batch_bucketing=True).batch_bucketing is True


def test_the_gpu_benchmarks_end_to_end_rows_dry_run_on_the_cpu(minilm_store: tuple[LocalStore, Manifest],
                                                                tmp_path: Path) -> None:
    from bench import gpu

    store, manifest = minilm_store
    result = gpu._end_to_end(store, manifest.version, ["CPUExecutionProvider"], tmp_path, rows=40, target="cpu")
    assert result["host processes"] >= 1 and result["host processes write the same bytes"] is True
    assert result["end-to-end rows/s"] > 0 and result["end-to-end rows/s, host processes"] > 0
    assert result["end-to-end rows/s, Parquet output, host processes"] > 0 and result["bucketing"] is False
    assert result["host processes start (s)"] > 0 and not list(tmp_path.glob("timed-*"))
    assert not multiprocessing.active_children()
