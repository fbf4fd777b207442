"""Export and quantization on tiny graphs with fixed seeds: parity, dynamic batch, operator types, closeness."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from model_build import evaluate, variants
from model_build.export import ServingHead, export_onnx, torch_predict


def _ops(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


@pytest.fixture(scope="module")
def mlp_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module, np.ndarray]:
    torch.manual_seed(0)
    model = ServingHead(nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 3)), "classification").eval()
    x = np.random.default_rng(0).normal(size=(64, 6)).astype(np.float32)
    path = tmp_path_factory.mktemp("mlp") / "exported.onnx"
    export_onnx(model, x[:4], "features", "probabilities", "dynamo", path)
    return path, model, x


def test_export_is_one_file_with_named_io_and_dynamic_batch(mlp_onnx: tuple[Path, nn.Module, np.ndarray]) -> None:
    path, model, x = mlp_onnx
    assert sorted(p.name for p in path.parent.iterdir()) == ["exported.onnx"]
    session = evaluate.cpu_session(path)
    assert [i.name for i in session.get_inputs()] == ["features"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    for batch in (1, 7, 64):
        out = evaluate.run(session, x[:batch])
        assert out.shape == (batch, 3)
        np.testing.assert_allclose(out, torch_predict(model, x[:batch]), atol=1e-5)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)


def test_torchscript_exporter_handles_lstm(tmp_path: Path) -> None:
    from model_build.recipes.text_lstm import TopicLSTM

    torch.manual_seed(0)
    model = ServingHead(TopicLSTM(vocab_size=20, classes=2), "classification").eval()
    tokens = np.random.default_rng(0).integers(0, 20, size=(5, 8)).astype(np.int64)
    export_onnx(model, tokens[:2], "tokens", "probabilities", "torchscript", tmp_path / "lstm.onnx")
    assert "LSTM" in _ops(tmp_path / "lstm.onnx")
    out = evaluate.run(evaluate.cpu_session(tmp_path / "lstm.onnx"), tokens)
    np.testing.assert_allclose(out, torch_predict(model, tokens), atol=1e-5)


def test_regression_head_restores_natural_units(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ServingHead(nn.Linear(2, 1), "regression", target_mean=100.0, target_std=10.0).eval()
    x = np.ones((3, 2), dtype=np.float32)
    export_onnx(model, x, "features", "value", "dynamo", tmp_path / "r.onnx")
    raw = model.model(torch.as_tensor(x)).detach().numpy()
    out = evaluate.run(evaluate.cpu_session(tmp_path / "r.onnx"), x)
    np.testing.assert_allclose(out, raw * 10 + 100, rtol=1e-5)


def test_dynamic_int8_uses_integer_matmul_and_stays_close(mlp_onnx: tuple[Path, nn.Module, np.ndarray],
                                                          tmp_path: Path) -> None:
    path, _, x = mlp_onnx
    candidate = variants.quantize_dynamic_int8(path, tmp_path / "dyn.onnx")
    assert candidate.path is not None
    ops = _ops(candidate.path)
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops or "DynamicQuantizeMatMul" in ops
    fp32 = evaluate.run(evaluate.cpu_session(path), x)
    int8 = evaluate.run(evaluate.cpu_session(candidate.path), x)
    assert np.max(np.abs(fp32 - int8)) < 0.05
    assert (fp32.argmax(1) == int8.argmax(1)).mean() >= 0.95


def test_static_qdq_int8_inserts_quantize_pairs_and_stays_close(mlp_onnx: tuple[Path, nn.Module, np.ndarray],
                                                                tmp_path: Path) -> None:
    path, _, x = mlp_onnx
    candidate = variants.quantize_static_int8(path, tmp_path / "qdq.onnx", "features", x)
    assert candidate.path is not None, candidate.note
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(candidate.path)
    fp32 = evaluate.run(evaluate.cpu_session(path), x)
    int8 = evaluate.run(evaluate.cpu_session(candidate.path), x)
    assert np.mean(np.abs(fp32 - int8)) < 0.01
    assert np.max(np.abs(fp32 - int8)) < 0.1
    np.testing.assert_allclose(int8.sum(axis=1), 1.0, atol=1e-5)  # softmax stays in float


def test_optimized_fp32_matches_export(mlp_onnx: tuple[Path, nn.Module, np.ndarray], tmp_path: Path) -> None:
    path, _, x = mlp_onnx
    candidate = variants.optimize_fp32(path, tmp_path / "fp32.onnx")
    assert candidate.path is not None
    np.testing.assert_allclose(evaluate.run(evaluate.cpu_session(candidate.path), x),
                               evaluate.run(evaluate.cpu_session(path), x), atol=1e-6)


def test_static_quantization_of_a_graph_without_quantizable_ops_is_skipped_with_a_reason(tmp_path: Path) -> None:
    model = nn.ReLU().eval()
    x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    export_onnx(model, x, "input", "out", "dynamo", tmp_path / "relu.onnx")
    candidate = variants.quantize_dynamic_int8(tmp_path / "relu.onnx", tmp_path / "dyn.onnx")
    assert candidate.path is None
    assert candidate.note.startswith("skipped:")
