"""The int8 search keeps few sensitive nodes in float, chosen greedily by measured score, until the gate passes.

quantize_int8 is replaced by a stand-in that writes the kept-in-float list to the file, and the score is a
made-up function of that list: this tests the search's choices, not onnxruntime (the MiniLM build tests run
the real quantizer)."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_build import pretrained

NODES = ["layer.0", "layer.1", "layer.2", "layer.3"]
GAIN = {"layer.0": 0.010, "layer.1": 0.006, "layer.2": 0.001, "layer.3": 0.002}
# layer.2 and layer.3 help more together than each alone suggests (a pair the greedy search must not need)
SYNERGY = 0.004


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    made: list[list[str]] = []

    def fake_quantize(fp32: Path, out: Path, keep_float: list[str]) -> None:
        made.append(list(keep_float))
        out.write_text(",".join(keep_float))

    monkeypatch.setattr(pretrained, "quantize_int8", fake_quantize)
    return made


def _score(base: float):  # type: ignore[no-untyped-def]
    def score(path: Path) -> float:
        kept = [node for node in path.read_text().split(",") if node]
        together = SYNERGY if {"layer.2", "layer.3"} <= set(kept) else 0.0
        return base + sum(GAIN[node] for node in kept) + together
    return score


def test_everything_quantized_when_that_passes(tmp_path: Path, calls: list[list[str]]) -> None:
    kept, value = pretrained.search_int8(tmp_path / "fp32", tmp_path / "int8", NODES, _score(0.995), 0.99)
    assert kept == [] and value == pytest.approx(0.995) and calls == [[]]


def test_keeps_the_most_sensitive_nodes_first_and_stops_at_the_gate(tmp_path: Path, calls: list[list[str]]) -> None:
    out = tmp_path / "int8"
    kept, value = pretrained.search_int8(tmp_path / "fp32", out, NODES, _score(0.975), 0.99)
    assert kept == ["layer.0", "layer.1"] and value == pytest.approx(0.991)
    assert out.read_text() == "layer.0,layer.1"  # the file left behind is the chosen one
    assert not (tmp_path / "search.int8").exists()


def test_gives_up_with_every_candidate_in_float_when_even_that_fails(tmp_path: Path,
                                                                     calls: list[list[str]]) -> None:
    out = tmp_path / "int8"
    kept, value = pretrained.search_int8(tmp_path / "fp32", out, NODES, _score(0.95), 0.99)
    assert kept == NODES and value == pytest.approx(0.973) and out.read_text() == ",".join(NODES)
    assert calls == [[], NODES]  # no per-node search when all-float fails


def test_no_candidates_means_all_or_nothing(tmp_path: Path, calls: list[list[str]]) -> None:
    kept, value = pretrained.search_int8(tmp_path / "fp32", tmp_path / "int8", [], _score(0.95), 0.99)
    assert kept == [] and value == pytest.approx(0.95) and calls == [[]]


def test_without_greedy_every_candidate_stays_in_float(tmp_path: Path, calls: list[list[str]]) -> None:
    """``maas import --quick``: two quantizations at most, no per-node search."""
    out = tmp_path / "int8"
    kept, value = pretrained.search_int8(tmp_path / "fp32", out, NODES, _score(0.975), 0.99, greedy=False)
    assert kept == NODES and value == pytest.approx(0.998) and calls == [[], NODES]
    assert out.read_text() == ",".join(NODES)
