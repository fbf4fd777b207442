"""``make bench-gpu`` without a GPU: says so plainly and succeeds."""

from __future__ import annotations

import pytest

from bench import gpu


def test_bench_gpu_says_no_gpu_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    present, _ = gpu.cuda_status()
    if present:
        pytest.skip("a GPU is present: the benchmark itself runs in make bench-gpu")
    assert gpu.main([]) == 0
    assert "no GPU is present" in capsys.readouterr().out
