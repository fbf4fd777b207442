"""Structured pruning on tiny graphs: widths physically removed (fewer parameters and MACs), the served input
and the output classes kept, heads and FFN width of a BERT encoder, ONNX parity, and the same seed giving the
same pruned weights."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from model_build import evaluate
from model_build.contracts import PruningConfig
from model_build.export import export_onnx, torch_predict
from model_build.pruning import recovery, surgery


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(30, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 2))


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))


def _bert_classifier() -> nn.Module:
    """The minilm-classifier's model (frozen encoder, linear head) around a tiny randomly initialised BERT."""
    from transformers import BertConfig, BertModel

    from model_build.recipes.minilm_classifier import MiniLMTopicModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=32, attn_implementation="eager")
    return MiniLMTopicModel(BertModel(config), classes=3, fine_tune=False).eval()


@pytest.mark.parametrize(("make", "shape", "units"), [
    (_mlp, (1, 30), ("neurons",)),
    (_cnn, (1, 1, 8, 8), ("neurons", "channels")),
])
def test_pruned_graph_is_smaller_and_keeps_input_and_classes(make, shape, units) -> None:  # type: ignore[no-untyped-def]
    model = make().eval()
    example = torch.randn(*shape)
    params, macs = surgery.count(model, example)
    config = PruningConfig(units=units)
    before = surgery.widths(surgery.prunable_layers(model, example, config))
    pruned = surgery.prune(model, example, 0.5, config)
    assert pruned.params < params / 2 and pruned.macs < macs / 2
    assert pruned.kept == {label: width // 2 for label, width in before.items()}
    assert all(k % 8 == 0 for k in pruned.kept.values())  # round_to=8
    assert surgery.count(model, example) == (pruned.params, pruned.macs)
    assert model(torch.randn(5, *shape[1:])).shape == (5, 10 if len(shape) == 4 else 2)
    first = next(m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d))
    assert (first.in_features if isinstance(first, nn.Linear) else first.in_channels) == shape[1]


def test_kept_widths_round_to_multiples_while_that_still_prunes() -> None:
    assert [surgery.kept_width(64, level, 8) for level in (0.25, 0.5, 0.75, 0.95)] == [48, 32, 16, 8]
    assert surgery.kept_width(16, 0.25, 8) == 12  # rounding would keep all 16: the exact width instead
    assert surgery.kept_width(32, 0.95, 1) == 2 and surgery.kept_width(16, 0.99, 1) == 1


def test_bert_loses_whole_heads_and_ffn_width_and_its_onnx_export_matches(tmp_path: Path) -> None:
    model = _bert_classifier()
    ids = torch.randint(1, 100, (6, 12))
    ids[0, 8:] = 0  # padding
    example = ids[:1]
    params, macs = surgery.count(model, example)
    config = PruningConfig(units=("heads", "ffn"))
    pruned = surgery.prune(model, example, 0.5, config)
    assert pruned.kept == {"layer.0:heads": 2, "layer.0:ffn": 32, "layer.1:heads": 2, "layer.1:ffn": 32}
    assert pruned.params < params and pruned.macs < macs
    attention = model.encoder.encoder.layer[0].attention
    assert attention.self.query.out_features == 16 and attention.output.dense.out_features == 32  # hidden kept
    assert model.head.out_features == 3 and model.encoder.embeddings.word_embeddings.weight.shape == (100, 32)
    assert not any(p.requires_grad for p in model.encoder.parameters())  # the recipe's frozen encoder stays so

    path = tmp_path / "pruned.onnx"
    export_onnx(model, ids.numpy()[:2], "input_ids", "logits", "torchscript", path, dynamic_sequence=True)
    x = ids.numpy()
    out = evaluate.run(evaluate.cpu_session(path), x)
    assert np.max(np.abs(out - torch_predict(model, x))) < 1e-4


def test_same_seed_gives_the_same_pruned_and_recovered_weights() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 30)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    teacher = _mlp().eval()

    def pruned_weights() -> list[torch.Tensor]:
        student = copy.deepcopy(teacher)
        config = PruningConfig(units=("neurons",))
        surgery.prune(student, torch.as_tensor(x[:1]), 0.5, config)
        recovery.recover(student, "classification", x, y, x[:16], y[:16],
                         recovery.teacher_outputs(teacher, x, "logits"), epochs=2, batch_size=16,
                         learning_rate=1e-2, seed=3, distill="logits")
        return [p.detach().clone() for p in student.parameters()]

    first, second = pruned_weights(), pruned_weights()
    assert [p.shape for p in first] == [(16, 30), (16,), (8, 16), (8,), (2, 8), (2,)]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    original = dict(teacher.named_parameters())["0.weight"]
    assert not any(torch.equal(first[0], original[i:i + 16]) for i in range(17))  # recovery did train


def test_recovery_never_leaves_validation_loss_worse() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 30)).astype(np.float32)
    y = (x[:, 1] > 0).astype(np.int64)
    model = _mlp().eval()
    before = copy.deepcopy(model.state_dict())
    recovery.recover(model, "classification", x, y, x[:16], y[:16], None, epochs=1, batch_size=16,
                     learning_rate=10.0, seed=0, distill=None)  # a rate that can only make things worse
    loss = nn.CrossEntropyLoss()
    with torch.no_grad():
        after_loss = float(loss(model(torch.as_tensor(x[:16])), torch.as_tensor(y[:16])))
        reference = _mlp().eval()
        reference.load_state_dict(before)
        before_loss = float(loss(reference(torch.as_tensor(x[:16])), torch.as_tensor(y[:16])))
    assert after_loss <= before_loss + 1e-6


def test_the_conv_path_is_reproducible_too() -> None:
    """digits-cnn's path: channels and neurons pruned, then a distilled recovery with shuffling, twice."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(48, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, size=48).astype(np.int64)
    teacher = _cnn().eval()

    def pruned_weights() -> list[torch.Tensor]:
        student = copy.deepcopy(teacher)
        surgery.prune(student, torch.as_tensor(x[:1]), 0.5, PruningConfig(units=("neurons", "channels")))
        recovery.recover(student, "classification", x, y, x[:16], y[:16],
                         recovery.teacher_outputs(teacher, x, "logits"), epochs=2, batch_size=16,
                         learning_rate=1e-2, seed=5, distill="logits")
        return [p.detach().clone() for p in student.parameters()]

    first, second = pruned_weights(), pruned_weights()
    assert first[0].shape == (8, 1, 3, 3) and first[-1].shape == (10,)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
